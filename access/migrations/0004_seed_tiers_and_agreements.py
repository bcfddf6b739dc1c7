"""Seed the three tiers and the two agreements every installation starts with.

Existing rows (matched by slug) are left alone: admins own them after the first migration."""

from django.db import migrations

from access.defaults import seed_defaults


def seed(apps, schema_editor):
    seed_defaults(apps.get_model("access", "Tier"), apps.get_model("access", "Agreement"), apps.get_model("access", "AgreementVersion"))


class Migration(migrations.Migration):
    dependencies = [("access", "0003_credentials_agreements_requests")]

    operations = [migrations.RunPython(seed, migrations.RunPython.noop)]
