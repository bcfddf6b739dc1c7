"""Protected file downloads: per-user expiring signed links, and file responses
that stream with HTTP Range support or hand the transfer to the front server.

Links. :func:`sign_link` binds a user, an object, a file path and an expiry
time under a salt that names the purpose (``"weights"``, ``"exports"`` ...), so
a link minted for one purpose never verifies for another. :func:`verify_link`
answers who may use it; the calling app must still re-check its own policy at
download time (a link outlives neither a revoked grant nor a withdrawn object
because the app checks those, not because the link knows about them).

Responses. :func:`file_response` serves one file of any Django storage. It
never reads the whole file into memory: the body is an iterator over
``storage.open()`` in chunks. Single byte ranges (``bytes=0-99``,
``bytes=100-``, ``bytes=-100``) get 206 with ``Content-Range``; a range that
cannot be satisfied or cannot be parsed gets 416 with ``Content-Range: bytes
*/size``; a multi-range request or another unit gets the whole file (RFC 9110
lets a server ignore ranges it does not serve). With ``DOWNLOAD_OFFLOAD`` set
to ``nginx`` (X-Accel-Redirect) or ``apache`` (X-Sendfile) Django only decides
*whether* the file may be sent; the front server sends it and answers the
Range header itself.
"""

from __future__ import annotations

import mimetypes
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import PurePosixPath
from urllib.parse import quote

from django.conf import settings
from django.core import signing
from django.http import HttpResponse, StreamingHttpResponse
from django.utils.http import content_disposition_header

DEFAULT_CHUNK_SIZE = 1024 * 1024
_SALT_PREFIX = "cxr_platform.downloads:"
_DIGITS = re.compile(r"[0-9]+")


# --- Signed links ----------------------------------------------------------------------------


class LinkError(Exception):
    """A link that must not be honoured. ``status`` is the HTTP status to answer with."""

    status = 403


class InvalidLink(LinkError):
    """Not a link we issued for this purpose, object and path (tampered, truncated, mixed up)."""

    status = 404


class WrongUser(LinkError):
    """A genuine link, issued to someone else."""

    status = 403


class ExpiredLink(LinkError):
    """A genuine link whose time is up."""

    status = 410


@dataclass(frozen=True)
class SignedLink:
    token: str
    expires_at: datetime


@dataclass(frozen=True)
class LinkClaim:
    """What a verified link was issued for."""

    user_id: int
    object_id: str
    path: str
    expires_at: datetime


def sign_link(*, purpose: str, user, object_id, path: str, ttl_seconds: int | None = None) -> SignedLink:
    """A URL-safe token for ``user`` to fetch ``path`` of ``object_id``, valid for ``ttl_seconds``
    (default ``settings.DOWNLOAD_LINK_TTL_SECONDS``)."""
    ttl = settings.DOWNLOAD_LINK_TTL_SECONDS if ttl_seconds is None else ttl_seconds
    expires = int(time.time()) + int(ttl)
    payload = {"u": user.pk, "o": str(object_id), "p": path, "e": expires}
    token = signing.dumps(payload, salt=_SALT_PREFIX + purpose)
    return SignedLink(token=token, expires_at=datetime.fromtimestamp(expires, tz=UTC))


def read_link(token: str, *, purpose: str) -> LinkClaim:
    """The claim inside a genuine token, without checking who uses it or when. Raises InvalidLink."""
    try:
        payload = signing.loads(token, salt=_SALT_PREFIX + purpose)
        return LinkClaim(
            user_id=int(payload["u"]),
            object_id=str(payload["o"]),
            path=str(payload["p"]),
            expires_at=datetime.fromtimestamp(int(payload["e"]), tz=UTC),
        )
    except (signing.BadSignature, KeyError, TypeError, ValueError):
        raise InvalidLink("This download link is not valid. Ask for a new one.") from None


def verify_link(token: str, *, purpose: str, user, object_id=None, path: str | None = None) -> LinkClaim:
    """Check that ``token`` was issued for this purpose (and object and path, when given) to
    ``user`` and has not expired. Returns its claim; raises InvalidLink, WrongUser or ExpiredLink."""
    claim = read_link(token, purpose=purpose)
    if (object_id is not None and claim.object_id != str(object_id)) or (path is not None and claim.path != path):
        raise InvalidLink("This download link is not valid. Ask for a new one.")
    if getattr(user, "pk", None) != claim.user_id:
        raise WrongUser("This download link was issued to another account. Ask for your own link.")
    if claim.expires_at.timestamp() <= time.time():
        raise ExpiredLink("This download link has expired. Ask for a new one.")
    return claim


# --- Range requests --------------------------------------------------------------------------


class RangeNotSatisfiable(Exception):
    pass


def requested_range(request, size: int, *, etag: str | None = None) -> tuple[int, int] | None:
    """The single byte range ``(first, last)`` (inclusive) the request asks for, or None for the
    whole file. Raises RangeNotSatisfiable for a bytes range that is malformed or out of the file."""
    header = request.META.get("HTTP_RANGE", "").strip()
    if not header or request.method not in ("GET", "HEAD"):
        return None
    if_range = request.META.get("HTTP_IF_RANGE", "").strip()
    # A resumed download of a file that changed meanwhile must start over, not splice.
    if if_range and (etag is None or if_range != etag):
        return None
    unit, _, ranges = header.partition("=")
    if unit.strip().lower() != "bytes":
        return None
    specs = ranges.split(",")
    if len(specs) != 1:
        return None
    first, dash, last = specs[0].strip().partition("-")
    first, last = first.strip(), last.strip()
    if not dash or (first and not _DIGITS.fullmatch(first)) or (last and not _DIGITS.fullmatch(last)):
        raise RangeNotSatisfiable(header)
    if not first:
        if not last or int(last) == 0 or size == 0:
            raise RangeNotSatisfiable(header)
        return max(0, size - int(last)), size - 1
    start = int(first)
    end = int(last) if last else size - 1
    if start >= size or end < start:
        raise RangeNotSatisfiable(header)
    return start, min(end, size - 1)


# --- Responses -------------------------------------------------------------------------------


class _FileChunks:
    """Iterates over ``length`` bytes of an open file from ``start``; closes the file when the
    response is closed (finished or aborted)."""

    def __init__(self, fileobj, start: int, length: int, chunk_size: int):
        self.file = fileobj
        self.length = length
        self.chunk_size = chunk_size
        if start:
            fileobj.seek(start)

    def __iter__(self):
        remaining = self.length
        while remaining > 0:
            chunk = self.file.read(min(self.chunk_size, remaining))
            if not chunk:
                break
            remaining -= len(chunk)
            yield chunk

    def close(self):
        self.file.close()


def _offload_headers(storage, name: str, offload_prefix: str | None) -> dict[str, str] | None:
    mode = settings.DOWNLOAD_OFFLOAD
    if mode == "nginx":
        prefix = offload_prefix if offload_prefix is not None else settings.DOWNLOAD_OFFLOAD_PREFIX
        return {"X-Accel-Redirect": prefix.rstrip("/") + "/" + quote(name.lstrip("/"))}
    if mode == "apache":
        try:
            return {"X-Sendfile": storage.path(name)}
        except NotImplementedError:
            return None  # not on a local disk: nothing for Apache to send, so Django streams it
    return None


def file_response(
    request,
    *,
    storage,
    name: str,
    filename: str | None = None,
    content_type: str | None = None,
    size: int | None = None,
    etag: str | None = None,
    as_attachment: bool = True,
    offload: bool = True,
    offload_prefix: str | None = None,
    on_start: Callable[[int, int], None] | None = None,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
) -> HttpResponse:
    """Serve ``name`` from ``storage`` for a GET or HEAD ``request``.

    ``etag`` (a quoted strong validator, e.g. ``'"<sha256>"'``) enables If-Range. ``on_start(first,
    last)`` is called once, before any byte is sent, for a GET whose range is satisfiable; use it
    to audit "download started". ``offload=False`` keeps the transfer in Django whatever
    DOWNLOAD_OFFLOAD says; ``offload_prefix`` overrides DOWNLOAD_OFFLOAD_PREFIX for nginx.
    """
    size = storage.size(name) if size is None else size
    filename = filename or PurePosixPath(name).name
    content_type = content_type or mimetypes.guess_type(filename)[0] or "application/octet-stream"
    headers = {
        "Content-Type": content_type,
        "Content-Disposition": content_disposition_header(as_attachment, filename),
        "Accept-Ranges": "bytes",
        "Cache-Control": "private, no-store",
        "X-Content-Type-Options": "nosniff",
    }
    if etag:
        headers["ETag"] = etag
    try:
        byte_range = requested_range(request, size, etag=etag)
    except RangeNotSatisfiable:
        headers.pop("Content-Disposition")
        headers.update({"Content-Type": "text/plain; charset=utf-8", "Content-Range": f"bytes */{size}"})
        return HttpResponse(b"Requested range not satisfiable.\n", status=416, headers=headers)
    first, last = byte_range if byte_range is not None else (0, size - 1)
    if on_start is not None and request.method == "GET":
        on_start(first, last)

    offloaded = _offload_headers(storage, name, offload_prefix) if offload else None
    if offloaded is not None:
        # The front server answers the Range header and sets Content-Length itself.
        headers.update(offloaded)
        return HttpResponse(status=200, headers=headers)

    length = max(0, last - first + 1)
    headers["Content-Length"] = str(length)
    status = 200
    if byte_range is not None:
        status = 206
        headers["Content-Range"] = f"bytes {first}-{last}/{size}"
    if request.method == "HEAD" or length == 0:
        return HttpResponse(status=status, headers=headers)
    chunks = _FileChunks(storage.open(name, "rb"), first, length, chunk_size)
    return StreamingHttpResponse(chunks, status=status, headers=headers)


def link_holder(request):
    """Who follows a download link: the session's user, or the owner of a personal API token (curl, wget).

    Returns ``(user, None)``, or ``(None, response)`` with the answer for someone not signed in:
    401 for a bad token, else the login page.
    """
    from django.contrib.auth.views import redirect_to_login
    from rest_framework.exceptions import AuthenticationFailed

    from cxr_platform.api.authentication import ApiTokenAuthentication

    if request.user.is_authenticated:
        return request.user, None
    try:
        authenticated = ApiTokenAuthentication().authenticate(request)
    except AuthenticationFailed:
        authenticated = None
    if authenticated:
        return authenticated[0], None
    if request.META.get("HTTP_AUTHORIZATION"):
        return None, HttpResponse("Invalid or revoked API token.\n", status=401, content_type="text/plain; charset=utf-8")
    return None, redirect_to_login(request.get_full_path())
