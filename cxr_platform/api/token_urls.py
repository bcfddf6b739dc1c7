from django.urls import path

from . import token_views

urlpatterns = [
    path("", token_views.token_list, name="api-tokens"),
    path("<int:token_id>/revoke", token_views.token_revoke, name="api-token-revoke"),
]
