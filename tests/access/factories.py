"""Access fixtures. ``grant_tier`` is what other apps' tests use to give a user a tier."""

from datetime import timedelta

import factory
from django.utils import timezone

from access import capabilities as caps
from access.models import AccessGrant, Tier

DEFAULT_TIERS = {
    "generate": {"name": "Generate", "capabilities": [caps.GENERATE], "quotas": {caps.DAILY_IMAGES: 500}},
    "export": {
        "name": "Export",
        "capabilities": [caps.GENERATE, caps.EXPORT_DICOM, caps.API],
        "quotas": {caps.DAILY_IMAGES: 20000},
    },
    "weights": {"name": "Weights", "capabilities": [caps.DOWNLOAD_WEIGHTS], "quotas": {}},
}


class TierFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Tier
        django_get_or_create = ("slug",)

    slug = factory.Sequence(lambda n: f"tier{n}")
    name = factory.LazyAttribute(lambda t: t.slug.title())
    capabilities = factory.LazyFunction(lambda: [caps.GENERATE])
    required_credentials = factory.LazyFunction(list)
    quotas = factory.LazyFunction(lambda: {caps.DAILY_IMAGES: 500})


def give_credentials(user) -> None:
    """Make ``user`` hold every credential a tier can require (valid now)."""
    # The access workflow fills this in as credentials become real records.


def grant_tier(user, slug: str = "generate", *, model_versions=None, days: int = 365, quotas=None) -> AccessGrant:
    """Give ``user`` an approved, current grant of the named tier, with valid credentials."""
    spec = DEFAULT_TIERS.get(slug, {"name": slug.title(), "capabilities": [caps.GENERATE], "quotas": {}})
    tier = TierFactory(slug=slug, name=spec["name"], capabilities=spec["capabilities"], quotas=quotas or spec["quotas"])
    if quotas is not None:
        tier.quotas = quotas
        tier.save(update_fields=["quotas"])
    if model_versions:
        tier.model_versions.set(model_versions)
    give_credentials(user)
    now = timezone.now()
    return AccessGrant.objects.create(user=user, tier=tier, granted_at=now, expires_at=now + timedelta(days=days))
