from django.apps import AppConfig
from django.db.models.signals import post_migrate


class AuditConfig(AppConfig):
    name = "cxr_platform.audit"
    label = "audit"
    verbose_name = "Audit log"

    def ready(self):
        from . import checks, signals  # noqa: F401

        post_migrate.connect(_grant_app_role_after_migrate, sender=self)


def _grant_app_role_after_migrate(sender, using="default", verbosity=1, **kwargs):
    """After every migrate run as the owner, the application's role gets its privileges on the
    new tables too (DATABASE_APP_ROLE, or the user of DATABASE_URL when DATABASE_MIGRATE_URL is set)."""
    from django.conf import settings
    from django.db import connections

    role = getattr(settings, "DATABASE_APP_ROLE", "")
    if not role or connections[using].vendor != "postgresql":
        return
    from .roles import grant_app_role

    grant_app_role(role, using=using)
    if verbosity:
        print(f"Granted the application role {role!r} its privileges (audit table: SELECT, INSERT).")
