from django.core.management.base import BaseCommand, CommandError

from cxr_platform.audit.selectors import parse_anchor, verify_chain


class Command(BaseCommand):
    help = "Check that the audit log's chain of MACs is intact; exits non-zero at the first broken link."

    def add_arguments(self, parser):
        parser.add_argument(
            "--anchor",
            help="SEQUENCE:MAC printed by an earlier run and kept outside the database; "
            "also detects events deleted from the end of the log.",
        )

    def handle(self, *args, anchor=None, **options):
        try:
            expected = parse_anchor(anchor) if anchor else None
        except ValueError as exc:
            raise CommandError(f"--anchor: {exc}") from None
        report = verify_chain(anchor=expected)
        if not report.intact:
            raise CommandError(
                f"Audit log is NOT intact: {report.problem.message}. "
                f"{report.checked} events before it verified."
            )
        self.stdout.write(self.style.SUCCESS(f"Audit log intact: {report.checked} events verified."))
        if report.checked:
            self.stdout.write(f"Anchor (keep it outside the database, pass it with --anchor next time): {report.anchor}")
