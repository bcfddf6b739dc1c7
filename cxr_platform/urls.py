from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from . import views

handler400 = "cxr_platform.views.bad_request"
handler403 = "cxr_platform.views.permission_denied"
handler404 = "cxr_platform.views.page_not_found"
handler500 = "cxr_platform.views.server_error"

urlpatterns = [
    path("", views.home, name="home"),
    path("", include("access.urls")),
    path("models/", include("registry.urls")),
    path("cohorts/", include("generation.urls")),
    path("screening/", include("screening.urls")),
    path("exports/", include("exports.urls")),
    path("audit/", include("cxr_platform.audit.urls")),
    path("settings/api-tokens/", include("cxr_platform.api.token_urls")),
    path("admin/", admin.site.urls),
    path("api/v1/", include("cxr_platform.api.urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="api-schema"), name="api-docs"),
]
