"""Cohort specifications: what a user asks for, checked and normalised.

The JSON a user sends (browser form, API, ``generate_cohort --spec``) is
parsed into a :class:`CohortSpec`: every share is explicit, every category is
one the model version was trained with, and errors name the field and say what
is wrong. The normalised form (``CohortSpec.as_dict``) is what a cohort stores,
so re-sampling it with the same seed reproduces the same patients.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from functools import cache
from pathlib import Path

from django.core.exceptions import ValidationError

PRESETS = ("balanced", "reference")
DEFAULT_PRESET = "balanced"  # the browser's default, and so the API's and the command's


def with_default_preset(data):
    """A request that does not mention ``preset`` gets the default; ``"preset": null`` (or "")
    asks for none, so every share must then be given."""
    if hasattr(data, "keys") and "preset" not in data:
        data = {**(data.dict() if hasattr(data, "dict") else data), "preset": DEFAULT_PRESET}
    return data
REFERENCE_TABLE = Path(__file__).resolve().parent / "data" / "reference_mimic_cxr.json"
SHARE_TOLERANCE = 1e-3
MAX_IMPRESSIONS = 1000
MAX_IMPRESSION_CHARS = 1000
GROUP_KEYS = ("sex", "race", "view", "age_min", "age_max")


@cache
def reference_table() -> dict:
    return json.loads(REFERENCE_TABLE.read_text())


@dataclass(frozen=True)
class AgeBin:
    min: int
    max: int
    weight: float


@dataclass(frozen=True)
class GroupFindings:
    """Prevalences that replace the cohort-wide ones for the patients ``where`` matches."""

    where: dict
    findings: dict

    def matches(self, demographics: dict) -> bool:
        for key, value in self.where.items():
            if key == "age_min" and demographics["age"] < value:
                return False
            if key == "age_max" and demographics["age"] > value:
                return False
            if key in ("sex", "race", "view") and demographics[key] != value:
                return False
        return True


@dataclass(frozen=True)
class CohortSpec:
    sex: dict
    race: dict
    age_bins: tuple[AgeBin, ...]
    view: dict
    findings: dict = field(default_factory=dict)
    group_findings: tuple[GroupFindings, ...] = ()
    impressions: tuple[str, ...] = ()
    sampling: dict = field(default_factory=dict)
    preset: str = ""

    def as_dict(self) -> dict:
        data = asdict(self)
        data["age_bins"] = [asdict(b) for b in self.age_bins]
        data["group_findings"] = [asdict(g) for g in self.group_findings]
        data["impressions"] = list(self.impressions)
        return data

    @classmethod
    def from_dict(cls, data: dict) -> CohortSpec:
        """Rebuild a stored (already normalised) specification."""
        return cls(
            sex=data["sex"],
            race=data["race"],
            age_bins=tuple(AgeBin(**b) for b in data["age_bins"]),
            view=data["view"],
            findings=data.get("findings") or {},
            group_findings=tuple(GroupFindings(**g) for g in data.get("group_findings") or ()),
            impressions=tuple(data.get("impressions") or ()),
            sampling=data.get("sampling") or {},
            preset=data.get("preset") or "",
        )


class _Errors:
    """Collects messages per field so the user sees every problem at once."""

    def __init__(self):
        self.messages: dict[str, list[str]] = {}

    def add(self, name: str, message: str) -> None:
        self.messages.setdefault(name, []).append(message)

    def raise_if_any(self) -> None:
        if self.messages:
            raise ValidationError(self.messages)


def _shares(raw, name: str, allowed: list[str], errors: _Errors) -> dict:
    if not isinstance(raw, dict) or not raw:
        errors.add(name, f"Give {name} shares as an object, e.g. {{{', '.join(f'{a!r}: …' for a in allowed)}}}.")
        return {}
    shares = {}
    for key, value in raw.items():
        if key not in allowed:
            errors.add(name, f"Unknown {name} category {key!r}; this model version knows {', '.join(allowed)}.")
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
            errors.add(name, f"The share of {key} must be a number between 0 and 1.")
            continue
        shares[key] = float(value)
    if shares and len(shares) == len(raw):
        total = sum(shares.values())
        if abs(total - 1) > SHARE_TOLERANCE:
            errors.add(name, f"The {name} shares must add up to 1; they add up to {total:g}.")
    # Every known category appears, so the stored specification says what each one got.
    return {key: shares.get(key, 0.0) for key in allowed}


def _equal(keys: list[str]) -> dict:
    return {key: 1 / len(keys) for key in keys}


def _age_bins(raw, defaults: dict, errors: _Errors) -> tuple[AgeBin, ...]:
    low, high = int(defaults.get("age_min", 18)), int(defaults.get("age_max", 91))
    if not isinstance(raw, dict):
        errors.add("age", 'Give age as {"min": 40, "max": 80} or {"bins": [{"min": 18, "max": 39, "weight": 1}, …]}.')
        return ()
    if "bins" in raw:
        raw_bins = raw["bins"]
        if not isinstance(raw_bins, list) or not raw_bins:
            errors.add("age", "Age bins must be a non-empty list.")
            return ()
    else:
        raw_bins = [{"min": raw.get("min", low), "max": raw.get("max", high), "weight": 1}]
    bins = []
    for number, item in enumerate(raw_bins, start=1):
        label = f"Age bin {number}" if "bins" in raw else "Age range"
        try:
            age_min, age_max = int(item["min"]), int(item["max"])
            weight = float(item.get("weight", 1))
        except (KeyError, TypeError, ValueError):
            errors.add("age", f"{label} needs integer min and max and a numeric weight.")
            continue
        if not low <= age_min <= age_max <= high:
            errors.add(
                "age", f"{label} must lie within {low}–{high} with min ≤ max ({high} stands for {high - 1} and over)."
            )
            continue
        if weight < 0:
            errors.add("age", f"{label} has a negative weight.")
            continue
        bins.append(AgeBin(age_min, age_max, weight))
    if bins and not sum(b.weight for b in bins) > 0:
        errors.add("age", "At least one age bin needs a positive weight.")
    return tuple(bins)


def _prevalences(raw, name: str, vocabulary: dict, errors: _Errors) -> dict:
    if not isinstance(raw, dict):
        errors.add(name, 'Give finding prevalences as an object, e.g. {"pleural_effusion": 0.3}.')
        return {}
    prevalences = {}
    for key, value in raw.items():
        if key not in vocabulary:
            errors.add(name, f"Unknown finding {key!r}; this model version knows {', '.join(vocabulary)}.")
        elif isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
            errors.add(name, f"The prevalence of {key} must be a number between 0 and 1.")
        else:
            prevalences[key] = float(value)
    exclusive = sum(v for k, v in prevalences.items() if vocabulary[k].get("exclusive"))
    if exclusive > 1 + SHARE_TOLERANCE:
        errors.add(name, "Exclusive findings (such as no finding) cannot together exceed a prevalence of 1.")
    for key, value in prevalences.items():
        if not vocabulary[key].get("exclusive") and value > 1 - exclusive + SHARE_TOLERANCE:
            errors.add(
                name,
                f"{vocabulary[key]['label']} at {value:g} cannot fit beside {exclusive:g} of patients with an "
                "exclusive finding (no finding excludes every other finding).",
            )
    return {key: prevalences[key] for key in sorted(prevalences)}


def _group_findings(raw, defaults: dict, vocabulary: dict, errors: _Errors) -> tuple[GroupFindings, ...]:
    if not isinstance(raw, list):
        errors.add("group_findings", 'Give a list of {"where": {"race": "BLACK"}, "findings": {…}}.')
        return ()
    allowed_values = {"sex": list(defaults["sexes"]), "race": list(defaults["races"]), "view": list(defaults["views"])}
    groups = []
    for number, item in enumerate(raw, start=1):
        where = item.get("where") if isinstance(item, dict) else None
        if not isinstance(where, dict) or not where:
            errors.add("group_findings", f"Group {number} needs a non-empty 'where' object.")
            continue
        clean_where = {}
        for key, value in where.items():
            if key not in GROUP_KEYS:
                errors.add("group_findings", f"Group {number}: cannot select on {key!r}; use {', '.join(GROUP_KEYS)}.")
            elif key in allowed_values and value not in allowed_values[key]:
                errors.add("group_findings", f"Group {number}: unknown {key} {value!r}.")
            elif key.startswith("age") and (isinstance(value, bool) or not isinstance(value, int)):
                errors.add("group_findings", f"Group {number}: {key} must be an integer.")
            else:
                clean_where[key] = value
        findings = _prevalences(item.get("findings", {}), "group_findings", vocabulary, errors)
        groups.append(GroupFindings(where=clean_where, findings=findings))
    return tuple(groups)


def _impressions(raw, errors: _Errors) -> tuple[str, ...]:
    if isinstance(raw, str):
        raw = raw.splitlines()
    if not isinstance(raw, list):
        errors.add("impressions", "Give impressions as a list of texts (or one per line).")
        return ()
    texts = tuple(" ".join(str(t).split()) for t in raw if str(t).strip())
    if not texts:
        errors.add("impressions", "Give at least one impression text.")
    elif len(texts) > MAX_IMPRESSIONS:
        errors.add("impressions", f"Give at most {MAX_IMPRESSIONS} impressions.")
    elif any(len(t) > MAX_IMPRESSION_CHARS for t in texts):
        errors.add("impressions", f"Each impression may have at most {MAX_IMPRESSION_CHARS} characters.")
    return texts


def _sampling(raw, defaults: dict, errors: _Errors) -> dict:
    if not isinstance(raw, dict):
        errors.add("sampling", 'Give sampling overrides as an object, e.g. {"steps": 50}.')
        return {}
    if not raw:
        return {}
    from generation.inference import SamplingParams

    try:
        SamplingParams.from_defaults(defaults, raw)
    except (ValueError, TypeError) as exc:
        errors.add("sampling", str(exc))
    return dict(raw)


def parse_specification(raw: dict, defaults: dict) -> CohortSpec:
    """Check a user's specification against a model version's ``defaults``; raise ValidationError."""
    errors = _Errors()
    if not isinstance(raw, dict):
        raise ValidationError({"specification": ["The specification must be a JSON object."]})
    sexes, races, views = sorted(defaults["sexes"]), list(defaults["races"]), list(defaults["views"])
    vocabulary = defaults["findings"]
    preset = raw.get("preset") or ""
    if preset and preset not in PRESETS:
        errors.add("preset", f"Unknown preset {preset!r}; choose {' or '.join(PRESETS)}.")
    if preset == "reference":
        table = reference_table()
        base = {"sex": table["sex"], "race": table["race"], "age": table["age"], "view": table["view"]}
        base_findings = {k: v for k, v in table["findings"].items() if k in vocabulary}
    elif preset == "balanced":
        base = {"sex": _equal(sexes), "race": _equal(races), "view": _equal(views)}
        base_findings = {}
    else:
        base = {"view": {views[0]: 1.0}}
        base_findings = {}
    merged = {**base, **{k: v for k, v in raw.items() if v not in (None, "", {}, [])}}

    for name in ("sex", "race"):
        if name not in merged:
            errors.add(name, f"Give {name} shares or choose a preset.")
    sex = _shares(merged["sex"], "sex", sexes, errors) if "sex" in merged else {}
    race = _shares(merged["race"], "race", races, errors) if "race" in merged else {}
    view = _shares(merged["view"], "view", views, errors)
    age_bins = _age_bins(merged.get("age", {}), defaults, errors)

    impressions: tuple[str, ...] = ()
    findings: dict = {}
    group_findings: tuple[GroupFindings, ...] = ()
    if raw.get("impressions"):
        if raw.get("findings") or raw.get("group_findings"):
            errors.add("impressions", "Give either finding prevalences or free-text impressions, not both.")
        impressions = _impressions(raw["impressions"], errors)
    else:
        findings = _prevalences(merged.get("findings", base_findings), "findings", vocabulary, errors)
        group_findings = _group_findings(merged.get("group_findings", []), defaults, vocabulary, errors)
    sampling = _sampling(raw.get("sampling") or {}, defaults, errors)
    errors.raise_if_any()
    return CohortSpec(
        sex=sex,
        race=race,
        age_bins=age_bins,
        view=view,
        findings=findings,
        group_findings=group_findings,
        impressions=impressions,
        sampling=sampling,
        preset=preset,
    )
