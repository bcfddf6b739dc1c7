"""One error shape for the whole API: a JSON object whose ``detail`` is always one string a person
can read. For invalid input each invalid field is also a key holding a list of messages (nested
like the request), and ``detail`` sums them up::

    {"detail": "Not found."}
    {"detail": "Invalid input. sex: The shares must add up to 1.", "sex": ["The shares must add up to 1."]}

Clients print ``detail``; forms read the field keys. Nothing is ever a bare string or a bare list."""

import logging

from django.core.exceptions import ValidationError as DjangoValidationError
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

logger = logging.getLogger(__name__)

INVALID_INPUT = "Invalid input."
# A summary names this many field messages; the keys hold every one.
SUMMARY_MESSAGES = 5


def exception_handler(exc, context):
    """DRF's handler, plus: Django validation errors become 400s, every body is put in the one
    shape, and anything unexpected becomes a plain 500 message without a stack trace."""
    if isinstance(exc, DjangoValidationError):
        detail = exc.message_dict if hasattr(exc, "error_dict") else {"detail": exc.messages}
        exc = exceptions.ValidationError(detail)
    response = drf_exception_handler(exc, context)
    if response is not None:
        response.data = error_body(response.data)
        return response
    logger.exception("Unhandled API error", exc_info=exc)
    return Response(
        {"detail": "Something went wrong on our side. The error has been logged."},
        status=status.HTTP_500_INTERNAL_SERVER_ERROR,
    )


def error_body(data) -> dict:
    """``data`` as DRF's handler left it (a string, a list of messages, or a mapping of fields to
    messages), in the one shape."""
    if not isinstance(data, dict):
        data = {"detail": data}
    fields = {str(key): _messages(value) for key, value in data.items() if key != "detail"}
    if "detail" in data:
        detail = _sentence(data["detail"])
    else:
        detail = _summary(fields)
    return {"detail": detail, **fields}


def _sentence(value) -> str:
    if isinstance(value, dict):
        return _summary({str(k): _messages(v) for k, v in value.items()})
    if isinstance(value, (list, tuple)):
        return " ".join(_sentence(item) for item in value if item not in (None, "", [], {}))
    return str(value)


def _messages(value):
    """A field's errors: a list of strings, or for a nested object or list the same shape inside."""
    if isinstance(value, dict):
        return {str(key): _messages(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        if any(isinstance(item, (dict, list, tuple)) for item in value):
            # A list field's errors: one entry per item, empty where the item was fine.
            return [_messages(item) if isinstance(item, (dict, list, tuple)) else [str(item)] for item in value]
        return [str(item) for item in value]
    return [str(value)]


def _flatten(fields, prefix: str = ""):
    for key, value in fields.items() if isinstance(fields, dict) else enumerate(fields):
        path = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, list) and all(isinstance(item, str) for item in value):
            for message in value:
                yield ("" if path == "non_field_errors" else path), message
        else:
            yield from _flatten(value, path)


def _summary(fields: dict) -> str:
    pairs = list(_flatten(fields))
    if not pairs:
        return INVALID_INPUT
    shown = [f"{path}: {message}" if path else message for path, message in pairs[:SUMMARY_MESSAGES]]
    more = len(pairs) - len(shown)
    return f"{INVALID_INPUT} {' '.join(_full_stop(s) for s in shown)}" + (f" (and {more} more)" if more else "")


def _full_stop(text: str) -> str:
    return text if text.endswith((".", "!", "?", ")")) else text + "."
