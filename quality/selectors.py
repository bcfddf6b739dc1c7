"""The quality card of a cohort: what quality control found, per subgroup, and what it cost.

Pass rates are counted two ways: per attempt (each image quality control judged: a generator that
fails more often for one group shows it here) and per patient (what was delivered: passing, delivered
flagged after the last attempt, or dropped). Figures that need what the platform does not have (a
registered feature encoder for fidelity and diversity) are listed as unavailable with the reason,
never estimated.
"""

from __future__ import annotations

from collections import defaultdict

from django.conf import settings

from generation.models import Cohort, SyntheticImage

from . import checks as builtin
from .models import QCModel, QualityVerdict

Decision = QualityVerdict.Decision
AGE_BANDS = ((18, 39), (40, 59), (60, 79), (80, 91))
BUILTIN_CHECKS = ("finite", "blank", "saturated", "dynamic_range", "structure", "near_duplicate")
NO_ENCODER = (
    "No feature encoder is registered with model version {version}, so there are no features to compare with "
    "real radiographs: the Fréchet distance, precision / recall, density / coverage and intra-cohort diversity "
    "are not computed (no number is better than a made-up one)."
)


def age_band(age) -> str:
    if age is None:
        return "unknown"
    for low, high in AGE_BANDS:
        if low <= int(age) <= high:
            return f"{low}+" if high == 91 else f"{low}-{high}"
    return "unknown"


def finding_key(findings) -> str:
    return "+".join(sorted(findings)) if findings else "no_finding"


def _rate(passed: int, total: int):
    return round(passed / total, 4) if total else None


class _Tally:
    __slots__ = ("checked", "passed_checks", "patients", "delivered_passing", "delivered_flagged", "dropped")

    def __init__(self):
        self.checked = self.passed_checks = self.patients = 0
        self.delivered_passing = self.delivered_flagged = self.dropped = 0

    def as_dict(self) -> dict:
        return {
            "images_checked": self.checked,
            "images_passed": self.passed_checks,
            "pass_rate": _rate(self.passed_checks, self.checked),
            "patients": self.patients,
            "delivered_passing": self.delivered_passing,
            "delivered_flagged": self.delivered_flagged,
            "dropped": self.dropped,
            "patient_pass_rate": _rate(self.delivered_passing, self.patients),
        }


def quality_card(cohort: Cohort) -> dict:
    """Everything the cohort page, the API and exports show about the cohort's quality control."""
    verdicts = list(
        QualityVerdict.objects.filter(cohort=cohort)
        .select_related("image")
        .only("passed", "decision", "attempt", "failed_checks", "unavailable_checks", "checks", "generation_seconds",
              "seconds", "image__index", "image__demographics", "image__findings")
        .order_by("image__index", "attempt")
    )
    qc_models = list(QCModel.objects.filter(model_version_id=cohort.model_version_id, status=QCModel.Status.ACTIVE)
                     .order_by("name"))
    last: dict[int, QualityVerdict] = {}
    overall = _Tally()
    tallies: dict[tuple, _Tally] = defaultdict(_Tally)
    failures: dict[str, int] = defaultdict(int)
    unavailable: dict[str, dict] = {}
    regenerated_seconds = total_seconds = qc_seconds = 0.0
    regenerations = 0
    for verdict in verdicts:
        image = verdict.image
        keys = _keys(image)
        for tally in (overall, *(tallies[k] for k in keys)):
            tally.checked += 1
            tally.passed_checks += int(verdict.passed)
        for name in verdict.failed_checks:
            failures[name] += 1
        for name in verdict.unavailable_checks:
            entry = unavailable.setdefault(name, {"images": 0, "reason": ""})
            entry["images"] += 1
            if not entry["reason"]:
                entry["reason"] = next((c.get("reason", "") for c in verdict.checks if c.get("name") == name), "")
        total_seconds += verdict.generation_seconds
        qc_seconds += verdict.seconds
        if verdict.decision == Decision.REGENERATED:
            regenerations += 1
        if verdict.attempt > 0:
            regenerated_seconds += verdict.generation_seconds
        last[image.index] = verdict
    for verdict in last.values():
        for tally in (overall, *(tallies[k] for k in _keys(verdict.image))):
            tally.patients += 1
            if verdict.decision == Decision.PASSED:
                tally.delivered_passing += 1
            elif verdict.decision == Decision.DELIVERED_FLAGGED:
                tally.delivered_flagged += 1
            elif verdict.decision == Decision.DROPPED:
                tally.dropped += 1
    attempts = SyntheticImage.objects.filter(cohort=cohort, attempt__gt=0).count()
    return {
        "cohort": cohort.pk,
        "model_version": str(cohort.model_version),
        "checks": {
            "builtin": list(BUILTIN_CHECKS),
            "models": [{"name": m.name, "predicts": m.predicts, "labels": m.labels, "threshold": m.threshold,
                        "sha256": m.sha256} for m in qc_models],
        },
        "policy": {"max_attempts": max(1, int(getattr(settings, "QC_MAX_ATTEMPTS", 3))),
                   "after_last_attempt": cohort.quality_policy},
        "overall": overall.as_dict(),
        "subgroups": _subgroups(tallies),
        "failures_by_check": dict(sorted(failures.items())),
        # Which patients were delivered although their last attempt failed, and which were dropped.
        "delivered_flagged_indices": sorted(i for i, v in last.items() if v.decision == Decision.DELIVERED_FLAGGED),
        "dropped_indices": sorted(i for i, v in last.items() if v.decision == Decision.DROPPED),
        "unavailable_checks": dict(sorted(unavailable.items())),
        "regeneration": {
            "quality_regenerations": regenerations,
            "attempts_beyond_first": attempts,
            "seconds_on_regenerated_images": round(regenerated_seconds, 2),
            "generation_seconds": round(total_seconds, 2),
            "quality_control_seconds": round(qc_seconds, 2),
            "note": "Generation time is the wall time of the generation call on the worker (its GPU when it has "
                    "one), shared equally among its images; images replaced by memorization screening are counted "
                    "in attempts_beyond_first only.",
        },
        **fidelity_and_diversity(cohort, next((m for m in qc_models if m.predicts == "features"), None)),
        "authenticity": "See the privacy summary (memorization screening).",
        "thresholds": {
            "blank_min_std": builtin.BLANK_MIN_STD, "min_dynamic_range": builtin.MIN_DYNAMIC_RANGE,
            "max_extreme_fraction": builtin.MAX_EXTREME_FRACTION,
            "min_histogram_entropy": builtin.MIN_HISTOGRAM_ENTROPY, "max_roughness": builtin.MAX_ROUGHNESS,
            "near_duplicate_correlation": builtin.NEAR_DUPLICATE_CORRELATION,
        },
    }


def _unavailable(reason: str) -> dict:
    return {"fidelity": {"available": False, "reason": reason}, "diversity": {"available": False, "reason": reason}}


def fidelity_and_diversity(cohort: Cohort, encoder: QCModel | None) -> dict:
    """Fréchet distance, precision / recall, density / coverage (with bootstrap intervals) of the delivered
    images against the encoder's reference features of real radiographs, and intra-cohort diversity per
    subgroup; or, for each, why it is unavailable."""
    import numpy as np

    from cxr_platform.hashing import sha256_path

    from . import fidelity

    if encoder is None:
        return _unavailable(NO_ENCODER.format(version=cohort.model_version))
    try:
        if sha256_path(encoder.reference_path) != encoder.reference_sha256:
            return _unavailable(f"The reference features of encoder {encoder.name} changed since registration.")
        reference = np.load(encoder.reference_path)
    except (OSError, ValueError) as exc:
        return _unavailable(f"The reference features of encoder {encoder.name} cannot be read ({exc}).")
    rows = list(QualityVerdict.objects.filter(
        cohort=cohort, features_encoder=encoder, image__status=SyntheticImage.Status.PASSED,
    ).exclude(features=b"").values_list("features", "image__demographics").order_by("image__index"))
    if len(rows) < 2:
        return _unavailable(f"Fewer than 2 delivered images have features from encoder {encoder.name} "
                            f"({len(rows)}).")
    limit = max(2, int(getattr(settings, "QC_FIDELITY_MAX_IMAGES", 1000)))
    if len(rows) > limit:  # a seeded sample keeps the card fast and the same on every view
        picked = np.random.default_rng(cohort.seed).choice(len(rows), limit, replace=False)
        rows = [rows[i] for i in sorted(picked)]
    synthetic = np.stack([np.frombuffer(bytes(blob), dtype=np.float32) for blob, _ in rows])
    if synthetic.shape[1] != reference.shape[1]:
        return _unavailable(f"Encoder {encoder.name}'s features of this cohort ({synthetic.shape[1]} values) do not "
                            f"match its reference ({reference.shape[1]}).")
    rounds = int(getattr(settings, "QC_FIDELITY_BOOTSTRAP", 100))
    report = fidelity.report(reference, synthetic, rounds=rounds, seed=cohort.seed % 2**32)
    per_group = []
    for attribute in ("sex", "race"):
        groups: dict[str, list] = defaultdict(list)
        for vector, (_, demographics) in zip(synthetic, rows):
            groups[str((demographics or {}).get(attribute, "?"))].append(vector)
        for value, vectors in sorted(groups.items()):
            per_group.append({"attribute": attribute, "value": value, "images": len(vectors),
                              "mean_pairwise_distance": round(fidelity.diversity(vectors), 6) if len(vectors) > 1
                              else None})
    caveat = report.pop("caveat")
    diversity = report.pop("diversity")
    return {
        "fidelity": {"available": True, "encoder": encoder.name, "reference_images": int(reference.shape[0]),
                     **report, "caveat": caveat},
        "diversity": {"available": True, "encoder": encoder.name, "mean_pairwise_distance": diversity,
                      "per_subgroup": per_group, "caveat": caveat},
    }


def _keys(image) -> list[tuple]:
    """The subgroups an image counts in: its sex × race × age band × findings cell, and each margin."""
    demographics = image.demographics or {}
    sex, race, band = demographics.get("sex", "?"), demographics.get("race", "?"), age_band(demographics.get("age"))
    findings = list(image.findings or []) or ["no_finding"]
    keys = [("cell", sex, race, band, finding_key(image.findings)), ("sex", sex), ("race", race), ("age_band", band)]
    keys += [("finding", f) for f in sorted(set(findings))]
    return keys


def _subgroups(tallies: dict) -> dict:
    result: dict[str, list] = {"cells": [], "sex": [], "race": [], "age_band": [], "finding": []}
    for key in sorted(tallies, key=lambda k: tuple(str(p) for p in k)):
        tally = tallies[key].as_dict()
        if key[0] == "cell":
            result["cells"].append({"sex": key[1], "race": key[2], "age_band": key[3], "findings": key[4], **tally})
        else:
            result[key[0]].append({key[0]: key[1], **tally})
    return result


def _percent(value) -> str:
    return "n/a" if value is None else f"{value:.0%}"


def card_text(card: dict) -> str:
    """The quality card in plain words (exports' QUALITY.md)."""
    overall = card["overall"]
    lines = [
        f"# Quality card: cohort {card['cohort']} ({card['model_version']})",
        "",
        f"Quality control judged {overall['images_checked']} image(s); {overall['images_passed']} passed "
        f"({_percent(overall['pass_rate'])}). Of {overall['patients']} patient(s), {overall['delivered_passing']} "
        f"were delivered passing, {overall['delivered_flagged']} delivered flagged (failing on the last of "
        f"{card['policy']['max_attempts']} attempt(s)) and {overall['dropped']} dropped. After the last attempt "
        f"this cohort's policy was: {card['policy']['after_last_attempt']}.",
        "",
        "Checks: built-in " + ", ".join(card["checks"]["builtin"]) + "; QC models: "
        + (", ".join(f"{m['name']} ({m['predicts']}, threshold {m['threshold']:g})" for m in card["checks"]["models"])
           or "none registered") + ".",
        "",
        "## Pass rate per subgroup",
        "",
        "A generator that fails more often for one group is a fairness finding. Per attempt: images that "
        "passed / images judged; per patient: delivered passing / patients.",
        "",
        "| subgroup | judged | passed | per attempt | patients | per patient |",
        "|---|---|---|---|---|---|",
    ]
    for margin in ("sex", "race", "age_band", "finding"):
        for row in card["subgroups"][margin]:
            lines.append(f"| {margin} {row[margin]} | {row['images_checked']} | {row['images_passed']} | "
                         f"{_percent(row['pass_rate'])} | {row['patients']} | {_percent(row['patient_pass_rate'])} |")
    for row in card["subgroups"]["cells"]:
        lines.append(f"| {row['sex']} × {row['race']} × {row['age_band']} × {row['findings']} | {row['images_checked']} "
                     f"| {row['images_passed']} | {_percent(row['pass_rate'])} | {row['patients']} | "
                     f"{_percent(row['patient_pass_rate'])} |")
    lines += ["", "## Failures and unavailable checks", ""]
    lines += [f"- {name}: failed {count} time(s)" for name, count in card["failures_by_check"].items()] or ["- none"]
    for name, entry in card["unavailable_checks"].items():
        lines.append(f"- {name}: UNAVAILABLE for {entry['images']} image(s): {entry['reason']}")
    regeneration = card["regeneration"]
    lines += [
        "", "## Regeneration", "",
        f"{regeneration['quality_regenerations']} image(s) were regenerated after failing quality control; "
        f"{regeneration['attempts_beyond_first']} attempt(s) beyond the first in all (screening included). "
        f"Generation time of regenerated images: {regeneration['seconds_on_regenerated_images']} s of "
        f"{regeneration['generation_seconds']} s; quality control itself: {regeneration['quality_control_seconds']} s.",
        "", "## Fidelity and diversity", "",
        *_fidelity_lines(card),
        "", "## Authenticity", "", card["authenticity"], "",
    ]
    return "\n".join(lines)


def _fidelity_lines(card: dict) -> list[str]:
    fid = card["fidelity"]
    if not fid["available"]:
        return [f"Unavailable: {fid['reason']}"]
    lines = [f"Against {fid['reference_images']} real radiographs, on features of encoder {fid['encoder']} "
             f"(percentile bootstrap intervals, {fid['frechet_distance']['rounds']} rounds):", ""]
    for name in ("frechet_distance", "precision", "recall", "density", "coverage"):
        figure = fid[name]
        lines.append(f"- {name.replace('_', ' ')}: {figure['value']:.4g} "
                     f"({figure['ci_low']:.4g} to {figure['ci_high']:.4g}, {figure['level']:.0%} interval)")
    diversity = card["diversity"]["mean_pairwise_distance"]
    lines += [f"- diversity (mean pairwise feature distance): synthetic {diversity['synthetic']:.4g}, real "
              f"{diversity['real']:.4g}", "", fid["caveat"]]
    return lines
