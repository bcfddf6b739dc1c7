"""Privacy review state on screening records, and a seal over each verdict.

Records that exist when this runs are taken as they are: flagged ones wait for review, and every
record is sealed (from then on an out-of-band edit is detected by verify_screening_seals)."""

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models


def seal_existing(apps, schema_editor):
    from screening.sealing import compute_seal

    Record = apps.get_model("screening", "ScreeningRecord")
    Record.objects.filter(flagged=True, review_status="").update(review_status="pending")
    batch = []
    for record in Record.objects.defer("fingerprint").order_by("pk").iterator(chunk_size=1000):
        record.seal = compute_seal(record)
        batch.append(record)
        if len(batch) >= 1000:
            Record.objects.bulk_update(batch, ["seal"])
            batch = []
    if batch:
        Record.objects.bulk_update(batch, ["seal"])


class Migration(migrations.Migration):

    dependencies = [
        ("screening", "0001_initial"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.AddField(
            model_name="screeningrecord",
            name="review_status",
            field=models.CharField(
                blank=True,
                choices=[
                    ("", "Not needed (passed)"),
                    ("pending", "Waiting for privacy review"),
                    ("confirmed", "Confirmed by a privacy reviewer"),
                    ("released", "Released by a privacy reviewer (false positive)"),
                ],
                db_index=True,
                default="",
                max_length=20,
            ),
        ),
        migrations.AddField(
            model_name="screeningrecord",
            name="review_reason",
            field=models.TextField(blank=True),
        ),
        migrations.AddField(
            model_name="screeningrecord",
            name="reviewed_by",
            field=models.ForeignKey(
                blank=True,
                null=True,
                on_delete=django.db.models.deletion.SET_NULL,
                related_name="+",
                to=settings.AUTH_USER_MODEL,
            ),
        ),
        migrations.AddField(
            model_name="screeningrecord",
            name="reviewed_at",
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name="screeningrecord",
            name="seal",
            field=models.CharField(
                blank=True,
                editable=False,
                help_text="HMAC over the verdict and review fields (screening.sealing).",
                max_length=80,
            ),
        ),
        migrations.RunPython(seal_existing, migrations.RunPython.noop),
    ]
