import uuid

from django.db import migrations, models


def create_installation(apps, schema_editor):
    Installation = apps.get_model("exports", "Installation")
    if not Installation.objects.exists():
        Installation.objects.create(uid_root=uuid.uuid4())


class Migration(migrations.Migration):

    dependencies = [
        ("exports", "0001_initial"),
    ]

    operations = [
        migrations.CreateModel(
            name="Installation",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("uid_root", models.UUIDField(editable=False, unique=True)),
                ("created_at", models.DateTimeField(auto_now_add=True)),
            ],
        ),
        migrations.RunPython(create_installation, migrations.RunPython.noop),
    ]
