from django.core.management.base import BaseCommand

from access.services import expire_lapsed_grants


class Command(BaseCommand):
    help = "Mark access grants past their expiry date expired (and their requests); audited and e-mailed."

    def handle(self, *args, **options):
        count = expire_lapsed_grants()
        self.stdout.write(f"Expired {count} grant(s).")
