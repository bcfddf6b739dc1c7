"""Pagination for every list under /api/v1: ``?limit=`` (1 to API_MAX_PAGE_SIZE, default
PAGE_SIZE) and ``?offset=`` (0 to MAX_OFFSET). Anything else is a 400, never a silent
fallback and never a number the database cannot take."""

from __future__ import annotations

import re

from django.conf import settings
from rest_framework.exceptions import ValidationError
from rest_framework.pagination import LimitOffsetPagination

DEFAULT_MAX_PAGE_SIZE = 500
MAX_OFFSET = 2**31 - 1
_DIGITS = re.compile(r"[0-9]{1,19}")


def max_page_size() -> int:
    return int(getattr(settings, "API_MAX_PAGE_SIZE", DEFAULT_MAX_PAGE_SIZE))


def _bounded_int(request, name: str, *, minimum: int, maximum: int, default: int) -> int:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    if not _DIGITS.fullmatch(raw) or not minimum <= int(raw) <= maximum:
        raise ValidationError({name: [f"Must be a whole number from {minimum} to {maximum}."]})
    return int(raw)


class BoundedLimitOffsetPagination(LimitOffsetPagination):
    @property
    def max_limit(self) -> int:
        return max_page_size()

    def get_limit(self, request):
        return _bounded_int(request, self.limit_query_param, minimum=1, maximum=self.max_limit, default=self.default_limit)

    def get_offset(self, request):
        return _bounded_int(request, self.offset_query_param, minimum=0, maximum=MAX_OFFSET, default=0)

    def get_schema_operation_parameters(self, view):
        parameters = super().get_schema_operation_parameters(view)
        bounds = {
            self.limit_query_param: {"minimum": 1, "maximum": self.max_limit, "default": self.default_limit},
            self.offset_query_param: {"minimum": 0, "maximum": MAX_OFFSET, "default": 0},
        }
        for parameter in parameters:
            parameter["schema"].update(bounds.get(parameter["name"], {}))
            if parameter["name"] == self.limit_query_param:
                parameter["description"] = f"Number of results to return per page (at most {self.max_limit})."
        return parameters
