from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from cxr_platform.audit.roles import RoleError, grant_app_role


class Command(BaseCommand):
    help = (
        "PostgreSQL: grant the application's database role what Django needs, and on the audit "
        "table only SELECT and INSERT. Run as the tables' owner (DATABASE_MIGRATE_URL); migrate "
        "runs it by itself when DATABASE_APP_ROLE is known."
    )

    def add_arguments(self, parser):
        parser.add_argument("--role", help="The application's role (default: DATABASE_APP_ROLE).")
        parser.add_argument("--database", default="default")

    def handle(self, *args, role=None, database="default", **options):
        role = role or settings.DATABASE_APP_ROLE
        if not role:
            raise CommandError("Name the application's role with --role or DATABASE_APP_ROLE.")
        try:
            statements = grant_app_role(role, using=database)
        except RoleError as exc:
            raise CommandError(str(exc)) from None
        for statement in statements:
            self.stdout.write(statement + ";")
        self.stdout.write(self.style.SUCCESS(f"Role {role!r}: SELECT and INSERT only on the audit table."))
