"""Request parsers for /api/v1: the body is read with a size cap, JSON depth is checked on
the raw bytes before parsing, and NUL characters anywhere are refused (400)."""

from __future__ import annotations

import codecs
import json

from django.conf import settings
from django.http import QueryDict
from rest_framework import parsers
from rest_framework.exceptions import ParseError

from .limits import check_json_depth, read_bounded, refuse_nul


class LimitedJSONParser(parsers.JSONParser):
    """JSON, at most API_MAX_BODY_BYTES (413) and API_MAX_JSON_DEPTH levels deep (400)."""

    def parse(self, stream, media_type=None, parser_context=None):
        parser_context = parser_context or {}
        encoding = parser_context.get("encoding", settings.DEFAULT_CHARSET)
        raw = read_bounded(stream)
        check_json_depth(raw)
        try:
            text = codecs.decode(raw, encoding)
            data = json.loads(text, parse_constant=_refuse_constant)
        except (ValueError, LookupError) as exc:
            raise ParseError(f"JSON parse error - {exc}") from None
        refuse_nul(data)
        return data


def _refuse_constant(name):
    # NaN and Infinity are not JSON; Python's json accepts them unless told otherwise.
    raise ValueError(f"{name} is not valid JSON")


class LimitedFormParser(parsers.FormParser):
    def parse(self, stream, media_type=None, parser_context=None):
        parser_context = parser_context or {}
        encoding = parser_context.get("encoding", settings.DEFAULT_CHARSET)
        data = QueryDict(read_bounded(stream), encoding=encoding)
        refuse_nul(data)
        return data


class LimitedMultiPartParser(parsers.MultiPartParser):
    """Django's multipart parser; the body size is capped by ApiGuardMiddleware beforehand."""

    def parse(self, stream, media_type=None, parser_context=None):
        result = super().parse(stream, media_type, parser_context)
        refuse_nul(result.data)
        return result
