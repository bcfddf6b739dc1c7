"""python manage.py verify_access_seals"""

from django.core.management.base import BaseCommand, CommandError

from cxr_platform.audit.seals import broken_seals, sealed_models


class Command(BaseCommand):
    help = ("Check the seal of every grant, training certificate, agreement signature and PhysioNet "
            "attestation: a row edited outside the platform (SQL, a script) no longer matches it. "
            "Exits 1 naming each such row.")

    def handle(self, *args, **options):
        models = sealed_models()
        broken = list(broken_seals(models))
        for label, pk in broken:
            self.stdout.write(f"BROKEN SEAL {label} #{pk}: edited outside the platform; access decisions must not rest on it")
        if broken:
            raise CommandError(f"{len(broken)} row(s) were edited outside the platform.", returncode=1)
        counted = sum(model._base_manager.count() for model in models)
        self.stdout.write(f"Access state intact: {counted} sealed rows in {len(models)} tables match their seals.")
