from django.core.management.base import BaseCommand, CommandError

from cxr_platform.audit.selectors import verify_chain


class Command(BaseCommand):
    help = "Check that the audit log's chain of MACs is intact; exits non-zero at the first broken link."

    def handle(self, *args, **options):
        report = verify_chain()
        if report.intact:
            self.stdout.write(self.style.SUCCESS(f"Audit log intact: {report.checked} events verified."))
            return
        raise CommandError(
            f"Audit log is NOT intact: {report.problem.message}. "
            f"{report.checked} events before it verified."
        )
