"""Exports fixtures: a finished cohort with passed images, built without the generation engine.

``make_cohort`` stores PNGs like generation does (``cohorts/<id>/<index>-<attempt>.png`` in
default storage), from the public real X-rays of ``cxr_public_dir`` (resized small) or from small arrays, with
demographics, findings, prompt, seed and sampling shaped as generation.services stores them.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
from django.core.files.base import ContentFile
from django.utils import timezone
from PIL import Image

from cxr_platform.png import picture_to_png
from generation.models import Cohort, SyntheticImage

RACES = ["WHITE", "BLACK", "ASIAN", "HISPANIC"]
SAMPLING = {"scheduler": "ddim", "steps": 2, "guidance_scale": 4.0, "height": 64, "width": 64, "dtype": "float32"}


def _png(picture: Image.Image) -> bytes:
    return picture_to_png(picture)  # as generation stores them


def real_xray_pngs(cxr_public_dir: Path, count: int, size: int = 64) -> list[bytes]:
    with open(cxr_public_dir / "metadata.csv", newline="") as handle:
        names = [row["filename"] for row in csv.DictReader(handle)][:count]
    out = []
    for name in names:
        with Image.open(cxr_public_dir / name) as picture:
            out.append(_png(picture.convert("L").resize((size, size))))
    return out


def array_pngs(count: int, size: int = 64, seed: int = 0) -> list[bytes]:
    rng = np.random.default_rng(seed)
    return [_png(Image.fromarray((rng.random((size, size)) * 255).astype(np.uint8))) for _ in range(count)]


def make_cohort(owner, model_version, *, pngs: list[bytes], flagged: int = 0, name: str = "Export study",
                status: str = Cohort.Status.COMPLETED) -> Cohort:
    """A cohort whose images are all ``passed`` (plus ``flagged`` quarantined ones, never exported)."""
    now = timezone.now()
    cohort = Cohort.objects.create(
        owner=owner, name=name, model_version=model_version, seed=1234, size=len(pngs), status=status,
        specification={"size": len(pngs), "sex": {"F": 0.5, "M": 0.5}, "age": {"min": 40, "max": 80},
                       "findings": {"pleural_effusion": 0.5}, "sampling": SAMPLING},
        submitted_at=now, started_at=now, finished_at=now if status == Cohort.Status.COMPLETED else None,
    )
    for index, data in enumerate(pngs):
        _image(cohort, index, 0, data, SyntheticImage.Status.PASSED)
    for n in range(flagged):
        _image(cohort, len(pngs) + n, 0, pngs[n % len(pngs)], SyntheticImage.Status.FLAGGED)
    return cohort


def _image(cohort, index, attempt, data, status) -> SyntheticImage:
    age = 40 + (index * 7) % 45
    sex = "F" if index % 2 else "M"
    race = RACES[index % len(RACES)]
    view = "AP" if index % 3 == 0 else "PA"
    findings = ["pleural_effusion"] if index % 2 else ["no_finding"]
    impression = "Small left pleural effusion." if index % 2 else "No acute cardiopulmonary process."
    image = SyntheticImage.objects.create(
        cohort=cohort, index=index, attempt=attempt, seed=10_000 + index, status=status,
        prompt=f"{age} year old {race} {'female' if sex == 'F' else 'male'}. {impression}",
        demographics={"age": age, "sex": sex, "race": race, "view": view},
        findings=findings, impression=impression, sampling=SAMPLING,
    )
    name = f"cohorts/{cohort.pk}/{index:06d}-{attempt}.png"
    image.image.save(name, ContentFile(data), save=False)
    SyntheticImage.objects.filter(pk=image.pk).update(image=image.image.name)
    image.refresh_from_db()
    _screened(image)
    return image


def _screened(image) -> None:
    """The sealed screening record generation would have written: exports refuse images without one."""
    from screening.models import ScreeningIndex, ScreeningRecord
    from screening.sealing import seal

    index, _ = ScreeningIndex.objects.get_or_create(
        model_version=image.cohort.model_version,
        defaults={"directory": "/nonexistent/test-index", "status": ScreeningIndex.Status.READY, "threshold": 0.8})
    passed = image.status == SyntheticImage.Status.PASSED
    record = ScreeningRecord.objects.create(
        image=image, cohort=image.cohort, index=index, flagged=not passed, score=0.3 if passed else 0.95,
        threshold=0.8, decision=ScreeningRecord.Decision.PASSED if passed else ScreeningRecord.Decision.MEMORIZED)
    seal(record)
