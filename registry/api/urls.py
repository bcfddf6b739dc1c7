from django.urls import path

from . import views

urlpatterns = [
    path("models", views.ModelVersionListView.as_view(), name="api-models"),
    path("models/<int:pk>/files", views.ModelFilesView.as_view(), name="api-model-files"),
]
