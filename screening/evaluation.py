"""How well screening works: near-copies of training images with realistic edits, measured.

``evaluate`` builds an index from the training folder (calibrated on the holdout), makes one
near-copy of every training image per edit family, screens it, and reports per family the
detection rate at the calibrated threshold, at 1% and 0.1% false positives (thresholds read off
the held-out scores) and the AUROC against the held-out scores; plus the held-out false-positive
rate of the calibrated threshold, measured leave-one-out (each held-out image judged by a
threshold calibrated without it), and the seconds per screened image.
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

import numpy as np

from . import edits, engine, imaging


def auroc(positives, negatives) -> float:
    positives, negatives = np.asarray(positives, float), np.asarray(negatives, float)
    if not len(positives) or not len(negatives):
        return float("nan")
    greater = (positives[:, None] > negatives[None, :]).sum()
    ties = (positives[:, None] == negatives[None, :]).sum()
    return float((greater + 0.5 * ties) / (len(positives) * len(negatives)))


def tpr_at_fpr(positives, negatives, fpr: float) -> float:
    """Detection rate at the strictest threshold that flags at most ``fpr`` of the negatives."""
    negatives = np.sort(np.asarray(negatives, float))
    allowed = int(np.floor(fpr * len(negatives)))
    cut = negatives[len(negatives) - 1 - allowed]
    return float(np.mean(np.asarray(positives, float) > cut))


def leave_one_out_fpr(scores, target_fpr: float = engine.TARGET_FPR) -> float:
    scores = np.asarray(scores, float)
    flagged = 0
    for i in range(len(scores)):
        rest = np.delete(scores, i)
        flagged += scores[i] >= engine.threshold_for(rest, target_fpr)["threshold"]
    return float(flagged / len(scores)) if len(scores) else float("nan")


def _as_png_roundtrip(image: np.ndarray) -> np.ndarray:
    """What a stored synthetic image looks like: 8-bit PNG, read back as screening reads it."""
    return imaging.load_gray(edits._to_pil(image))


def evaluate(train_dir, holdout_dir, *, directory=None, vae_dir=None, vae_size: int | None = None, limit: int | None = None, seed: int = 0,
             families: list[str] | None = None, progress: bool = True, log=lambda message: None) -> dict:
    with tempfile.TemporaryDirectory(prefix="screening-eval-") as scratch:
        directory = Path(directory) if directory else Path(scratch) / "index"
        meta = engine.build_index(directory, train_dir, holdout_dir, progress=progress, log=log)
        screener = engine.Screener(directory)
        calibration = meta["calibration"]["stage_a"]
        if calibration.get("threshold") is None:
            raise ValueError("The evaluation needs held-out images (--holdout) to calibrate the threshold.")
        threshold = calibration["threshold"]
        negatives = np.asarray(meta["calibration"]["stage_a_holdout_scores"], float)
        chosen = dict(edits.FAMILIES)
        if vae_dir:
            chosen["vae_roundtrip"] = edits.VaeRoundTrip(vae_dir, size=vae_size)
        if families:
            unknown = set(families) - set(chosen)
            if unknown:
                raise ValueError(f"Unknown edit families: {', '.join(sorted(unknown))}")
            chosen = {k: v for k, v in chosen.items() if k in families}
        train_root = Path(meta["train_root"])
        train_paths = json.loads((directory / "train_paths.json").read_text())
        if limit:
            train_paths = train_paths[:limit]
        rng = np.random.default_rng(seed)
        scores = {name: [] for name in chosen}
        timings = []
        from tqdm import tqdm

        bar = tqdm(total=len(train_paths) * len(chosen), desc="near-copies", disable=not progress, unit="img")
        for position, relative in enumerate(train_paths):
            original = np.nan_to_num(imaging.load_gray(train_root / relative), nan=0.0)
            for name, edit in chosen.items():
                copy = _as_png_roundtrip(edit(original, rng))
                started = time.perf_counter()
                analysis = screener.analyse(copy)
                timings.append(time.perf_counter() - started)
                scores[name].append(analysis.train_score)
                bar.update(1)
        bar.close()
    result = {"families": {}, "holdout_fpr": leave_one_out_fpr(negatives), "threshold": float(threshold),
              "seconds_per_image": float(np.mean(timings)) if timings else float("nan")}
    for name, values in scores.items():
        values = np.asarray(values, float)
        result["families"][name] = {
            "n": int(len(values)),
            "tpr_at_threshold": float(np.mean(values >= threshold)),
            "tpr_at_fpr_1pct": tpr_at_fpr(values, negatives, 0.01),
            "tpr_at_fpr_0_1pct": tpr_at_fpr(values, negatives, 0.001),
            "auroc": auroc(values, negatives),
        }
    return result


GROUP_TARGETS = {"photometric": ("tpr_at_fpr_0_1pct", 0.99), "vae": ("tpr_at_fpr_0_1pct", 0.99),
                 "geometric": ("tpr_at_fpr_1pct", 0.95), "composite": ("tpr_at_fpr_1pct", 0.95)}


def target_report(result: dict) -> list[str]:
    lines = []
    for name, figures in result["families"].items():
        group = edits.GROUPS.get(name, "composite")
        metric, target = GROUP_TARGETS[group]
        verdict = "meets" if figures[metric] >= target else "MISSES"
        lines.append(f"{name:20s} {group:11s} n={figures['n']:4d} at-threshold={figures['tpr_at_threshold']:.3f} "
                     f"@1%={figures['tpr_at_fpr_1pct']:.3f} @0.1%={figures['tpr_at_fpr_0_1pct']:.3f} "
                     f"AUROC={figures['auroc']:.4f}  {verdict} {metric} >= {target}")
    fpr = result["holdout_fpr"]
    lines.append(f"holdout false-positive rate (leave-one-out) {fpr:.4f}: "
                 f"{'meets' if fpr <= 0.01 else 'MISSES'} <= 0.01 (aim 0.001)")
    lines.append(f"threshold {result['threshold']:.4f}; {result['seconds_per_image']:.3f} s per image")
    return lines
