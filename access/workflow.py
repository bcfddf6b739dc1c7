"""The access-request lifecycle: the ONE table of allowed transitions.

    draft → submitted → changes_requested ↔ resubmitted → approved | rejected
    approved → revoked | expired

Each entry maps (current status, action) to the new status and says who may
take the action. ``access.services`` is the only code that changes a request's
status, and it asks :func:`transition_for` first; anything not listed here is
refused with :class:`TransitionRefused`.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.core.exceptions import ValidationError

from .models import AccessRequest

S = AccessRequest.Status

REQUESTER = "requester"
REVIEWER = "reviewer"
SYSTEM = "system"

SUBMIT = "submit"
RESUBMIT = "resubmit"
REQUEST_CHANGES = "request_changes"
APPROVE = "approve"
REJECT = "reject"
REVOKE = "revoke"
EXPIRE = "expire"

ACTION_LABELS = {
    SUBMIT: "Submit",
    RESUBMIT: "Resubmit",
    REQUEST_CHANGES: "Request changes",
    APPROVE: "Approve",
    REJECT: "Reject",
    REVOKE: "Revoke",
    EXPIRE: "Expire",
}


@dataclass(frozen=True)
class Transition:
    source: str
    action: str
    target: str
    by: str  # REQUESTER, REVIEWER or SYSTEM
    needs_reason: bool = False


TRANSITIONS: tuple[Transition, ...] = (
    Transition(S.DRAFT, SUBMIT, S.SUBMITTED, REQUESTER),
    Transition(S.SUBMITTED, REQUEST_CHANGES, S.CHANGES_REQUESTED, REVIEWER, needs_reason=True),
    Transition(S.RESUBMITTED, REQUEST_CHANGES, S.CHANGES_REQUESTED, REVIEWER, needs_reason=True),
    Transition(S.CHANGES_REQUESTED, RESUBMIT, S.RESUBMITTED, REQUESTER),
    Transition(S.SUBMITTED, APPROVE, S.APPROVED, REVIEWER),
    Transition(S.RESUBMITTED, APPROVE, S.APPROVED, REVIEWER),
    Transition(S.SUBMITTED, REJECT, S.REJECTED, REVIEWER, needs_reason=True),
    Transition(S.RESUBMITTED, REJECT, S.REJECTED, REVIEWER, needs_reason=True),
    Transition(S.APPROVED, REVOKE, S.REVOKED, REVIEWER, needs_reason=True),
    Transition(S.APPROVED, EXPIRE, S.EXPIRED, SYSTEM),
)

_TABLE = {(t.source, t.action): t for t in TRANSITIONS}


class TransitionRefused(ValidationError):
    """The action is not allowed now, or not by this person; the message says why."""


def transition_for(status: str, action: str) -> Transition:
    transition = _TABLE.get((status, action))
    if transition is None:
        label = ACTION_LABELS.get(action, action)
        raise TransitionRefused(f"{label} is not possible for a request that is {S(status).label.lower()}.")
    return transition


def allowed_actions(status: str, by: str) -> list[str]:
    """Actions that ``by`` (REQUESTER, REVIEWER, SYSTEM) may take on a request in ``status``."""
    return [t.action for t in TRANSITIONS if t.source == status and t.by == by]
