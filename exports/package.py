"""Writing an export package to a folder, and zipping it.

Layout of a package (``write_package``)::

    DICOMDIR                         pydicom FileSet: PATIENT / STUDY / SERIES / IMAGE records
    PT000000/ST000000/SE000000/IM000000 ...   one synthetic patient per study, one series, one instance
    PNG/SYNTHETIC-C12-000000.png ...          optional copies of the screened PNGs
    manifest.csv                     one row per image
    manifest.json                    the same rows, the export's identity and the SHA-256 of every file
    manifest.json.sig                base64 Ed25519 signature of manifest.json's bytes
    README.md                        data card

Images are streamed one at a time (a database iterator, one PNG decoded at a time), so
memory does not grow with the image data of the cohort.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import multiprocessing
import os
import zipfile
from collections import deque
from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import numpy as np
from PIL import Image
from pydicom.filewriter import dcmwrite

from . import signing
from .dicom import ImageFacts, image_dataset
from .dicomdir import encoded_records, write_dicomdir

FORMAT = "cxr-platform-export/1"
CSV_COLUMNS = [
    "file", "png", "sop_instance_uid", "study_instance_uid", "series_instance_uid", "patient_id", "index",
    "age", "sex", "race", "view", "findings", "prompt", "seed", "screening_score", "sha256",
]


@dataclass
class PackageSpec:
    """What the package says about itself (manifest header and data card)."""

    export_id: int | None
    cohort_id: int
    cohort_name: str
    specification: dict
    model_name: str
    model_version: str
    model_card: str
    privacy_summary: str
    created: datetime
    created_by: str = ""
    transfer_syntax: str = "explicit"
    include_png: bool = False
    extra: dict = field(default_factory=dict)


@dataclass
class PackageImage:
    facts: ImageFacts
    open_png: Callable  # () -> binary file object of the screened PNG


@dataclass
class PackageResult:
    root: Path
    image_count: int
    manifest_sha256: str
    files: int


def _sha256_path(path: Path) -> str:
    with open(path, "rb") as handle:
        return signing.sha256_file(handle)


def encode_instance(facts: ImageFacts, png_bytes: bytes, transfer_syntax: str, root: str, file_id: tuple):
    """Decode one PNG, write its DICOM file at ``root/file_id``; return (sha256, its encoded
    DICOMDIR records).
    Runs in a worker process: no database, no Django storage."""
    with Image.open(io.BytesIO(png_bytes)) as picture:
        pixels = np.asarray(picture.convert("L"), dtype=np.uint8)
    dataset = image_dataset(facts, pixels, transfer_syntax=transfer_syntax)
    buffer = io.BytesIO()
    dcmwrite(buffer, dataset, enforce_file_format=True)
    data = buffer.getbuffer()
    path = Path(root).joinpath(*file_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as handle:
        handle.write(data)
    return hashlib.sha256(data).hexdigest(), encoded_records(dataset, file_id)


@contextmanager
def _children_allowed():
    """A Celery prefork pool child is a daemonic process, and multiprocessing refuses to start
    children from one. The encoder processes are ours to manage (the pool is shut down before
    the task returns, and they exit when their pipe closes if the task's process dies), so lift
    the flag while the pool runs."""
    process = multiprocessing.current_process()
    daemon = process._config.get("daemon")
    if daemon:
        process._config["daemon"] = False
    try:
        yield
    finally:
        if daemon:
            process._config["daemon"] = daemon


def _worker_count(requested: int | None) -> int:
    if requested is not None:
        return max(1, requested)
    from django.conf import settings

    configured = getattr(settings, "EXPORT_WORKERS", 0)
    return max(1, configured or min(8, os.cpu_count() or 1))


def _row(facts: ImageFacts, file_id: str, png: str, sha256: str) -> dict:
    d = facts.demographics or {}
    return {
        "file": file_id,
        "png": png,
        "sop_instance_uid": facts.sop_instance_uid,
        "study_instance_uid": facts.study_uid,
        "series_instance_uid": facts.series_uid,
        "patient_id": facts.patient_id,
        "index": facts.index,
        "age": d.get("age"),
        "sex": d.get("sex"),
        "race": d.get("race"),
        "view": d.get("view"),
        "findings": list(facts.findings),
        "prompt": facts.prompt,
        "seed": facts.seed,
        "screening_score": facts.screening_score,
        "sha256": sha256,
    }


def write_package(
    out_dir,
    *,
    spec: PackageSpec,
    images: Iterable[PackageImage],
    total: int,
    on_progress: Callable[[int, int], None] | None = None,
    progress_every: int = 25,
    workers: int | None = None,
) -> PackageResult:
    """Write the package for ``images`` into ``out_dir`` (created; must be empty or absent).

    PNGs are read here (from storage) and encoded to DICOM by ``workers`` processes
    (default settings.EXPORT_WORKERS, else min(8, CPUs)); at most a few images per worker
    are in flight, so memory stays flat however large the cohort."""
    root = Path(out_dir)
    root.mkdir(parents=True, exist_ok=True)
    if any(root.iterdir()):
        raise FileExistsError(f"{root} is not empty.")
    workers = _worker_count(workers)
    rows: list[dict] = []
    entries: list = []
    files: dict[str, str] = {}
    done = 0
    if on_progress:
        on_progress(0, total)

    def finish(facts, file_id, png_name, png_sha, result):
        nonlocal done
        sha, records = result
        rows.append(_row(facts, "/".join(file_id), png_name, sha))
        entries.append(records)
        files["/".join(file_id)] = sha
        if png_name:
            files[png_name] = png_sha
        done += 1
        if on_progress and done % progress_every == 0:
            on_progress(done, total)

    def jobs():
        for n, item in enumerate(images):
            with item.open_png() as handle:
                png_bytes = handle.read()
            file_id = (f"PT{n:06d}", "ST000000", "SE000000", "IM000000")
            png_name, png_sha = "", ""
            if spec.include_png:
                png_name = f"PNG/{item.facts.patient_id}.png"
                (root / "PNG").mkdir(exist_ok=True)
                (root / png_name).write_bytes(png_bytes)
                png_sha = hashlib.sha256(png_bytes).hexdigest()
            yield item.facts, file_id, png_name, png_sha, png_bytes

    if workers == 1:
        for facts, file_id, png_name, png_sha, png_bytes in jobs():
            finish(facts, file_id, png_name, png_sha,
                   encode_instance(facts, png_bytes, spec.transfer_syntax, str(root), file_id))
    else:
        context = multiprocessing.get_context("fork")
        with _children_allowed(), ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
            pending: deque = deque()
            for facts, file_id, png_name, png_sha, png_bytes in jobs():
                future = pool.submit(encode_instance, facts, png_bytes, spec.transfer_syntax, str(root), file_id)
                pending.append((facts, file_id, png_name, png_sha, future))
                while len(pending) >= workers * 4:
                    facts_, file_id_, png_name_, png_sha_, future_ = pending.popleft()
                    finish(facts_, file_id_, png_name_, png_sha_, future_.result())
            while pending:
                facts_, file_id_, png_name_, png_sha_, future_ = pending.popleft()
                finish(facts_, file_id_, png_name_, png_sha_, future_.result())

    write_dicomdir(root / "DICOMDIR", entries)
    del entries
    files["DICOMDIR"] = _sha256_path(root / "DICOMDIR")

    with open(root / "manifest.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=CSV_COLUMNS)
        writer.writeheader()
        for row in rows:
            writer.writerow({**row, "findings": ";".join(row["findings"]),
                             "screening_score": "" if row["screening_score"] is None else row["screening_score"]})
    files["manifest.csv"] = _sha256_path(root / "manifest.csv")
    (root / "README.md").write_text(data_card(spec, len(rows)), encoding="utf-8")
    files["README.md"] = _sha256_path(root / "README.md")

    manifest = {
        "format": FORMAT,
        "synthetic": True,
        "notice": "SYNTHETIC data generated by a model. Not real patients. Not for clinical use.",
        "export": {
            "id": spec.export_id,
            "cohort_id": spec.cohort_id,
            "cohort_name": spec.cohort_name,
            "model_name": spec.model_name,
            "model_version": spec.model_version,
            "created": spec.created.isoformat(),
            "created_by": spec.created_by,
            "transfer_syntax": spec.transfer_syntax,
            "image_count": len(rows),
        },
        "signing_key_sha256": signing.key_fingerprint(),
        "images": rows,
        "files": dict(sorted(files.items())),
    }
    manifest_bytes = json.dumps(manifest, indent=1, sort_keys=True).encode("utf-8") + b"\n"
    (root / signing.MANIFEST).write_bytes(manifest_bytes)
    (root / signing.SIGNATURE).write_bytes(signing.sign(manifest_bytes))
    if on_progress:
        on_progress(done, total)
    return PackageResult(
        root=root,
        image_count=len(rows),
        manifest_sha256=hashlib.sha256(manifest_bytes).hexdigest(),
        files=len(files) + 2,
    )


def zip_package(root: Path, target, *, top: str) -> None:
    """Zip the package folder ``root`` into the open binary file ``target`` without compression
    (DICOM and PNG do not shrink), under the folder name ``top``; streamed file by file."""
    with zipfile.ZipFile(target, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as archive:
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames.sort()
            for name in sorted(filenames):
                path = Path(dirpath) / name
                archive.write(path, f"{top}/{path.relative_to(root).as_posix()}")


def data_card(spec: PackageSpec, image_count: int) -> str:
    specification = json.dumps(spec.specification, indent=2, sort_keys=True)
    model_card = spec.model_card.strip() or "(no model card was registered with this version)"
    return f"""# SYNTHETIC chest X-ray cohort: {spec.cohort_name}

> **SYNTHETIC — NOT FOR CLINICAL USE.** Every image in this package was generated by a
> generative model from a text prompt. None shows a real patient. Do not use them for
> diagnosis, treatment or any clinical decision.

| | |
|---|---|
| Cohort | {spec.cohort_id} — {spec.cohort_name} |
| Export | {spec.export_id if spec.export_id is not None else "command line"} |
| Images | {image_count} (only images that passed memorization screening) |
| Model | {spec.model_name} {spec.model_version} |
| Created | {spec.created.isoformat()} {("by " + spec.created_by) if spec.created_by else ""} |
| DICOM | Secondary Capture, 8-bit MONOCHROME2, {"RLE Lossless" if spec.transfer_syntax == "rle" else "Explicit VR Little Endian"} |

## Intended use

Research and development only: training and testing of algorithms, teaching, software testing
and data augmentation studies. The images are marked synthetic in every DICOM way (Synthetic
Data = YES, Conversion Type = SYN, "SYNTHETIC" in patient name, ID and descriptions, a
Contributing Equipment item "Synthesizing Equipment"). Keep those markings if you convert them.

## Cohort specification

```json
{specification}
```

## Privacy summary (memorization screening)

{spec.privacy_summary}

## Model card: {spec.model_name} {spec.model_version}

{model_card}

## Contents

- `DICOMDIR` and `PT*/ST*/SE*/IM*`: one synthetic patient per study, one series, one instance.
- `manifest.csv`, `manifest.json`: one row per image (file, SOP Instance UID, demographics,
  findings, prompt, seed, screening score, SHA-256).
- `manifest.json.sig`: Ed25519 signature of `manifest.json` by the platform's export key
  (SHA-256 of the raw public key: `{signing.key_fingerprint()}`).
- Provenance per file: prompt, seed and sampling parameters in the private block
  "CXR-PLATFORM SYNTHESIS 1" (group 0011).

## Checking that nothing was altered

With the platform: `python manage.py verify_export PATH`. Without it, with only
`cryptography`: verify the signature in `manifest.json.sig` over the bytes of `manifest.json`
with the published public key, then compare the SHA-256 of every file with `files` in the
manifest (see the platform's docs/exports.md for a ten-line script).
"""
