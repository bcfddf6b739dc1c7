"""Everything under /api/v1/ answers in JSON, bad input included.

Before the view: a body declared larger than API_MAX_BODY_BYTES is refused with 413 before
anything reads it, and a NUL character in the query string with 400. After it: an error
that Django itself produced as HTML (an unknown URL, a 400 from a malformed request, a
500) is replaced by the API's JSON error, ``{"detail": "..."}``."""

from __future__ import annotations

from http import HTTPStatus

from django.http import JsonResponse

from .limits import contains_nul, declared_length, max_body_bytes

API_PREFIX = "/api/v1/"
SERVER_ERROR = "Something went wrong on our side. The error has been logged."


def api_error(status: int, detail: str) -> JsonResponse:
    return JsonResponse({"detail": detail}, status=status)


def _is_json(response) -> bool:
    return response.get("Content-Type", "").split(";")[0].strip().endswith("json")


def _detail_for(status: int) -> str:
    if status >= 500:
        return SERVER_ERROR
    if status == 404:
        return "Not found."
    try:
        return HTTPStatus(status).phrase + "."
    except ValueError:
        return "Request refused."


class ApiGuardMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if not request.path.startswith(API_PREFIX):
            return self.get_response(request)
        limit = max_body_bytes()
        if declared_length(request.META) > limit:
            response = api_error(413, f"The request body is larger than the limit of {limit:,} bytes.")
            response["Connection"] = "close"  # the unread body must not be taken for the next request
            return response
        if contains_nul(request.GET):
            return api_error(400, "Query parameters may not contain NUL (\\u0000) characters.")
        response = self.get_response(request)
        if response.status_code >= 400 and not _is_json(response) and not getattr(response, "streaming", False):
            replacement = api_error(response.status_code, _detail_for(response.status_code))
            for header in ("Allow", "Retry-After", "WWW-Authenticate"):
                if header in response:
                    replacement[header] = response[header]
            return replacement
        return response
