"""The one place that answers: what may this user do, and what are they missing for a tier?

Views, the API and Celery tasks all ask :func:`access_policy` (or
:func:`require_capability`). A capability comes only from grants that are
active, unexpired and whose tier's required credentials are still valid, so a
revocation, an expiry or a new agreement version takes effect on the user's
next request.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from django.core.exceptions import PermissionDenied
from django.utils import timezone

from . import capabilities as caps
from .models import AccessGrant, Tier


class AccessDenied(PermissionDenied):
    """Raised with a message that tells the user what they are missing."""


def credential_status(user, *, now=None) -> dict[str, bool]:
    """Which credentials (names in ``capabilities.CREDENTIALS``) this user holds right now."""
    from .credentials import current_credentials

    return current_credentials(user, now=now)


@dataclass(frozen=True)
class AccessPolicy:
    user: object
    grants: tuple = ()
    credentials: dict = field(default_factory=dict)
    capabilities: frozenset = frozenset()
    quotas: dict = field(default_factory=dict)

    def can(self, capability: str, model_version=None) -> bool:
        return any(
            capability in grant.tier.capabilities and _tier_covers(grant.tier, model_version) for grant in self.grants
        )

    def quota(self, name: str) -> int:
        return int(self.quotas.get(name, 0))

    @property
    def daily_image_quota(self) -> int:
        return self.quota(caps.DAILY_IMAGES)

    def model_version_filter(self, capability: str):
        """A queryset of the model versions this user may use for ``capability``."""
        from registry.models import ModelVersion

        versions = ModelVersion.objects.exclude(status=ModelVersion.Status.WITHDRAWN)
        tiers = [g.tier for g in self.grants if capability in g.tier.capabilities]
        if not tiers:
            return versions.none()
        if any(not t.model_versions.exists() for t in tiers):
            return versions
        return versions.filter(tiers__in=tiers).distinct()

    def missing_for(self, tier: Tier) -> list[str]:
        """Human-readable list of what stands between this user and ``tier``."""
        credentials = self.credentials or (credential_status(self.user) if _signed_in(self.user) else {})
        return [caps.CREDENTIALS[name] for name in tier.credentials_needed if not credentials.get(name)]

    def explain_denial(self, capability: str) -> str:
        label = caps.CAPABILITIES.get(capability, capability)
        return f"You need an approved, current access grant that allows: {label.lower()}."


def _tier_covers(tier: Tier, model_version) -> bool:
    if model_version is None:
        return True
    if getattr(model_version, "status", None) == "withdrawn":
        return False
    covered = list(tier.model_versions.all())
    return not covered or model_version in covered


def _expire_lapsed_grants(user, now) -> None:
    from .services import expire_grant

    for grant in AccessGrant.objects.filter(user=user, status=AccessGrant.Status.ACTIVE, expires_at__lte=now):
        expire_grant(grant=grant, actor=None)


def _signed_in(user) -> bool:
    return user is not None and getattr(user, "is_authenticated", False) and user.is_active


def access_policy(user, *, now=None) -> AccessPolicy:
    if not _signed_in(user):
        return AccessPolicy(user=user)
    now = now or timezone.now()
    _expire_lapsed_grants(user, now)
    credentials = credential_status(user, now=now)
    grants = tuple(
        grant
        for grant in AccessGrant.objects.filter(
            user=user, status=AccessGrant.Status.ACTIVE, expires_at__gt=now, tier__is_active=True
        )
        .select_related("tier")
        .prefetch_related("tier__model_versions")
        if all(credentials.get(name) for name in grant.tier.credentials_needed)
    )
    capability_set = frozenset(cap for grant in grants for cap in grant.tier.capabilities)
    quotas: dict[str, int] = {}
    for grant in grants:
        for name, limit in (grant.tier.quotas or {}).items():
            quotas[name] = max(quotas.get(name, 0), int(limit))
    return AccessPolicy(user=user, grants=grants, credentials=credentials, capabilities=capability_set, quotas=quotas)


def require_capability(user, capability: str, model_version=None) -> AccessPolicy:
    policy = access_policy(user)
    if not policy.can(capability, model_version):
        raise AccessDenied(policy.explain_denial(capability))
    return policy
