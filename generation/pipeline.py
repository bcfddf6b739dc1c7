"""What one claimed batch does: generate its images, store the PNGs, screen them, regenerate the
flagged ones; with a heartbeat while it works and a cancel check between denoising steps."""

from __future__ import annotations

import logging
import threading
import time

from django.conf import settings
from django.core.files.base import ContentFile
from django.db import transaction
from django.utils import timezone

from cxr_platform.audit.services import record_event
from cxr_platform.png import picture_to_png

from .models import Cohort, GenerationBatch, SyntheticImage
from .sampling import image_seed
from .transitions import set_image_status

logger = logging.getLogger(__name__)

Status = Cohort.Status
BatchStatus = GenerationBatch.Status
ImageStatus = SyntheticImage.Status


class ScreeningUnavailable(RuntimeError):
    """Screening is not installed: images must not pass unscreened."""


def live_images(cohort):
    """A cohort's images but the quarantined (flagged) ones: one row per patient."""
    return SyntheticImage.objects.filter(cohort=cohort).exclude(status=ImageStatus.FLAGGED)


def images_in(batch: GenerationBatch):
    return live_images(batch.cohort_id).filter(index__gte=batch.first_index, index__lt=batch.stop_index)


class Checkpoint:
    """``should_cancel`` for the engine: reads the cohort's status at most every
    GENERATION_CANCEL_CHECK_SECONDS, not at every denoising step."""

    def __init__(self, batch: GenerationBatch):
        self.batch = batch
        self.interval = float(getattr(settings, "GENERATION_CANCEL_CHECK_SECONDS", 2.0))
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
    return min(max(float(getattr(settings, "GENERATION_STALE_BATCH_SECONDS", 300)) / 5, 0.5), 30.0)


class Heartbeat:
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


def store_png(image: SyntheticImage, picture) -> None:
    name = f"cohorts/{image.cohort_id}/{image.index:06d}-{image.attempt}.png"
    storage = image.image.storage
    if storage.exists(name):
        storage.delete(name)  # left by a crashed attempt; the same seed makes the same image
    image.image.save(name, ContentFile(picture_to_png(picture)), save=False)
    SyntheticImage.objects.filter(pk=image.pk).update(image=image.image.name)


def screen(images: list[SyntheticImage]):
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


def apply_verdicts(cohort: Cohort, images: list[SyntheticImage], verdicts) -> list[SyntheticImage]:
    """Pass or quarantine each image; returns the replacements to generate for flagged ones."""
    max_regenerations = int(getattr(settings, "SCREENING_MAX_REGENERATIONS", 3))
    replacements = []
    with transaction.atomic():
        passed = [i for i in images if not verdicts[i.pk].flagged]
        set_image_status(passed, ImageStatus.PASSED)
        for image in images:
            verdict = verdicts[image.pk]
            if not verdict.flagged:
                continue
            set_image_status([image], ImageStatus.FLAGGED, error=verdict.reason)
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
                set_image_status([replacement], ImageStatus.FAILED, error=reason)
                record_event("synthetic_image.failed", target=replacement,
                             details={"cohort": cohort.pk, "index": image.index, "reason": reason})
    return replacements


def generate_and_screen(batch: GenerationBatch) -> None:
    from .inference import GenerationCancelled, SamplingParams, get_engine

    cohort = batch.cohort
    engine = get_engine(cohort.model_version)
    params = SamplingParams.from_defaults(cohort.model_version.defaults, cohort.specification.get("sampling") or {})
    checkpoint = Checkpoint(batch)
    # Re-running a batch redoes only what did not pass; rows are never duplicated.
    todo = list(
        images_in(batch)
        .filter(status__in=[ImageStatus.PENDING, ImageStatus.GENERATING, ImageStatus.SCREENING])
        .order_by("index")
    )
    stale = [i for i in todo if i.status != ImageStatus.PENDING]
    set_image_status(stale, ImageStatus.PENDING)
    while todo:
        set_image_status(todo, ImageStatus.GENERATING)
        pictures = engine.generate([i.prompt for i in todo], [i.seed for i in todo], params, should_cancel=checkpoint)
        for image, picture in zip(todo, pictures, strict=True):
            store_png(image, picture)
        set_image_status(todo, ImageStatus.SCREENING)
        checkpoint.last = float("-inf")
        if checkpoint():  # cancelled while decoding: stop before screening
            raise GenerationCancelled()
        todo = apply_verdicts(cohort, todo, screen(todo))
