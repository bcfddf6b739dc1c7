from django.urls import path

from . import delivery_views, views

urlpatterns = [
    path("cohorts/<int:cohort_id>/exports", views.CohortExportsView.as_view(), name="api-cohort-exports"),
    path("exports/signing-key", views.SigningKeyView.as_view(), name="api-export-signing-key"),
    path("exports/<int:pk>", views.ExportDetailView.as_view(), name="api-export"),
    path("exports/<int:pk>/deliveries", delivery_views.ExportDeliveriesView.as_view(), name="api-export-deliveries"),
    path("destinations", delivery_views.DestinationListView.as_view(), name="api-destinations"),
    path("deliveries/<int:pk>", delivery_views.DeliveryDetailView.as_view(), name="api-delivery"),
    path("deliveries/<int:pk>/retry", delivery_views.DeliveryRetryView.as_view(), name="api-delivery-retry"),
]
