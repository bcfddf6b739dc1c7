"""What the API refuses before anything reads it: bodies over a size, JSON nested too
deeply, and NUL characters (PostgreSQL cannot store them in text, so letting one through
turns a bad input into a server error far from where it came in).

Each check is a plain function over bytes or parsed values, so parsers and middleware
share them and tests can call them directly."""

from __future__ import annotations

import re
from itertools import accumulate

from django.conf import settings
from rest_framework import status
from rest_framework.exceptions import APIException, ParseError

DEFAULT_MAX_BODY_BYTES = 1024 * 1024
DEFAULT_MAX_JSON_DEPTH = 32
NUL = "\x00"

# A JSON string literal, escapes included (possessive: no backtracking on long strings).
_JSON_STRING = re.compile(rb'"(?:[^"\\]++|\\.)*+"', re.DOTALL)
_NOT_A_BRACKET = re.compile(rb"[^\[\]{}]+")
_DEPTH_STEP = bytes.maketrans(b"[{]}", b"\x01\x01\xff\xff")


class RequestTooLarge(APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_code = "request_too_large"

    def __init__(self, limit: int | None = None):
        limit = limit or max_body_bytes()
        super().__init__(f"The request body is larger than the limit of {limit:,} bytes.")


class NulCharacter(ParseError):
    default_code = "nul_character"

    def __init__(self):
        super().__init__("Text may not contain NUL (\\u0000) characters.")


def max_body_bytes() -> int:
    return int(getattr(settings, "API_MAX_BODY_BYTES", DEFAULT_MAX_BODY_BYTES))


def max_json_depth() -> int:
    return int(getattr(settings, "API_MAX_JSON_DEPTH", DEFAULT_MAX_JSON_DEPTH))


def declared_length(meta) -> int:
    try:
        return max(0, int(meta.get("CONTENT_LENGTH") or 0))
    except (TypeError, ValueError):
        return 0


def read_bounded(stream, limit: int | None = None) -> bytes:
    """At most ``limit`` bytes of ``stream``; RequestTooLarge if there are more."""
    limit = limit or max_body_bytes()
    if stream is None:
        return b""
    data = stream.read(limit + 1)
    if len(data) > limit:
        raise RequestTooLarge(limit)
    return data


def json_depth(data: bytes) -> int:
    """How deeply arrays and objects nest in ``data``, without parsing it (no recursion).

    String literals are dropped first, so brackets inside strings do not count."""
    brackets = _NOT_A_BRACKET.sub(b"", _JSON_STRING.sub(b"", data))
    if not brackets:
        return 0
    steps = brackets.translate(_DEPTH_STEP)
    return max(accumulate(1 if step == 1 else -1 for step in steps))


def check_json_depth(data: bytes, limit: int | None = None) -> None:
    limit = limit or max_json_depth()
    if json_depth(data) > limit:
        raise ParseError(f"JSON nested more than {limit} levels deep is not accepted.")


def contains_nul(value) -> bool:
    """Whether any string in ``value`` (keys included, at any depth) contains NUL. Iterative."""
    pending = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, str):
            if NUL in item:
                return True
        elif isinstance(item, dict):
            pending.extend(item.keys())
            pending.extend(item.values())
        elif isinstance(item, (list, tuple)):
            pending.extend(item)
        elif hasattr(item, "lists"):  # QueryDict / MultiValueDict
            for key, values in item.lists():
                pending.append(key)
                pending.extend(values)
    return False


def refuse_nul(value) -> None:
    if contains_nul(value):
        raise NulCharacter()
