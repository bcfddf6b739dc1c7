from django.apps import AppConfig


class ApiConfig(AppConfig):
    name = "cxr_platform.api"
    label = "api"
    verbose_name = "API"
