from django.urls import path

from . import views

urlpatterns = [
    path("cohorts/<int:cohort_id>/exports", views.CohortExportsView.as_view(), name="api-cohort-exports"),
    path("exports/signing-key", views.SigningKeyView.as_view(), name="api-export-signing-key"),
    path("exports/<int:pk>", views.ExportDetailView.as_view(), name="api-export"),
]
