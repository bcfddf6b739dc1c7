"""OpenAPI: every operation documents the errors the API can answer it with, all in the one
error shape of cxr_platform.api.exceptions (drf-spectacular postprocessing hook)."""

from __future__ import annotations

from .limits import max_body_bytes, max_json_depth
from .pagination import max_page_size

ERROR_COMPONENT = "Error"
ERROR_SCHEMA = {
    "type": "object",
    "description": (
        'Every API error is a JSON object with a string "detail": {"detail": "message"}. For invalid '
        'input each invalid field is also a key with a list of messages, nested like the request, and '
        '"detail" sums them up: {"detail": "Invalid input. size: …", "size": ["…"]}.'
    ),
    "properties": {
        "detail": {"type": "string", "description": "What went wrong, in words a person can act on."},
    },
    "required": ["detail"],
    "additionalProperties": True,
}

_EVERY_OPERATION = {
    "400": "The input is invalid: a field, a query parameter (e.g. limit or offset out of range) or a NUL character.",
    "401": "No valid credentials: log in or send 'Authorization: Bearer cxr_…'.",
    "403": "Your access does not allow this.",
    "404": "No such object, or not yours to see.",
    "406": "The Accept header asks for something other than JSON.",
    "429": "Too many requests; retry after the number of seconds in Retry-After.",
}
_WITH_BODY = {
    "413": "The request body is larger than API_MAX_BODY_BYTES.",
    "415": "The request body is not JSON (or a form).",
}
_BODY_METHODS = {"post", "put", "patch"}


def _error_response(description: str) -> dict:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{ERROR_COMPONENT}"}}},
    }


def add_error_responses(result, generator, request, public):
    result.setdefault("components", {}).setdefault("schemas", {})[ERROR_COMPONENT] = ERROR_SCHEMA
    for path_item in result.get("paths", {}).values():
        for method, operation in path_item.items():
            if not isinstance(operation, dict) or "responses" not in operation:
                continue
            errors = dict(_EVERY_OPERATION)
            if method in _BODY_METHODS:
                errors.update(_WITH_BODY)
            for code, description in errors.items():
                operation["responses"].setdefault(code, _error_response(description))
    limits = (
        f"\n\nLimits: request bodies at most {max_body_bytes():,} bytes (413 beyond), JSON nested at most "
        f"{max_json_depth()} levels (400 beyond), no NUL characters in any text (400), list pages of at "
        f"most {max_page_size()} items (`?limit=`, 400 beyond)."
    )
    result.setdefault("info", {})["description"] = result["info"].get("description", "") + limits
    return result
