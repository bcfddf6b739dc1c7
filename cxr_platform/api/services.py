from __future__ import annotations

import hashlib
import secrets
from datetime import timedelta

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.utils import timezone

from cxr_platform.audit.services import record_event
from cxr_platform.prepared import PreparedQuery, field_names, instance

from .models import ApiToken

TOKEN_PREFIX = "cxr_"
DEFAULT_REVIEWER_TOKEN_TTL_SECONDS = 3600


class TokenExpired(Exception):
    """The token was valid once but its lifetime is over; ``token`` says which and when."""

    def __init__(self, token: ApiToken):
        super().__init__(f"API token {token.prefix}… expired at {token.expires_at:%Y-%m-%d %H:%M:%S} UTC.")
        self.token = token


def hash_token(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


def reviewer_token_ttl() -> timedelta:
    return timedelta(seconds=int(getattr(settings, "REVIEWER_TOKEN_TTL_SECONDS", DEFAULT_REVIEWER_TOKEN_TTL_SECONDS)))


@transaction.atomic
def create_api_token(*, user, name: str, scope: str = ApiToken.Scope.FULL, expires_at=None) -> tuple[ApiToken, str]:
    """Create a token and return it with its secret, which is never stored or shown again."""
    raw = TOKEN_PREFIX + secrets.token_urlsafe(32)
    token = ApiToken.objects.create(
        user=user, name=name.strip()[:100] or "API token", prefix=raw[:12], token_hash=hash_token(raw),
        scope=scope, expires_at=expires_at,
    )
    details = {"name": token.name, "prefix": token.prefix, "scope": token.scope}
    if expires_at is not None:
        details["expires_at"] = expires_at.isoformat()
    record_event("api_token.created", actor=user, target=token, details=details)
    return token, raw


def issue_review_token(*, user, name: str, two_factor_verified: bool) -> tuple[ApiToken, str]:
    """A reviewer-API token for active staff, from a session that passed two-factor
    authentication (unless ``REQUIRE_STAFF_2FA`` is off, as for the review pages), lasting
    ``REVIEWER_TOKEN_TTL_SECONDS``. Raises PermissionDenied with what is missing."""
    from access.decorators import two_factor_required  # access imports the API; import late

    if not (user.is_authenticated and user.is_active and user.is_staff):
        raise PermissionDenied("Reviewer tokens are for staff: reviewers and administrators.")
    if two_factor_required() and not two_factor_verified:
        raise PermissionDenied(
            "Reviewer tokens are issued only from a browser session that passed two-factor authentication. "
            "Enter your authenticator code at /accounts/2fa/verify/ and create the token there."
        )
    return create_api_token(user=user, name=name, scope=ApiToken.Scope.REVIEW,
                            expires_at=timezone.now() + reviewer_token_ttl())


@transaction.atomic
def revoke_api_token(*, token: ApiToken, actor) -> ApiToken:
    if token.revoked_at is None:
        token.revoked_at = timezone.now()
        token.save(update_fields=["revoked_at"])
        record_event("api_token.revoked", actor=actor, target=token, details={"prefix": token.prefix})
    return token


# Every API request reads its token (with its user): compiled once per process.
_LIVE_TOKEN = PreparedQuery(
    lambda token_hash: ApiToken.objects.filter(token_hash=token_hash, revoked_at__isnull=True, user__is_active=True)
    .order_by().values(*field_names(ApiToken), *field_names(get_user_model(), "user__"))[:1],
    token_hash=str,
)


def authenticate_token(raw: str) -> ApiToken | None:
    """The live token for ``raw``; None when unknown, revoked or its account is inactive.
    Raises :class:`TokenExpired` for a token past its lifetime (audited the first time)."""
    rows = _LIVE_TOKEN.rows(token_hash=hash_token(raw))
    if not rows:
        return None
    token = instance(ApiToken, rows[0])
    token.user = instance(get_user_model(), rows[0], "user__")
    if token.is_expired:
        _record_expiry(token)
        raise TokenExpired(token)
    now = timezone.now()
    # Record last use at most once a minute so busy clients don't write on every call.
    if token.last_used_at is None or (now - token.last_used_at).total_seconds() > 60:
        ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
        token.last_used_at = now
    return token


@transaction.atomic
def _record_expiry(token: ApiToken) -> None:
    """One ``api_token.expired`` event per token, when it is first presented after its lifetime
    (the row lock keeps two simultaneous requests from writing two)."""
    from cxr_platform.audit.models import AuditEvent

    ApiToken.objects.select_for_update().filter(pk=token.pk).first()
    already = AuditEvent.objects.filter(action="api_token.expired", target_type=token._meta.label_lower,
                                        target_id=str(token.pk)).exists()
    if not already:
        record_event("api_token.expired", actor=token.user, target=token,
                     details={"prefix": token.prefix, "scope": token.scope, "expires_at": token.expires_at.isoformat()})


def record_review_use(*, token: ApiToken, action: str, target, details: dict | None = None) -> None:
    """Audit one reviewer-API action taken with ``token`` (call inside the action's transaction)."""
    record_event("api_token.used_for_review", actor=token.user, target=token,
                 details={"prefix": token.prefix, "action": action, "object": f"{target._meta.label_lower}:{target.pk}",
                          **(details or {})})
