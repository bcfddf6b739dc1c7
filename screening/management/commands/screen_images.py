"""Screen image files found anywhere against a model version's training index, storing nothing.

One JSON object per line per file, in the order given:

    {"file": "suspect.png", "flagged": true, "decision": "memorized", "score": 0.93, "threshold": 0.78,
     "reason": "...", "exact_match": false, "holdout_score": 0.41, "stage_b_score": null,
     "match": {"position": 17, "path": "p10/p10000032/s50414267/a.dcm", "subject": null}, "seconds": 0.3}

A file that cannot be read (or screened) gets ``{"file": ..., "error": "..."}``; the others are still
screened, and the command then exits with status 1.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from registry.models import ModelVersion
from screening import imaging, services


def find_model_version(value: str) -> ModelVersion:
    """A model version by primary key, "name:version" or "name version"."""
    value = value.strip()
    if value.isdigit():
        found = ModelVersion.objects.filter(pk=int(value)).first()
    else:
        name, _, version = value.replace(":", " ").rpartition(" ")
        found = ModelVersion.objects.filter(name=name.strip(), version=version.strip()).first() if name else None
    if found is None:
        raise CommandError(f'No model version "{value}" (give "name:version" or its id).')
    return found


def _number(value):
    if value is None:
        return None
    value = float(value)
    return round(value, 6) if math.isfinite(value) else None


def _subject(screener, position):
    """The training image's patient (subject) identifier, where the index records one."""
    lookup = getattr(screener, "train_subject", None)
    if lookup is None:
        return None
    try:
        subject = lookup(position)
    except (IndexError, KeyError, OSError, ValueError):
        return None
    return None if subject in (None, "") else str(subject)


def screen_file(path: Path, *, screener, index) -> dict:
    """The verdict for one file (raises imaging.UnreadableImage when it cannot be read)."""
    array = imaging.load_gray(path)
    analysis = screener.analyse(array)
    verdict = services.training_verdict(analysis, index.threshold, index.stage_b_threshold, screener.region_threshold)
    match = None
    if verdict.best_index is not None:
        position = int(verdict.best_index)
        try:
            relative = str(screener.train_relative_path(position))
        except (IndexError, OSError, ValueError):
            relative = None
        match = {"position": position, "path": relative, "subject": _subject(screener, position)}
    return {
        "flagged": verdict.flagged,
        "decision": str(verdict.decision),
        "score": _number(analysis.train_score),
        "threshold": _number(index.threshold),
        "reason": verdict.reason,
        "exact_match": bool(analysis.exact),
        "holdout_score": _number(analysis.holdout_score),
        "region_score": _number(analysis.region_score),
        "region_threshold": _number(screener.region_threshold),
        "region_area": None if analysis.region_match is None else analysis.region_match.area,
        "stage_b_score": _number(analysis.stage_b_score),
        "stage_b_threshold": _number(index.stage_b_threshold),
        "match": match,
        "seconds": _number(analysis.seconds),
    }


class Command(BaseCommand):
    help = (
        "Screen image files (PNG, JPEG, TIFF or DICOM, any bit depth) against a model version's memorization-"
        "screening index without storing anything: one JSON object per line per file (file, flagged, decision, "
        "score, threshold, reason, match). Unreadable files get an 'error' line and make the exit status 1."
    )

    def add_arguments(self, parser):
        parser.add_argument("--model-version", required=True, help='"name:version" (or the model version id)')
        parser.add_argument("files", nargs="+", metavar="FILE", help="Image files to screen")

    def handle(self, *args, model_version, files, **options):
        version = find_model_version(model_version)
        try:
            index = services.ready_index(version)
            screener = services.get_screener(index)
        except services.ScreeningIndexMissing as exc:
            raise CommandError(str(exc)) from None
        failed = 0
        for name in files:
            try:
                result = screen_file(Path(name), screener=screener, index=index)
            except (imaging.UnreadableImage, OSError) as exc:
                failed += 1
                result = {"error": str(exc) or type(exc).__name__}
            except Exception as exc:  # noqa: BLE001 - one bad file must not stop the others
                failed += 1
                result = {"error": f"could not screen it: {type(exc).__name__}: {exc}"}
            self.stdout.write(json.dumps({"file": name, **result}, ensure_ascii=False))
            self.stdout.flush()
        if failed:
            raise CommandError(f"{failed} of {len(files)} file(s) could not be screened (see their 'error' lines).")
