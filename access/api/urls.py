from django.urls import path

from . import views

urlpatterns = [
    path("me", views.MeView.as_view(), name="api-me"),
    path("tiers", views.TierListView.as_view(), name="api-tiers"),
    path("access-requests", views.AccessRequestListCreateView.as_view(), name="api-access-requests"),
    path("access-requests/<int:pk>", views.AccessRequestDetailView.as_view(), name="api-access-request"),
    path("access-requests/<int:pk>/submit", views.AccessRequestSubmitView.as_view(), name="api-access-request-submit"),
]
