"""The request being served, so that audit events can record IP and user agent
without every service having to pass the request down."""

from __future__ import annotations

import ipaddress
from contextvars import ContextVar

from django.conf import settings
from django.utils.ipv6 import clean_ipv6_address

current_request: ContextVar = ContextVar("current_request", default=None)


def _clean_ip(value: str) -> str | None:
    """The address in the form the database returns it (so the event's MAC still matches), or None."""
    try:
        address = ipaddress.ip_address(value.strip())
    except ValueError:
        return None
    return clean_ipv6_address(str(address)) if address.version == 6 else str(address)


def _trusted(address: str) -> bool:
    ip = ipaddress.ip_address(address)
    return any(ip in ipaddress.ip_network(proxy, strict=False) for proxy in settings.TRUSTED_PROXIES)


def client_ip(request) -> str | None:
    """The client's address. REMOTE_ADDR is what the socket saw; when that is one of
    our TRUSTED_PROXIES (nginx in front of gunicorn), X-Forwarded-For is read from the
    right, and the first hop our proxies did not add is the client. Hops to the left of
    it were written by the client and are not believed."""
    if request is None:
        return None
    address = _clean_ip(request.META.get("REMOTE_ADDR") or "")
    if address is None or not settings.TRUSTED_PROXIES:
        return address
    hops = [hop for hop in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",") if hop.strip()]
    while _trusted(address) and hops:
        hop = _clean_ip(hops.pop())
        if hop is None:
            break
        address = hop
    return address


def user_agent(request) -> str:
    if request is None:
        return ""
    return request.META.get("HTTP_USER_AGENT", "")[:512]
