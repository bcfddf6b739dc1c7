"""Reading and checking the audit log."""

from __future__ import annotations

from dataclasses import dataclass

from django.db.models import Q, QuerySet

from .models import ANONYMOUS, SYSTEM, AuditEvent
from .services import GENESIS_MAC, compute_mac


@dataclass
class ChainProblem:
    sequence: int | None
    message: str


@dataclass
class ChainReport:
    checked: int
    problem: ChainProblem | None
    last_sequence: int = 0
    last_mac: str = GENESIS_MAC

    @property
    def intact(self) -> bool:
        return self.problem is None

    @property
    def anchor(self) -> str:
        """``SEQUENCE:MAC`` of the newest event, to be kept outside the database."""
        return f"{self.last_sequence}:{self.last_mac}"


def parse_anchor(text: str) -> tuple[int, str]:
    sequence, _, mac = text.partition(":")
    if not sequence.isdigit() or len(mac) != 64:
        raise ValueError(f"an anchor looks like 1234:<64 hex digits>, not {text!r}")
    return int(sequence), mac.lower()


def verify_chain(
    key: str | None = None,
    chunk_size: int = 2000,
    anchor: tuple[int, str] | None = None,
    since: tuple[int, str] | None = None,
) -> ChainReport:
    """Walk the whole chain in order and report the first broken link.

    A chain cannot show that events were cut off its end; ``anchor`` (a
    ``(sequence, mac)`` noted earlier, outside the database) can: that event
    must still be there with the same seal. ``since`` (an anchor verified before)
    checks only the events after it, once the anchored event is found unchanged.
    """
    expected_previous = GENESIS_MAC
    expected_sequence = 1
    checked = 0
    anchor_seen = anchor is None
    events = AuditEvent.objects.order_by("sequence")
    if since is not None and since[0] > 0:
        start = AuditEvent.objects.filter(sequence=since[0]).only("sequence", "mac").first()
        if start is None:
            last = AuditEvent.objects.order_by("-sequence").values_list("sequence", flat=True).first() or 0
            if last < since[0]:
                return _tail_cut(0, last + 1, since)
            return ChainReport(0, ChainProblem(since[0], f"event #{since[0]}, which the anchor recorded, is missing: it was deleted"))
        if start.mac != since[1]:
            return ChainReport(0, ChainProblem(since[0], _rewritten(since[0])))
        expected_sequence, expected_previous = since[0] + 1, since[1]
        events = events.filter(sequence__gt=since[0])
        anchor_seen = anchor is None or anchor[0] <= since[0]
    for event in events.iterator(chunk_size=chunk_size):
        if event.sequence != expected_sequence:
            if event.sequence > expected_sequence:
                message = (
                    f"event #{expected_sequence} is missing (the log jumps from #{expected_sequence - 1} "
                    f"to #{event.sequence}): an event was deleted"
                )
            else:
                message = f"event #{event.sequence} appears out of order after #{expected_sequence - 1}"
            return ChainReport(checked, ChainProblem(event.sequence, message))
        if event.previous_mac != expected_previous:
            return ChainReport(
                checked,
                ChainProblem(
                    event.sequence,
                    f"event #{event.sequence} does not follow the event before it: events were "
                    "deleted, inserted or reordered just before it",
                ),
            )
        if compute_mac(event, event.previous_mac, key) != event.mac:
            return ChainReport(
                checked,
                ChainProblem(
                    event.sequence,
                    f"event #{event.sequence} ({event.action}) does not match its seal: its content was "
                    "edited, or it was inserted by someone without the audit key",
                ),
            )
        if anchor is not None and event.sequence == anchor[0]:
            if event.mac != anchor[1]:
                return ChainReport(checked, ChainProblem(event.sequence, _rewritten(event.sequence)))
            anchor_seen = True
        expected_previous = event.mac
        expected_sequence += 1
        checked += 1
    if not anchor_seen:
        return _tail_cut(checked, expected_sequence, anchor)
    return ChainReport(checked, None, last_sequence=expected_sequence - 1, last_mac=expected_previous)


def _rewritten(sequence: int) -> str:
    return f"event #{sequence} is not the event the anchor recorded: the log was rewritten from there on"


def _tail_cut(checked: int, expected_sequence: int, anchor: tuple[int, str]) -> ChainReport:
    if expected_sequence == 1:
        message = (
            f"the log is empty but the anchor recorded #{anchor[0]}: every event was deleted"
        )
    else:
        message = (
            f"the log ends at #{expected_sequence - 1} but the anchor recorded #{anchor[0]}: "
            f"events #{expected_sequence} to #{anchor[0]} were deleted from the end of the log"
        )
    return ChainReport(checked, ChainProblem(expected_sequence, message))


def filter_events(
    *, actor: str = "", action: str = "", target_type: str = "", target_id: str = "", since=None, until=None
) -> QuerySet[AuditEvent]:
    events = AuditEvent.objects.all()
    if actor:
        events = events.filter(_actor_filter(actor))
    if action:
        events = events.filter(action__startswith=action)
    if target_type:
        events = events.filter(target_type=target_type)
    if target_id:
        events = events.filter(target_id=target_id)
    if since:
        events = events.filter(occurred_at__gte=since)
    if until:
        events = events.filter(occurred_at__lte=until)
    return events.order_by("-sequence")


def _actor_filter(actor: str) -> Q:
    """A username (any case), or "system" / "anonymous" as the log page shows events without one."""
    by_name = Q(actor_username__iexact=actor)
    without_user = Q(actor_username="")
    from_nowhere = Q(ip_address__isnull=True, user_agent="")
    if actor.lower() == SYSTEM:
        return by_name | (without_user & from_nowhere)
    if actor.lower() == ANONYMOUS:
        return by_name | (without_user & ~from_nowhere)
    return by_name
