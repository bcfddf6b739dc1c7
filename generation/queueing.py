"""Handing batches to the broker: one message per batch, sent after the transaction commits.

A send that fails (Redis down, the filesystem broker's folders missing) never reaches the user: it is
logged, and the batches it did not deliver keep ``status=queued`` with ``enqueued_at`` cleared, which
is how the reconciler knows to send them once the broker is back.
"""

from __future__ import annotations

import logging
import uuid
from datetime import timedelta

from django.db import transaction
from django.db.models import CharField, Value
from django.db.models.functions import Cast, Concat
from django.utils import timezone

from .models import GenerationBatch
from .transitions import BATCH_TRANSITIONS, transition_batch, transition_batches

logger = logging.getLogger(__name__)

BatchStatus = GenerationBatch.Status
# Publishing gives up quickly: whatever is not sent is sent again by the reconciler.
PUBLISH_RETRY_POLICY = {"max_retries": 1, "interval_start": 0, "interval_step": 0.2, "interval_max": 0.2}
BROKER_TIMEOUT_SECONDS = 2.0


def enqueue(batches: list[GenerationBatch], *, countdown: float = 0) -> None:
    """Mark stored batches queued and send their messages once the transaction commits. The routine
    steps are one UPDATE whatever the number of batches; a requeue after a crash is audited per batch."""
    if not batches:
        return
    due = timezone.now() + timedelta(seconds=countdown)
    audited = [b for b in batches if BATCH_TRANSITIONS.get((b.status, BatchStatus.QUEUED))]
    routine = [b for b in batches if not BATCH_TRANSITIONS.get((b.status, BatchStatus.QUEUED))]
    for batch in audited:
        transition_batch(batch, BatchStatus.QUEUED, task_id=uuid.uuid4().hex, enqueued_at=due)
    # One task id per message: this call's token and the batch's id.
    token = uuid.uuid4().hex[:24]
    transition_batches(routine, BatchStatus.QUEUED, enqueued_at=due,
                       task_id=Concat(Value(f"{token}-"), Cast("pk", output_field=CharField())))
    for batch in routine:
        batch.task_id = f"{token}-{batch.pk}"
    _send_after_commit(batches, countdown)


def create_queued(batches: list[GenerationBatch]) -> list[GenerationBatch]:
    """Insert new batches already queued (one bulk insert) and send their messages after commit."""
    now = timezone.now()
    for batch in batches:
        transition_batch(batch, BatchStatus.QUEUED, save=False, task_id=uuid.uuid4().hex, enqueued_at=now)
    created = GenerationBatch.objects.bulk_create(batches, batch_size=1000)
    _send_after_commit(created, 0)
    return created


def _send_after_commit(batches: list[GenerationBatch], countdown: float) -> None:
    jobs = [(b.pk, b.task_id) for b in batches]
    # Only after commit: a worker must find the rows the message points at.
    transaction.on_commit(lambda: send(jobs, countdown=countdown))


def send(jobs: list[tuple[int, str]], *, countdown: float = 0) -> int:
    """Publish one message per (batch id, task id) over one connection; returns how many were sent.
    Stops at the first failure and marks the rest undelivered (``enqueued_at`` null)."""
    from .tasks import generate_batch

    sent = 0
    try:
        with generate_batch.app.producer_or_acquire() as producer:
            for batch_id, task_id in jobs:
                generate_batch.apply_async(
                    args=[batch_id], task_id=task_id, countdown=countdown or None, producer=producer,
                    retry_policy=PUBLISH_RETRY_POLICY,
                )
                sent += 1
    except Exception:  # any broker failure: the work is stored, the reconciler sends it later
        undelivered = jobs[sent:]
        logger.exception(
            "Could not send %s generation batch message(s) to the broker; the reconciler will send them "
            "once it is reachable", len(undelivered),
        )
        GenerationBatch.objects.filter(
            pk__in=[pk for pk, _ in undelivered], task_id__in=[task_id for _, task_id in undelivered],
            status=BatchStatus.QUEUED,
        ).update(enqueued_at=None)
    return sent


def generation_queue() -> str:
    """The queue generate_batch is routed to (``gpu``)."""
    from cxr_platform.celery import app

    return app.amqp.router.route({}, "generation.tasks.generate_batch")["queue"].name


def waiting_messages(queue: str | None = None) -> int | None:
    """How many messages wait in the broker's ``queue`` (generation's by default), not counting those a
    worker holds; None when the broker cannot be reached. Gives up within a few seconds."""
    from cxr_platform.celery import app

    name = queue or generation_queue()
    try:
        with app.connection_for_read(connect_timeout=BROKER_TIMEOUT_SECONDS) as conn:
            conn.ensure_connection(max_retries=1, interval_start=0, interval_step=0.2, timeout=BROKER_TIMEOUT_SECONDS)
            try:
                return int(conn.default_channel.queue_declare(queue=name, passive=True).message_count)
            except conn.channel_errors:
                return 0  # never declared, or emptied and removed (Redis): nothing waits in it
    except Exception:
        logger.warning("The broker could not be reached to count the messages in %r", name, exc_info=True)
        return None
