"""Cohort generation: planning, submission with quota, batch execution with screening, cancellation.

State changes live here; Celery tasks, views, the API and the ``generate_cohort``
command only call these functions.

Lifecycles:

* Cohort: draft → queued → running → completed / failed / cancelled (``COHORT_TRANSITIONS``).
* GenerationBatch: pending → queued → running → completed / failed / cancelled, with
  running → pending for a retry and running → queued when the reconciler re-enqueues a
  batch whose worker died (``BATCH_TRANSITIONS``).
* SyntheticImage: pending → generating → screening → passed / flagged, or → failed.
  A flagged image stays quarantined; its patient gets a new row (next attempt, fresh seed).
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.core.files.base import ContentFile
from django.db import transaction
from django.db.models import Count, Q, Sum
from django.utils import timezone

from access import capabilities as caps
from access.policy import access_policy, require_capability
from cxr_platform.audit.services import record_event
from cxr_platform.png import picture_to_png
from registry.models import ModelVersion

from .models import Cohort, GenerationBatch, SyntheticImage
from .sampling import Patient, check_template, distribution, image_seed, sample_patients
from .specification import CohortSpec, parse_specification

logger = logging.getLogger(__name__)

MAX_SEED = 2**63 - 1
MAX_COHORT_SIZE = 1_000_000
QUOTA_WINDOW = timedelta(hours=24)
PREVIEW_PROMPTS = 10

Status = Cohort.Status
BatchStatus = GenerationBatch.Status
ImageStatus = SyntheticImage.Status

# (from, to) -> audit action. One table per lifecycle; nothing else changes a status.
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
    (BatchStatus.RUNNING, BatchStatus.RUNNING): "generation_batch.reclaimed",  # its worker died
    (BatchStatus.RUNNING, BatchStatus.COMPLETED): None,
    (BatchStatus.RUNNING, BatchStatus.PENDING): "generation_batch.retry",
    (BatchStatus.RUNNING, BatchStatus.QUEUED): "generation_batch.requeued",
    (BatchStatus.PENDING, BatchStatus.FAILED): "generation_batch.failed",
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
    # A crashed or failed attempt starts over with the same seed.
    (ImageStatus.GENERATING, ImageStatus.PENDING),
    (ImageStatus.SCREENING, ImageStatus.PENDING),
    (ImageStatus.PENDING, ImageStatus.FAILED),
    (ImageStatus.GENERATING, ImageStatus.FAILED),
    (ImageStatus.SCREENING, ImageStatus.FAILED),
}


class InvalidTransition(ValidationError):
    pass


class QuotaExceeded(ValidationError):
    pass


class ScreeningUnavailable(RuntimeError):
    """Screening is not installed: images must not pass unscreened."""


def _setting(name: str, default):
    return getattr(settings, name, default)


# --- Transitions ---------------------------------------------------------------------------


def _transition_cohort(cohort: Cohort, target: str, *, actor, details: dict | None = None) -> None:
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


def _transition_batch(batch: GenerationBatch, target: str, *, error: str | None = None, **fields) -> None:
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
                "error": batch.error,
            },
        )


def _set_image_status(images: list[SyntheticImage], target: str, *, error: str = "") -> None:
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


# --- Planning and submission ---------------------------------------------------------------


@dataclass(frozen=True)
class CohortPlan:
    """Everything a submission will create, checked; what the preview shows."""

    user: object
    name: str
    model_version: ModelVersion
    size: int
    seed: int
    spec: CohortSpec
    sampling: dict
    patients: list[Patient]
    quota: int
    quota_used: int

    @property
    def quota_left(self) -> int:
        return max(self.quota - self.quota_used, 0)

    def preview(self) -> dict:
        cells: dict[str, dict[str, int]] = {}
        for p in self.patients:
            row = cells.setdefault(p.demographics["sex"], {})
            row[p.demographics["race"]] = row.get(p.demographics["race"], 0) + 1
        return {
            "name": self.name,
            "model_version": {"id": self.model_version.pk, "name": str(self.model_version)},
            "size": self.size,
            "seed": self.seed,
            "cells": cells,
            "counts": distribution(self.patients),
            "first_prompts": [p.prompt for p in self.patients[:PREVIEW_PROMPTS]],
            "sampling": self.sampling,
            "quota": {"daily": self.quota, "used": self.quota_used, "this_cohort": self.size,
                      "left_after": self.quota_left - self.size},
        }


def default_model_version(user) -> ModelVersion | None:
    """The newest active model version this user may generate with."""
    return (
        access_policy(user)
        .model_version_filter(caps.GENERATE)
        .filter(status=ModelVersion.Status.ACTIVE)
        .order_by("-registered_at")
        .first()
    )


def images_reserved(user, *, now=None) -> int:
    since = (now or timezone.now()) - QUOTA_WINDOW
    used = Cohort.objects.filter(owner=user, submitted_at__gte=since).aggregate(total=Sum("reserved_images"))
    return used["total"] or 0


def _resolve_model_version(user, value) -> ModelVersion:
    if value in (None, ""):
        model_version = default_model_version(user)
        if model_version is None:
            raise ValidationError({"model_version": ["No active model version is available to you."]})
        return model_version
    try:
        model_version = ModelVersion.objects.get(pk=int(value))
    except (ValueError, TypeError, ModelVersion.DoesNotExist):
        raise ValidationError({"model_version": [f"There is no model version {value!r}."]}) from None
    if model_version.status == ModelVersion.Status.WITHDRAWN:
        raise ValidationError({"model_version": [f"{model_version} has been withdrawn."]})
    return model_version


def _int_field(data: dict, name: str, *, minimum: int, maximum: int, default=None) -> int:
    value = data.get(name, default)
    if value in (None, ""):
        raise ValidationError({name: ["This field is required."]})
    try:
        number = int(value)
        if isinstance(value, float) and number != value:
            raise ValueError
    except (TypeError, ValueError):
        raise ValidationError({name: ["Must be a whole number."]}) from None
    if not minimum <= number <= maximum:
        raise ValidationError({name: [f"Must be between {minimum:,} and {maximum:,}."]})
    return number


def check_prompt_lengths(model_version: ModelVersion, prompts) -> None:
    """Refuse prompts the text encoder would truncate (never truncate silently)."""
    from .inference import get_engine

    engine = get_engine(model_version)
    limit = engine.max_prompt_tokens
    for prompt in sorted(set(prompts)):
        tokens = engine.count_tokens(prompt)
        if tokens > limit:
            raise ValidationError(
                {
                    "specification": [
                        f"This prompt has {tokens} tokens, more than the text encoder's limit of {limit}; "
                        f"shorten the impression: {prompt!r}"
                    ]
                }
            )


def plan_cohort(*, user, data: dict) -> CohortPlan:
    """Check a request (the JSON of the API's create call) and sample its patients. Writes nothing."""
    from .inference import SamplingParams

    if not isinstance(data, dict):
        raise ValidationError({"specification": ["The request must be a JSON object."]})
    require_capability(user, caps.GENERATE)
    model_version = _resolve_model_version(user, data.get("model_version"))
    policy = require_capability(user, caps.GENERATE, model_version)
    name = str(data.get("name") or "").strip()
    if not name:
        raise ValidationError({"name": ["Give the cohort a name."]})
    if len(name) > 200:
        raise ValidationError({"name": ["At most 200 characters."]})
    quota, used = policy.daily_image_quota, images_reserved(user)
    left = max(quota - used, 0)
    if left < 1:
        raise QuotaExceeded({"size": [f"You have used all {quota:,} images of your daily quota."]})
    size = _int_field(data, "size", minimum=1, maximum=MAX_COHORT_SIZE)
    if size > left:
        raise QuotaExceeded(
            {"size": [f"{size:,} images is more than the {left:,} left of your daily quota of {quota:,}."]}
        )
    seed = data.get("seed")
    seed = secrets.randbelow(2**31) if seed in (None, "") else _int_field(data, "seed", minimum=0, maximum=MAX_SEED)
    defaults = model_version.defaults
    try:
        check_template(defaults["prompt_template"])
    except ValueError as exc:
        raise ValidationError({"model_version": [str(exc)]}) from None
    spec = parse_specification(data, defaults)
    patients = sample_patients(spec, defaults, size, seed)
    check_prompt_lengths(model_version, [p.prompt for p in patients])
    sampling = SamplingParams.from_defaults(defaults, spec.sampling).as_dict()
    return CohortPlan(
        user=user, name=name, model_version=model_version, size=size, seed=seed, spec=spec,
        sampling=sampling, patients=patients, quota=quota, quota_used=used,
    )


def _reserve_quota(user, size: int) -> None:
    # Locking the user's row serialises their submissions, so two of them cannot both
    # count the same remaining quota.
    get_user_model().objects.select_for_update().filter(pk=user.pk).first()
    quota, used = access_policy(user).daily_image_quota, images_reserved(user)
    if used + size > quota:
        raise QuotaExceeded(
            {
                "size": [
                    f"This cohort needs {size:,} images but only {max(quota - used, 0):,} of your daily quota of "
                    f"{quota:,} are left (images count for 24 hours from submission)."
                ]
            }
        )


def submit_plan(plan: CohortPlan, *, enqueue: bool = True) -> Cohort:
    """Create the cohort, its images and batches, reserve quota and queue the work, atomically."""
    user = plan.user
    with transaction.atomic():
        _reserve_quota(user, plan.size)
        cohort = Cohort.objects.create(
            owner=user,
            name=plan.name,
            model_version=plan.model_version,
            specification=plan.spec.as_dict(),
            seed=plan.seed,
            size=plan.size,
            reserved_images=plan.size,
        )
        SyntheticImage.objects.bulk_create(
            [
                SyntheticImage(
                    cohort=cohort,
                    index=p.index,
                    seed=image_seed(plan.seed, p.index),
                    prompt=p.prompt,
                    demographics=p.demographics,
                    findings=p.findings,
                    impression=p.impression,
                    sampling=plan.sampling,
                )
                for p in plan.patients
            ],
            batch_size=1000,
        )
        batch_size = max(1, int(settings.GENERATION_BATCH_SIZE))
        batches = GenerationBatch.objects.bulk_create(
            [
                GenerationBatch(cohort=cohort, first_index=start, stop_index=min(start + batch_size, plan.size))
                for start in range(0, plan.size, batch_size)
            ]
        )
        _transition_cohort(
            cohort, Status.QUEUED, actor=user,
            details={"model_version": str(plan.model_version), "seed": plan.seed, "batches": len(batches)},
        )
        if enqueue:
            _enqueue(batches)
    return cohort


def request_cohort(*, user, data: dict, enqueue: bool = True) -> Cohort:
    """Plan and submit in one call: what the API, the form and the command use."""
    return submit_plan(plan_cohort(user=user, data=data), enqueue=enqueue)


def _enqueue(batches: list[GenerationBatch], *, countdown: float = 0) -> None:
    for batch in batches:
        _transition_batch(batch, BatchStatus.QUEUED, task_id=uuid.uuid4().hex, enqueued_at=timezone.now())
    jobs = [(b.pk, b.task_id) for b in batches]

    def send():
        from .tasks import generate_batch

        for batch_id, task_id in jobs:
            generate_batch.apply_async(args=[batch_id], task_id=task_id, countdown=countdown or None)

    # Only after commit: a worker must find the rows the message points at.
    transaction.on_commit(send)


# --- Cancellation --------------------------------------------------------------------------


def cancel_cohort(*, cohort: Cohort, actor) -> Cohort:
    """Stop a cohort: pending batches are dropped, the running one stops at its next checkpoint."""
    with transaction.atomic():
        cohort = Cohort.objects.select_for_update().get(pk=cohort.pk)
        if cohort.is_terminal:
            raise InvalidTransition(f"This cohort is already {cohort.get_status_display().lower()}.")
        waiting = list(cohort.batches.filter(status__in=[BatchStatus.PENDING, BatchStatus.QUEUED]))
        for batch in waiting:
            _transition_batch(batch, BatchStatus.CANCELLED)
        _release_unused_quota(cohort)
        _transition_cohort(cohort, Status.CANCELLED, actor=actor, details={"batches_dropped": len(waiting)})
    return cohort


def _release_unused_quota(cohort: Cohort) -> None:
    """A cancelled cohort keeps on its owner's quota only what was, or is still being, made."""
    cohort.reserved_images = _live_images(cohort).filter(
        status__in=[ImageStatus.PASSED, ImageStatus.GENERATING, ImageStatus.SCREENING]
    ).count()
    cohort.save(update_fields=["reserved_images", "updated_at"])


# --- Running batches -----------------------------------------------------------------------

SKIPPED, COMPLETED, RETRY, FAILED, CANCELLED = "skipped", "completed", "retry", "failed", "cancelled"


def _live_images(cohort):
    return SyntheticImage.objects.filter(cohort=cohort).exclude(status=ImageStatus.FLAGGED)


def _stale_before():
    return timezone.now() - timedelta(seconds=_setting("GENERATION_STALE_BATCH_SECONDS", 300))


def _claim_batch(batch_id: int) -> GenerationBatch | None:
    cohort_id = GenerationBatch.objects.filter(pk=batch_id).values_list("cohort_id", flat=True).first()
    if cohort_id is None:
        return None
    with transaction.atomic():
        # Cohort before batch, the same order as cancel_cohort, so the two never deadlock.
        cohort = Cohort.objects.select_for_update(of=("self",)).select_related("model_version", "owner").get(pk=cohort_id)
        batch = GenerationBatch.objects.select_for_update().get(pk=batch_id)
        batch.cohort = cohort
        if batch.status in GenerationBatch.TERMINAL:
            return None
        if cohort.is_terminal:
            _transition_batch(batch, BatchStatus.CANCELLED)
            return None
        if batch.status == BatchStatus.RUNNING and batch.heartbeat_at and batch.heartbeat_at >= _stale_before():
            return None  # a live worker has it; this is a duplicate delivery
        if not access_policy(cohort.owner).can(caps.GENERATE, cohort.model_version):
            _fail_cohort(cohort, "The owner's access to generation with this model version has ended.")
            _transition_batch(batch, BatchStatus.CANCELLED)
            return None
        _transition_batch(batch, BatchStatus.RUNNING, attempts=batch.attempts + 1, started_at=timezone.now())
        if cohort.status == Status.QUEUED:
            _transition_cohort(cohort, Status.RUNNING, actor=None)
    return batch


class _Checkpoint:
    """``should_cancel`` for the engine: reads the cohort's status at most every
    GENERATION_CANCEL_CHECK_SECONDS, not at every denoising step."""

    def __init__(self, batch: GenerationBatch):
        self.batch = batch
        self.interval = float(_setting("GENERATION_CANCEL_CHECK_SECONDS", 2.0))
        self.last = float("-inf")

    def __call__(self) -> bool:
        now = time.monotonic()
        if now - self.last < self.interval:
            return False
        self.last = now
        status = Cohort.objects.filter(pk=self.batch.cohort_id).values_list("status", flat=True).first()
        return status == Status.CANCELLED


def heartbeat_interval() -> float:
    """How often a running batch's heartbeat is written: well inside the stale threshold."""
    return min(max(float(_setting("GENERATION_STALE_BATCH_SECONDS", 300)) / 5, 0.5), 30.0)


class _Heartbeat:
    """Beats a running batch's ``heartbeat_at`` from a background thread for as long as this
    process works on it (model loading, denoising, storing, screening). A killed worker stops
    beating, and the reconciler re-enqueues its batch once the heartbeat is stale."""

    def __init__(self, batch_id: int):
        self.batch_id = batch_id
        self.interval = heartbeat_interval()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"heartbeat-batch-{batch_id}", daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc_info):
        self._stop.set()
        self._thread.join(timeout=30)

    def beat(self) -> None:
        # SKIP LOCKED: never wait on a transaction that holds the row (it beats for us).
        with transaction.atomic():
            locked = (
                GenerationBatch.objects.select_for_update(skip_locked=True)
                .filter(pk=self.batch_id, status=BatchStatus.RUNNING)
                .values_list("pk", flat=True)
            )
            if list(locked):
                GenerationBatch.objects.filter(pk=self.batch_id).update(heartbeat_at=timezone.now())

    def _run(self) -> None:
        from django.db import connection

        try:
            while not self._stop.wait(self.interval):
                try:
                    self.beat()
                except Exception:  # a missed beat is not fatal; the next one may succeed
                    logger.warning("Heartbeat of batch %s failed", self.batch_id, exc_info=True)
        finally:
            connection.close()


def _store_png(image: SyntheticImage, picture) -> None:
    name = f"cohorts/{image.cohort_id}/{image.index:06d}-{image.attempt}.png"
    storage = image.image.storage
    if storage.exists(name):
        storage.delete(name)  # left by a crashed attempt; the same seed makes the same image
    image.image.save(name, ContentFile(picture_to_png(picture)), save=False)
    SyntheticImage.objects.filter(pk=image.pk).update(image=image.image.name)


def _screen(images: list[SyntheticImage]):
    try:
        from screening.services import screen_images
    except ImportError as exc:
        if exc.name != "screening.services" and "screen_images" not in str(exc):
            raise
        raise ScreeningUnavailable(
            "Memorization screening (screening.services.screen_images) is not available, so no image can be "
            "released."
        ) from exc
    verdicts = {v.image_id: v for v in screen_images(images)}
    missing = [i for i in images if i.pk not in verdicts]
    if missing:
        raise ScreeningUnavailable(f"Screening returned no verdict for {len(missing)} image(s).")
    return verdicts


def _apply_verdicts(cohort: Cohort, images: list[SyntheticImage], verdicts) -> list[SyntheticImage]:
    """Pass or quarantine each image; returns the replacements to generate for flagged ones."""
    max_regenerations = int(_setting("SCREENING_MAX_REGENERATIONS", 3))
    replacements = []
    with transaction.atomic():
        passed = [i for i in images if not verdicts[i.pk].flagged]
        _set_image_status(passed, ImageStatus.PASSED)
        for image in images:
            verdict = verdicts[image.pk]
            if not verdict.flagged:
                continue
            _set_image_status([image], ImageStatus.FLAGGED, error=verdict.reason)
            record_event(
                "synthetic_image.flagged",
                target=image,
                details={"cohort": cohort.pk, "index": image.index, "attempt": image.attempt,
                         "score": verdict.score, "reason": verdict.reason},
            )
            replacement = SyntheticImage.objects.create(
                cohort=cohort,
                index=image.index,
                attempt=image.attempt + 1,
                seed=image_seed(cohort.seed, image.index, image.attempt + 1),
                prompt=image.prompt,
                demographics=image.demographics,
                findings=image.findings,
                impression=image.impression,
                sampling=image.sampling,
            )
            if image.attempt < max_regenerations:
                replacements.append(replacement)
            else:
                reason = f"Flagged by memorization screening on all {image.attempt + 1} attempts."
                _set_image_status([replacement], ImageStatus.FAILED, error=reason)
                record_event("synthetic_image.failed", target=replacement,
                             details={"cohort": cohort.pk, "index": image.index, "reason": reason})
    return replacements


def _generate_and_screen(batch: GenerationBatch) -> None:
    from .inference import GenerationCancelled, SamplingParams, get_engine

    cohort = batch.cohort
    engine = get_engine(cohort.model_version)
    params = SamplingParams.from_defaults(cohort.model_version.defaults, cohort.specification.get("sampling") or {})
    checkpoint = _Checkpoint(batch)
    # Re-running a batch redoes only what did not pass; rows are never duplicated.
    todo = list(
        _images_in(batch)
        .filter(status__in=[ImageStatus.PENDING, ImageStatus.GENERATING, ImageStatus.SCREENING])
        .order_by("index")
    )
    stale = [i for i in todo if i.status != ImageStatus.PENDING]
    _set_image_status(stale, ImageStatus.PENDING)
    while todo:
        _set_image_status(todo, ImageStatus.GENERATING)
        pictures = engine.generate([i.prompt for i in todo], [i.seed for i in todo], params, should_cancel=checkpoint)
        for image, picture in zip(todo, pictures, strict=True):
            _store_png(image, picture)
        _set_image_status(todo, ImageStatus.SCREENING)
        checkpoint.last = float("-inf")
        if checkpoint():  # cancelled while decoding: stop before screening
            raise GenerationCancelled()
        todo = _apply_verdicts(cohort, todo, _screen(todo))


def _images_in(batch: GenerationBatch):
    return _live_images(batch.cohort_id).filter(index__gte=batch.first_index, index__lt=batch.stop_index)


def _after_interruption(batch: GenerationBatch, target: str, *, error: str = "") -> None:
    with transaction.atomic():
        batch = GenerationBatch.objects.select_for_update(of=("self",)).get(pk=batch.pk)
        if target == BatchStatus.FAILED:
            unfinished = list(_images_in(batch).exclude(status__in=[ImageStatus.PASSED, ImageStatus.FAILED]))
            _set_image_status(unfinished, ImageStatus.FAILED, error=error)
        else:
            in_progress = list(_images_in(batch).filter(status__in=[ImageStatus.GENERATING, ImageStatus.SCREENING]))
            _set_image_status(in_progress, ImageStatus.PENDING)
        _transition_batch(batch, target, error=error)
    if target == BatchStatus.FAILED:
        finish_cohort_if_done(batch.cohort_id)
    elif target == BatchStatus.CANCELLED:
        with transaction.atomic():
            # The images this batch was making when the cohort was cancelled are not made after all.
            _release_unused_quota(Cohort.objects.select_for_update().get(pk=batch.cohort_id))


def run_batch(batch_id: int) -> str:
    """Generate, store and screen one batch; safe to call again for the same batch at any time."""
    from .inference import GenerationCancelled

    batch = _claim_batch(batch_id)
    if batch is None:
        return SKIPPED
    with _Heartbeat(batch.pk):
        try:
            _generate_and_screen(batch)
        except GenerationCancelled:
            _after_interruption(batch, BatchStatus.CANCELLED)
            return CANCELLED
        except Exception as exc:  # any failure of a batch is recorded, then retried or reported
            logger.exception("Batch %s failed (attempt %s)", batch, batch.attempts)
            error = f"{type(exc).__name__}: {exc}"[:2000]
            if batch.attempts < int(_setting("GENERATION_BATCH_MAX_ATTEMPTS", 3)):
                _after_interruption(batch, BatchStatus.PENDING, error=error)
                return RETRY
            _after_interruption(batch, BatchStatus.FAILED, error=error)
            return FAILED
    with transaction.atomic():
        batch = GenerationBatch.objects.select_for_update().get(pk=batch.pk)
        if batch.status == BatchStatus.RUNNING:
            _transition_batch(batch, BatchStatus.COMPLETED, error="")
    finish_cohort_if_done(batch.cohort_id)
    return COMPLETED


def retry_batch(batch_id: int) -> None:
    """Queue a batch again after a failed attempt, backing off with each attempt."""
    with transaction.atomic():
        batch = GenerationBatch.objects.select_for_update().get(pk=batch_id)
        if batch.status == BatchStatus.PENDING:
            base = float(_setting("GENERATION_RETRY_BACKOFF_SECONDS", 5))
            _enqueue([batch], countdown=base * 2 ** (batch.attempts - 1))


def _fail_cohort(cohort: Cohort, reason: str) -> None:
    cohort.error = reason
    cohort.save(update_fields=["error", "updated_at"])
    _transition_cohort(cohort, Status.FAILED, actor=None, details={"reason": reason})


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
        if passed == cohort.size:
            _transition_cohort(cohort, Status.COMPLETED, actor=None, details={"passed": passed, "flagged": flagged})
        else:
            _fail_cohort(cohort, f"{failed:,} of {cohort.size:,} images failed; the others passed screening.")


def run_cohort_inline(cohort: Cohort, *, on_progress=None) -> Cohort:
    """Run every batch in this process, in order (``generate_cohort --inline``, tests, demos)."""
    for batch_id in cohort.batches.order_by("first_index").values_list("pk", flat=True):
        while run_batch(batch_id) == RETRY:
            pass
        if on_progress:
            on_progress()
    cohort.refresh_from_db()
    return cohort


# --- Crash recovery ------------------------------------------------------------------------


def reconcile_batches() -> int:
    """Re-enqueue batches whose worker died (no heartbeat for GENERATION_STALE_BATCH_SECONDS)."""
    stuck = GenerationBatch.objects.filter(
        Q(status=BatchStatus.RUNNING) | Q(status=BatchStatus.PENDING),
        Q(heartbeat_at__lt=_stale_before()) | Q(heartbeat_at__isnull=True),
        cohort__status__in=[Status.QUEUED, Status.RUNNING],
    ).values_list("pk", flat=True)
    requeued = 0
    for batch_id in stuck:
        with transaction.atomic():
            batch = GenerationBatch.objects.select_for_update().get(pk=batch_id)
            if batch.status not in (BatchStatus.RUNNING, BatchStatus.PENDING):
                continue
            if batch.heartbeat_at and batch.heartbeat_at >= _stale_before():
                continue
            _enqueue([batch])
            requeued += 1
    if requeued:
        logger.warning("Re-enqueued %s stuck generation batch(es)", requeued)
    return requeued
