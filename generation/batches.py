"""Batches at run time: claiming one (with the attempt cap), running it, retrying, finishing the
cohort, and reconciling the batches whose work can no longer happen on its own.

Every claim by a worker counts as an attempt, including claims whose worker is then killed (out of
memory, SIGKILL, a lost node): those are also counted in ``crashes``, when the reconciler or the next
claim finds the batch ``running`` with a stale heartbeat. A batch out of attempts fails with a reason
its owner can read, its unfinished images fail with it, and the cohort ends once every batch has.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Count, Q
from django.utils import timezone

from access import capabilities as caps
from access.policy import access_policy
from cxr_platform.audit.services import record_event

from .models import Cohort, GenerationBatch, SyntheticImage
from .pipeline import Heartbeat, generate_and_screen, images_in, live_images
from .queueing import enqueue, waiting_messages
from .quota import release_unused_quota
from .transitions import set_image_status, transition_batch, transition_cohort

logger = logging.getLogger(__name__)

Status = Cohort.Status
BatchStatus = GenerationBatch.Status
ImageStatus = SyntheticImage.Status

SKIPPED, COMPLETED, RETRY, FAILED, CANCELLED = "skipped", "completed", "retry", "failed", "cancelled"


def max_attempts() -> int:
    return max(1, int(getattr(settings, "GENERATION_BATCH_MAX_ATTEMPTS", 3)))


def stale_before():
    return timezone.now() - timedelta(seconds=getattr(settings, "GENERATION_STALE_BATCH_SECONDS", 300))


def _is_stale(batch: GenerationBatch) -> bool:
    return not batch.heartbeat_at or batch.heartbeat_at < stale_before()


def out_of_attempts_reason(batch: GenerationBatch) -> str:
    """Why a batch that used all its attempts failed, in words its owner can act on."""
    attempts, crashes = batch.attempts, batch.crashes
    times = lambda n: "once" if n == 1 else "twice" if n == 2 else f"{n} times"  # noqa: E731
    if crashes >= attempts:
        return (
            f"The worker running this batch stopped {times(crashes)} (out of memory or killed) before finishing "
            f"it, so its images were not generated. A smaller image size or batch size may help; the platform's "
            f"operators can see the workers' logs."
        )
    last = f" The last error: {batch.error}" if batch.error else ""
    return (
        f"This batch was tried {times(attempts)}: the worker running it stopped {times(crashes)} (out of memory or "
        f"killed) and it failed {times(attempts - crashes)}.{last}"
    )


def _fail_batch(batch: GenerationBatch, reason: str) -> None:
    """The batch ends failed, with its unfinished images. Call inside a transaction holding its row."""
    unfinished = list(images_in(batch).exclude(status__in=[ImageStatus.PASSED, ImageStatus.FAILED]))
    set_image_status(unfinished, ImageStatus.FAILED, error=reason)
    transition_batch(batch, BatchStatus.FAILED, error=reason)


def claim_batch(batch_id: int) -> GenerationBatch | None:
    """Take a batch for this process, or None if there is nothing to do (finished, a live worker has it,
    its cohort ended, its owner lost access, or it is out of attempts)."""
    cohort_id = GenerationBatch.objects.filter(pk=batch_id).values_list("cohort_id", flat=True).first()
    if cohort_id is None:
        return None
    out_of_attempts = False
    with transaction.atomic():
        # Cohort before batch, the same order as cancel_cohort, so the two never deadlock.
        cohort = Cohort.objects.select_for_update(of=("self",)).select_related("model_version", "owner").get(pk=cohort_id)
        batch = GenerationBatch.objects.select_for_update().get(pk=batch_id)
        batch.cohort = cohort
        if batch.status in GenerationBatch.TERMINAL:
            return None
        if cohort.is_terminal:
            transition_batch(batch, BatchStatus.CANCELLED)
            return None
        crashed = batch.status == BatchStatus.RUNNING
        if crashed and not _is_stale(batch):
            return None  # a live worker has it; this is a duplicate delivery
        if not access_policy(cohort.owner).can(caps.GENERATE, cohort.model_version):
            fail_cohort(cohort, "The owner's access to generation with this model version has ended.")
            transition_batch(batch, BatchStatus.CANCELLED)
            return None
        if crashed:
            batch.crashes += 1  # its worker died without finishing it: that attempt is used up
        if batch.attempts >= max_attempts():
            _fail_batch(batch, out_of_attempts_reason(batch))
            out_of_attempts = True
        else:
            transition_batch(batch, BatchStatus.RUNNING, attempts=batch.attempts + 1, started_at=timezone.now())
            if cohort.status == Status.QUEUED:
                transition_cohort(cohort, Status.RUNNING, actor=None)
    if out_of_attempts:
        finish_cohort_if_done(cohort_id)
        return None
    return batch


def after_interruption(batch: GenerationBatch, target: str, *, error: str = "") -> None:
    with transaction.atomic():
        batch = GenerationBatch.objects.select_for_update(of=("self",)).get(pk=batch.pk)
        if target == BatchStatus.FAILED:
            unfinished = list(images_in(batch).exclude(status__in=[ImageStatus.PASSED, ImageStatus.FAILED]))
            set_image_status(unfinished, ImageStatus.FAILED, error=error)
        else:
            in_progress = list(images_in(batch).filter(status__in=[ImageStatus.GENERATING, ImageStatus.SCREENING]))
            set_image_status(in_progress, ImageStatus.PENDING)
        transition_batch(batch, target, error=error)
    if target == BatchStatus.FAILED:
        finish_cohort_if_done(batch.cohort_id)
    elif target == BatchStatus.CANCELLED:
        with transaction.atomic():
            # The images this batch was making when the cohort was cancelled are not made after all.
            release_unused_quota(Cohort.objects.select_for_update().get(pk=batch.cohort_id))


def run_batch(batch_id: int) -> str:
    """Generate, store and screen one batch; safe to call again for the same batch at any time."""
    from .inference import GenerationCancelled

    batch = claim_batch(batch_id)
    if batch is None:
        return SKIPPED
    with Heartbeat(batch.pk):
        try:
            generate_and_screen(batch)
        except GenerationCancelled:
            after_interruption(batch, BatchStatus.CANCELLED)
            return CANCELLED
        except Exception as exc:  # any failure of a batch is recorded, then retried or reported
            logger.exception("Batch %s failed (attempt %s)", batch, batch.attempts)
            error = f"{type(exc).__name__}: {exc}"[:2000]
            if batch.attempts < max_attempts():
                after_interruption(batch, BatchStatus.PENDING, error=error)
                return RETRY
            if batch.crashes:  # earlier attempts crashed: say so, with this error
                batch.error = error
                error = out_of_attempts_reason(batch)
            after_interruption(batch, BatchStatus.FAILED, error=error)
            return FAILED
    with transaction.atomic():
        batch = GenerationBatch.objects.select_for_update().get(pk=batch.pk)
        if batch.status == BatchStatus.RUNNING:
            transition_batch(batch, BatchStatus.COMPLETED, error="")
    finish_cohort_if_done(batch.cohort_id)
    return COMPLETED


def retry_batch(batch_id: int) -> None:
    """Queue a batch again after a failed attempt, backing off with each attempt."""
    with transaction.atomic():
        batch = GenerationBatch.objects.select_for_update().get(pk=batch_id)
        if batch.status == BatchStatus.PENDING:
            base = float(getattr(settings, "GENERATION_RETRY_BACKOFF_SECONDS", 5))
            enqueue([batch], countdown=base * 2 ** (batch.attempts - 1))


def fail_cohort(cohort: Cohort, reason: str) -> None:
    """The cohort ends failed; it keeps on its owner's quota only the images made (or being made)."""
    cohort.error = reason
    cohort.save(update_fields=["error", "updated_at"])
    release_unused_quota(cohort)
    transition_cohort(cohort, Status.FAILED, actor=None, details={"reason": reason, "kept": cohort.reserved_images})


def finish_cohort_if_done(cohort_id: int) -> None:
    """Complete (or fail) the cohort once every batch has ended."""
    with transaction.atomic():
        cohort = Cohort.objects.select_for_update().get(pk=cohort_id)
        if cohort.is_terminal or cohort.batches.exclude(status__in=GenerationBatch.TERMINAL).exists():
            return
        counts = cohort.images.aggregate(
            passed=Count("pk", filter=Q(status=ImageStatus.PASSED)),
            flagged=Count("pk", filter=Q(status=ImageStatus.FLAGGED)),
            failed=Count("pk", filter=Q(status=ImageStatus.FAILED)),
        )
        passed, flagged, failed = counts["passed"], counts["flagged"], counts["failed"]
        # A patient whose every attempt failed quality control, under the cohort's "drop" policy, has no
        # live row: the cohort completes without it, and its quality card reports it.
        dropped = cohort.size - live_images(cohort).count()
        if passed + dropped == cohort.size:
            details = {"passed": passed, "flagged": flagged}
            if dropped:
                details["dropped"] = dropped
            transition_cohort(cohort, Status.COMPLETED, actor=None, details=details)
            return
        reason = f"{failed:,} of {cohort.size:,} images failed; the others passed screening."
        batch_error = cohort.batches.filter(status=BatchStatus.FAILED).exclude(error="").values_list("error", flat=True)
        if batch_error.first():
            reason = f"{reason} {batch_error.first()}"
        fail_cohort(cohort, reason)


def run_cohort_inline(cohort: Cohort, *, on_progress=None) -> Cohort:
    """Run every batch in this process, in order (``generate_cohort --inline``, tests, demos)."""
    for batch_id in cohort.batches.order_by("first_index").values_list("pk", flat=True):
        while run_batch(batch_id) == RETRY:
            pass
        if on_progress:
            on_progress()
    cohort.refresh_from_db()
    return cohort


# --- Reconciliation --------------------------------------------------------------------------


def requeue_after() -> timedelta:
    return timedelta(seconds=getattr(settings, "GENERATION_REQUEUE_AFTER_SECONDS", 300))


def reconcile_batches() -> int:
    """Find every batch whose work can no longer happen on its own and send it again; returns how many.

    * running or pending with a heartbeat older than GENERATION_STALE_BATCH_SECONDS: its worker died.
      The crash counts against GENERATION_BATCH_MAX_ATTEMPTS; out of attempts, the batch fails.
    * queued but never delivered (``enqueued_at`` null: the broker was unreachable when it was sent).
    * queued longer than GENERATION_REQUEUE_AFTER_SECONDS while the broker's queue is empty: the broker
      lost its message (a non-persistent Redis restarted). Nothing is sent while messages still wait
      there, so a queue that merely waits for a worker is never flooded with duplicates.

    A batch sent twice is harmless: a claim skips a batch that is finished or that a live worker runs.
    """
    requeued = _recover_crashed()
    queued = GenerationBatch.objects.filter(status=BatchStatus.QUEUED, cohort__status__in=[Status.QUEUED, Status.RUNNING])
    undelivered = queued.filter(enqueued_at__isnull=True)
    overdue = queued.filter(enqueued_at__lt=timezone.now() - requeue_after())
    if undelivered.exists() or overdue.exists():
        waiting = waiting_messages()
        if waiting is None:
            logger.warning("The broker is unreachable: queued generation batches wait for it")
        else:
            requeued += _resend(undelivered, "the broker could not be reached when it was queued")
            if waiting == 0:
                requeued += _resend(overdue, "the broker lost its message")
    if requeued:
        logger.warning("Re-enqueued %s generation batch(es)", requeued)
    return requeued


def _recover_crashed() -> int:
    stuck = GenerationBatch.objects.filter(
        Q(status=BatchStatus.RUNNING) | Q(status=BatchStatus.PENDING),
        Q(heartbeat_at__lt=stale_before()) | Q(heartbeat_at__isnull=True),
        cohort__status__in=[Status.QUEUED, Status.RUNNING],
    ).values_list("pk", flat=True)
    requeued = 0
    for batch_id in stuck:
        failed = False
        with transaction.atomic():
            batch = GenerationBatch.objects.select_for_update().get(pk=batch_id)
            if batch.status not in (BatchStatus.RUNNING, BatchStatus.PENDING) or not _is_stale(batch):
                continue
            if batch.status == BatchStatus.RUNNING:
                batch.crashes += 1
                if batch.attempts >= max_attempts():
                    _fail_batch(batch, out_of_attempts_reason(batch))
                    failed = True
            if not failed:
                enqueue([batch])
                requeued += 1
        if failed:
            finish_cohort_if_done(batch.cohort_id)
    return requeued


def _resend(batches, reason: str, *, chunk: int = 500) -> int:
    """Send queued batches' messages again under new task ids, a chunk per transaction (one bulk write,
    one connection); one audit event per cohort and chunk."""
    ids = list(batches.values_list("pk", flat=True))
    resent = 0
    for start in range(0, len(ids), chunk):
        with transaction.atomic():
            locked = list(
                GenerationBatch.objects.select_for_update(skip_locked=True)
                .filter(pk__in=ids[start:start + chunk], status=BatchStatus.QUEUED)
            )
            enqueue(locked)
            per_cohort: dict[int, int] = {}
            for batch in locked:
                per_cohort[batch.cohort_id] = per_cohort.get(batch.cohort_id, 0) + 1
            for cohort_id, count in per_cohort.items():
                record_event("generation_batch.resent", target=("generation.cohort", cohort_id),
                             details={"batches": count, "reason": reason})
        resent += len(locked)
    return resent
