from django.urls import path

from . import token_views

urlpatterns = [
    path("", token_views.token_list, name="api-tokens"),
    path("review", token_views.token_review_create, name="api-token-review-create"),
    path("<int:token_id>/revoke", token_views.token_revoke, name="api-token-revoke"),
]
