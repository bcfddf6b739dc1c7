"""Synthetic patients drawn from a cohort specification, reproducibly.

Shares are met exactly (largest-remainder counts, then shuffled) rather than
drawn independently, so a cohort of 2,000 asked to be 30% pleural effusion has
600 of them. Everything random comes from numpy Generators seeded from the
cohort seed: cohort-wide allocations from one stream, per-patient choices (age,
phrasings) and image seeds from streams derived from the patient's index, so a
patient does not change when another one does.
"""

from __future__ import annotations

import string
from collections import Counter
from dataclasses import dataclass

import numpy as np

from .specification import CohortSpec

# Stream labels: each use of the cohort seed gets its own independent stream.
_ALLOCATION, _PATIENT, _IMAGE = 0, 1, 2
NO_FINDING = "no_finding"
PROMPT_FIELDS = {"age", "RACE", "race", "sex", "SEX", "impression", "view"}


@dataclass(frozen=True)
class Patient:
    index: int
    demographics: dict
    findings: list
    impression: str
    prompt: str


def image_seed(cohort_seed: int, index: int, attempt: int = 0) -> int:
    """The diffusion seed of a patient's image; a new ``attempt`` gives a fresh, still reproducible seed."""
    words = np.random.SeedSequence([cohort_seed, _IMAGE, index, attempt]).generate_state(2, np.uint32)
    return int((int(words[0]) << 31) ^ int(words[1]))  # fits a signed 64-bit column


def _counts(n: int, weights: dict, rng: np.random.Generator | None = None) -> dict:
    """Integer counts summing to ``n`` that follow ``weights`` as closely as integers allow (largest
    remainder). Equal remainders are broken at random by ``rng`` (by key order without one), so small
    cohorts do not always favour the first categories."""
    keys = list(weights)
    exact = np.array([weights[k] for k in keys], dtype=float)
    exact = exact / exact.sum() * n if exact.sum() > 0 else np.zeros(len(keys))
    counts = np.floor(exact + 1e-9).astype(int)
    remainders = np.round(exact - counts, 9)
    tie_break = rng.permutation(len(keys)) if rng is not None else np.arange(len(keys))
    for i in sorted(range(len(keys)), key=lambda i: (-remainders[i], tie_break[i]))[: n - counts.sum()]:
        counts[i] += 1
    return dict(zip(keys, (int(c) for c in counts)))


def allocate(n: int, shares: dict, rng: np.random.Generator | None = None) -> list:
    """``n`` labels whose counts follow ``shares`` as closely as integers allow (largest remainder)."""
    return [key for key, count in _counts(n, shares, rng).items() for _ in range(count)]


def allocate_cells(n: int, rows: dict, columns: dict, rng: np.random.Generator) -> list[tuple]:
    """``n`` (row, column) pairs for independent row and column shares (sex × race): both marginals are met
    exactly (largest remainder), and the cells as closely as that allows (80 patients over 2 × 4 equal shares
    give 10 per cell; 4 patients give one of each race, two of each sex)."""
    row_counts = _counts(n, rows, rng)
    left = _counts(n, columns, rng)  # what each column still needs
    pairs = []
    for row, count in row_counts.items():
        if count == 0:
            continue
        # Share this row out over what the columns still need; the last row takes exactly the rest.
        cells = _counts(count, left, rng) if sum(left.values()) > count else dict(left)
        for column, k in cells.items():
            pairs.extend([(row, column)] * k)
            left[column] -= k
    return pairs


def render_prompt(template: str, defaults: dict, demographics: dict, impression: str) -> str:
    sex_word = defaults["sexes"][demographics["sex"]]
    return template.format(
        age=demographics["age"],
        RACE=demographics["race"].upper(),
        race=demographics["race"].lower(),
        sex=sex_word,
        SEX=sex_word.upper(),
        view=demographics["view"],
        impression=impression,
    ).strip()


def check_template(template: str) -> None:
    """Raise ValueError if the template names a field sampling cannot fill."""
    unknown = {name for _, name, _, _ in string.Formatter().parse(template) if name} - PROMPT_FIELDS
    if unknown:
        raise ValueError(f"The prompt template uses unknown fields: {', '.join(sorted(unknown))}.")


def _age(rng: np.random.Generator, spec: CohortSpec) -> int:
    weights = np.array([b.weight for b in spec.age_bins], dtype=float)
    chosen = spec.age_bins[int(rng.choice(len(weights), p=weights / weights.sum()))]
    return int(rng.integers(chosen.min, chosen.max, endpoint=True))


def _assign_findings(rng, spec: CohortSpec, vocabulary: dict, demographics: list[dict]) -> list[list[str]]:
    """Findings per patient: exact prevalences within each group of patients that share a rule."""
    group_of = []
    for d in demographics:
        group_of.append(next((i for i, g in enumerate(spec.group_findings) if g.matches(d)), -1))
    findings: list[list[str]] = [[] for _ in demographics]
    for group in sorted(set(group_of)):
        members = np.array([i for i, g in enumerate(group_of) if g == group], dtype=int)
        prevalences = {**spec.findings, **(spec.group_findings[group].findings if group >= 0 else {})}
        prevalences = {k: prevalences[k] for k in sorted(vocabulary) if k in prevalences}
        # Exclusive findings take disjoint sets of patients first; the others may co-occur freely.
        free = members
        for key, p in prevalences.items():
            if vocabulary[key].get("exclusive"):
                count = min(int(np.floor(p * len(members) + 0.5)), len(free))
                taken = rng.choice(free, size=count, replace=False)
                for i in taken:
                    findings[i].append(key)
                free = np.setdiff1d(free, taken)
        for key, p in prevalences.items():
            if not vocabulary[key].get("exclusive"):
                count = min(int(np.floor(p * len(members) + 0.5)), len(free))
                for i in rng.choice(free, size=count, replace=False):
                    findings[i].append(key)
    for patient_findings in findings:
        patient_findings.sort()
        if not patient_findings and NO_FINDING in vocabulary:
            patient_findings.append(NO_FINDING)
    return findings


def _shuffled(rng: np.random.Generator, labels: list) -> list:
    return [labels[i] for i in rng.permutation(len(labels))]


def sample_patients(spec: CohortSpec, defaults: dict, size: int, seed: int) -> list[Patient]:
    rng = np.random.default_rng(np.random.SeedSequence([seed, _ALLOCATION]))
    # Sorted keys: JSON columns (PostgreSQL jsonb) do not keep key order, and allocation depends on it.
    sexes = {s: spec.sex[s] for s in sorted(spec.sex)}
    races = {r: spec.race[r] for r in sorted(spec.race)}
    sex_race = _shuffled(rng, allocate_cells(size, sexes, races, rng))
    views = _shuffled(rng, allocate(size, {v: spec.view[v] for v in sorted(spec.view)}, rng))
    patient_rngs = [np.random.default_rng(np.random.SeedSequence([seed, _PATIENT, i])) for i in range(size)]
    demographics = [
        {"age": _age(patient_rngs[i], spec), "sex": sex_race[i][0], "race": sex_race[i][1], "view": views[i]}
        for i in range(size)
    ]
    vocabulary = defaults["findings"]
    if spec.impressions:
        impressions = _shuffled(rng, allocate(size, {text: 1 for text in spec.impressions}, rng))
        findings_per_patient = [[] for _ in range(size)]
    else:
        findings_per_patient = _assign_findings(rng, spec, vocabulary, demographics)
        impressions = [
            " ".join(str(patient_rngs[i].choice(vocabulary[key]["phrasings"])) for key in findings_per_patient[i])
            for i in range(size)
        ]
    template = defaults["prompt_template"]
    return [
        Patient(
            index=i,
            demographics=demographics[i],
            findings=findings_per_patient[i],
            impression=impressions[i],
            prompt=render_prompt(template, defaults, demographics[i], impressions[i]),
        )
        for i in range(size)
    ]


def distribution(patients_or_images) -> dict:
    """Counts by sex, race, view, age decade and finding, for previews and the requested-vs-generated chart."""
    counts = {"sex": Counter(), "race": Counter(), "view": Counter(), "age": Counter(), "findings": Counter()}
    for item in patients_or_images:
        d = item.demographics
        counts["sex"][d["sex"]] += 1
        counts["race"][d["race"]] += 1
        counts["view"][d["view"]] += 1
        counts["age"][age_band(d["age"])] += 1
        counts["findings"].update(item.findings)
    return {name: dict(sorted(counter.items())) for name, counter in counts.items()}


def age_band(age: int) -> str:
    if age >= 90:
        return "90+"
    if age < 30:
        return "18–29"
    return f"{age // 10 * 10}–{age // 10 * 10 + 9}"
