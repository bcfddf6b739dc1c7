from django.urls import path

from . import views

urlpatterns = [
    path("cohorts", views.CohortListCreateView.as_view(), name="api-cohorts"),
    path("cohorts/preview", views.CohortPreviewView.as_view(), name="api-cohort-preview"),
    path("cohorts/<int:pk>", views.CohortDetailView.as_view(), name="api-cohort"),
    path("cohorts/<int:pk>/cancel", views.CohortCancelView.as_view(), name="api-cohort-cancel"),
    path("cohorts/<int:pk>/images", views.CohortImageListView.as_view(), name="api-cohort-images"),
    path("cohorts/<int:pk>/images/<int:image_pk>/file", views.CohortImageFileView.as_view(), name="api-cohort-image-file"),
]
