from django.urls import path

from . import views

urlpatterns = [
    path("cohorts/<int:cohort_id>/", views.cohort_exports, name="export-cohort"),
    path("<int:pk>/progress.json", views.export_progress, name="export-progress"),
    path("<int:pk>/link", views.issue_link, name="export-link"),
    path("download/<str:token>/<str:file_name>", views.download, name="export-download"),
    path("<int:pk>/deliveries", views.deliver_export, name="export-deliver"),
    path("deliveries/<int:pk>/progress.json", views.delivery_progress, name="delivery-progress"),
    path("deliveries/<int:pk>/retry", views.retry_delivery, name="delivery-retry"),
    path("signing-key.pem", views.signing_key, name="export-signing-key"),
]
