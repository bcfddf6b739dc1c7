"""/api/v1/: each app contributes its routes from ``<app>/api/urls.py``."""

from django.urls import include, path

from .views import HealthView, WhoAmIView

urlpatterns = [
    path("health", HealthView.as_view(), name="api-health"),
    path("whoami", WhoAmIView.as_view(), name="api-whoami"),
    path("", include("access.api.urls")),
    path("", include("registry.api.urls")),
    path("", include("generation.api.urls")),
    path("", include("screening.api.urls")),
    path("", include("exports.api.urls")),
    path("", include("quality.api.urls")),
]
