"""The HTTP side: one httpx client per run, the API's error shapes turned into one message and an exit code."""

from __future__ import annotations

import html
import re
import time
from urllib.parse import urlsplit, urlunsplit

import httpx

from . import __version__

# Exit codes (documented in README.md): scripts branch on them.
OK, FAILED, USAGE, AUTH, FORBIDDEN, NOT_FOUND, UNAVAILABLE = 0, 1, 2, 3, 4, 5, 6
_PARAGRAPH = re.compile(r"<p[^>]*>(.*?)</p>", re.S)
RETRIES = 3  # for requests that are safe to repeat: GETs, and POSTs that carry an Idempotency-Key


class CliError(Exception):
    """Anything that ends the command: ``message`` for a person, ``exit_code`` for a script."""

    def __init__(self, message: str, exit_code: int = FAILED, *, status: int | None = None, payload=None):
        super().__init__(message)
        self.message, self.exit_code, self.status, self.payload = message, exit_code, status, payload


def describe(payload) -> str:
    """The API answers ``{"detail": "…"}``, ``{"detail": ["…"]}`` or ``{"field": ["…"]}``: one readable line."""
    if isinstance(payload, dict):
        if set(payload) == {"detail"}:
            return describe(payload["detail"])
        return "; ".join(f"{key}: {describe(value)}" for key, value in payload.items())
    if isinstance(payload, list):
        return " ".join(describe(item) for item in payload)
    return str(payload)


def exit_code_for(status: int) -> int:
    if status == 401:
        return AUTH
    if status == 403:
        return FORBIDDEN
    if status in (404, 410):
        return NOT_FOUND
    if status >= 500:
        return UNAVAILABLE
    return FAILED


def error_from(response: httpx.Response) -> CliError:
    try:
        payload = response.json()
        message = describe(payload)
    except ValueError:
        payload = None
        text = response.text.strip()
        if text.startswith("<"):
            # The download views answer refusals with the platform's error page: its first paragraph says why.
            found = _PARAGRAPH.search(text)
            message = html.unescape(re.sub(r"<[^>]+>", "", found.group(1))).strip() if found else ""
        else:
            message = text.splitlines()[0] if text else ""
        message = message or response.reason_phrase
    if response.status_code == 401:
        message = f"{message} Run `cxr login` with a valid API token (create one under Settings → API tokens)."
    return CliError(f"{message} (HTTP {response.status_code})", exit_code_for(response.status_code),
                    status=response.status_code, payload=payload)


class Api:
    def __init__(self, url: str, token: str | None, *, timeout: float = 60):
        self.url = url.rstrip("/")
        headers = {"User-Agent": f"cxr/{__version__}", "Accept": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        self.http = httpx.Client(base_url=self.url + "/api/v1/", headers=headers, timeout=timeout)

    def close(self) -> None:
        self.http.close()

    def same_server(self, link: str) -> str:
        """A link the API handed out, on the configured server: the token is only ever sent there,
        even when the server names itself differently behind a proxy."""
        parts = urlsplit(link)
        base = urlsplit(self.url)
        return urlunsplit((base.scheme, base.netloc, parts.path, parts.query, ""))

    def request(self, method: str, path: str, *, json=None, params=None, headers=None, retry: bool | None = None):
        """The decoded JSON of a 2xx answer; raises CliError otherwise."""
        retry = method == "GET" if retry is None else retry
        for attempt in range(RETRIES if retry else 1):
            try:
                response = self.http.request(method, path, json=json, params=params, headers=headers)
            except httpx.TransportError as error:
                if attempt + 1 < (RETRIES if retry else 1):
                    time.sleep(0.5 * 2**attempt)
                    continue
                raise CliError(f"Cannot reach {self.url}: {error}. Is the server running and the URL right "
                               f"(cxr login --url …, or CXR_URL)?", UNAVAILABLE) from None
            if response.status_code in (502, 503, 504) and retry and attempt + 1 < RETRIES:
                time.sleep(0.5 * 2**attempt)
                continue
            if response.is_success:
                return response.json() if response.content else None
            raise error_from(response)
        raise AssertionError("unreachable")

    def get(self, path: str, **kwargs):
        return self.request("GET", path, **kwargs)

    def post(self, path: str, **kwargs):
        return self.request("POST", path, **kwargs)
