"""Worker liveness: which Celery workers consume which queue, and what waits for them.

Each worker process writes its own heartbeat row (``WorkerHeartbeat``: node name, queues, last seen)
when it is ready and then every GENERATION_WORKER_HEARTBEAT_SECONDS from a thread in its main process
(``cxr_platform/celery.py`` connects the signals); a warm shutdown deletes the row, a killed worker
simply stops beating. A queue's consumers are the workers seen within GENERATION_WORKER_STALE_SECONDS.
Reading this costs one small query and never touches the broker, so ``/api/v1/health`` and the
cohort pages answer even when the broker is down.
"""

from __future__ import annotations

import logging
import os
import threading
from datetime import timedelta

from django.conf import settings
from django.db import connection
from django.db.models import F, Min
from django.db.models.functions import Coalesce
from django.utils import timezone

from .models import Cohort, GenerationBatch, WorkerHeartbeat
from .queueing import generation_queue

logger = logging.getLogger(__name__)

Status = Cohort.Status
BatchStatus = GenerationBatch.Status

NO_GPU_WORKER = "No GPU worker is running — your cohort will {verb} when one is."
BROKER_UNREACHABLE = (
    "The job queue cannot be reached right now — your cohort is stored and will {verb} once the queue is back."
)


def heartbeat_seconds() -> float:
    return max(float(getattr(settings, "GENERATION_WORKER_HEARTBEAT_SECONDS", 15)), 0.2)


def stale_after() -> timedelta:
    default = 4 * heartbeat_seconds()
    return timedelta(seconds=float(getattr(settings, "GENERATION_WORKER_STALE_SECONDS", 0) or default))


# --- In the worker process -----------------------------------------------------------------------


class WorkerBeat:
    """The heartbeat thread of one worker process."""

    def __init__(self, name: str, queues: list[str]):
        self.name, self.queues = name, sorted(queues)
        self.started_at = timezone.now()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="worker-heartbeat", daemon=True)

    def beat(self) -> None:
        WorkerHeartbeat.objects.update_or_create(
            name=self.name,
            defaults={"queues": self.queues, "pid": os.getpid(), "started_at": self.started_at,
                      "last_seen_at": timezone.now()},
        )

    def start(self) -> None:
        try:
            self.beat()  # before the worker says it is ready: health sees it at once
        except Exception:
            logger.warning("Worker heartbeat of %s failed", self.name, exc_info=True)
        finally:
            connection.close()
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        try:
            WorkerHeartbeat.objects.filter(name=self.name).delete()  # gone now, not in a minute
        except Exception:
            logger.warning("Could not remove the heartbeat of %s", self.name, exc_info=True)
        finally:
            connection.close()

    def _run(self) -> None:
        while not self._stop.wait(heartbeat_seconds()):
            try:
                self.beat()
            except Exception:  # the database may be back at the next beat
                logger.warning("Worker heartbeat of %s failed", self.name, exc_info=True)
            finally:
                connection.close()  # one short connection per beat: survives database restarts


_current: WorkerBeat | None = None


def consumed_queues(consumer) -> list[str]:
    task_consumer = getattr(consumer, "task_consumer", None)
    if task_consumer is not None and task_consumer.queues:
        return [queue.name for queue in task_consumer.queues]
    return list(consumer.app.amqp.queues.consume_from or consumer.app.amqp.queues)


def start_worker_heartbeat(consumer) -> None:
    """``worker_ready``: start beating for this worker (once per process)."""
    global _current
    if _current is None:
        _current = WorkerBeat(consumer.hostname, consumed_queues(consumer))
        _current.start()


def stop_worker_heartbeat() -> None:
    """``worker_shutdown``: stop beating and remove this worker's row."""
    global _current
    if _current is not None:
        _current.stop()
        _current = None


# --- Reading it ----------------------------------------------------------------------------------


def _waiting_batches():
    """Batches that wait for a generation worker: queued or pending, of an unfinished cohort."""
    return GenerationBatch.objects.filter(
        status__in=[BatchStatus.QUEUED, BatchStatus.PENDING], cohort__status__in=[Status.QUEUED, Status.RUNNING]
    )


def queue_report(*, now=None) -> dict:
    """Each queue's consumers (live workers) and when a worker on it was last seen, and the batches
    waiting for a generation worker. ``ok`` is False when batches wait and no worker consumes the
    generation (``gpu``) queue."""
    now = now or timezone.now()
    fresh_since = now - stale_after()
    gpu = generation_queue()
    queues: dict[str, dict] = {name: {"consumers": 0, "workers": [], "last_seen": None} for name in (gpu, "default")}
    for worker in WorkerHeartbeat.objects.all():
        for name in worker.queues:
            entry = queues.setdefault(name, {"consumers": 0, "workers": [], "last_seen": None})
            if entry["last_seen"] is None or worker.last_seen_at > entry["last_seen"]:
                entry["last_seen"] = worker.last_seen_at
            if worker.last_seen_at >= fresh_since:
                entry["consumers"] += 1
                entry["workers"].append(worker.name)
    waiting = _waiting_batches()
    oldest = waiting.aggregate(since=Min(Coalesce(F("enqueued_at"), F("cohort__submitted_at"))))["since"]
    waiting_count = waiting.count()
    oldest_seconds = round(max((now - oldest).total_seconds(), 0.0), 1) if oldest else None
    for name, entry in queues.items():
        entry["last_seen"] = entry["last_seen"].isoformat() if entry["last_seen"] else None
        if name == gpu:
            entry["waiting_batches"] = waiting_count
            entry["oldest_waiting_seconds"] = oldest_seconds
    problem = None
    if waiting_count and not queues[gpu]["consumers"]:
        problem = f"{waiting_count} generation batch(es) wait and no worker consumes the {gpu!r} queue"
    report = {"ok": problem is None, "queues": queues, "generation_queue": gpu,
              "stale_after_seconds": stale_after().total_seconds()}
    if problem:
        report["problem"] = problem
    return report


def generation_worker_running(*, now=None) -> bool:
    gpu, fresh_since = generation_queue(), (now or timezone.now()) - stale_after()
    return any(gpu in w.queues for w in WorkerHeartbeat.objects.filter(last_seen_at__gte=fresh_since).only("queues"))


def cohort_notice(cohort: Cohort) -> str | None:
    """What an unfinished cohort waits for, in plain words, or None when work is under way."""
    if cohort.is_terminal or cohort.status == Status.DRAFT:
        return None
    verb = "continue" if cohort.status == Status.RUNNING else "start"
    unfinished = cohort.batches.exclude(status__in=GenerationBatch.TERMINAL)
    if unfinished.filter(status=BatchStatus.QUEUED, enqueued_at__isnull=True).exists():
        return BROKER_UNREACHABLE.format(verb=verb)
    if unfinished.exists() and not generation_worker_running():
        return NO_GPU_WORKER.format(verb=verb)
    return None
