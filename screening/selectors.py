"""Queries of screening results: quarantine lists, per-cohort privacy summaries, index status."""

from __future__ import annotations

import numpy as np

from .models import ScreeningIndex, ScreeningRecord

HISTOGRAM_BINS = 20


def index_for(model_version) -> ScreeningIndex | None:
    return ScreeningIndex.objects.filter(model_version=model_version).first()


def quarantined_records():
    """Flagged images, newest first (privacy reviewers only: callers check staff status)."""
    return (ScreeningRecord.objects.filter(flagged=True)
            .select_related("image", "cohort", "cohort__owner", "cohort__model_version", "index"))


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
