"""Seed the three tiers and the two agreements every installation starts with.

Existing rows (matched by slug) are left alone: admins own them after the first migration."""

import hashlib

from django.db import migrations
from django.utils import timezone


from access.defaults import DEFAULT_AGREEMENTS, DEFAULT_TIERS


def seed(apps, schema_editor):
    Tier = apps.get_model("access", "Tier")
    Agreement = apps.get_model("access", "Agreement")
    AgreementVersion = apps.get_model("access", "AgreementVersion")
    for slug, spec in DEFAULT_TIERS.items():
        Tier.objects.get_or_create(slug=slug, defaults=dict(spec))
    now = timezone.now()
    for slug, spec in DEFAULT_AGREEMENTS.items():
        agreement, created = Agreement.objects.get_or_create(slug=slug, defaults={"title": spec["title"]})
        if created:
            AgreementVersion.objects.create(
                agreement=agreement,
                number=1,
                text=spec["text"],
                sha256=hashlib.sha256(spec["text"].encode("utf-8")).hexdigest(),
                published_at=now,
            )


class Migration(migrations.Migration):
    dependencies = [("access", "0003_credentials_agreements_requests")]

    operations = [migrations.RunPython(seed, migrations.RunPython.noop)]
