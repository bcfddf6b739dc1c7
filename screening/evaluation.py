"""How well screening works: near-copies of training images with realistic edits, measured.

``evaluate`` builds an index from the training folder (calibrated on the holdout), makes one
near-copy of every training image per edit family, screens it, and reports per family the
detection rate at the calibrated threshold, at 1% and 0.1% false positives (thresholds read off
the held-out scores) and the AUROC against the held-out scores; plus the held-out false-positive
rate of the calibrated threshold, measured leave-one-out (each held-out image judged by a
threshold calibrated without it), and the seconds per screened image. Beyond that shape: the share
of each family reported as an exact copy (after alignment), and for images that are not copies the
share "closer to training than to holdout" (``non_copies``, see :func:`closer_to_train`).
"""

from __future__ import annotations

import json
import tempfile
import time
import zlib
from pathlib import Path

import numpy as np

from . import distractors, edits, engine, imaging
from .calibration import region_threshold_for

MIMIC_TRAIN_IMAGES = 377_000


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


def leave_one_out_fpr(scores, target_fpr: float = engine.TARGET_FPR, region_scores=None) -> float:
    """The share of held-out images flagged by thresholds calibrated without them: by the whole-image
    stage, or (with ``region_scores``) by either stage, as screening decides."""
    scores = np.asarray(scores, float)
    region = None if region_scores is None else np.asarray(region_scores, float)
    flagged = 0
    for i in range(len(scores)):
        hit = scores[i] >= engine.threshold_for(np.delete(scores, i), target_fpr)["threshold"]
        if region is not None and len(region) == len(scores):
            cut = region_threshold_for(np.delete(region, i), target_fpr)["threshold"]
            hit = hit or region[i] >= cut
        flagged += bool(hit)
    return float(flagged / len(scores)) if len(scores) else float("nan")


def decision_margin(train_score, region_score, threshold: float, region_threshold: float | None):
    """How far above its threshold the more decisive stage is (>= 0: flagged). One number per image,
    so detection at a fixed false-positive rate measures the two stages together, as they decide."""
    margin = np.asarray(train_score, float) - threshold
    if region_threshold is not None:
        margin = np.maximum(margin, np.asarray(region_score, float) - region_threshold)
    return margin


def _as_png_roundtrip(image: np.ndarray) -> np.ndarray:
    """What a stored synthetic image looks like: 8-bit PNG, read back as screening reads it."""
    return imaging.load_gray(edits._to_pil(image))


def evaluate(train_dir, holdout_dir, *, directory=None, vae_dir=None, vae_size: int | None = None, limit: int | None = None, seed: int = 0,
             families: list[str] | None = None, progress: bool = True, log=lambda message: None,
             scale_factors: tuple = ()) -> dict:
    with tempfile.TemporaryDirectory(prefix="screening-eval-") as scratch:
        directory = Path(directory) if directory else Path(scratch) / "index"
        meta = engine.build_index(directory, train_dir, holdout_dir, progress=progress, log=log)
        screener = engine.Screener(directory)
        calibration = meta["calibration"]["stage_a"]
        if calibration.get("threshold") is None:
            raise ValueError("The evaluation needs held-out images (--holdout) to calibrate the threshold.")
        threshold = calibration["threshold"]
        region_threshold = (meta["calibration"].get("region") or {}).get("threshold")
        holdout_a = np.asarray(meta["calibration"]["stage_a_holdout_scores"], float)
        holdout_region = np.asarray(meta["calibration"].get("region_holdout_scores") or [], float)
        negatives = decision_margin(holdout_a, holdout_region if region_threshold is not None else holdout_a,
                                    threshold, region_threshold)
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
        all_train_paths = list(train_paths)
        holdout_root = Path(meta["holdout_root"])
        holdout_paths = json.loads((directory / "holdout_paths.json").read_text())
        if limit:
            train_paths = train_paths[:limit]
        scores = {name: [] for name in chosen}
        stage_scores = {name: [] for name in chosen}
        exact = {name: [] for name in chosen}
        timings = []
        from tqdm import tqdm

        bar = tqdm(total=len(train_paths) * len(chosen), desc="near-copies", disable=not progress, unit="img")
        for position, relative in enumerate(train_paths):
            original = np.nan_to_num(imaging.load_gray(train_root / relative), nan=0.0)
            for name, edit in chosen.items():
                # One random stream per (seed, image, family): adding a family changes no other's copies.
                rng = np.random.default_rng([seed, position, zlib.crc32(name.encode())])
                if name in edits.PARTIAL:
                    # The second image: the next training image, or a held-out patient's radiograph.
                    pool, root = ((all_train_paths, train_root) if edits.PARTIAL_OTHER[name] == "train"
                                  else (holdout_paths, holdout_root))
                    other_position = (position + 1 + int(rng.integers(0, max(1, len(pool) - 1)))) % len(pool)
                    if pool is all_train_paths and other_position == position:
                        other_position = (position + 1) % len(pool)
                    other = np.nan_to_num(imaging.load_gray(root / pool[other_position]), nan=0.0)
                    copy = _as_png_roundtrip(edit(original, rng, other))
                else:
                    copy = _as_png_roundtrip(edit(original, rng))
                started = time.perf_counter()
                analysis = screener.analyse(copy)
                timings.append(time.perf_counter() - started)
                region_score = 0.0 if analysis.region_score is None else analysis.region_score
                scores[name].append(float(decision_margin(analysis.train_score, region_score, threshold,
                                                          region_threshold)))
                stage_scores[name].append((analysis.train_score, region_score))
                exact[name].append(bool(analysis.exact and analysis.train_match.index == position))
                bar.update(1)
        bar.close()
        non_copies = closer_to_train(screener, limit=limit)
        scale = None
        if scale_factors:
            scale = index_size_check(
                [np.nan_to_num(imaging.load_gray(train_root / p), nan=0.0) for p in all_train_paths],
                [np.nan_to_num(imaging.load_gray(holdout_root / p), nan=0.0) for p in holdout_paths],
                meta["calibration"], tuple(scale_factors), seed)
    result = {"families": {}, "threshold": float(threshold),
              "holdout_fpr": leave_one_out_fpr(holdout_a, region_scores=holdout_region if region_threshold is not None
                                               else None),
              "holdout_fpr_stage_a": leave_one_out_fpr(holdout_a),
              "region_threshold": None if region_threshold is None else float(region_threshold),
              "holdout_margin": holdout_margin(meta["calibration"]),
              "holdout_n": int(len(holdout_a)),
              "index_size": scale,
              "seconds_per_image": float(np.mean(timings)) if timings else float("nan"),
              "exact_share": {name: float(np.mean(values)) for name, values in exact.items()},
              "non_copies": non_copies}
    result["by_stage"] = {}  # which stage flags each family at its calibrated threshold
    for name, values in scores.items():
        values = np.asarray(values, float)
        pairs = np.asarray(stage_scores[name], float).reshape(-1, 2)
        result["by_stage"][name] = {
            "whole_image_at_threshold": float(np.mean(pairs[:, 0] >= threshold)) if len(pairs) else float("nan"),
            "region_at_threshold": (float(np.mean(pairs[:, 1] >= region_threshold))
                                    if len(pairs) and region_threshold is not None else None)}
        result["families"][name] = {
            "n": int(len(values)),
            # Scores are decision margins (see decision_margin): 0 is the calibrated threshold.
            "tpr_at_threshold": float(np.mean(values >= 0)),
            "tpr_at_fpr_1pct": tpr_at_fpr(values, negatives, 0.01),
            "tpr_at_fpr_0_1pct": tpr_at_fpr(values, negatives, 0.001),
            "auroc": auroc(values, negatives),
        }
    return result


def index_size_check(train_arrays: list, holdout_arrays: list, calibration: dict, factors=(4, 16), seed: int = 0) -> dict:
    """How the held-out patients' best scores move as the index grows: the index is rebuilt with
    distractors (screening.distractors) to ``factor`` × its size, the held-out images are screened
    against it, and their highest score per stage is compared with the thresholds calibrated on the
    real index (1×). The trend of the highest score in log(index size) is extrapolated to
    MIMIC-CXR's 377,000 training images."""
    thresholds = {"stage_a": (calibration.get("stage_a") or {}).get("threshold"),
                  "region": (calibration.get("region") or {}).get("threshold")}
    base = len(train_arrays)
    rows = [{"factor": 1, "index_size": base,
             "stage_a_max": float(max(calibration["stage_a_holdout_scores"])),
             "region_max": float(max(calibration.get("region_holdout_scores") or [0.0])), "flagged": 0.0}]
    rows[0]["flagged"] = float(np.mean([a >= thresholds["stage_a"] or (thresholds["region"] is not None
                                                                        and r >= thresholds["region"])
                                        for a, r in zip(calibration["stage_a_holdout_scores"],
                                                        calibration.get("region_holdout_scores")
                                                        or [0.0] * len(calibration["stage_a_holdout_scores"]))]))
    rng = np.random.default_rng(seed)
    for factor in factors:
        with tempfile.TemporaryDirectory(prefix="screening-scale-") as scratch:
            meta = distractors.build_index(Path(scratch), train_arrays, holdout_arrays, factor * base, rng)
        a = np.asarray(meta["calibration"]["stage_a_holdout_scores"], float)
        r = np.asarray(meta["calibration"]["region_holdout_scores"], float)
        flagged = (a >= thresholds["stage_a"]) | ((r >= thresholds["region"]) if thresholds["region"] is not None
                                                 else np.zeros(len(a), bool))
        rows.append({"factor": factor, "index_size": factor * base, "stage_a_max": float(a.max()),
                     "region_max": float(r.max()), "flagged": float(flagged.mean())})
    extrapolated = {}
    sizes = np.log([row["index_size"] for row in rows])
    for stage in ("stage_a", "region"):
        if thresholds[stage] is None or len(rows) < 2:
            continue
        slope, intercept = np.polyfit(sizes, [row[f"{stage}_max"] for row in rows], 1)
        predicted = float(intercept + slope * np.log(MIMIC_TRAIN_IMAGES))
        extrapolated[stage] = {"slope_per_e_fold": float(slope), "highest_at_mimic_scale": predicted,
                               "threshold": float(thresholds[stage]),
                               "margin_at_mimic_scale": float(thresholds[stage] - predicted)}
    return {"rows": rows, "extrapolated_to": MIMIC_TRAIN_IMAGES, "extrapolated": extrapolated,
            "note": "distractors are augmented copies of the training images: less varied than real patients, "
                    "so this errs towards more false positives"}


def holdout_margin(calibration: dict) -> dict:
    """How far the calibrated thresholds sit above the highest-scoring held-out image of another
    patient, per stage: the room left before a non-copy is flagged."""
    out = {}
    for stage, scores_key in (("stage_a", "stage_a_holdout_scores"), ("region", "region_holdout_scores")):
        scores = calibration.get(scores_key) or []
        threshold = (calibration.get(stage) or {}).get("threshold")
        if scores and threshold is not None:
            out[stage] = {"threshold": float(threshold), "holdout_max": float(max(scores)),
                          "margin": float(threshold - max(scores)), "method": calibration[stage].get("method"),
                          "holdout_n": len(scores)}
    return out


def closer_to_train(screener, limit: int | None = None) -> dict:
    """For images that are not copies — each held-out radiograph, left out of the holdout it is compared
    with — the share "closer to the training set than to the holdout", as the privacy summary counts
    it: like with like (the best match among a training subset as large as the holdout compared,
    ``matched``), about 0.5 whatever the two sizes; and, for contrast, against the whole training
    set (``unmatched``), which grows towards 1 as the training set outgrows the holdout."""
    matched, unmatched = [], []
    for i in range(min(screener.holdout_count, limit or screener.holdout_count)):
        analysis = screener.analyse_thumbnail(screener.holdout_verify[i], exclude_holdout=i)
        if analysis.holdout_score is None or analysis.matched_train_score is None:
            continue
        matched.append(analysis.matched_train_score > analysis.holdout_score)
        unmatched.append(analysis.train_score > analysis.holdout_score)
    size = int(min(len(screener.matched_train), len(screener.matched_holdout))) - 1
    return {"n": len(matched), "closer_to_train_share": float(np.mean(matched)) if matched else float("nan"),
            "closer_to_train_share_unmatched": float(np.mean(unmatched)) if unmatched else float("nan"),
            "compared_with": f"{size} training and {size} held-out images (each held-out image left out)",
            "train_count": int(screener.meta["train_count"]), "holdout_count": int(screener.holdout_count)}


GROUP_TARGETS = {"photometric": ("tpr_at_fpr_0_1pct", 0.99), "vae": ("tpr_at_fpr_0_1pct", 0.99),
                 "orientation": ("tpr_at_threshold", 0.99), "annotation": ("tpr_at_threshold", 0.99),
                 "geometric": ("tpr_at_fpr_1pct", 0.95), "composite": ("tpr_at_fpr_1pct", 0.95),
                 "partial": ("tpr_at_fpr_1pct", 0.95)}


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
    n = result.get("holdout_n") or 0
    if n and n < 1 / engine.TARGET_FPR:
        lines.append(f"WARNING: {n} held-out images cannot support a {engine.TARGET_FPR:.1%} false-positive target: "
                     f"it needs at least {int(1 / engine.TARGET_FPR)} (about {int(3 / engine.TARGET_FPR)} for a 95% "
                     "upper bound with none flagged); the thresholds use the normal tail bound instead")
    scale = result.get("index_size") or {}
    for row in scale.get("rows", []):
        lines.append(f"index {row['index_size']:>7,} ({row['factor']:>2}x): highest held-out score whole-image "
                     f"{row['stage_a_max']:.4f}, region {row['region_max']:.4f}; held-out flagged {row['flagged']:.3f}")
    for stage, figures in scale.get("extrapolated", {}).items():
        lines.append(f"{stage} extrapolated to {scale['extrapolated_to']:,} images: highest held-out score "
                     f"{figures['highest_at_mimic_scale']:.4f} vs threshold {figures['threshold']:.4f} "
                     f"(margin {figures['margin_at_mimic_scale']:+.4f})"
                     + ("  WARNING: below zero, recalibrate against the full index" if figures['margin_at_mimic_scale'] < 0 else ""))
    for stage, margin in (result.get("holdout_margin") or {}).items():
        lines.append(f"{stage}: threshold {margin['threshold']:.4f}, highest held-out image {margin['holdout_max']:.4f}, "
                     f"margin {margin['margin']:.4f} (n={margin['holdout_n']}, {margin['method']})")
    if result.get("exact_share"):
        lines.append("reported as exact copies: " + ", ".join(f"{name} {share:.2f}" for name, share
                                                             in result["exact_share"].items() if share))
    non_copies = result.get("non_copies") or {}
    if non_copies.get("n"):
        lines.append(f"non-copies (held-out images, n={non_copies['n']}) closer to training than to holdout: "
                     f"{non_copies['closer_to_train_share']:.2f} like with like ({non_copies['compared_with']}); "
                     f"{non_copies['closer_to_train_share_unmatched']:.2f} against the whole training set")
    return lines
