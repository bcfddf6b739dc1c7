from django.urls import path

from . import views

urlpatterns = [
    path("", views.model_list, name="model-list"),
    path("<int:pk>/", views.model_detail, name="model-detail"),
    path("<int:pk>/sha256sums", views.model_sha256sums, name="model-sha256sums"),
    path("<int:pk>/files/<int:file_pk>/link", views.issue_link, name="model-file-link"),
    path("download/<str:token>/<path:file_path>", views.download, name="model-download"),
]
