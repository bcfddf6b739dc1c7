"""Actions that change access state. Each writes its audit event in the same transaction."""

from __future__ import annotations

from django.db import transaction
from django.utils import timezone

from cxr_platform.audit.services import record_event

from .models import AccessGrant


@transaction.atomic
def expire_grant(*, grant: AccessGrant, actor=None) -> AccessGrant:
    grant = AccessGrant.objects.select_for_update().get(pk=grant.pk)
    if grant.status == AccessGrant.Status.ACTIVE and grant.expires_at <= timezone.now():
        grant.status = AccessGrant.Status.EXPIRED
        grant.save(update_fields=["status"])
        record_event("grant.expired", actor=actor, target=grant, details={"tier": grant.tier.slug, "user": grant.user_id})
    return grant
