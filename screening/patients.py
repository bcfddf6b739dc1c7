"""Which patient (subject) and study each indexed radiograph belongs to.

A patient's second study is not "another image": screening compares a copy's best match with the
nearest image of *another patient* (the nearest/second-nearest ratio), and reviewers see the matched
patient and study. Sources, first found wins: a CSV given to ``build_screening_index --subjects``
(``path,subject_id[,study_id]``), the DICOM header (PatientID, StudyInstanceUID), MIMIC-CXR's path
layout ``pXX/pXXXXXXXX/sXXXXXXXX/…``; an image with none counts as its own patient.
"""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import numpy as np

# MIMIC-CXR: files/p10/p10000032/s50414267/<dicom id>.dcm (also with "__" for "/", as split_folder writes)
MIMIC_LAYOUT = re.compile(r"(?:^|/|__)p\d{2}(?:/|__)p(\d{6,10})(?:/|__)s(\d{6,10})(?:/|__)")


def read_subjects_csv(path: str | Path) -> dict[str, tuple[str, str]]:
    """``path,subject_id[,study_id]`` rows → {path: (subject, study)}. Paths are relative to the
    training (or holdout) folder, or absolute."""
    path = Path(path)
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            columns = {c.strip().lower(): c for c in (reader.fieldnames or [])}
            if "path" not in columns or "subject_id" not in columns:
                raise ValueError(f"{path}: the subjects CSV needs the columns path,subject_id[,study_id] "
                                 f"(found: {', '.join(reader.fieldnames or []) or 'none'})")
            table = {}
            for row in reader:
                key = (row.get(columns["path"]) or "").strip()
                subject = (row.get(columns["subject_id"]) or "").strip()
                study = (row.get(columns["study_id"]) or "").strip() if "study_id" in columns else ""
                if key and subject:
                    table[key] = (subject, study)
            return table
    except OSError as exc:
        raise ValueError(f"Cannot read the subjects CSV {path}: {exc}") from None


def subject_from_path(relative: str) -> tuple[str, str] | None:
    """(subject, study) from MIMIC-CXR's layout ``pXX/pXXXXXXXX/sXXXXXXXX/…`` (as MIMIC's CSVs spell them:
    ``10000032``, ``50414267``), or None."""
    found = MIMIC_LAYOUT.search("/" + relative.replace("\\", "/"))
    return (found.group(1), found.group(2)) if found else None


def resolve_subjects(root: Path, relative: list[str], dicom: list[tuple[str, str]], table: dict | None):
    """Each image's (subject, study, source): the CSV first, then the DICOM header, then the path."""
    table = table or {}
    subjects, studies, sources = [], [], []
    for rel, (patient_id, study_id) in zip(relative, dicom):
        found, source = None, "none"
        if table:
            for key in (rel, str(root / rel), str((root / rel).resolve())):
                if key in table:
                    found, source = table[key], "csv"
                    break
        if found is None and patient_id:
            found, source = (patient_id, study_id), "dicom"
        if found is None:
            from_path = subject_from_path(rel)
            if from_path:
                found, source = from_path, "path"
        subject, study = found or ("", "")
        subjects.append(subject)
        studies.append(study)
        sources.append(source)
    return subjects, studies, sources


def subject_codes(subjects: list[str]) -> np.ndarray:
    """One integer per patient; an image without a subject is its own patient."""
    codes, known = np.empty(len(subjects), dtype=np.int64), {}
    for i, subject in enumerate(subjects):
        codes[i] = known.setdefault(subject, len(known)) if subject else -1 - i
    return codes


def write_subjects(directory: Path, name: str, subjects: list[str], studies: list[str], sources: list[str]) -> None:
    (directory / f"{name}_subjects.json").write_text(json.dumps({"subject": subjects, "study": studies,
                                                                 "source": sources}))
    np.save(directory / f"{name}_subject_codes.npy", subject_codes(subjects))
