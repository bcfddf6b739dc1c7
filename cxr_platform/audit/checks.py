"""Deployment checks for the audit log (run by ``manage.py check --deploy``)."""

from django.conf import settings
from django.core.checks import Error, Warning, register

MIN_KEY_LENGTH = 32


@register(deploy=True)
def audit_key_strength(app_configs, **kwargs):
    # A short key can be guessed offline from the MACs, and then history can be rewritten unnoticed.
    if len(settings.AUDIT_HMAC_KEY) < MIN_KEY_LENGTH:
        return [
            Warning(
                f"AUDIT_HMAC_KEY is shorter than {MIN_KEY_LENGTH} characters.",
                hint="Generate one with: python -c 'import secrets; print(secrets.token_urlsafe(48))'",
                id="audit.W001",
            )
        ]
    return []


@register()
def trusted_proxies_parse(app_configs, **kwargs):
    import ipaddress

    errors = []
    for proxy in settings.TRUSTED_PROXIES:
        try:
            ipaddress.ip_network(proxy, strict=False)
        except ValueError:
            errors.append(
                Error(f"TRUSTED_PROXIES entry {proxy!r} is not an IP address or network.", id="audit.E001")
            )
    return errors
