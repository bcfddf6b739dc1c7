"""Who may use the reviewer API: the browser's rule (active staff who passed two-factor
authentication in this session) or, for scripts, a reviewer-scope token, which is only ever
issued from such a session and lapses after REVIEWER_TOKEN_TTL_SECONDS."""

from __future__ import annotations

from rest_framework import exceptions, permissions

from access.decorators import reviewer_is_verified
from cxr_platform.api.models import ApiToken

NOT_STAFF = "The reviewer API is for staff: reviewers and administrators."
NO_REVIEW_SCOPE = (
    "This API token has no review scope. Reviewer tokens are created from a browser session that passed "
    "two-factor authentication (API tokens page, or POST /api/v1/review/tokens) and last a short while."
)
NO_2FA = ("Pass two-factor authentication in this browser session first (/accounts/2fa/verify/), or use a "
          "reviewer token.")


def review_token(request) -> ApiToken | None:
    """The token a request authenticated with, or None for a browser session."""
    return request.auth if isinstance(request.auth, ApiToken) else None


class IsVerifiedReviewer(permissions.BasePermission):
    def has_permission(self, request, view) -> bool:
        user = request.user
        if not (user and user.is_authenticated):
            return False  # DRF answers 401 (no credentials)
        if not (user.is_active and user.is_staff):
            raise exceptions.PermissionDenied(NOT_STAFF)
        token = review_token(request)
        if token is not None:
            if token.scope != ApiToken.Scope.REVIEW:
                raise exceptions.PermissionDenied(NO_REVIEW_SCOPE)
            return True  # expiry is refused at authentication
        if not reviewer_is_verified(request):
            raise exceptions.PermissionDenied(NO_2FA)
        return True
