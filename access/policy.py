"""The one place that answers: what may this user do, and what are they missing for a tier?

Views, the API and Celery tasks all ask :func:`access_policy` (or
:func:`require_capability`). A capability comes only from grants that are
active, unexpired and whose tier's required credentials are still valid, so a
revocation, an expiry or a new agreement version takes effect on the user's
next request.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date

from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied
from django.db.models import Exists, FilteredRelation, OuterRef, Q
from django.utils import timezone

from cxr_platform.prepared import PreparedQuery, field_names, instance

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
        if any(not _covered_version_ids(t) for t in tiers):
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
    covered = _covered_version_ids(tier)
    return not covered or model_version.pk in covered


def _covered_version_ids(tier) -> frozenset:
    """The model versions a tier lists (none: all), read the first time a check names a version; the
    policy query already knows which tiers list none."""
    if not hasattr(tier, "covered_version_ids"):
        tier.covered_version_ids = frozenset(tier.model_versions.values_list("pk", flat=True))
    return tier.covered_version_ids


def _policy_query(user_pk, today):
    """The user's credentials and active grants (with their tiers) in one query: a row per grant, or
    one row with no grant. ``tier_restricts``: whether the tier lists model versions (most do not,
    and then a check that names a model version needs no further query)."""
    from .credentials import CREDENTIAL_COLUMNS, with_credentials

    users = get_user_model().objects.filter(pk=user_pk).annotate(
        active_grant=FilteredRelation("grants", condition=Q(grants__status=AccessGrant.Status.ACTIVE)))
    restricts = Tier.model_versions.through.objects.filter(tier=OuterRef("active_grant__tier"))
    return (with_credentials(users, today).annotate(tier_restricts=Exists(restricts)).order_by("active_grant__pk")
            .values(*CREDENTIAL_COLUMNS, *field_names(AccessGrant, "active_grant__"),
                    *field_names(Tier, "active_grant__tier__"), "tier_restricts"))


# Every API request asks the policy: one query, compiled once per process.
_POLICY = PreparedQuery(_policy_query, user_pk=int, today=date)


def _credentials_and_grants(user, now) -> tuple[dict, list]:
    from .credentials import credentials_from_row

    rows = _POLICY.rows(user_pk=user.pk, today=timezone.localdate(now))
    if not rows:
        return dict.fromkeys(caps.CREDENTIALS, False), []
    grants = []
    for row in rows:
        if row["active_grant__id"] is None:
            continue
        grant = instance(AccessGrant, row, "active_grant__")
        grant.tier = instance(Tier, row, "active_grant__tier__")
        if not row["tier_restricts"]:
            grant.tier.covered_version_ids = frozenset()
        grants.append(grant)
    return credentials_from_row(rows[0]), grants


def _expire_lapsed(grants, now) -> list:
    """Grants still marked active although their term has ended are expired here (with their audit
    event) rather than waiting for the periodic sweep; the rest are returned."""
    from .services import expire_grant

    current = []
    for grant in grants:
        if grant.expires_at <= now:
            expire_grant(grant=grant, actor=None)
        else:
            current.append(grant)
    return current


def _signed_in(user) -> bool:
    return user is not None and getattr(user, "is_authenticated", False) and user.is_active


def access_policy(user, *, now=None) -> AccessPolicy:
    if not _signed_in(user):
        return AccessPolicy(user=user)
    now = now or timezone.now()
    credentials, grants = _credentials_and_grants(user, now)
    active = _expire_lapsed(grants, now)
    grants = tuple(
        grant
        for grant in active
        if grant.tier.is_active and all(credentials.get(name) for name in grant.tier.credentials_needed)
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
