from django.apps import AppConfig


class AccessConfig(AppConfig):
    name = "access"
    verbose_name = "Access and credentials"

    def ready(self):
        from . import signals  # noqa: F401
