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


def allocate(n: int, shares: dict) -> list:
    """``n`` labels whose counts follow ``shares`` as closely as integers allow (largest remainder)."""
    keys = list(shares)
    exact = np.array([shares[k] for k in keys], dtype=float)
    exact = exact / exact.sum() * n
    counts = np.floor(exact).astype(int)
    # Ties go to the earlier key, so the result depends only on the shares' order.
    for i in sorted(range(len(keys)), key=lambda i: (-(exact[i] - counts[i]), i))[: n - counts.sum()]:
        counts[i] += 1
    return [key for key, count in zip(keys, counts) for _ in range(count)]


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
    cells = {(s, r): spec.sex[s] * spec.race[r] for s in sorted(spec.sex) for r in sorted(spec.race)}
    sex_race = _shuffled(rng, allocate(size, cells))
    views = _shuffled(rng, allocate(size, {v: spec.view[v] for v in sorted(spec.view)}))
    patient_rngs = [np.random.default_rng(np.random.SeedSequence([seed, _PATIENT, i])) for i in range(size)]
    demographics = [
        {"age": _age(patient_rngs[i], spec), "sex": sex_race[i][0], "race": sex_race[i][1], "view": views[i]}
        for i in range(size)
    ]
    vocabulary = defaults["findings"]
    if spec.impressions:
        impressions = _shuffled(rng, allocate(size, {text: 1 for text in spec.impressions}))
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
    return {name: dict(counter) for name, counter in counts.items()}


def age_band(age: int) -> str:
    if age >= 90:
        return "90+"
    if age < 30:
        return "18–29"
    return f"{age // 10 * 10}–{age // 10 * 10 + 9}"
