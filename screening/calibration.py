"""Calibrating a screening index: the decision threshold from held-out radiographs of other patients."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np

from .search import TARGET_FPR, Screener


# The region score never counts as a copy below this, whatever a small holdout suggests: half a
# window correlation of 0.9 plus a matched area of a tenth of the image. Chance matches between
# other patients' radiographs reached 0.48 on the 60 public images (docs/screening.md); copies of a
# quarter of the image scored 0.565 and more.
REGION_FLOOR = 0.55


def _progress(total: int, description: str, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=total, desc=description, unit="img", disable=not enabled, file=sys.stderr, dynamic_ncols=True)


def threshold_for(scores: np.ndarray, target_fpr: float = TARGET_FPR) -> dict:
    """The decision threshold that flags at most ``target_fpr`` of held-out scores.

    With fewer than 1/target_fpr held-out images the empirical quantile is the maximum, which
    says little about the tail; the threshold is then the larger of that maximum and a normal
    tail bound (mean + z·sd), so a small holdout errs towards flagging, never towards release."""
    scores = np.sort(np.asarray(scores, dtype=np.float64))
    n = len(scores)
    if n == 0:
        return {"threshold": None, "method": "none", "holdout_n": 0}
    from scipy.stats import norm

    k = int(math.floor(target_fpr * n))  # how many held-out images may lie above
    empirical = float(scores[n - 1 - k]) if k < n else float(scores[-1])
    tail = float(scores.mean() + norm.isf(target_fpr) * scores.std(ddof=1)) if n > 2 else empirical
    threshold = max(empirical, tail) + 1e-6
    return {
        "threshold": threshold,
        "method": "max(empirical quantile, normal tail bound)" if n * target_fpr < 10 else "empirical quantile",
        "empirical_quantile": empirical,
        "normal_tail_bound": tail,
        "holdout_n": n,
        "holdout_mean": float(scores.mean()),
        "holdout_sd": float(scores.std(ddof=1)) if n > 1 else 0.0,
        "holdout_max": float(scores[-1]),
        "holdout_flagged": int((scores >= threshold).sum()),
        "holdout_fpr": float((scores >= threshold).mean()),
        "target_fpr": target_fpr,
    }


def region_threshold_for(scores: np.ndarray, target_fpr: float = TARGET_FPR) -> dict:
    """The region stage's threshold: :func:`threshold_for`, never below REGION_FLOOR (the method then
    says so). Calibration and the leave-one-out false-positive rate of evaluations both use it, so
    the floor is applied the same way in both."""
    scores = np.asarray(scores, dtype=np.float64)
    region = threshold_for(scores, target_fpr)
    if region["threshold"] is not None and region["threshold"] < REGION_FLOOR:
        region.update(threshold=REGION_FLOOR, method=f"{region['method']}, raised to the floor {REGION_FLOOR}",
                      holdout_flagged=int((scores >= REGION_FLOOR).sum()),
                      holdout_fpr=float(np.mean(scores >= REGION_FLOOR)))
    return region


def calibrate(directory: Path, meta: dict, *, encoder=None, progress=True) -> dict:
    screener = Screener(directory, meta=meta, encoder=encoder, calibrating=True)
    holdout_n = meta["holdout_count"]
    if not holdout_n:
        return {"stage_a": {"threshold": None, "method": "none", "holdout_n": 0}, "stage_b": None,
                "note": "No holdout images: screening refuses to run until the index is rebuilt with --holdout."}
    verify = screener.holdout_verify
    bar = _progress(holdout_n, "calibrating", progress)
    scores, region_scores = [], []
    for i in range(holdout_n):
        result = screener.analyse_thumbnail(verify[i], region=np.asarray(screener.holdout_region[i], np.float64))
        scores.append(result.train_score)
        # No region match at all (a featureless image) scores 0; -1 would widen the spread that the
        # normal tail bound reads, and raise the threshold for everyone.
        region_scores.append(0.0 if result.region_score is None else result.region_score)
        bar.update(1)
    bar.close()
    region = region_threshold_for(np.array(region_scores))
    calibration = {"stage_a": threshold_for(np.array(scores)), "stage_a_holdout_scores": [round(s, 5) for s in scores],
                   "region": region,
                   "region_holdout_scores": [round(s, 5) for s in region_scores]}
    if encoder is not None and (directory / "stage_b_holdout.npy").exists():
        holdout_b = np.load(directory / "stage_b_holdout.npy")
        train_b = np.load(directory / "stage_b_train.npy")
        b_scores = (holdout_b @ train_b.T).max(axis=1)
        calibration["stage_b"] = threshold_for(b_scores)
    else:
        calibration["stage_b"] = None
    return calibration
