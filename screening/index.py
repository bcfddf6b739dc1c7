"""Building a screening index from folders of radiographs, and calibrating it on held-out ones.

Layout of an index directory (written by :func:`build_index`, read by
:class:`screening.search.Screener`):

* ``meta.json`` — counts, settings, calibration, the build report; written last, so its presence
  means "complete".
* ``train_paths.json`` / ``holdout_paths.json`` — relative paths of the images (for reviewers only).
* ``train_subjects.json`` / ``holdout_subjects.json`` — per image its patient (subject) and study
  identifier and where they came from (``--subjects`` CSV, DICOM PatientID/StudyInstanceUID, MIMIC's
  ``pXX/pXXXXXXXX/sXXXXXXXX/`` layout, or none: then the image is its own patient);
  ``*_subject_codes.npy`` — the same as integers (one per patient), for the patient-aware ratio.
* ``train_verify.u8`` — N×64×64 uint8 verification thumbnails, memory-mapped (read only for candidates).
* ``train_vectors.faiss`` — PCA-reduced, L2-normalised retrieval descriptors (faiss inner product; an
  inverted file at scale, see :mod:`screening.vector_index`).
* ``train_hashes.npy`` — 64-bit perceptual hashes.
* ``train_region.u8`` — N×128×128 uint8 thumbnails of the region stage (memory-mapped), with
  ``region_vectors.faiss``, ``region_pca.npz``, ``region_owner.npy`` and ``region_cell.npy`` (each
  window's image and place in it): the window index of :mod:`screening.regions` (partial copies);
  ``holdout_region.npy`` for its calibration.
* ``pca.npz`` — the PCA fitted on the training thumbnails.
* ``template.npy`` — the mean training thumbnail (of the first chunk): the common frame of the
  canonical view, and the reference of the polarity/orientation prior.
* ``train_canonical.faiss`` / ``pca_canonical.npz`` — retrieval descriptors of the training images seen in
  that frame (see :func:`screening.align.canonical_vector`) and their PCA.
* ``holdout_*`` — the same for the held-out images (calibration and the privacy summary).
* ``stage_b_*.npy`` — optional learned-encoder embeddings.
* ``work/`` — per-chunk results of an unfinished build (what makes a build resumable).
"""

from __future__ import annotations

import json
import math
import os
import shutil
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np

from . import imaging, regions, vector_index
from .align import canonical_vector, mask_dark_border
from .calibration import calibrate
from .patients import read_subjects_csv, resolve_subjects, write_subjects
from .search import FORMAT_VERSION, StageBEncoder, project

PCA_DIM = 64
CHUNK = 256
REPORT_FILES = 1000  # skipped files listed by name in meta.json (all are counted)


def _progress(total: int, description: str, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=total, desc=description, unit="img", disable=not enabled, file=sys.stderr, dynamic_ncols=True)


def _atomic_save_npz(path: Path, **arrays) -> None:
    staging = path.with_suffix(".tmp.npz")
    np.savez(staging, **arrays)
    os.replace(staging, path)


def _write_json(path: Path, data) -> None:
    staging = path.with_suffix(".tmp")
    staging.write_text(json.dumps(data, indent=1))
    os.replace(staging, path)


# --- Describing images ------------------------------------------------------------------------------


def _describe_chunk(paths: list[Path], encoder: StageBEncoder | None, template: np.ndarray | None = None,
                    canonical: bool = False, root: Path | None = None):
    """Describe ``paths``. With ``canonical``, also their canonical views, in the frame of ``template``
    (None: the mean thumbnail of this chunk becomes the template, returned as ``template``).
    Every file is either described (``ok``) or skipped with its reason (``errors``)."""
    verify, hashes, vectors, ok, errors, arrays, region = [], [], [], [], [], [], []
    patients, studies, notes, kinds = [], [], [], []
    for i, path in enumerate(paths):
        name = str(path.relative_to(root)) if root is not None else str(path)
        try:
            array, info = imaging.read_image(path)
            values = array[np.isfinite(array)]
            if values.size == 0 or float(values.max() - values.min()) < 1e-6:
                raise imaging.UnreadableImage("blank: one value everywhere (no image content)")
        except imaging.UnreadableImage as exc:
            errors.append(f"{name}: {exc}")
            continue
        except OSError as exc:
            errors.append(f"{name}: cannot read the file: {exc}")
            continue
        thumb = imaging.verification_thumbnail(array)
        verify.append(thumb)
        region.append(regions.stored_thumbnail(array))
        hashes.append(imaging.perceptual_hash(thumb))
        vectors.append(imaging.retrieval_vector(thumb))
        ok.append(i)
        patients.append(info.patient_id)
        studies.append(info.study_id)
        notes.append("; ".join(info.notes))
        kinds.append(f"{info.format} {info.bits}-bit")
        if encoder is not None:
            arrays.append(array)
    size = imaging.VERIFY_SIZE
    result = {
        "verify": np.asarray(verify, dtype=np.uint8).reshape(-1, size, size),
        "region": np.asarray(region, dtype=np.uint8).reshape(-1, regions.REGION_SIZE, regions.REGION_SIZE),
        "hashes": np.asarray(hashes, dtype=np.uint64),
        "vectors": np.asarray(vectors, dtype=np.float32).reshape(len(ok), -1),
        "ok": np.asarray(ok, dtype=np.int64),
        "errors": np.asarray(errors, dtype=object).astype(str),
        "patients": np.asarray(patients, dtype=object).astype(str),
        "studies": np.asarray(studies, dtype=object).astype(str),
        "notes": np.asarray(notes, dtype=object).astype(str),
        "kinds": np.asarray(kinds, dtype=object).astype(str),
    }
    if canonical:
        if template is None and len(verify):
            template = result["template"] = result["verify"].mean(axis=0).astype(np.float32)
        result["canonical"] = np.asarray(
            [canonical_vector(mask_dark_border(t), template) for t in result["verify"]] if template is not None else [],
            dtype=np.float32).reshape(len(ok), -1)
    if encoder is not None:
        result["stage_b"] = encoder.embed(arrays) if arrays else np.zeros((0, 1), np.float32)
    return result


def _describe_into(target: Path, paths: list[Path], template, canonical: bool, root: Path) -> Path:
    """One chunk described into ``target`` (in a worker process: no encoder, no database)."""
    _atomic_save_npz(target, **_describe_chunk(paths, None, template, canonical, root))
    return target


def _describe_set(name: str, root: Path, work: Path, encoder, progress: bool, chunk: int, log,
                  canonical: bool = False, workers: int = 1):
    """Describe every image under ``root``, chunk by chunk; chunks already on disk are reused. With
    ``canonical`` (the training set), the first chunk's mean thumbnail is the template of every chunk.
    With ``workers`` > 1 (and no Stage B encoder), chunks after the first are described by that many
    processes; every chunk is still its own file, so the build stays resumable."""
    paths = imaging.list_images(root)
    relative = [str(p.relative_to(root)) for p in paths]
    listing = work / f"{name}_list.json"
    signature = {"root": str(root), "paths": relative, "stage_b": encoder.sha256 if encoder else None,
                 "chunk": chunk, "format": FORMAT_VERSION}
    if listing.exists() and json.loads(listing.read_text()) != signature:
        log(f"The {name} folder or settings changed since the interrupted build; starting the {name} set again.")
        for stale in work.glob(f"{name}_*.npz"):
            stale.unlink()
    _write_json(listing, signature)
    chunks = math.ceil(len(paths) / chunk)
    reused = 0
    bar = _progress(len(paths), f"{name} images", progress)
    parts = [work / f"{name}_{c:06d}.npz" for c in range(chunks)]
    template = None
    pending = []
    for c, target in enumerate(parts):
        part_paths = paths[c * chunk:(c + 1) * chunk]
        if target.exists():
            reused += 1
            bar.update(len(part_paths))
        elif workers > 1 and encoder is None and (template is not None or not canonical):
            pending.append((target, part_paths))
        else:
            _atomic_save_npz(target, **_describe_chunk(part_paths, encoder, template, canonical, root))
            bar.update(len(part_paths))
        if canonical and template is None:
            with np.load(target, allow_pickle=False) as data:
                template = data["template"] if "template" in data.files else None
    if pending:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor, as_completed

        # Forked before any thread pool of this process is busy; the children only decode and
        # describe images, and write their own chunk files.
        with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("fork")) as pool:
            futures = {pool.submit(_describe_into, target, part, template, canonical, root): len(part)
                       for target, part in pending}
            for future in as_completed(futures):
                future.result()
                bar.update(futures[future])
    bar.close()
    if reused:
        log(f"Resumed: {reused} of {chunks} {name} chunk(s) were already done.")
    collected = {key: [] for key in ("verify", "region", "hashes", "vectors", "stage_b", "canonical")}
    kept, errors, dicom, notes, kinds = [], [], [], [], []
    for c, target in enumerate(parts):
        with np.load(target, allow_pickle=False) as data:
            for key in ("verify", "region", "hashes", "vectors", "canonical", "stage_b"):
                if key in data.files and (key != "stage_b" or encoder is not None):
                    collected[key].append(data[key])
            kept.extend(relative[c * chunk + int(i)] for i in data["ok"])
            errors.extend(str(e) for e in data["errors"])
            dicom.extend(zip((str(p) for p in data["patients"]), (str(s) for s in data["studies"])))
            notes.extend(str(n) for n in data["notes"])
            kinds.extend(str(k) for k in data["kinds"])
    size = imaging.VERIFY_SIZE

    def joined(key, empty):
        present = [v for v in collected[key] if len(v)]
        return np.concatenate(present) if present else empty

    return {
        "verify": joined("verify", np.zeros((0, size, size), np.uint8)),
        "region": joined("region", np.zeros((0, regions.REGION_SIZE, regions.REGION_SIZE), np.uint8)),
        "hashes": joined("hashes", np.zeros(0, np.uint64)),
        "vectors": joined("vectors", np.zeros((0, imaging.RETRIEVAL_CROP ** 2), np.float32)),
        "paths": kept,
        "errors": errors,
        "dicom": dicom,
        "notes": notes,
        "kinds": kinds,
        "found": len(paths),
        "stage_b": joined("stage_b", None) if encoder is not None else None,
        "template": template,
        "canonical": joined("canonical", None),
    }


def fit_pca(vectors: np.ndarray, dim: int = PCA_DIM, max_samples: int = 50_000, seed: int = 0):
    rng = np.random.default_rng(seed)
    sample = vectors if len(vectors) <= max_samples else vectors[rng.choice(len(vectors), max_samples, replace=False)]
    mean = sample.mean(axis=0)
    centred = sample - mean
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    components = vt[: min(dim, vt.shape[0])]
    return mean.astype(np.float32), components.astype(np.float32)


def write_canonical_index(directory: Path, template: np.ndarray, canonical: np.ndarray) -> None:
    import faiss

    mean, components = fit_pca(canonical)
    np.save(directory / "template.npy", np.asarray(template, np.float32))
    np.savez(directory / "pca_canonical.npz", mean=mean, components=components)
    index = vector_index.image_index(project(canonical, mean, components))
    faiss.write_index(index, str(directory / "train_canonical.faiss"))


def _set_report(described: dict, sources: list[str], subjects: list[str]) -> dict:
    notes = Counter(n for note in described["notes"] if note for n in note.split("; "))
    return {
        "found": described["found"],
        "indexed": len(described["paths"]),
        "skipped": len(described["errors"]),
        "formats": dict(Counter(described["kinds"])),
        "conversions": dict(notes),
        "subject_sources": dict(Counter(sources)),
        "patients": len({s for s in subjects if s}) + sum(1 for s in subjects if not s),
    }


def _index_set(directory: Path, name: str, root: Path, described: dict, table) -> dict:
    subjects, studies, sources = resolve_subjects(root, described["paths"], described["dicom"], table)
    write_subjects(directory, name, subjects, studies, sources)
    (directory / f"{name}_paths.json").write_text(json.dumps(described["paths"]))
    return _set_report(described, sources, subjects)


def build_index(
    directory: str | Path,
    train_dir: str | Path,
    holdout_dir: str | Path | None = None,
    *,
    encoder: StageBEncoder | None = None,
    progress: bool = True,
    chunk: int = CHUNK,
    workers: int = 1,
    subjects_file: str | Path | None = None,
    log=lambda message: None,
) -> dict:
    """Describe the training (and holdout) images into ``directory``, calibrate on the holdout and
    write ``meta.json``. An interrupted run resumes from the chunks in ``directory/work``.
    ``subjects_file``: a CSV ``path,subject_id[,study_id]`` naming each image's patient (see
    :func:`resolve_subjects` for the other sources)."""
    import faiss

    directory, train_dir = Path(directory), Path(train_dir).resolve()
    holdout_dir = Path(holdout_dir).resolve() if holdout_dir else None
    table = read_subjects_csv(subjects_file) if subjects_file else None
    work = directory / "work"
    work.mkdir(parents=True, exist_ok=True)
    meta_path = directory / "meta.json"
    if meta_path.exists():
        meta_path.unlink()  # a rebuild: the directory is incomplete until the end
    started = time.monotonic()
    train = _describe_set("train", train_dir, work, encoder, progress, chunk, log, canonical=True, workers=workers)
    if len(train["paths"]) < 2:
        reasons = "; ".join(train["errors"][:5])
        raise ValueError(f"Need at least 2 readable training images under {train_dir}, found {len(train['paths'])}"
                         + (f" ({len(train['errors'])} skipped: {reasons})" if reasons else ""))
    holdout = (
        _describe_set("holdout", holdout_dir, work, encoder, progress, chunk, log, workers=workers) if holdout_dir else None
    )
    mean, components = fit_pca(train["vectors"])
    np.savez(directory / "pca.npz", mean=mean, components=components)
    train_vectors = project(train["vectors"], mean, components)
    faiss.write_index(vector_index.image_index(train_vectors), str(directory / "train_vectors.faiss"))
    write_canonical_index(directory, train["template"], train["canonical"])
    train["verify"].tofile(directory / "train_verify.u8")
    region_windows = regions.write_index(directory, train["region"], workers=workers)
    np.save(directory / "train_hashes.npy", train["hashes"])
    report = {"train": _index_set(directory, "train", train_dir, train, table)}
    if train["stage_b"] is not None:
        np.save(directory / "stage_b_train.npy", train["stage_b"].astype(np.float32))
    if holdout is not None:
        np.save(directory / "holdout_verify.npy", holdout["verify"])
        np.save(directory / "holdout_region.npy", holdout["region"])
        np.save(directory / "holdout_vectors.npy", project(holdout["vectors"], mean, components))
        np.save(directory / "holdout_hashes.npy", holdout["hashes"])
        report["holdout"] = _index_set(directory, "holdout", holdout_dir, holdout, table)
        if holdout["stage_b"] is not None:
            np.save(directory / "stage_b_holdout.npy", holdout["stage_b"].astype(np.float32))
    skipped = [f"train/{e}" for e in train["errors"]] + [f"holdout/{e}" for e in (holdout["errors"] if holdout else [])]
    if table is not None:
        matched = sum(r["subject_sources"].get("csv", 0) for r in report.values())
        report["subjects_csv"] = {"file": str(subjects_file), "rows": len(table), "matched_images": matched}
    report["skipped_files"] = skipped[:REPORT_FILES]
    meta = {
        "format": FORMAT_VERSION,
        "train_root": str(train_dir),
        "holdout_root": str(holdout_dir) if holdout_dir else "",
        "train_count": len(train["paths"]),
        "holdout_count": len(holdout["paths"]) if holdout else 0,
        "skipped": skipped[:200],
        "skipped_count": len(skipped),
        "report": report,
        "pca_dim": int(components.shape[0]),
        "verify_size": imaging.VERIFY_SIZE,
        "region": {"size": regions.REGION_SIZE, "window": regions.WINDOW, "windows": region_windows},
        "stage_b": {"sha256": encoder.sha256, "input_size": encoder.input_size} if encoder else None,
        "calibration": None,
    }
    _write_json(directory / "meta.partial.json", meta)
    calibration = calibrate(directory, meta, encoder=encoder, progress=progress)
    meta["calibration"] = calibration
    meta["build_seconds"] = round(time.monotonic() - started, 2)
    _write_json(meta_path, meta)
    (directory / "meta.partial.json").unlink(missing_ok=True)
    shutil.rmtree(work, ignore_errors=True)
    for line in report_lines(meta):
        log(line)
    return meta


def report_lines(meta: dict, files: int = 50) -> list[str]:
    """The build report in words: per set how many images were indexed and skipped, conversions,
    where the patient identifiers came from; then each skipped file with its reason."""
    report = meta.get("report") or {}
    lines = []
    for name in ("train", "holdout"):
        part = report.get(name)
        if not part:
            continue
        formats = ", ".join(f"{count} {kind}" for kind, count in sorted(part["formats"].items()))
        lines.append(f"{name}: {part['indexed']} of {part['found']} image file(s) indexed, {part['skipped']} skipped"
                     + (f" ({formats})" if formats else "") + ".")
        for note, count in sorted(part["conversions"].items()):
            lines.append(f"  {count} × {note}")
        sources = part["subject_sources"]
        named = {k: v for k, v in sources.items() if k != "none"}
        if not named:
            lines.append(f"  {part['patients']} patient(s): no patient identifiers found (no --subjects, DICOM "
                         "PatientID or MIMIC layout), so each image counts as its own patient.")
        else:
            lines.append(f"  {part['patients']} patient(s); identifiers from "
                         + ", ".join(f"{k} {v}" for k, v in sorted(named.items()))
                         + (f"; {sources['none']} image(s) without one count as their own patient"
                            if sources.get("none") else "") + ".")
    if report.get("subjects_csv"):
        csv_part = report["subjects_csv"]
        lines.append(f"subjects CSV {csv_part['file']}: {csv_part['rows']} row(s), {csv_part['matched_images']} "
                     "image(s) matched.")
    skipped = report.get("skipped_files") or meta.get("skipped") or []
    total = meta.get("skipped_count", len(skipped))
    if total:
        lines.append(f"Skipped {total} file(s):")
        lines.extend(f"  {entry}" for entry in skipped[:files])
        if total > min(files, len(skipped)):
            lines.append(f"  … and {total - min(files, len(skipped))} more (meta.json lists the first {REPORT_FILES}).")
    return lines
