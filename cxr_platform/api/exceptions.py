"""One error shape for the whole API: a JSON object, either ``{"detail": ...}`` (a message,
or a list of messages) or, for invalid fields, ``{"<field>": ["message", ...], ...}``."""

import logging

from django.core.exceptions import ValidationError as DjangoValidationError
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

logger = logging.getLogger(__name__)


def exception_handler(exc, context):
    """DRF's handler, plus: Django validation errors become 400s, a bare list of messages
    is wrapped in ``{"detail": [...]}``, and anything unexpected becomes a plain 500
    message without a stack trace."""
    if isinstance(exc, DjangoValidationError):
        detail = exc.message_dict if hasattr(exc, "error_dict") else {"detail": exc.messages}
        exc = exceptions.ValidationError(detail)
    response = drf_exception_handler(exc, context)
    if response is not None:
        if isinstance(response.data, list):
            response.data = {"detail": response.data}
        return response
    logger.exception("Unhandled API error", exc_info=exc)
    return Response(
        {"detail": "Something went wrong on our side. The error has been logged."},
        status=status.HTTP_500_INTERNAL_SERVER_ERROR,
    )
