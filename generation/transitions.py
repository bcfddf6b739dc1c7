"""The lifecycles of cohorts, batches and images: one transition table each; nothing else changes a status.

* Cohort: draft → queued → running → completed / failed / cancelled (``COHORT_TRANSITIONS``).
* GenerationBatch: pending → queued → running → completed / failed / cancelled, with
  running → pending for a retry, running → queued when the reconciler re-enqueues a batch whose
  worker died, and queued → queued when it sends a message again that the broker lost or never
  got (``BATCH_TRANSITIONS``).
* SyntheticImage: pending → generating → screening → passed / flagged / rejected, or → failed.
  A flagged image (memorization screening) stays quarantined, a rejected one (quality control) is set
  aside; either way its patient gets a new row (next attempt, fresh seed) unless it was the last attempt.

Each audited transition writes its audit event in the caller's transaction.
"""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.utils import timezone

from cxr_platform.audit.services import record_event

from .models import Cohort, GenerationBatch, SyntheticImage

Status = Cohort.Status
BatchStatus = GenerationBatch.Status
ImageStatus = SyntheticImage.Status

# (from, to) -> audit action.
COHORT_TRANSITIONS = {
    (Status.DRAFT, Status.QUEUED): "cohort.submitted",
    (Status.QUEUED, Status.RUNNING): "cohort.started",
    (Status.QUEUED, Status.COMPLETED): "cohort.completed",
    (Status.RUNNING, Status.COMPLETED): "cohort.completed",
    (Status.QUEUED, Status.FAILED): "cohort.failed",
    (Status.RUNNING, Status.FAILED): "cohort.failed",
    (Status.DRAFT, Status.CANCELLED): "cohort.cancelled",
    (Status.QUEUED, Status.CANCELLED): "cohort.cancelled",
    (Status.RUNNING, Status.CANCELLED): "cohort.cancelled",
}
# Routine batch steps are not audited one by one (a 20,000-image cohort has 2,500 batches):
# the cohort's events carry their counts. Failures and crash recoveries are audited.
BATCH_TRANSITIONS = {
    (BatchStatus.PENDING, BatchStatus.QUEUED): None,
    (BatchStatus.PENDING, BatchStatus.RUNNING): None,  # run in-process (--inline)
    (BatchStatus.QUEUED, BatchStatus.RUNNING): None,
    # Sent again: the broker lost the message (a restarted Redis) or never got it (unreachable at
    # submission). Audited once per cohort by the reconciler ("generation_batch.resent").
    (BatchStatus.QUEUED, BatchStatus.QUEUED): None,
    (BatchStatus.RUNNING, BatchStatus.RUNNING): "generation_batch.reclaimed",  # its worker died
    (BatchStatus.RUNNING, BatchStatus.COMPLETED): None,
    (BatchStatus.RUNNING, BatchStatus.PENDING): "generation_batch.retry",
    (BatchStatus.RUNNING, BatchStatus.QUEUED): "generation_batch.requeued",
    (BatchStatus.PENDING, BatchStatus.FAILED): "generation_batch.failed",
    (BatchStatus.QUEUED, BatchStatus.FAILED): "generation_batch.failed",  # out of attempts when claimed
    (BatchStatus.RUNNING, BatchStatus.FAILED): "generation_batch.failed",
    (BatchStatus.PENDING, BatchStatus.CANCELLED): None,
    (BatchStatus.QUEUED, BatchStatus.CANCELLED): None,
    (BatchStatus.RUNNING, BatchStatus.CANCELLED): None,
}
IMAGE_TRANSITIONS = {
    (ImageStatus.PENDING, ImageStatus.GENERATING),
    (ImageStatus.GENERATING, ImageStatus.SCREENING),
    (ImageStatus.SCREENING, ImageStatus.PASSED),
    (ImageStatus.SCREENING, ImageStatus.FLAGGED),
    (ImageStatus.SCREENING, ImageStatus.REJECTED),
    # A crashed or failed attempt starts over with the same seed.
    (ImageStatus.GENERATING, ImageStatus.PENDING),
    (ImageStatus.SCREENING, ImageStatus.PENDING),
    (ImageStatus.PENDING, ImageStatus.FAILED),
    (ImageStatus.GENERATING, ImageStatus.FAILED),
    (ImageStatus.SCREENING, ImageStatus.FAILED),
}


class InvalidTransition(ValidationError):
    pass


def transition_cohort(cohort: Cohort, target: str, *, actor, details: dict | None = None) -> None:
    action = COHORT_TRANSITIONS.get((cohort.status, target))
    if action is None:
        raise InvalidTransition(f"This cohort is {cohort.get_status_display().lower()} and cannot be {target} now.")
    previous, now = cohort.status, timezone.now()
    cohort.status = target
    fields = ["status", "updated_at"]
    if target == Status.QUEUED:
        cohort.submitted_at = now
        fields.append("submitted_at")
    elif target == Status.RUNNING:
        cohort.started_at = now
        fields.append("started_at")
    elif target in Cohort.TERMINAL:
        cohort.finished_at = now
        fields.append("finished_at")
    cohort.save(update_fields=fields)
    record_event(action, actor=actor, target=cohort, details={"from": previous, "size": cohort.size, **(details or {})})


def transition_batch(
    batch: GenerationBatch, target: str, *, error: str | None = None, save: bool = True, **fields
) -> None:
    """Move a batch to ``target`` and save it. With ``save=False`` the caller writes it in the same
    transaction (new batches inserted queued in bulk); the audit event is written here either way."""
    key = (batch.status, target)
    if key not in BATCH_TRANSITIONS:
        raise InvalidTransition(f"Batch {batch} cannot go from {batch.status} to {target}.")
    previous = batch.status
    batch.status = target
    batch.heartbeat_at = timezone.now()  # last sign of life, for the reconciler
    if target in GenerationBatch.TERMINAL:
        batch.finished_at = batch.heartbeat_at
    if error is not None:
        batch.error = error
    for name, value in fields.items():
        setattr(batch, name, value)
    if save:
        batch.save()
    if BATCH_TRANSITIONS[key]:
        record_event(
            BATCH_TRANSITIONS[key],
            target=batch,
            details={
                "cohort": batch.cohort_id,
                "indices": [batch.first_index, batch.stop_index],
                "from": previous,
                "attempts": batch.attempts,
                "crashes": batch.crashes,
                "error": batch.error,
            },
        )


def transition_batches(batches: list[GenerationBatch], target: str, **fields) -> None:
    """Move many batches to ``target`` with one UPDATE, every one getting the same values: for the
    routine, unaudited steps (queueing or cancelling a whole cohort's batches). ``fields`` may hold
    query expressions, which are written but not set on the objects."""
    if not batches:
        return
    now = timezone.now()
    values = {"status": target, "heartbeat_at": now, **fields}
    if target in GenerationBatch.TERMINAL:
        values["finished_at"] = now
    for batch in batches:
        key = (batch.status, target)
        if key not in BATCH_TRANSITIONS:
            raise InvalidTransition(f"Batch {batch} cannot go from {batch.status} to {target}.")
        if BATCH_TRANSITIONS[key]:
            raise InvalidTransition(f"{batch.status} → {target} is audited: move such batches one by one.")
        for name, value in values.items():
            if not hasattr(value, "resolve_expression"):
                setattr(batch, name, value)
    GenerationBatch.objects.filter(pk__in=[b.pk for b in batches]).update(**values)


def set_image_status(images: list[SyntheticImage], target: str, *, error: str = "") -> None:
    if not images:
        return
    for image in images:
        if image.status != target and (image.status, target) not in IMAGE_TRANSITIONS:
            raise InvalidTransition(f"Image {image} cannot go from {image.status} to {target}.")
        image.status = target
        image.error = error
    SyntheticImage.objects.filter(pk__in=[i.pk for i in images]).update(
        status=target, error=error, updated_at=timezone.now()
    )
