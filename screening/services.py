"""Memorization screening: building a model version's index and screening synthetic images.

``screen_images`` is the contract the generation pipeline relies on (docs/architecture.md): it
returns one ``ScreeningVerdict`` per image and stores a ``ScreeningRecord`` for each. It refuses
(raises ``ScreeningIndexMissing``) when a model version has no ready, calibrated index, so an
image can never be released unscreened.
"""

from __future__ import annotations

import json
import logging
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from cxr_platform.audit.services import record_event

from . import engine, imaging, regions, sealing
from .models import ScreeningIndex, ScreeningRecord

logger = logging.getLogger(__name__)
Status = ScreeningIndex.Status
Decision = ScreeningRecord.Decision
Review = ScreeningRecord.Review


class ScreeningIndexMissing(RuntimeError):
    """The model version has no ready, calibrated screening index: nothing may be released."""


class InvalidTransition(ValueError):
    pass


@dataclass(frozen=True)
class ScreeningVerdict:
    image_id: int
    flagged: bool
    score: float
    reason: str
    decision: str = Decision.PASSED


def _setting(name, default):
    return getattr(settings, name, default)


def index_root() -> Path:
    configured = _setting("SCREENING_INDEX_ROOT", None)
    return Path(configured) if configured else Path(settings.MEDIA_ROOT) / "screening-index"


def default_directory(model_version) -> Path:
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in f"{model_version.name}-{model_version.version}")
    return index_root() / f"{model_version.pk}-{safe}"


# --- Stage B configuration ---------------------------------------------------------------------

_encoders: dict = {}
_encoders_lock = threading.Lock()


def configured_encoder() -> engine.StageBEncoder | None:
    """The Stage B encoder named by SCREENING_STAGE_B_WEIGHTS / _SHA256, or None when not configured."""
    path = _setting("SCREENING_STAGE_B_WEIGHTS", "")
    if not path:
        return None
    sha = _setting("SCREENING_STAGE_B_SHA256", "")
    size = int(_setting("SCREENING_STAGE_B_INPUT_SIZE", 224))
    key = (str(path), sha, size)
    with _encoders_lock:
        if key not in _encoders:
            _encoders[key] = engine.StageBEncoder(path, sha, size)
        return _encoders[key]


# --- Index lifecycle ------------------------------------------------------------------------------


def _transition(index: ScreeningIndex, status: str, *, actor=None, details=None, **fields) -> None:
    if index.pk and status not in ScreeningIndex.TRANSITIONS[index.status]:
        raise InvalidTransition(f"A screening index cannot go from {index.status} to {status}.")
    previous = index.status
    index.status = status
    for name, value in fields.items():
        setattr(index, name, value)
    index.save()
    record_event(f"screening_index.{status}", actor=actor, target=index.model_version,
                 details={"from": previous, "index": index.pk, **(details or {})})


def _apply_meta(index: ScreeningIndex, meta: dict) -> dict:
    calibration = meta.get("calibration") or {}
    stage_a = calibration.get("stage_a") or {}
    stage_b = calibration.get("stage_b") or {}
    return {
        "train_count": meta["train_count"],
        "holdout_count": meta["holdout_count"],
        "threshold": stage_a.get("threshold"),
        "stage_b_threshold": stage_b.get("threshold"),
        "stage_b_sha256": (meta.get("stage_b") or {}).get("sha256", ""),
        "calibration": {
            "stage_a": {k: v for k, v in stage_a.items()},
            "stage_b": stage_b or None,
            "skipped_count": meta.get("skipped_count", 0),
            "skipped": meta.get("skipped", [])[:20],
            "report": _short_report(meta.get("report")),
            "build_seconds": meta.get("build_seconds"),
        },
        "train_source": meta.get("train_root", ""),
        "holdout_source": meta.get("holdout_root", ""),
    }


def _short_report(report: dict | None) -> dict | None:
    """The build report (engine.report_lines) for the database: counts, and the first skipped files."""
    if not report:
        return None
    return {**report, "skipped_files": (report.get("skipped_files") or [])[:20]}


def build_screening_index(model_version, train_dir, holdout_dir=None, *, actor=None, directory=None,
                          progress: bool = False, workers: int = 1, subjects_file=None,
                          log=lambda message: None) -> ScreeningIndex:
    """Describe the training (and holdout) radiographs, calibrate and attach the index to the model
    version. Resumable: an interrupted build continues from its finished chunks. ``subjects_file``:
    a CSV ``path,subject_id[,study_id]`` naming each image's patient (see screening.patients)."""
    directory = Path(directory) if directory else default_directory(model_version)
    directory.mkdir(parents=True, exist_ok=True)
    with transaction.atomic():
        index = ScreeningIndex.objects.select_for_update().filter(model_version=model_version).first()
        if index is None:
            index = ScreeningIndex(model_version=model_version, directory=str(directory))
            index.save()
            record_event("screening_index.building", actor=actor, target=model_version,
                         details={"index": index.pk, "train": str(train_dir), "holdout": str(holdout_dir or "")})
        else:
            _transition(index, Status.BUILDING, actor=actor, directory=str(directory), error="",
                        details={"train": str(train_dir), "holdout": str(holdout_dir or "")})
    try:
        meta = engine.build_index(directory, train_dir, holdout_dir, encoder=configured_encoder(),
                                  progress=progress, workers=workers, subjects_file=subjects_file, log=log)
    except Exception as exc:
        with transaction.atomic():
            index.refresh_from_db()
            _transition(index, Status.FAILED, actor=actor, error=f"{type(exc).__name__}: {exc}"[:2000],
                        details={"error": str(exc)[:500]})
        raise
    _forget(directory)
    with transaction.atomic():
        index.refresh_from_db()
        fields = _apply_meta(index, meta)
        _transition(index, Status.READY, actor=actor, built_by=actor, built_at=timezone.now(),
                    details={"train_count": fields["train_count"], "holdout_count": fields["holdout_count"],
                             "threshold": fields["threshold"]}, **fields)
    return index


def attach_index(model_version, directory, *, actor=None) -> ScreeningIndex:
    """Attach an already built index directory (e.g. built by another run) to a model version."""
    directory = Path(directory)
    meta_path = directory / "meta.json"
    if not meta_path.exists():
        raise engine.IndexNotReady(f"{directory} holds no finished screening index (no meta.json).")
    meta = json.loads(meta_path.read_text())
    with transaction.atomic():
        index = ScreeningIndex.objects.select_for_update().filter(model_version=model_version).first()
        if index is None:
            index = ScreeningIndex(model_version=model_version, directory=str(directory))
            index.save()
        elif index.status != Status.BUILDING:
            _transition(index, Status.BUILDING, actor=actor, directory=str(directory))
        fields = _apply_meta(index, meta)
        index.directory = str(directory)
        _transition(index, Status.READY, actor=actor, built_by=actor, built_at=timezone.now(),
                    details={"attached": str(directory), "threshold": fields["threshold"]}, **fields)
    return index


# --- Loaded screeners, one per index directory per process ------------------------------------------

_screeners: dict = {}
_screeners_lock = threading.Lock()


def _forget(directory) -> None:
    with _screeners_lock:
        for key in [k for k in _screeners if k[0] == str(directory)]:
            del _screeners[key]


def get_screener(index: ScreeningIndex) -> engine.Screener:
    meta_path = Path(index.directory) / "meta.json"
    try:
        stamp = meta_path.stat().st_mtime_ns
    except FileNotFoundError:
        raise ScreeningIndexMissing(
            f"The screening index files of {index.model_version} are missing from {index.directory}; "
            "rebuild the index. No image is released until then."
        ) from None
    key = (index.directory, stamp, index.stage_b_sha256)
    with _screeners_lock:
        screener = _screeners.get(key)
        if screener is None:
            encoder = configured_encoder() if index.stage_b_sha256 else None
            if index.stage_b_sha256 and encoder is None:
                raise ScreeningIndexMissing(
                    f"The screening index of {index.model_version} uses Stage B, but SCREENING_STAGE_B_WEIGHTS "
                    "is not configured; no image is released until it is."
                )
            try:
                screener = engine.Screener(index.directory, encoder=encoder)
            except (engine.IndexNotReady, engine.StageBUnavailable) as exc:
                raise ScreeningIndexMissing(str(exc)) from exc
            for stale in [k for k in _screeners if k[0] == index.directory]:
                del _screeners[stale]
            _screeners[key] = screener
        return screener


def ready_index(model_version) -> ScreeningIndex:
    index = ScreeningIndex.objects.filter(model_version=model_version).first()
    how = ("Build one with `python manage.py build_screening_index --model-version "
           f"{model_version.pk} --train DIR --holdout DIR`.")
    if index is None:
        raise ScreeningIndexMissing(
            f"Model version {model_version} has no memorization-screening index, so none of its images can be "
            f"released. {how}"
        )
    if index.status != Status.READY:
        raise ScreeningIndexMissing(
            f"The screening index of model version {model_version} is {index.status}, not ready, so none of its "
            f"images can be released. {how}"
        )
    if index.threshold is None:
        raise ScreeningIndexMissing(
            f"The screening index of model version {model_version} was built without holdout images, so it has "
            f"no calibrated threshold and cannot screen. {how}"
        )
    return index


# --- Screening -------------------------------------------------------------------------------------


def fingerprint(thumb: np.ndarray) -> np.ndarray:
    """Standardised 32×32 thumbnail used to find near-duplicates within a cohort."""
    return imaging.standardise(imaging.small_thumbnail(thumb)).ravel().astype(np.float32)


def _duplicate_threshold() -> float:
    return float(_setting("SCREENING_DUPLICATE_THRESHOLD", 0.95))


def _earlier_fingerprints(cohort_id: int, exclude: set[int]):
    rows = (ScreeningRecord.objects.filter(cohort_id=cohort_id, decision=Decision.PASSED)
            .exclude(image_id__in=exclude).values_list("image_id", "fingerprint"))
    ids, vectors = [], []
    for image_id, blob in rows:
        if blob:
            ids.append(image_id)
            vectors.append(np.frombuffer(bytes(blob), dtype=np.float16).astype(np.float32))
    return ids, vectors


def _read(image) -> np.ndarray:
    if not image.image:
        raise imaging.UnreadableImage(f"synthetic image {image.pk} has no stored file")
    with image.image.open("rb") as handle:
        return imaging.load_gray(handle.read())


def screen_images(images) -> list:
    """Screen freshly generated images against their model version's training index.

    Returns one ``ScreeningVerdict`` per image (same order). An image is flagged when it is a
    near-copy of a training image (Stage A fused score at or above the calibrated threshold, an
    exact match, or Stage B at or above its own threshold) or a near-duplicate of an image of the
    same cohort that passed earlier (the later one is flagged). Raises ``ScreeningIndexMissing``
    if a model version has no ready, calibrated index.
    """
    images = list(images)
    verdicts: dict[int, ScreeningVerdict] = {}
    by_cohort: dict[int, list] = {}
    for image in images:
        by_cohort.setdefault(image.cohort_id, []).append(image)
    for cohort_id, members in by_cohort.items():
        cohort = members[0].cohort
        index = ready_index(cohort.model_version)
        screener = get_screener(index)
        members_ids = {m.pk for m in members}
        own_ids, own_vectors = [], []  # this call's images that passed so far
        for image in sorted(members, key=lambda i: (i.index, i.attempt)):
            verdicts[image.pk] = _screen_one(image, cohort, index, screener, members_ids, own_ids, own_vectors)
    return [verdicts[image.pk] for image in images]


# Namespace of the PostgreSQL advisory lock that serialises duplicate decisions per cohort.
_DUPLICATE_LOCK_CLASS = 7306


def _lock_cohort_duplicates(cohort_id: int) -> None:
    """Two batches of one cohort may be screened at once (two GPU workers): without this each could
    pass one image of a near-identical pair, neither having seen the other's record yet."""
    from django.db import connection

    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s, %s)", [_DUPLICATE_LOCK_CLASS, cohort_id])


def _screen_one(image, cohort, index, screener, members_ids, own_ids, own_vectors) -> ScreeningVerdict:
    array = _read(image)
    thumb = imaging.query_thumbnail(array)
    # The slow part, outside the lock.
    analysis = screener.analyse_thumbnail(thumb, array=array, region=regions.region_thumbnail(array))
    vector = fingerprint(thumb)
    with transaction.atomic():
        _lock_cohort_duplicates(cohort.pk)
        other_ids, other_vectors = _earlier_fingerprints(cohort.pk, members_ids)
        verdict, flagged = _decide_and_record(image, cohort, index, screener, analysis, vector,
                                              other_ids + own_ids, other_vectors + own_vectors)
    if not flagged:
        own_ids.append(image.pk)
        own_vectors.append(vector)
    return verdict


@dataclass(frozen=True)
class TrainingVerdict:
    """What the training-set comparison alone decides for one analysed image (no cohort needed)."""

    decision: str
    reason: str
    best_index: int | None
    stage_b_flag: bool

    @property
    def flagged(self) -> bool:
        return self.decision != Decision.PASSED


def training_verdict(analysis, threshold: float, stage_b_threshold: float | None = None,
                     region_threshold: float | None = None) -> TrainingVerdict:
    """Decide from an ``engine.Analysis`` whether an image is a near-copy of a training image: an
    exact match, a Stage A fused score at or above ``threshold``, a region (partial copy) score at or
    above ``region_threshold``, or a Stage B score at or above its own threshold. Used for generated images (with the within-cohort duplicate check on top) and by
    ``manage.py screen_images`` for any file."""
    threshold = float(threshold)
    match = analysis.train_match
    stage_b_flag = (
        analysis.stage_b_score is not None and stage_b_threshold is not None
        and analysis.stage_b_score >= stage_b_threshold
    )
    region_flag = (
        getattr(analysis, "region_score", None) is not None and region_threshold is not None
        and analysis.region_score >= region_threshold
    )
    if analysis.exact:
        decision = Decision.MEMORIZED
        reason = ("Identical to a training radiograph (an exact copy of a real patient's image); quarantined for "
                  "privacy review.")
    elif analysis.train_score >= threshold:
        decision = Decision.MEMORIZED
        reason = (f"Too similar to a training radiograph (similarity {analysis.train_score:.3f}, limit "
                  f"{threshold:.3f}): it may reproduce a real patient's image; quarantined for privacy review.")
    elif region_flag:
        decision = Decision.MEMORIZED
        region = analysis.region_match
        reason = (f"Part of it (about {region.area:.0%} of the image) copies part of a training radiograph "
                  f"(region similarity {analysis.region_score:.3f}, limit {region_threshold:.3f}): it may "
                  "reproduce a real patient's image; quarantined for privacy review.")
    elif stage_b_flag:
        decision = Decision.MEMORIZED
        reason = (f"The learned encoder (Stage B) finds it too close to a training radiograph (similarity "
                  f"{analysis.stage_b_score:.3f}, limit {stage_b_threshold:.3f}); quarantined for privacy "
                  "review.")
    else:
        decision = Decision.PASSED
        reason = (f"No training radiograph is close (highest similarity {analysis.train_score:.3f}, limit "
                  f"{threshold:.3f}).")
    best_index = match.index if match else None
    if region_flag and not (analysis.exact or analysis.train_score >= threshold):
        best_index = analysis.region_match.index
    elif stage_b_flag and analysis.stage_b_index is not None and not (analysis.exact or analysis.train_score >= threshold):
        best_index = analysis.stage_b_index
    return TrainingVerdict(decision=decision, reason=reason, best_index=best_index, stage_b_flag=stage_b_flag)


def _decide_and_record(image, cohort, index, screener, analysis, vector, earlier_ids, earlier_vectors):
    threshold = float(index.threshold)
    duplicate_of, duplicate_similarity = None, None
    if earlier_vectors:
        similarities = np.stack(earlier_vectors) @ vector / vector.size
        position = int(similarities.argmax())
        duplicate_similarity = float(similarities[position])
        if duplicate_similarity >= _duplicate_threshold():
            duplicate_of = earlier_ids[position]
    found = training_verdict(analysis, threshold, index.stage_b_threshold, screener.region_threshold)
    decision, reason = found.decision, found.reason
    if decision == Decision.PASSED and duplicate_of is not None:
        decision = Decision.DUPLICATE
        reason = (f"Nearly identical to another image of this cohort (correlation {duplicate_similarity:.3f}); "
                  "the later one is replaced.")
    flagged = decision != Decision.PASSED
    best_index = found.best_index
    record_fields = {
        "cohort": cohort,
        "index": index,
        "decision": decision,
        "flagged": flagged,
        "score": float(analysis.train_score),
        "threshold": threshold,
        "holdout_score": analysis.holdout_score,
        "best_match": best_index,
        "best_match_path": _train_relative_path(screener, best_index),
        "exact_match": bool(analysis.exact),
        "stage_scores": analysis.stage_scores,
        "duplicate_of_id": duplicate_of,
        "duplicate_similarity": duplicate_similarity,
        "fingerprint": vector.astype(np.float16).tobytes(),
        "reason": reason,
        "seconds": round(analysis.seconds, 4),
        # A fresh verdict starts a fresh review: flagged images wait for a privacy reviewer.
        "review_status": Review.PENDING if flagged else Review.NOT_NEEDED,
        "review_reason": "",
        "reviewed_by": None,
        "reviewed_at": None,
    }
    record, _ = ScreeningRecord.objects.update_or_create(image=image, defaults=record_fields)
    sealing.seal(record)  # same transaction as the verdict (see _screen_one)
    verdict = ScreeningVerdict(image_id=image.pk, flagged=flagged, score=float(analysis.train_score), reason=reason,
                               decision=decision)
    return verdict, flagged


def _train_relative_path(screener: engine.Screener, position) -> str:
    if position is None:
        return ""
    try:
        return str(screener.train_relative_path(position))
    except (IndexError, OSError, ValueError):
        return ""


def record_quarantine_view(*, user, record: ScreeningRecord, what: str, request=None) -> None:
    """Audit a privacy reviewer's look at a quarantined image or its matched training image."""
    record_event(f"screening.{what}_viewed", actor=user, target=record.image, request=request,
                 details={"cohort": record.cohort_id, "record": record.pk, "decision": record.decision,
                          "best_match": record.best_match})


# --- Privacy review of quarantined images --------------------------------------------------------

MAX_REVIEW_REASON = 2000
REVIEW_ACTIONS = {Review.CONFIRMED: "screening.quarantine_confirmed", Review.RELEASED: "screening.quarantine_released"}


class ReviewRefused(Exception):
    """A confirm or release that the rules do not allow; ``status`` is the HTTP status to answer."""

    def __init__(self, message: str, status: int = 409):
        super().__init__(message)
        self.message = message
        self.status = status


def may_review(user) -> bool:
    """Privacy reviewers are active staff. (Pages and the API also require that the request passed
    two-factor authentication: access.decorators.reviewer_is_verified.)"""
    return bool(user is not None and getattr(user, "is_authenticated", False) and user.is_active and user.is_staff)


def confirm_quarantined(record: ScreeningRecord, *, actor, reason: str = "", request=None) -> ScreeningRecord:
    """A privacy reviewer confirms that a quarantined image is (or may be) a copy of a patient's image:
    it stays quarantined for good. Allowed from pending and from released."""
    return _review(record, actor=actor, target=Review.CONFIRMED, reason=reason, request=request)


def release_quarantined(record: ScreeningRecord, *, actor, reason: str, request=None) -> ScreeningRecord:
    """A privacy reviewer judges a quarantined image a false positive (it reproduces no patient's image),
    with a required reason. The image stays out of its cohort (its patient was already regenerated with
    a fresh seed); the record leaves the open quarantine and counts as a reviewed false positive. Never
    for an exact copy of a training radiograph, and never by the owner of the cohort."""
    return _review(record, actor=actor, target=Review.RELEASED, reason=reason, request=request)


def _review(record, *, actor, target: str, reason: str, request=None) -> ScreeningRecord:
    if not may_review(actor):
        raise ReviewRefused("Only privacy reviewers (staff) confirm or release quarantined images.", status=403)
    reason = (reason or "").strip()
    if target == Review.RELEASED and not reason:
        raise ReviewRefused("Say why the image is released: a reason is required.", status=400)
    if len(reason) > MAX_REVIEW_REASON:
        raise ReviewRefused(f"The reason is longer than {MAX_REVIEW_REASON:,} characters.", status=400)
    with transaction.atomic():
        record = ScreeningRecord.objects.select_for_update().defer("fingerprint").get(pk=record.pk)
        if not record.flagged:
            raise ReviewRefused("This image passed screening; only quarantined images are reviewed.")
        if not sealing.seal_matches(record):
            raise ReviewRefused(
                "This screening record does not match its seal: it was changed outside the platform. No review is "
                "recorded on it; run `python manage.py verify_screening_seals` and investigate.")
        previous = record.review_status or Review.PENDING
        if target not in ScreeningRecord.REVIEW_TRANSITIONS.get(previous, set()):
            raise ReviewRefused(f"This image is already {ScreeningRecord.Review(previous).label.lower()}; it cannot "
                                f"be {target} now.")
        if target == Review.RELEASED:
            if record.exact_match:
                raise ReviewRefused("An exact copy of a training radiograph is a patient's image: it cannot be "
                                    "released.")
            owner_id = record.cohort.owner_id
            if owner_id == actor.pk:
                raise ReviewRefused("Nobody releases an image of their own cohort; another privacy reviewer must.",
                                    status=403)
        record.review_status = target
        record.review_reason = reason
        record.reviewed_by = actor
        record.reviewed_at = timezone.now()
        record.save(update_fields=["review_status", "review_reason", "reviewed_by", "reviewed_at"])
        sealing.seal(record)
        record_event(REVIEW_ACTIONS[target], actor=actor, target=record, request=request, details={
            "record": record.pk, "image": record.image_id, "cohort": record.cohort_id, "from": previous,
            "to": target, "reason": reason, "decision": record.decision, "score": record.score,
            "threshold": record.threshold, "best_match": record.best_match, "seal": record.seal,
        })
    return record
