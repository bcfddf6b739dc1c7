from django.core.management.base import BaseCommand, CommandError

from screening import selectors
from screening.models import ScreeningRecord


class Command(BaseCommand):
    help = (
        "Check every screening verdict against its seal (an HMAC keyed from AUDIT_HMAC_KEY) and every privacy "
        "review against the audit log, and that no image shown as passed lacks a passed verdict. Prints one line "
        "per problem and exits 1 if there is any."
    )

    def add_arguments(self, parser):
        parser.add_argument("--cohort", type=int, help="Only this cohort's records and images.")
        parser.add_argument("--no-images", action="store_true",
                            help="Skip the check of passed images against their records.")

    def handle(self, *args, cohort=None, no_images=False, **options):
        scope = None
        if cohort is not None:
            from generation.models import Cohort

            scope = Cohort.objects.filter(pk=cohort).first()
            if scope is None:
                raise CommandError(f"No cohort #{cohort}.")
        records = ScreeningRecord.objects.all() if scope is None else ScreeningRecord.objects.filter(cohort=scope)
        total = records.count()
        problems = 0
        for problem in selectors.seal_problems(cohort=scope, check_images=not no_images):
            problems += 1
            self.stdout.write(f"BROKEN: {problem}")
        if problems:
            raise CommandError(
                f"Screening verdicts are NOT intact: {problems} problem(s) among {total} record(s). Do not show or "
                "export the images named above until they are screened again.")
        self.stdout.write(self.style.SUCCESS(f"Screening seals intact: {total} records verified."))
