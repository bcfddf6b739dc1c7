"""Queries of screening results: quarantine lists, per-cohort privacy summaries, index status."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from django.shortcuts import get_object_or_404

from . import sealing
from .models import ScreeningIndex, ScreeningRecord

HISTOGRAM_BINS = 20


def index_for(model_version) -> ScreeningIndex | None:
    return ScreeningIndex.objects.filter(model_version=model_version).first()


def quarantined_records(review: str | None = None):
    """Flagged images, newest first (privacy reviewers only: callers check staff status); ``review``
    narrows them to one review state (pending, confirmed, released)."""
    records = (ScreeningRecord.objects.filter(flagged=True).defer("fingerprint")
               .select_related("image", "cohort", "cohort__owner", "cohort__model_version", "index", "reviewed_by"))
    if review:
        records = records.filter(review_status=review)
    return records


def quarantined_record(pk) -> ScreeningRecord:
    """One flagged image's record, or 404 (privacy reviewers only)."""
    return get_object_or_404(quarantined_records(), pk=pk)


def verdicts_of(cohort):
    """Every screening record of a cohort, in image order (index, then attempt)."""
    return (ScreeningRecord.objects.filter(cohort=cohort).defer("fingerprint")
            .select_related("image", "reviewed_by").order_by("image__index", "image__attempt", "pk"))


# --- Seals ------------------------------------------------------------------------------------------


def sealed_ok(record: ScreeningRecord | None) -> bool:
    """True when ``record`` exists and its verdict and review state are exactly what the platform
    wrote (its seal matches). Call it before showing or exporting an image: a False means the record
    was edited outside the platform (or never sealed), so its verdict cannot be trusted."""
    return record is not None and sealing.seal_matches(record)


def cleared_for_release(image) -> bool:
    """Whether screening lets ``image`` (a SyntheticImage) be seen by its owner or exported: it has a
    screening record, the record's seal matches, and its verdict is *passed*."""
    record = ScreeningRecord.objects.filter(image_id=image.pk).defer("fingerprint").first()
    return bool(sealed_ok(record) and not record.flagged and record.decision == ScreeningRecord.Decision.PASSED)


def unreleasable_image_ids(images) -> set[int]:
    """Of ``images`` (a queryset or iterable of SyntheticImages or ids, e.g. exports'
    ``exportable_images(cohort)``), the ids screening does not clear: no record, a broken seal, or a
    verdict other than *passed*. Empty when every image may be shown or exported."""
    if hasattr(images, "values_list"):
        ids = set(images.values_list("pk", flat=True))
    else:
        ids = {getattr(i, "pk", i) for i in images}
    cleared = set()
    records = ScreeningRecord.objects.filter(image_id__in=ids).defer("fingerprint").order_by()
    for record in records.iterator(chunk_size=2000):
        if sealing.seal_matches(record) and not record.flagged and record.decision == ScreeningRecord.Decision.PASSED:
            cleared.add(record.image_id)
    return ids - cleared


@dataclass(frozen=True)
class SealProblem:
    record_id: int | None
    image_id: int | None
    cohort_id: int | None
    message: str

    def __str__(self):
        where = []
        if self.record_id is not None:
            where.append(f"record #{self.record_id}")
        if self.image_id is not None:
            where.append(f"image #{self.image_id}")
        if self.cohort_id is not None:
            where.append(f"cohort #{self.cohort_id}")
        return f"{', '.join(where)}: {self.message}"


def _review_events(record_ids=None) -> dict[int, dict]:
    """The newest review event (audit log) of each screening record: {record id: event facts}."""
    from cxr_platform.audit.models import AuditEvent

    from .services import REVIEW_ACTIONS

    events = AuditEvent.objects.filter(action__in=REVIEW_ACTIONS.values(),
                                       target_type=ScreeningRecord._meta.label_lower)
    if record_ids is not None:
        events = events.filter(target_id__in=[str(i) for i in record_ids])
    latest: dict[int, dict] = {}
    for sequence, target_id, actor_id, details in events.order_by("sequence").values_list(
            "sequence", "target_id", "actor_id", "details").iterator(chunk_size=2000):
        if str(target_id).isdigit():
            latest[int(target_id)] = {"sequence": sequence, "actor_id": actor_id, **(details or {})}
    return latest


def seal_problems(*, cohort=None, check_images: bool = True):
    """Yield a SealProblem for every screening record (of ``cohort``, default all) whose seal does not
    match its fields, or whose review state is not the one the audit log's newest review event for it
    sealed; and (``check_images``) for every image shown to its owner as passed whose record is
    missing or does not say *passed*."""
    from generation.models import SyntheticImage

    records = ScreeningRecord.objects.defer("fingerprint").order_by("pk")
    if cohort is not None:
        records = records.filter(cohort=cohort)
    events = _review_events(records.values_list("pk", flat=True) if cohort is not None else None)
    for record in records.iterator(chunk_size=2000):
        problem = _record_problem(record, events.get(record.pk))
        if problem:
            yield SealProblem(record.pk, record.image_id, record.cohort_id, problem)
    if not check_images:
        return
    passed = SyntheticImage.objects.filter(status=SyntheticImage.Status.PASSED)
    if cohort is not None:
        passed = passed.filter(cohort=cohort)
    rows = passed.order_by("pk").values_list("pk", "cohort_id", "screening__decision")
    for image_id, cohort_id, decision in rows.iterator(chunk_size=5000):
        if decision is None:
            yield SealProblem(None, image_id, cohort_id,
                              "is shown to its owner as passed, but has no screening record (deleted?).")
        elif decision != ScreeningRecord.Decision.PASSED:
            yield SealProblem(None, image_id, cohort_id,
                              f"is shown to its owner as passed, but its screening record says {decision}.")


def _record_problem(record: ScreeningRecord, event: dict | None) -> str:
    if not record.seal:
        return "has no seal: it was written outside the platform (or its seal was erased)."
    if not sealing.seal_matches(record):
        return (f"does not match its seal: its verdict (now {record.decision}, flagged="
                f"{str(record.flagged).lower()}, score {record.score:.4f}) or review state was edited outside the "
                "platform, or it was sealed with another AUDIT_HMAC_KEY.")
    if event is None:
        if record.review_status in (ScreeningRecord.Review.CONFIRMED, ScreeningRecord.Review.RELEASED):
            return f"is {record.review_status}, but the audit log has no review event for it."
        return ""
    if event.get("seal") != record.seal:
        return (f"its review state ({record.review_status or 'none'}) is not the one audit event "
                f"#{event['sequence']} sealed ({event.get('to')}): an earlier state was put back.")
    if record.reviewed_by_id is not None and event.get("actor_id") != record.reviewed_by_id:
        return (f"names reviewer #{record.reviewed_by_id}, but audit event #{event['sequence']} was written by "
                f"#{event.get('actor_id')}.")
    return ""


def privacy_summary(cohort) -> dict:
    """What screening found in one cohort, for the cohort page and exports.

    * ``closer_to_train_share``: of the released images, the share whose best match in the training
      set is closer than their best match in the holdout set (about 0.5 when the model does not
      copy its training data; much higher suggests memorization);
    * ``exact_match_share``: the share of generated images that were exact copies of a training
      image (must be 0; any such image was quarantined and never released);
    * ``histogram``: best-match scores of every screened image, with the threshold.
    """
    records = list(ScreeningRecord.objects.filter(cohort=cohort).values(
        "decision", "flagged", "score", "holdout_score", "exact_match", "threshold"))
    index = index_for(cohort.model_version)
    threshold = index.threshold if index else None
    edges = np.linspace(0.0, 1.0, HISTOGRAM_BINS + 1)
    scores = np.clip(np.array([r["score"] for r in records], dtype=float), 0.0, 1.0)
    counts = np.histogram(scores, bins=edges)[0] if len(scores) else np.zeros(HISTOGRAM_BINS, dtype=int)
    released = [r for r in records if not r["flagged"]]
    compared = [r for r in released if r["holdout_score"] is not None]
    closer = sum(1 for r in compared if r["score"] > r["holdout_score"])
    return {
        "screened": len(records),
        "passed": len(released),
        "flagged": len(records) - len(released),
        "flagged_memorized": sum(1 for r in records if r["decision"] == ScreeningRecord.Decision.MEMORIZED),
        "flagged_duplicate": sum(1 for r in records if r["decision"] == ScreeningRecord.Decision.DUPLICATE),
        "closer_to_train_share": (closer / len(compared)) if compared else None,
        "exact_match_share": (sum(1 for r in records if r["exact_match"]) / len(records)) if records else None,
        "released_exact_matches": sum(1 for r in released if r["exact_match"]),
        "threshold": threshold,
        "max_score": float(scores.max()) if len(scores) else None,
        "histogram": {"edges": [round(float(e), 3) for e in edges], "counts": [int(c) for c in counts]},
    }
