from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import authentication, exceptions

from .services import TokenExpired, authenticate_token


class ApiTokenAuthentication(authentication.BaseAuthentication):
    """``Authorization: Bearer cxr_…`` with a personal API token."""

    keyword = "Bearer"

    def authenticate(self, request):
        # Header bytes are Latin-1 on the wire; decoding them so never fails on odd input.
        header = authentication.get_authorization_header(request).decode("latin-1").split()
        if not header or header[0].lower() not in {"bearer", "token"}:
            return None
        if len(header) != 2:
            raise exceptions.AuthenticationFailed("Malformed Authorization header: expected 'Bearer <token>'.")
        raw = header[1]
        try:
            token = authenticate_token(raw)
        except TokenExpired as exc:
            # A 403, not a 401: the credential was real and its holder knows who they are; what
            # they need is a new token, which the message says how to get.
            raise exceptions.PermissionDenied(f"{exc} {_renewal_hint(exc.token)}") from None
        if token is None:
            raise exceptions.AuthenticationFailed("Invalid or revoked API token.")
        return token.user, token

    def authenticate_header(self, request):
        return self.keyword


def _renewal_hint(token) -> str:
    if token.scope == token.Scope.REVIEW:
        return ("Reviewer tokens are short-lived: create a new one from a browser session that passed "
                "two-factor authentication (API tokens page, or POST /api/v1/review/tokens).")
    return "Create a new token on the API tokens page."


class ApiTokenScheme(OpenApiAuthenticationExtension):
    target_class = "cxr_platform.api.authentication.ApiTokenAuthentication"
    name = "apiToken"

    def get_security_definition(self, auto_schema):
        return {"type": "http", "scheme": "bearer", "description": "Personal API token (created in Settings)."}
