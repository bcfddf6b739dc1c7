from django.urls import path

from . import views

urlpatterns = [
    path("cohorts/<int:pk>/privacy", views.CohortPrivacyView.as_view(), name="api-cohort-privacy"),
    path("cohorts/<int:pk>/screening", views.CohortScreeningView.as_view(), name="api-cohort-screening"),
    path("screening/<int:record_id>/confirm", views.ConfirmView.as_view(), name="api-screening-confirm"),
    path("screening/<int:record_id>/release", views.ReleaseView.as_view(), name="api-screening-release"),
]
