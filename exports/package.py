"""Writing an export package into a folder or straight into a stored zip.

Layout of a package (``write_package``)::

    DICOMDIR                         PATIENT / STUDY / SERIES / IMAGE records (exports.dicomdir)
    PT000000/ST000000/SE000000/IM000000 ...   one synthetic patient per study, one series, one instance
    PNG/SYNTHETIC-C12-000000.png ...          optional copies of the screened PNGs
    manifest.csv                     one row per image
    manifest.json                    the same rows, the export's identity and the SHA-256 of every file
    manifest.json.sig                base64 Ed25519 signature of manifest.json's bytes
    README.md                        data card
    signing-key.pem                  the public key the manifest was signed with (compare its fingerprint)
    verify.py                        a standalone checker (Python + cryptography), exports/recipient_verify.py

Images are streamed one at a time (a database iterator, one PNG decoded at a time), so
memory does not grow with the image data of the cohort.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import shutil
import tempfile
import zipfile
from array import array
from collections import deque
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import numpy as np
from PIL import Image

from cxr_platform.hashing import sha256_path
from registry.vocabulary import CHEXPERT_OBSERVATIONS, chexpert_labels

from . import recipient_verify, signing
from .dicom import OLDEST_AGE_NOTE, TRANSFER_SYNTAX_NAMES, ImageFacts, reproducible_uid
from .dicomdir import write_dicomdir
from .encoder import InstanceEncoder

FORMAT = "cxr-platform-export/1"
VERIFIER = "verify.py"
PUBLIC_KEY = recipient_verify.BUNDLED_KEY
CSV_COLUMNS = [
    "file", "png", "sop_instance_uid", "study_instance_uid", "series_instance_uid", "patient_id", "index",
    "age", "sex", "race", "view", "findings", "prompt", "seed", "screening_score", "sha256",
    *CHEXPERT_OBSERVATIONS,  # CheXpert / MIMIC-CXR-JPG label columns: 1, or blank when not mentioned
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
    vocabulary: dict | None = None  # the model version's findings (their CheXpert observations)
    namespace: str = ""  # this installation's UID namespace (the DICOMDIR's UID)
    protocol_id: str = ""  # Clinical Trial Protocol ID shared by the cohort's instances
    extra: dict = field(default_factory=dict)

    @property
    def dicomdir_uid(self) -> str:
        return reproducible_uid(self.namespace, "dicomdir", "cohort", self.cohort_id, "export", self.export_id,
                                self.transfer_syntax, self.include_png)


@dataclass
class PackageImage:
    facts: ImageFacts
    open_png: Callable  # () -> binary file object of the screened PNG
    local_path: str | None = None  # the PNG's path when storage is a local disk (read by the encoder)


@dataclass
class PackageResult:
    root: Path | None  # the folder, or None when written into a zip
    image_count: int
    manifest_sha256: str
    files: int


ENCODE_CHUNK = 16  # images per task handed to an encoder thread


def encode_instance(encoder: InstanceEncoder, facts: ImageFacts, png: bytes | str, root: str | None, file_id: tuple):
    """Decode one PNG (its bytes, or a local path) and encode its DICOM file; write it at
    ``root/file_id``, or return its bytes when ``root`` is None (the caller zips it). Returns
    (sha256, its encoded DICOMDIR records, bytes or None). Runs in an encoder thread: no database."""
    if isinstance(png, str):
        with open(png, "rb") as handle:
            png = handle.read()
    with Image.open(io.BytesIO(png)) as picture:
        pixels = np.asarray(picture if picture.mode == "L" else picture.convert("L"), dtype=np.uint8)
    data = encoder.encode(facts, pixels)
    records = encoder.directory_records(facts, file_id)
    if root is None:
        return hashlib.sha256(data).hexdigest(), records, data
    path = os.path.join(root, *file_id)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as handle:
        handle.write(data)
    return hashlib.sha256(data).hexdigest(), records, None


def encode_instances(jobs: list[tuple]) -> list:
    """``encode_instance`` for several images in one task: fewer hand-offs between threads."""
    return [encode_instance(*job) for job in jobs]


def _worker_count(requested: int | None) -> int:
    if requested is not None:
        return max(1, requested)
    from django.conf import settings

    configured = getattr(settings, "EXPORT_WORKERS", 0)
    return max(1, configured or min(4, os.cpu_count() or 1))


def _row(facts: ImageFacts, file_id: str, png: str, sha256: str, vocabulary: dict | None = None) -> dict:
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
        "labels": chexpert_labels(facts.findings, vocabulary),
    }


def write_package(
    out_dir=None,
    *,
    sink: FolderSink | ZipSink | None = None,
    spec: PackageSpec,
    images: Iterable[PackageImage],
    total: int,
    on_progress: Callable[[int, int], None] | None = None,
    progress_every: int = 25,
    workers: int | None = None,
) -> PackageResult:
    """Write the package for ``images`` into the folder ``out_dir`` (created; must be empty or
    absent), or into ``sink`` (a :class:`ZipSink` writes the zip directly).

    PNGs are read here (from storage) and encoded to DICOM by ``workers`` threads
    (default settings.EXPORT_WORKERS, else min(4, CPUs)); at most a few chunks per worker
    are in flight, and manifest rows and DICOMDIR records are spooled to temporary files, so
    memory stays flat however large the cohort (only the final manifest is signed in memory)."""
    sink = sink if sink is not None else FolderSink(Path(out_dir))
    try:
        workers = _worker_count(workers)
        shas: dict[str, str] = {}
        with tempfile.TemporaryDirectory(prefix="cxr-export-") as work, tempfile.TemporaryFile() as row_spool, \
                tempfile.TemporaryFile() as record_spool, ExitStack() as stack:
            work = Path(work)
            csv_file = stack.enter_context(open(work / "manifest.csv", "w", newline="", encoding="utf-8"))
            writer = csv.DictWriter(csv_file, fieldnames=CSV_COLUMNS, extrasaction="ignore")
            writer.writeheader()
            lengths = array("I")
            done = 0
            if on_progress:
                on_progress(0, total)

            def finish(facts, file_id, png_name, png_sha, result):
                nonlocal done
                sha, records, data = result
                if data is not None:
                    sink.put("/".join(file_id), data)
                row = _row(facts, "/".join(file_id), png_name, sha, spec.vocabulary)
                row["png_sha256"] = png_sha
                writer.writerow({**row, **{k: "" if v is None else v for k, v in row["labels"].items()},
                                 "findings": ";".join(row["findings"]),
                                 "screening_score": "" if row["screening_score"] is None else row["screening_score"]})
                row_spool.write(json.dumps(row, sort_keys=True).encode() + b"\n")
                for record in records:
                    record_spool.write(record)
                    lengths.append(len(record))
                done += 1
                if on_progress and done % progress_every == 0:
                    on_progress(done, total)

            def jobs():
                for n, item in enumerate(images):
                    if item.local_path and not spec.include_png:
                        png_bytes = item.local_path  # read by the encoder thread
                    else:
                        with item.open_png() as handle:
                            png_bytes = handle.read()
                    file_id = (f"PT{n:06d}", "ST000000", "SE000000", "IM000000")
                    png_name, png_sha = "", ""
                    if spec.include_png:
                        png_name = f"PNG/{item.facts.patient_id}.png"
                        sink.put(png_name, png_bytes)
                        png_sha = hashlib.sha256(png_bytes).hexdigest()
                    yield item.facts, file_id, png_name, png_sha, png_bytes

            encoder = InstanceEncoder(spec.transfer_syntax)
            if workers == 1:
                for facts, file_id, png_name, png_sha, png_bytes in jobs():
                    finish(facts, file_id, png_name, png_sha,
                           encode_instance(encoder, facts, png_bytes, sink.encoder_root, file_id))
            else:
                # Threads, not processes: PNG decoding, hashing and file reads release the GIL, so
                # threads use every core without copying each encoded file through a pipe (on two
                # cores, 2 encoder processes gave ~230 files/s; 2 threads give ~275).
                with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="dicom-encoder") as pool:
                    pending: deque = deque()
                    chunk: list = []

                    def submit():
                        jobs_ = [(encoder, facts, png, sink.encoder_root, file_id)
                                 for facts, file_id, _, _, png in chunk]
                        pending.append(([c[:4] for c in chunk], pool.submit(encode_instances, jobs_)))
                        chunk.clear()

                    def drain(keep: int):
                        while len(pending) > keep:
                            meta, future = pending.popleft()
                            for (facts_, file_id_, png_name_, png_sha_), result in zip(meta, future.result()):
                                finish(facts_, file_id_, png_name_, png_sha_, result)

                    for job in jobs():
                        chunk.append(job)
                        if len(chunk) == ENCODE_CHUNK:
                            submit()
                            drain(workers * 2)
                    if chunk:
                        submit()
                    drain(0)
            csv_file.close()

            record_spool.seek(0)
            write_dicomdir(work / "DICOMDIR", _record_groups(record_spool, lengths), uid=spec.dicomdir_uid)
            del lengths
            (work / "README.md").write_text(data_card(spec, done), encoding="utf-8")
            (work / VERIFIER).write_bytes(Path(recipient_verify.__file__).read_bytes())
            (work / PUBLIC_KEY).write_text(signing.public_key_pem(), encoding="ascii")
            quality_names = _write_quality_files(work, spec)
            for name in ("DICOMDIR", "README.md", "manifest.csv", *quality_names, PUBLIC_KEY, VERIFIER):
                shas[name] = sha256_path(work / name)
                sink.put_file(name, work / name)
            manifest_bytes = _manifest(shas, spec, row_spool, done)
        sink.put(signing.MANIFEST, manifest_bytes)
        sink.put(signing.SIGNATURE, signing.sign(manifest_bytes))
    finally:
        sink.close()  # also on failure: the ZipFile must not be left to the garbage collector
    if on_progress:
        on_progress(done, total)
    return PackageResult(
        root=getattr(sink, "root", None),
        image_count=done,
        manifest_sha256=hashlib.sha256(manifest_bytes).hexdigest(),
        files=done * (2 if spec.include_png else 1) + 7 + len(QUALITY_FILES),
    )


class FolderSink:
    """Package files written into a folder."""

    def __init__(self, root: Path):
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        if any(root.iterdir()):
            raise FileExistsError(f"{root} is not empty.")

    encoder_root = property(lambda self: str(self.root))

    def put(self, name: str, data: bytes) -> None:
        path = self.root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)

    def put_file(self, name: str, source: Path) -> None:
        shutil.move(source, self.root / name)

    def close(self) -> None:
        pass


class ZipSink:
    """Package files written straight into a zip (stored, no compression: DICOM and PNG do
    not shrink) under the folder ``top``: no intermediate folder, each byte written once."""

    def __init__(self, target, top: str, date_time: tuple):
        self.zip = zipfile.ZipFile(target, "w", compression=zipfile.ZIP_STORED, allowZip64=True)
        self.top = top
        self.date_time = date_time

    encoder_root = None  # encoders return the bytes; this process appends them

    def _info(self, name: str) -> zipfile.ZipInfo:
        info = zipfile.ZipInfo(f"{self.top}/{name}", date_time=self.date_time)
        info.compress_type = zipfile.ZIP_STORED
        info.external_attr = 0o644 << 16
        return info

    def put(self, name: str, data: bytes) -> None:
        self.zip.writestr(self._info(name), data)

    def put_file(self, name: str, source: Path) -> None:
        info = self._info(name)
        info.file_size = source.stat().st_size
        with open(source, "rb") as src, self.zip.open(info, "w", force_zip64=info.file_size > 2**31) as dst:
            for chunk in iter(lambda: src.read(1024 * 1024), b""):
                dst.write(chunk)

    def close(self) -> None:
        if self.zip.fp is not None:
            self.zip.close()


def _record_groups(spool, lengths):
    for n in range(0, len(lengths), 4):
        yield tuple(spool.read(length) for length in lengths[n:n + 4])


def _rows(spool):
    spool.seek(0)
    for line in spool:
        yield json.loads(line)


def _manifest(shas: dict, spec: PackageSpec, row_spool, count: int) -> bytes:
    """manifest.json, written from the spooled rows: the same text as
    ``json.dumps(manifest, indent=1, sort_keys=True)``; its ``files`` list every other file."""
    header = {
        "export": {
            "id": spec.export_id,
            "cohort_id": spec.cohort_id,
            "cohort_name": spec.cohort_name,
            "model_name": spec.model_name,
            "model_version": spec.model_version,
            "created": spec.created.isoformat(),
            "created_by": spec.created_by,
            "transfer_syntax": spec.transfer_syntax,
            "image_count": count,
            "clinical_trial_protocol_id": spec.protocol_id,
        },
        "format": FORMAT,
        "notice": "SYNTHETIC data generated by a model. Not real patients. Not for clinical use.",
        "signing_key_sha256": signing.key_fingerprint(),
        "synthetic": True,
    }

    def dump(value, indent: int) -> str:
        text = json.dumps(value, indent=1, sort_keys=True)
        return text.replace("\n", "\n" + " " * indent)

    def file_entries():
        # Sorted as sort_keys would: "DICOMDIR" < "PNG/..." < "PT..." < "README.md" < "manifest.csv"
        # < "signing-key.pem" < "verify.py".
        yield "DICOMDIR", shas["DICOMDIR"]
        for row in _rows(row_spool):
            if row["png"]:
                yield row["png"], row["png_sha256"]
        for row in _rows(row_spool):
            yield row["file"], row["sha256"]
        yield "README.md", shas["README.md"]
        yield "manifest.csv", shas["manifest.csv"]
        for name in QUALITY_FILES:  # between manifest.csv and signing-key.pem in sorted order
            yield name, shas[name]
        yield PUBLIC_KEY, shas[PUBLIC_KEY]
        yield VERIFIER, shas[VERIFIER]

    out = io.StringIO()
    out.write("{\n")
    out.write(f' "export": {dump(header["export"], 1)},\n')
    out.write(' "files": {')
    for n, (name, digest) in enumerate(file_entries()):
        out.write(("," if n else "") + f"\n  {json.dumps(name)}: {json.dumps(digest)}")
    out.write("\n },\n")
    out.write(f' "format": {json.dumps(header["format"])},\n')
    out.write(' "images": [')
    for n, row in enumerate(_rows(row_spool)):
        out.write(("," if n else "") + "\n  " + dump(row, 2))
    out.write("\n ]," if count else "],")
    out.write(f'\n "notice": {json.dumps(header["notice"])},\n')
    out.write(f' "signing_key_sha256": {json.dumps(header["signing_key_sha256"])},\n')
    out.write(' "synthetic": true\n}\n')
    return out.getvalue().encode("utf-8")


QUALITY_FILES = ("quality-card.json", "quality-card.md")  # the cohort's quality card (quality.exports)


def _write_quality_files(work: Path, spec: PackageSpec) -> tuple[str, ...]:
    from quality.exports import package_files

    for name, data in package_files(spec.cohort_id).items():
        (work / name).write_bytes(data)
    return QUALITY_FILES


def zip_package(root: Path, target, *, top: str) -> None:
    """Zip the package folder ``root`` into the open binary file ``target`` without compression
    (DICOM and PNG do not shrink), under the folder name ``top``; streamed file by file."""
    with zipfile.ZipFile(target, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as archive:
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames.sort()
            for name in sorted(filenames):
                path = Path(dirpath) / name
                archive.write(path, f"{top}/{path.relative_to(root).as_posix()}")


def _labels_note(spec: PackageSpec) -> str:
    from quality.exports import labels_note

    return labels_note(spec.cohort_id)


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
| DICOM | Secondary Capture, 8-bit MONOCHROME2, {TRANSFER_SYNTAX_NAMES.get(spec.transfer_syntax, spec.transfer_syntax)}, UTF-8 text |
| Clinical Trial Protocol ID | `{spec.protocol_id}` (every instance of this cohort; search for it in a PACS) |

## Intended use

Research and development only: training and testing of algorithms, teaching, software testing
and data augmentation studies. The images are marked synthetic in every DICOM way (Synthetic
Data = YES, Conversion Type = SYN, "SYNTHETIC" in patient name, ID and descriptions, a
Contributing Equipment item "Synthesizing Equipment"). Keep those markings if you convert them.

Ages: {OLDEST_AGE_NOTE} The requested age (91 in MIMIC-CXR's convention)
is kept in the manifest and in the prompt.

## Cohort specification

```json
{specification}
```

## Privacy summary (memorization screening)

{spec.privacy_summary}

## Labels

`manifest.csv` has one column per CheXpert / MIMIC-CXR-JPG observation ({", ".join(CHEXPERT_OBSERVATIONS)}):
`1` for each finding the image's prompt asked for, blank for every observation it did not mention
(`No Finding` is 1 only when nothing else was asked for). `manifest.json` has the same under
`labels`, with sex, age, race, view and the exact prompt of each image.

**These labels are the requested conditions, not findings read from the images.** {_labels_note(spec)}

## Model card: {spec.model_name} {spec.model_version}

{model_card}

## Contents

- `DICOMDIR` and `PT*/ST*/SE*/IM*`: one synthetic patient per study, one series, one instance.
  The cohort is one Clinical Trial protocol (Sponsor "cxr-platform synthetic data", Protocol ID
  above); each series description reads like `SYNTHETIC CXR PA, 48 y F, pleural effusion`.
- `manifest.csv`, `manifest.json`: one row per image (file, SOP Instance UID, demographics,
  findings, prompt, seed, screening score, SHA-256).
- `quality-card.json`, `quality-card.md`: quality control of the cohort (pass rates per subgroup,
  regeneration, fidelity and diversity or why they are unavailable).
- `manifest.json.sig`: Ed25519 signature of `manifest.json` by the platform's export key
  (SHA-256 of the raw public key: `{signing.key_fingerprint()}`).
- Provenance per file: prompt, seed and sampling parameters in the private block
  "CXR-PLATFORM SYNTHESIS 1" (group 0011).

## Checking that nothing was altered

Every file is listed with its SHA-256 in `manifest.json`, which is signed. With only Python and
`cryptography` (`pip install cryptography`), using the key your provider published (their
`/exports/signing-key.pem`, or its fingerprint `{signing.key_fingerprint()}`):

```sh
python verify.py . --public-key cxr-platform-export-key.pem   # run inside the unzipped folder
python verify.py . --fingerprint {signing.key_fingerprint()}
```

It exits with status 0 only if the signature is valid and no file was changed, removed or added.
The copy of the key in `signing-key.pem` proves nothing alone: compare its fingerprint with the
one your provider published through another channel.
"""
