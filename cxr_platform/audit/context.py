"""The request being served, so that audit events can record IP and user agent
without every service having to pass the request down."""

from contextvars import ContextVar

current_request: ContextVar = ContextVar("current_request", default=None)


def client_ip(request) -> str | None:
    if request is None:
        return None
    # REMOTE_ADDR is what the socket saw; behind a proxy, operators set
    # SECURE_PROXY_SSL_HEADER and the proxy rewrites REMOTE_ADDR (e.g. gunicorn --forwarded-allow-ips).
    address = request.META.get("REMOTE_ADDR") or None
    if address and ":" in address:
        from django.utils.ipv6 import clean_ipv6_address

        try:
            address = clean_ipv6_address(address)
        except Exception:
            return None
    return address


def user_agent(request) -> str:
    if request is None:
        return ""
    return request.META.get("HTTP_USER_AGENT", "")[:512]
