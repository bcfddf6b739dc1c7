from django.db import migrations, models

SEALED = ["access.PhysioNetAttestation", "access.TrainingCertificate", "access.AgreementSignature", "access.AccessGrant"]


def seal_existing(apps, schema_editor):
    from cxr_platform.audit.seals import reseal_all

    reseal_all(apps, schema_editor, SEALED)


class Migration(migrations.Migration):

    dependencies = [
        ("access", "0005_certificate_verification"),
    ]

    operations = [
        *[migrations.AddField(model_name=label.split(".")[1].lower(), name="seal",
                              field=models.CharField(blank=True, editable=False, max_length=64))
          for label in SEALED],
        migrations.RunPython(seal_existing, migrations.RunPython.noop),
    ]
