from django.core.management.base import BaseCommand

from access.services import rotate_certificate_keys


class Command(BaseCommand):
    help = "Re-encrypt stored training certificates with the newest key in FILE_ENCRYPTION_KEYS."

    def handle(self, *args, **options):
        count = rotate_certificate_keys()
        self.stdout.write(f"Re-encrypted {count} certificate(s) with the newest key.")
