from django.core.management.base import BaseCommand

from access.services import rotate_certificate_keys
from exports.delivery import rotate_destination_passwords


class Command(BaseCommand):
    help = ("Re-encrypt what is stored under FILE_ENCRYPTION_KEYS (training certificates, PACS destination "
            "passwords) with the newest key.")

    def handle(self, *args, **options):
        count = rotate_certificate_keys()
        self.stdout.write(f"Re-encrypted {count} certificate(s) with the newest key.")
        passwords = rotate_destination_passwords()
        self.stdout.write(f"Re-encrypted {passwords} PACS destination password(s) with the newest key.")
