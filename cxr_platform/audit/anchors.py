"""Anchors: the newest event's ``SEQUENCE:MAC``, kept where the database's users cannot write.

A chain of MACs proves that nothing inside the log was changed, but not that its end was not
cut off, nor that the whole log was not emptied. Anchors close that gap: every so often (the
Celery beat task ``cxr_platform.audit.tasks.write_audit_anchor``, or ``verify_audit_log
--write-anchor``) the newest event is appended, with the time, to AUDIT_ANCHOR_FILE, a file on
the application host that is only ever appended to. ``verify_audit_log`` then fails when the
log is shorter than, or disagrees with, the last anchor.

One line per anchor: ``2026-01-31T12:00:00+00:00 1234:<64 hex digits>``."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.utils import timezone

from .selectors import ChainProblem, ChainReport, parse_anchor, verify_chain

logger = logging.getLogger(__name__)


class AnchorFileError(Exception):
    """The anchor file cannot be read or makes no sense: itself a sign of tampering."""


@dataclass(frozen=True)
class Anchor:
    sequence: int
    mac: str
    written_at: str = ""

    @property
    def pair(self) -> tuple[int, str]:
        return self.sequence, self.mac

    def __str__(self) -> str:
        return f"{self.sequence}:{self.mac}"


def anchor_file() -> Path | None:
    path = getattr(settings, "AUDIT_ANCHOR_FILE", "")
    return Path(path) if path else None


def read_anchors(path: Path) -> list[Anchor]:
    """Every anchor in the file, oldest first; AnchorFileError if a line is not one or the
    sequence goes backwards (the log was cut and someone anchored the shorter log)."""
    if not path.exists():
        return []
    anchors: list[Anchor] = []
    try:
        lines = path.read_text(encoding="ascii").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise AnchorFileError(f"cannot read the anchor file {path}: {exc}") from None
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        written_at, _, text = line.strip().rpartition(" ")
        try:
            sequence, mac = parse_anchor(text)
        except ValueError:
            raise AnchorFileError(f"line {number} of the anchor file {path} is not an anchor: {line!r}") from None
        if anchors and sequence < anchors[-1].sequence:
            raise AnchorFileError(
                f"the anchor file {path} goes backwards at line {number} (#{sequence} after "
                f"#{anchors[-1].sequence}): the log was cut and the shorter log was anchored"
            )
        anchors.append(Anchor(sequence, mac, written_at))
    return anchors


def last_anchor(path: Path | None) -> Anchor | None:
    if path is None:
        return None
    anchors = read_anchors(path)
    return anchors[-1] if anchors else None


def append_anchor(path: Path, sequence: int, mac: str, when: datetime | None = None) -> Anchor:
    """Append one line with O_APPEND (one write: never interleaved with another writer)."""
    anchor = Anchor(sequence, mac, (when or timezone.now()).isoformat(timespec="seconds"))
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
    try:
        os.write(descriptor, f"{anchor.written_at} {anchor}\n".encode("ascii"))
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
    return anchor


def evidence_of_earlier_events() -> str | None:
    """Why the log cannot be empty even without an anchor: every login records an event."""
    user = get_user_model().objects.filter(last_login__isnull=False).order_by("last_login").first()
    if user is None:
        return None
    return f"account {user.get_username()!r} logged in on {user.last_login:%Y-%m-%d %H:%M} and every login is recorded"


def verify(
    path: Path | None, *, anchor: tuple[int, str] | None = None, incremental: bool = False
) -> tuple[ChainReport, Anchor | None]:
    """The chain checked against the last anchor in ``path`` (and ``anchor``, if given).

    ``incremental`` verifies only the events after the file's last anchor (the scheduled task);
    otherwise the whole chain is walked. Raises AnchorFileError for an unusable anchor file."""
    recorded = last_anchor(path)
    expected = anchor
    if recorded is not None and (expected is None or recorded.sequence >= expected[0]):
        if expected is not None and recorded.sequence == expected[0] and recorded.mac != expected[1]:
            raise AnchorFileError(f"the anchor given disagrees with the anchor file's #{recorded.sequence}")
        expected = recorded.pair
    since = recorded.pair if (incremental and recorded is not None) else None
    report = verify_chain(anchor=expected, since=since)
    if report.intact and report.last_sequence == 0 and expected is None:
        evidence = evidence_of_earlier_events()
        if evidence:
            report = ChainReport(0, ChainProblem(1, f"the log is empty, but {evidence}: every event was deleted"))
    return report, recorded


def write_anchor(*, incremental: bool = True) -> Anchor | None:
    """Verify, then append the newest event to the anchor file. Returns None when there is no
    file configured or nothing new to anchor; raises ChainBroken when the chain is not intact."""
    path = anchor_file()
    if path is None:
        logger.warning("AUDIT_ANCHOR_FILE is not set: no audit anchor written")
        return None
    report, recorded = verify(path, incremental=incremental)
    if not report.intact:
        raise ChainBroken(report)
    if report.last_sequence == 0 or (recorded is not None and recorded.sequence == report.last_sequence):
        return None
    return append_anchor(path, report.last_sequence, report.last_mac)


class ChainBroken(Exception):
    def __init__(self, report: ChainReport):
        self.report = report
        super().__init__(f"Audit log is NOT intact: {report.problem.message}")

