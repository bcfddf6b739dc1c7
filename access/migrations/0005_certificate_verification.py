from django.conf import settings
from django.db import migrations, models
from django.db.models import F


def verified_by_earlier_review(apps, schema_editor):
    """Certificates uploaded before verification existed were read by the reviewers who approved
    their holders' requests: they keep counting, as verified when they were uploaded."""
    apps.get_model("access", "TrainingCertificate").objects.update(verified_at=F("uploaded_at"))


class Migration(migrations.Migration):

    dependencies = [
        ("access", "0004_seed_tiers_and_agreements"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.AddField(model_name="trainingcertificate", name="verified_at",
                            field=models.DateTimeField(blank=True, null=True)),
        migrations.AddField(model_name="trainingcertificate", name="verified_by",
                            field=models.ForeignKey(blank=True, null=True, on_delete=models.SET_NULL,
                                                    related_name="+", to=settings.AUTH_USER_MODEL)),
        migrations.AddField(model_name="trainingcertificate", name="rejected_at",
                            field=models.DateTimeField(blank=True, null=True)),
        migrations.AddField(model_name="trainingcertificate", name="rejection_reason",
                            field=models.TextField(blank=True)),
        migrations.RunPython(verified_by_earlier_review, migrations.RunPython.noop),
    ]
