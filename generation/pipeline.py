"""What one claimed batch does: generate its images, store the PNGs, run the checks (memorization
screening, then quality control) and regenerate what fails them; with a heartbeat while it works and a
cancel check between denoising steps."""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field

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
    """A cohort's images but those set aside (flagged by screening, rejected by quality control): at most
    one row per patient (none for a patient dropped by quality control)."""
    return SyntheticImage.objects.filter(cohort=cohort).exclude(status__in=SyntheticImage.SET_ASIDE)


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


# --- Checks every generated image goes through, and regeneration ------------------------------------
#
# One mechanism for every check (memorization screening, quality control): an image that fails a check
# is set aside and its patient generated again with a fresh seed, up to the check's number of attempts;
# after the last one the check's policy applies. Checks run in order and each sees only the images the
# ones before it let through. Screening comes first so that the privacy summary covers every image the
# model made, whatever its quality.

PASS, REGENERATE, DELIVER_FLAGGED, DROP, FAIL = "pass", "regenerate", "deliver_flagged", "drop", "fail"


@dataclass
class Outcome:
    """What one check found for one image."""

    failed: bool
    reason: str = ""
    data: object = None  # the check's own record of it (a screening verdict, quality-control results)


@dataclass
class Round:
    """The images of one generation call and what it produced, as the checks see them."""

    images: list[SyntheticImage]
    pictures: dict = field(default_factory=dict)  # image pk -> the decoded PIL image
    seconds_per_image: float = 0.0  # the call's wall time (on the worker's GPU, when it has one) per image


class ImageCheck:
    """A check with regeneration: ``evaluate`` decides (writing only its own records), ``record`` writes
    what the pipeline did about it, in the transaction that changes the image's status."""

    name = "check"
    rejected_status = ImageStatus.FLAGGED

    def max_attempts(self, cohort: Cohort) -> int:
        raise NotImplementedError

    def after_last_attempt(self, cohort: Cohort) -> str:
        return FAIL

    def evaluate(self, cohort: Cohort, images: list[SyntheticImage], round_: Round) -> dict[int, Outcome]:
        raise NotImplementedError

    def record(self, cohort: Cohort, image: SyntheticImage, outcome: Outcome, decision: str) -> None:
        pass

    def exhausted_reason(self, image: SyntheticImage) -> str:
        return f"Failed the {self.name} check on all {image.attempt + 1} attempts."


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


class ScreeningCheck(ImageCheck):
    """Memorization screening: a flagged image is quarantined for privacy review."""

    name = "screening"
    rejected_status = ImageStatus.FLAGGED

    def max_attempts(self, cohort):
        return max(0, int(getattr(settings, "SCREENING_MAX_REGENERATIONS", 3))) + 1

    def evaluate(self, cohort, images, round_):
        return {pk: Outcome(failed=v.flagged, reason=v.reason, data=v) for pk, v in screen(images).items()}

    def record(self, cohort, image, outcome, decision):
        if decision != PASS:
            record_event(
                "synthetic_image.flagged",
                target=image,
                details={"cohort": cohort.pk, "index": image.index, "attempt": image.attempt,
                         "score": outcome.data.score, "reason": outcome.reason},
            )

    def exhausted_reason(self, image):
        return f"Flagged by memorization screening on all {image.attempt + 1} attempts."


def image_checks(cohort: Cohort) -> list[ImageCheck]:
    """The checks of a cohort's images, in the order they run."""
    from quality.services import QualityCheck

    return [ScreeningCheck(), QualityCheck()]


def _replacement(cohort: Cohort, image: SyntheticImage) -> SyntheticImage:
    return SyntheticImage.objects.create(
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


def decide(check: ImageCheck, cohort: Cohort, image: SyntheticImage, outcome: Outcome) -> str:
    if not outcome.failed:
        return PASS
    if image.attempt + 1 < check.max_attempts(cohort):
        return REGENERATE
    return check.after_last_attempt(cohort)


def apply_checks(cohort: Cohort, round_: Round, checks: list[ImageCheck]) -> list[SyntheticImage]:
    """Run ``checks`` on a round's images; pass the images that get through all of them and return the
    replacements to generate for those set aside."""
    remaining, replacements = list(round_.images), []
    for check in checks:
        if not remaining:
            break
        outcomes = check.evaluate(cohort, remaining, round_)
        missing = [i for i in remaining if i.pk not in outcomes]
        if missing:
            raise RuntimeError(f"The {check.name} check returned no verdict for {len(missing)} image(s).")
        survivors = []
        with transaction.atomic():
            for image in remaining:
                outcome = outcomes[image.pk]
                decision = decide(check, cohort, image, outcome)
                if decision in (PASS, DELIVER_FLAGGED):
                    survivors.append(image)
                else:
                    set_image_status([image], check.rejected_status, error=outcome.reason)
                check.record(cohort, image, outcome, decision)  # after the status: its audit event sees it
                if decision == REGENERATE:
                    replacements.append(_replacement(cohort, image))
                elif decision == FAIL:
                    reason = check.exhausted_reason(image)
                    replacement = _replacement(cohort, image)
                    set_image_status([replacement], ImageStatus.FAILED, error=reason)
                    record_event("synthetic_image.failed", target=replacement,
                                 details={"cohort": cohort.pk, "index": image.index, "reason": reason})
                elif decision == DROP:
                    record_event("synthetic_image.dropped", target=image,
                                 details={"cohort": cohort.pk, "index": image.index, "attempt": image.attempt,
                                          "check": check.name, "reason": outcome.reason})
        remaining = survivors
    set_image_status(remaining, ImageStatus.PASSED)
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
    checks = image_checks(cohort)
    while todo:
        set_image_status(todo, ImageStatus.GENERATING)
        started = time.monotonic()
        pictures = engine.generate([i.prompt for i in todo], [i.seed for i in todo], params, should_cancel=checkpoint)
        seconds = (time.monotonic() - started) / len(todo)
        for image, picture in zip(todo, pictures, strict=True):
            store_png(image, picture)
        set_image_status(todo, ImageStatus.SCREENING)
        checkpoint.last = float("-inf")
        if checkpoint():  # cancelled while decoding: stop before screening
            raise GenerationCancelled()
        round_ = Round(todo, {i.pk: p for i, p in zip(todo, pictures)}, seconds)
        todo = apply_checks(cohort, round_, checks)
