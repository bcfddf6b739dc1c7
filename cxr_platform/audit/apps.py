from django.apps import AppConfig


class AuditConfig(AppConfig):
    name = "cxr_platform.audit"
    label = "audit"
    verbose_name = "Audit log"

    def ready(self):
        from . import checks, signals  # noqa: F401
