from django.urls import path

from . import views

urlpatterns = [
    path("cohorts/<int:pk>/quality", views.CohortQualityView.as_view(), name="api-cohort-quality"),
]
