from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from cxr_platform.audit import anchors
from cxr_platform.audit.selectors import parse_anchor


class Command(BaseCommand):
    help = (
        "Check that the audit log's chain of MACs is intact and that it is not shorter than the "
        "last anchor in AUDIT_ANCHOR_FILE; exits non-zero at the first problem."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--anchor",
            help="SEQUENCE:MAC printed by an earlier run and kept outside the database; "
            "also detects events deleted from the end of the log.",
        )
        parser.add_argument(
            "--anchor-file",
            help="Append-only file of anchors to check against (default: AUDIT_ANCHOR_FILE).",
        )
        parser.add_argument("--no-anchor-file", action="store_true", help="Do not read or write an anchor file.")
        parser.add_argument(
            "--write-anchor",
            action="store_true",
            help="After a successful check, append the newest event's anchor to the anchor file.",
        )

    def handle(self, *args, anchor=None, anchor_file=None, no_anchor_file=False, write_anchor=False, **options):
        try:
            expected = parse_anchor(anchor) if anchor else None
        except ValueError as exc:
            raise CommandError(f"--anchor: {exc}") from None
        path = None if no_anchor_file else (anchor_file or settings.AUDIT_ANCHOR_FILE or None)
        if write_anchor and path is None:
            raise CommandError("--write-anchor needs an anchor file: set AUDIT_ANCHOR_FILE or pass --anchor-file.")
        path = Path(path) if path else None
        try:
            report, recorded = anchors.verify(path, anchor=expected)
        except anchors.AnchorFileError as exc:
            raise CommandError(f"Audit log cannot be trusted: {exc}.") from None
        if not report.intact:
            raise CommandError(
                f"Audit log is NOT intact: {report.problem.message}. "
                f"{report.checked} events before it verified."
            )
        self.stdout.write(self.style.SUCCESS(f"Audit log intact: {report.checked} events verified."))
        if recorded is not None:
            self.stdout.write(f"Checked against the anchor file's last anchor #{recorded.sequence} ({recorded.written_at}).")
        if write_anchor and report.last_sequence and (recorded is None or recorded.sequence < report.last_sequence):
            written = anchors.append_anchor(path, report.last_sequence, report.last_mac)
            self.stdout.write(f"Anchor written to {path}: {written}")
        elif report.checked:
            self.stdout.write(f"Anchor (keep it outside the database, pass it with --anchor next time): {report.anchor}")

