"""Deployment checks for the audit log (run by ``manage.py check --deploy``)."""

from django.conf import settings
from django.core.checks import Error, Tags, Warning, register
from django.db import connections

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


@register(Tags.database, deploy=True)
def audit_table_not_owned_by_the_app(app_configs, databases=None, **kwargs):
    """``check --deploy --database default``: the application's role must not own the audit
    table, or it can switch the append-only triggers off."""
    warnings = []
    for alias in databases or []:
        connection = connections[alias]
        if connection.vendor != "postgresql":
            continue
        with connection.cursor() as cursor:
            cursor.execute("SELECT tableowner = current_user FROM pg_tables WHERE tablename = 'audit_auditevent'")
            row = cursor.fetchone()
        if row and row[0]:
            warnings.append(
                Warning(
                    "The application connects to the database as the owner of the audit table: it can "
                    "disable or drop its append-only triggers.",
                    hint="Run migrations as the owner (DATABASE_MIGRATE_URL) and the application as a role "
                    "without ownership (DATABASE_URL); see README, 'Database roles'.",
                    id="audit.W002",
                )
            )
    return warnings
