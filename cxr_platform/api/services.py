from __future__ import annotations

import hashlib
import secrets

from django.db import transaction
from django.utils import timezone

from cxr_platform.audit.services import record_event

from .models import ApiToken

TOKEN_PREFIX = "cxr_"


def hash_token(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


@transaction.atomic
def create_api_token(*, user, name: str) -> tuple[ApiToken, str]:
    """Create a token and return it with its secret, which is never stored or shown again."""
    raw = TOKEN_PREFIX + secrets.token_urlsafe(32)
    token = ApiToken.objects.create(user=user, name=name.strip()[:100] or "API token", prefix=raw[:12], token_hash=hash_token(raw))
    record_event("api_token.created", actor=user, target=token, details={"name": token.name, "prefix": token.prefix})
    return token, raw


@transaction.atomic
def revoke_api_token(*, token: ApiToken, actor) -> ApiToken:
    if token.revoked_at is None:
        token.revoked_at = timezone.now()
        token.save(update_fields=["revoked_at"])
        record_event("api_token.revoked", actor=actor, target=token, details={"prefix": token.prefix})
    return token


def authenticate_token(raw: str) -> ApiToken | None:
    token = (
        ApiToken.objects.select_related("user")
        .filter(token_hash=hash_token(raw), revoked_at__isnull=True, user__is_active=True)
        .first()
    )
    if token is None:
        return None
    now = timezone.now()
    # Record last use at most once a minute so busy clients don't write on every call.
    if token.last_used_at is None or (now - token.last_used_at).total_seconds() > 60:
        ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
        token.last_used_at = now
    return token
