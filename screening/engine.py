"""The screening index and the two-stage search, independent of Django models.

Layout of an index directory (written by :func:`build_index`, read by :class:`Screener`):

* ``meta.json`` — counts, settings, calibration; written last, so its presence means "complete".
* ``train_paths.json`` / ``holdout_paths.json`` — relative paths of the images (for reviewers only).
* ``train_verify.u8`` — N×64×64 uint8 verification thumbnails, memory-mapped (read only for candidates).
* ``train_vectors.faiss`` — PCA-reduced, L2-normalised retrieval descriptors (faiss inner product).
* ``train_hashes.npy`` — 64-bit perceptual hashes.
* ``pca.npz`` — the PCA fitted on the training thumbnails.
* ``template.npy`` — the mean training thumbnail (of the first chunk): the common frame of the canonical view.
* ``train_canonical.faiss`` / ``pca_canonical.npz`` — retrieval descriptors of the training images seen in
  that frame (see :func:`canonical_vector`) and their PCA.
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
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from scipy import fft as sfft
from scipy import ndimage

from cxr_platform.hashing import sha256_path as sha256_of

from . import imaging

FORMAT_VERSION = 2  # 2: retrieval descriptors of the thumbnail's centre; canonical descriptors
PCA_DIM = 64
CHUNK = 256
RETRIEVE_K = 20  # training candidates verified per image
CANONICAL_K = 5  # more candidates: the nearest in the canonical view
HOLDOUT_K = 8  # holdout candidates verified per image (privacy summary)
SHIFT_RADIUS = 14  # pixels of the 64-pixel grid searched for translation (about 22%)
ROTATIONS = tuple(np.arange(-10.0, 10.01, 2.5))
ZOOMS = (0.95, 1.0, 1.05, 1.11, 1.18, 1.25)  # sampling factors that undo crops/zooms of up to 25%
RETRIEVAL_VARIANTS = (  # (rotation, zoom, shift) applied to the query before the descriptor search
    (0.0, 1.0, (0, 0)), (6.0, 1.0, (0, 0)), (-6.0, 1.0, (0, 0)), (0.0, 1.15, (0, 0)), (6.0, 1.15, (0, 0)),
    (-6.0, 1.15, (0, 0)), (0.0, 1.0, (6, 0)), (0.0, 1.0, (-6, 0)), (0.0, 1.0, (0, 6)), (0.0, 1.0, (0, -6)),
    (0.0, 1.0, (6, 6)), (0.0, 1.0, (-6, -6)), (0.0, 1.0, (6, -6)), (0.0, 1.0, (-6, 6)),
    (0.0, 1.2, (5, 5)), (0.0, 1.2, (-5, -5)), (0.0, 1.2, (5, -5)), (0.0, 1.2, (-5, 5)),
)
FUSION_WEIGHTS = {"pearson": 0.3, "ssim": 0.3, "tiled_l2": 0.2, "ratio": 0.2}
TARGET_FPR = 0.001
EXACT_PEARSON = 0.995


def is_current(directory: str | Path) -> bool:
    """Whether ``directory`` holds a finished index of the format this version reads."""
    try:
        return json.loads((Path(directory) / "meta.json").read_text()).get("format") == FORMAT_VERSION
    except (OSError, ValueError):
        return False


class IndexNotReady(RuntimeError):
    """The index directory is missing, incomplete or of another format."""


class StageBUnavailable(RuntimeError):
    """Stage B weights are missing or do not match the configured SHA-256."""


# --- Stage B: a learned encoder from local weights --------------------------------------------


class StageBEncoder:
    """A TorchScript image encoder (1×1×S×S float input in [0, 1] → embedding), loaded only from
    a local file whose SHA-256 equals the configured one. Nothing is ever downloaded."""

    def __init__(self, path: str | Path, sha256: str, input_size: int = 224):
        path = Path(path)
        if not path.is_file():
            raise StageBUnavailable(f"Stage B weights not found at {path}")
        if not sha256 or len(sha256) != 64:
            raise StageBUnavailable("Stage B needs SCREENING_STAGE_B_SHA256 (64 hex digits) for its weights file")
        actual = sha256_of(path)
        if actual != sha256.lower():
            raise StageBUnavailable(f"Stage B weights {path} have SHA-256 {actual}, not the configured {sha256.lower()}")
        import torch

        self.torch = torch
        self.model = torch.jit.load(str(path), map_location="cpu").eval()
        self.sha256 = actual
        self.input_size = int(input_size)

    def embed(self, arrays: list[np.ndarray]) -> np.ndarray:
        torch = self.torch
        batch = np.stack([imaging.resize(np.nan_to_num(a, nan=0.0), self.input_size) for a in arrays])[:, None]
        with torch.inference_mode():
            out = self.model(torch.from_numpy(batch.astype(np.float32))).float().reshape(len(arrays), -1).numpy()
        return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)


# --- Building --------------------------------------------------------------------------------


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


def _describe_chunk(paths: list[Path], encoder: StageBEncoder | None, template: np.ndarray | None = None,
                    canonical: bool = False):
    """Describe ``paths``. With ``canonical``, also their canonical views, in the frame of ``template``
    (None: the mean thumbnail of this chunk becomes the template, returned as ``template``)."""
    verify, hashes, vectors, ok, errors, arrays = [], [], [], [], [], []
    for i, path in enumerate(paths):
        try:
            array = imaging.load_gray(path)
        except imaging.UnreadableImage as exc:
            errors.append(f"{path}: {exc}")
            continue
        thumb = imaging.verification_thumbnail(array)
        verify.append(thumb)
        hashes.append(imaging.perceptual_hash(thumb))
        vectors.append(imaging.retrieval_vector(thumb))
        ok.append(i)
        if encoder is not None:
            arrays.append(array)
    size = imaging.VERIFY_SIZE
    result = {
        "verify": np.asarray(verify, dtype=np.uint8).reshape(-1, size, size),
        "hashes": np.asarray(hashes, dtype=np.uint64),
        "vectors": np.asarray(vectors, dtype=np.float32).reshape(len(ok), -1),
        "ok": np.asarray(ok, dtype=np.int64),
        "errors": np.asarray(errors, dtype=object).astype(str),
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


def _describe_into(target: Path, paths: list[Path], template, canonical: bool) -> Path:
    """One chunk described into ``target`` (in a worker process: no encoder, no database)."""
    _atomic_save_npz(target, **_describe_chunk(paths, None, template, canonical))
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
            _atomic_save_npz(target, **_describe_chunk(part_paths, encoder, template, canonical))
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
            futures = {pool.submit(_describe_into, target, part, template, canonical): len(part)
                       for target, part in pending}
            for future in as_completed(futures):
                future.result()
                bar.update(futures[future])
    bar.close()
    if reused:
        log(f"Resumed: {reused} of {chunks} {name} chunk(s) were already done.")
    verify, hashes, vectors, kept, errors, stage_b, canonicals = [], [], [], [], [], [], []
    for c, target in enumerate(parts):
        with np.load(target, allow_pickle=False) as data:
            if canonical:
                canonicals.append(data["canonical"])
            verify.append(data["verify"])
            hashes.append(data["hashes"])
            vectors.append(data["vectors"])
            kept.extend(relative[c * chunk + int(i)] for i in data["ok"])
            errors.extend(str(e) for e in data["errors"])
            if encoder is not None:
                stage_b.append(data["stage_b"])
    size = imaging.VERIFY_SIZE
    return {
        "verify": np.concatenate(verify) if verify else np.zeros((0, size, size), np.uint8),
        "hashes": np.concatenate(hashes) if hashes else np.zeros(0, np.uint64),
        "vectors": np.concatenate(vectors) if vectors else np.zeros((0, imaging.RETRIEVAL_CROP ** 2), np.float32),
        "paths": kept,
        "errors": errors,
        "stage_b": np.concatenate([s for s in stage_b if len(s)]) if encoder is not None and any(len(s) for s in stage_b) else None,
        "template": template,
        "canonical": np.concatenate([v for v in canonicals if len(v)]) if any(len(v) for v in canonicals) else None,
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
    index = faiss.IndexFlatIP(components.shape[0])
    index.add(project(canonical, mean, components))
    faiss.write_index(index, str(directory / "train_canonical.faiss"))


def project(vectors: np.ndarray, mean: np.ndarray, components: np.ndarray) -> np.ndarray:
    reduced = (np.asarray(vectors, np.float32) - mean) @ components.T
    return (reduced / np.maximum(np.linalg.norm(reduced, axis=1, keepdims=True), 1e-12)).astype(np.float32)


def build_index(
    directory: str | Path,
    train_dir: str | Path,
    holdout_dir: str | Path | None = None,
    *,
    encoder: StageBEncoder | None = None,
    progress: bool = True,
    chunk: int = CHUNK,
    workers: int = 1,
    log=lambda message: None,
) -> dict:
    """Describe the training (and holdout) images into ``directory``, calibrate on the holdout and
    write ``meta.json``. An interrupted run resumes from the chunks in ``directory/work``."""
    import faiss

    directory, train_dir = Path(directory), Path(train_dir).resolve()
    holdout_dir = Path(holdout_dir).resolve() if holdout_dir else None
    work = directory / "work"
    work.mkdir(parents=True, exist_ok=True)
    meta_path = directory / "meta.json"
    if meta_path.exists():
        meta_path.unlink()  # a rebuild: the directory is incomplete until the end
    started = time.monotonic()
    train = _describe_set("train", train_dir, work, encoder, progress, chunk, log, canonical=True, workers=workers)
    if len(train["paths"]) < 2:
        raise ValueError(f"Need at least 2 readable training images under {train_dir}, found {len(train['paths'])}")
    holdout = (
        _describe_set("holdout", holdout_dir, work, encoder, progress, chunk, log, workers=workers) if holdout_dir else None
    )
    mean, components = fit_pca(train["vectors"])
    np.savez(directory / "pca.npz", mean=mean, components=components)
    train_vectors = project(train["vectors"], mean, components)
    index = faiss.IndexFlatIP(train_vectors.shape[1])
    index.add(train_vectors)
    faiss.write_index(index, str(directory / "train_vectors.faiss"))
    write_canonical_index(directory, train["template"], train["canonical"])
    train["verify"].tofile(directory / "train_verify.u8")
    np.save(directory / "train_hashes.npy", train["hashes"])
    (directory / "train_paths.json").write_text(json.dumps(train["paths"]))
    if train["stage_b"] is not None:
        np.save(directory / "stage_b_train.npy", train["stage_b"].astype(np.float32))
    if holdout is not None:
        np.save(directory / "holdout_verify.npy", holdout["verify"])
        np.save(directory / "holdout_vectors.npy", project(holdout["vectors"], mean, components))
        np.save(directory / "holdout_hashes.npy", holdout["hashes"])
        (directory / "holdout_paths.json").write_text(json.dumps(holdout["paths"]))
        if holdout["stage_b"] is not None:
            np.save(directory / "stage_b_holdout.npy", holdout["stage_b"].astype(np.float32))
    meta = {
        "format": FORMAT_VERSION,
        "train_root": str(train_dir),
        "holdout_root": str(holdout_dir) if holdout_dir else "",
        "train_count": len(train["paths"]),
        "holdout_count": len(holdout["paths"]) if holdout else 0,
        "skipped": (train["errors"] + (holdout["errors"] if holdout else []))[:200],
        "skipped_count": len(train["errors"]) + (len(holdout["errors"]) if holdout else 0),
        "pca_dim": int(components.shape[0]),
        "verify_size": imaging.VERIFY_SIZE,
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
    return meta


def threshold_for(scores: np.ndarray, target_fpr: float = TARGET_FPR) -> dict:
    """The decision threshold that flags at most ``target_fpr`` of held-out scores.

    With fewer than 1/target_fpr held-out images the empirical quantile is the maximum, which
    says little about the tail; the threshold is then the larger of that maximum and a normal
    tail bound (mean + z·sd), so a small holdout errs towards flagging, never towards release."""
    scores = np.sort(np.asarray(scores, dtype=np.float64))
    n = len(scores)
    if n == 0:
        return {"threshold": None, "method": "none", "holdout_n": 0}
    from scipy.stats import norm

    k = int(math.floor(target_fpr * n))  # how many held-out images may lie above
    empirical = float(scores[n - 1 - k]) if k < n else float(scores[-1])
    tail = float(scores.mean() + norm.isf(target_fpr) * scores.std(ddof=1)) if n > 2 else empirical
    threshold = max(empirical, tail) + 1e-6
    return {
        "threshold": threshold,
        "method": "max(empirical quantile, normal tail bound)" if n * target_fpr < 10 else "empirical quantile",
        "empirical_quantile": empirical,
        "normal_tail_bound": tail,
        "holdout_n": n,
        "holdout_mean": float(scores.mean()),
        "holdout_sd": float(scores.std(ddof=1)) if n > 1 else 0.0,
        "holdout_max": float(scores[-1]),
        "holdout_flagged": int((scores >= threshold).sum()),
        "holdout_fpr": float((scores >= threshold).mean()),
        "target_fpr": target_fpr,
    }


def calibrate(directory: Path, meta: dict, *, encoder=None, progress=True) -> dict:
    screener = Screener(directory, meta=meta, encoder=encoder, calibrating=True)
    holdout_n = meta["holdout_count"]
    if not holdout_n:
        return {"stage_a": {"threshold": None, "method": "none", "holdout_n": 0}, "stage_b": None,
                "note": "No holdout images: screening refuses to run until the index is rebuilt with --holdout."}
    verify = screener.holdout_verify
    bar = _progress(holdout_n, "calibrating", progress)
    scores = []
    for i in range(holdout_n):
        result = screener.analyse_thumbnail(verify[i])
        scores.append(result.train_score)
        bar.update(1)
    bar.close()
    calibration = {"stage_a": threshold_for(np.array(scores)), "stage_a_holdout_scores": [round(s, 5) for s in scores]}
    if encoder is not None and (directory / "stage_b_holdout.npy").exists():
        holdout_b = np.load(directory / "stage_b_holdout.npy")
        train_b = np.load(directory / "stage_b_train.npy")
        b_scores = (holdout_b @ train_b.T).max(axis=1)
        calibration["stage_b"] = threshold_for(b_scores)
    else:
        calibration["stage_b"] = None
    return calibration


# --- Screening ---------------------------------------------------------------------------------


@dataclass
class Match:
    index: int
    score: float
    pearson: float
    ssim: float
    tiled_l2: float
    ratio: float
    flipped: bool
    rotation: float
    zoom: float
    shift: tuple
    exact: bool = False


@dataclass
class Analysis:
    train_score: float
    train_match: Match | None
    holdout_score: float | None
    exact: bool
    stage_b_score: float | None = None
    stage_b_index: int | None = None
    seconds: float = 0.0
    candidates: int = 0
    stage_scores: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        data = asdict(self)
        return data


def _warp(image: np.ndarray, rotation: float, zoom: float, shift=(0.0, 0.0)) -> np.ndarray:
    """Sample ``image`` at zoom·R(rotation)·(p − shift) about the centre; NaN outside."""
    theta = math.radians(rotation)
    matrix = zoom * np.array([[math.cos(theta), -math.sin(theta)], [math.sin(theta), math.cos(theta)]])
    centre = (np.array(image.shape, dtype=np.float64) - 1) / 2
    offset = centre - matrix @ centre - matrix @ np.asarray(shift, dtype=np.float64)
    return ndimage.affine_transform(image, matrix, offset=offset, order=1, mode="constant", cval=np.nan)


def mask_dark_border(thumb: np.ndarray, level: float = 20.0, min_fraction: float = 0.01) -> np.ndarray:
    """NaN over dark regions that touch the border (padding from shifts, rotations and crops, even
    when noise or compression made it uneven; also the air outside the body). Applied to every
    image being screened — synthetic, held-out and evaluation copies alike — never to the index."""
    thumb = np.array(thumb, dtype=np.float64)
    smooth = ndimage.gaussian_filter(np.nan_to_num(thumb, nan=0.0), 1.0)
    labels, count = ndimage.label((smooth <= level) | np.isnan(thumb))
    if not count:
        return thumb
    border = np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))
    sizes = np.bincount(labels.ravel())
    mask = np.zeros(thumb.shape, dtype=bool)
    for label in border:
        if label and sizes[label] >= min_fraction * thumb.size:
            mask |= labels == label
    if mask.mean() > 0.5:
        return thumb
    # One pixel more: where padding meets anatomy, the resampling that made the thumbnail blends
    # the two into a dark seam above ``level``. Left in, the seam is an outlier of several standard
    # deviations along the whole edge, and it cut the correlation of true copies that were cropped,
    # rotated and shifted at once from about 0.97 to 0.8.
    thumb[ndimage.binary_dilation(mask)] = np.nan
    return thumb


def _zscore_masked(values: np.ndarray, mask: np.ndarray) -> np.ndarray:
    out = np.zeros_like(values, dtype=np.float32)
    if mask.sum() < 2:
        return out
    v = values[mask]
    out[mask] = (v - v.mean()) / max(float(v.std()), 1e-6)
    return out


def _masked_pearson(aligned: np.ndarray, target: np.ndarray) -> float:
    mask = ~np.isnan(aligned)
    if mask.sum() < 0.3 * aligned.size:
        return -1.0
    x, y = aligned[mask], target[mask]
    x, y = x - x.mean(), y - y.mean()
    return float((x * y).sum() / max(np.sqrt((x * x).sum() * (y * y).sum()), 1e-9))


def _refine_alignment(query, target, rotation, zoom, shift, evaluations: int = 60):
    """Sub-pixel polish of the coarse alignment (Nelder–Mead on rotation, zoom and shift)."""
    from scipy.optimize import minimize

    target = np.asarray(target, dtype=np.float64)
    start = np.array([rotation, zoom * 10.0, shift[0], shift[1]], dtype=np.float64)

    def loss(p):
        return -_masked_pearson(_warp(query, p[0], p[1] / 10.0, (p[2], p[3])), target)

    result = minimize(loss, start, method="Nelder-Mead",
                      options={"maxfev": evaluations, "xatol": 0.05, "fatol": 1e-4,
                               "initial_simplex": start + np.vstack([np.zeros(4), np.diag([1.25, 0.3, 0.7, 0.7])])})
    if result.fun <= loss(start):
        p = result.x
        return float(p[0]), float(p[1] / 10.0), (float(p[2]), float(p[3]))
    return rotation, zoom, shift


def _ssim(x: np.ndarray, y: np.ndarray, mask: np.ndarray) -> float:
    """Mean SSIM of two standardised images over the (eroded) valid mask."""
    sigma = 1.5
    c1, c2 = (0.01 * 6) ** 2, (0.03 * 6) ** 2
    weight = ndimage.gaussian_filter(mask.astype(np.float32), sigma)
    safe = np.maximum(weight, 1e-6)
    mx = ndimage.gaussian_filter(x * mask, sigma) / safe
    my = ndimage.gaussian_filter(y * mask, sigma) / safe
    sxx = ndimage.gaussian_filter(x * x * mask, sigma) / safe - mx * mx
    syy = ndimage.gaussian_filter(y * y * mask, sigma) / safe - my * my
    sxy = ndimage.gaussian_filter(x * y * mask, sigma) / safe - mx * my
    smap = ((2 * mx * my + c1) * (2 * sxy + c2)) / ((mx * mx + my * my + c1) * (sxx + syy + c2))
    inner = ndimage.binary_erosion(mask, iterations=3)
    if inner.sum() < 16:
        inner = mask
    return float(smap[inner].mean()) if inner.any() else 0.0


def _tiled_l2(x: np.ndarray, y: np.ndarray, mask: np.ndarray, tiles: int = 4) -> float:
    """Carlini et al.'s tiled distance: the largest per-tile RMS difference (standardised images)."""
    size = x.shape[0] // tiles
    worst = 0.0
    for i in range(tiles):
        for j in range(tiles):
            sl = (slice(i * size, (i + 1) * size), slice(j * size, (j + 1) * size))
            m = mask[sl]
            if m.mean() < 0.5:
                continue
            diff = (x[sl] - y[sl])[m]
            worst = max(worst, float(np.sqrt(np.mean(diff * diff))))
    return worst


def fuse(pearson: float, ssim: float, tiled_l2: float, ratio: float) -> float:
    w = FUSION_WEIGHTS
    return float(
        w["pearson"] * pearson + w["ssim"] * ssim + w["tiled_l2"] * (1.0 - min(tiled_l2, 2.0) / 2.0)
        + w["ratio"] * (1.0 - min(max(ratio, 0.0), 1.0))
    )


def verify_candidates(query: np.ndarray, candidates: np.ndarray, groups: np.ndarray | None = None,
                      refine: int = 3, orientations: tuple = (False, True)) -> list[Match]:
    """Align ``query`` (64×64 float 0–255, NaN = padding) to each candidate thumbnail and score.

    A coarse search (the orientations given × rotations × zooms, every shift within SHIFT_RADIUS by
    FFT cross-correlation) finds each candidate's best alignment; the ``refine`` best of each
    group (train, holdout) are then aligned exactly and scored with Pearson, SSIM, tiled L2 and
    the nearest/second-nearest ratio, fused into one score. Returns one Match per refined
    candidate (``index`` is the position in ``candidates``)."""
    k = len(candidates)
    if k == 0:
        return []
    groups = np.zeros(k, dtype=np.int64) if groups is None else np.asarray(groups)
    cand = np.asarray(candidates, dtype=np.float32)
    cz = imaging.standardise(cand.reshape(k, -1), axis=1).reshape(cand.shape)
    cf = sfft.rfft2(cz, workers=1)
    cf2 = sfft.rfft2(cz * cz, workers=1)
    size = query.shape[0]
    r = SHIFT_RADIUS
    best = np.full(k, -np.inf)
    params: list = [None] * k

    def window(values):  # keep shifts |d| <= r: values[..., dy, dx] for dy, dx in -r..r
        values = np.concatenate([values[..., : r + 1, :], values[..., -r:, :]], axis=-2)
        return np.concatenate([values[..., : r + 1], values[..., -r:]], axis=-1)

    for flipped in orientations:
        q = np.ascontiguousarray(query[:, ::-1] if flipped else query, dtype=np.float64)
        for rotation in ROTATIONS:
            for zoom in ZOOMS:
                warped = _warp(q, float(rotation), zoom) if (rotation or zoom != 1.0) else q.copy()
                mask = ~np.isnan(warped)
                n = int(mask.sum())
                if n < 0.4 * size * size:
                    continue
                a = _zscore_masked(np.nan_to_num(warped), mask)
                fa = np.conj(sfft.rfft2(a, workers=1))
                fm = np.conj(sfft.rfft2(mask.astype(np.float32), workers=1))
                # Masked normalised cross-correlation for every shift d (Pearson over the overlap):
                # sum_p a(p) c(p+d) / sqrt(n · var of c(p+d) over the mask).
                both = sfft.irfft2(np.stack([fa[None] * cf, fm[None] * cf, fm[None] * cf2]), s=(size, size),
                                   workers=1)
                ac, s1, s2 = window(both[0]), window(both[1]), window(both[2])
                variance = np.maximum(s2 - s1 * s1 / n, 0.2 * n)  # no peaks on flat regions
                ncc = ac / np.sqrt(n * variance)
                flat = ncc.reshape(k, -1)
                arg = flat.argmax(axis=1)
                peak = flat[np.arange(k), arg]
                for j in np.nonzero(peak > best)[0]:
                    dy, dx = divmod(int(arg[j]), 2 * r + 1)
                    dy = dy if dy <= r else dy - (2 * r + 1)
                    dx = dx if dx <= r else dx - (2 * r + 1)
                    best[j] = peak[j]
                    params[j] = (flipped, float(rotation), zoom, (dy, dx))
    matches = []
    for group in np.unique(groups):
        members = np.nonzero(groups == group)[0]
        members = members[np.argsort(-best[members])]
        coarse = {int(j): float(best[j]) for j in members}
        refined = []
        for j in members[:refine]:
            if params[j] is None:
                continue
            flipped, rotation, zoom, shift = params[j]
            q = np.ascontiguousarray(query[:, ::-1] if flipped else query, dtype=np.float64)
            rotation, zoom, shift = _refine_alignment(q, cand[j], rotation, zoom, shift)
            aligned = _warp(q, rotation, zoom, shift)
            mask = ~np.isnan(aligned)
            if mask.sum() < 16:
                continue
            x = _zscore_masked(np.nan_to_num(aligned), mask)
            y = _zscore_masked(cand[j], mask)
            pearson = float((x[mask] * y[mask]).mean())
            coarse[int(j)] = max(coarse[int(j)], pearson)
            refined.append(Match(index=int(j), score=0.0, pearson=pearson, ssim=_ssim(x, y, mask),
                                 tiled_l2=_tiled_l2(x, y, mask), ratio=1.0, flipped=bool(flipped),
                                 rotation=rotation, zoom=zoom, shift=tuple(shift)))
        distances = {j: 1.0 - c for j, c in coarse.items()}
        for m in refined:
            others = [d for j, d in distances.items() if j != m.index]
            second = min(others) if others else 1.0
            m.ratio = float(min(1.0, max(0.0, 1.0 - m.pearson) / max(second, 1e-6)))
            m.score = fuse(m.pearson, m.ssim, m.tiled_l2, m.ratio)
        matches.extend(refined)
    return matches


def canonical_vector(query: np.ndarray, template: np.ndarray) -> np.ndarray:
    """The retrieval vector of ``query`` (64×64, 0–255, NaN = padding) warped onto ``template`` (the
    mean training thumbnail) by its best alignment without flipping. Chest radiographs share one
    layout, so a copy and its original are both brought to nearly the same frame, whatever crop,
    rotation or shift made the copy: a view of the image that the fixed query variants lack."""
    query = np.asarray(query, dtype=np.float64)
    matches = verify_candidates(query, np.asarray(template, np.float32)[None], refine=1, orientations=(False,))
    if matches:
        warped = _warp(query, matches[0].rotation, matches[0].zoom, matches[0].shift)
        if (~np.isnan(warped)).mean() >= 0.3:
            query = warped
    return imaging.retrieval_vector(np.clip(query, 0, 255))


class Screener:
    """Loads one index directory and scores images against it."""

    def __init__(self, directory: str | Path, *, meta: dict | None = None, encoder: StageBEncoder | None = None,
                 calibrating: bool = False):
        import faiss

        self.directory = Path(directory)
        if meta is None:
            meta_path = self.directory / "meta.json"
            if not meta_path.exists():
                raise IndexNotReady(f"The screening index in {self.directory} is missing or unfinished (no meta.json).")
            meta = json.loads(meta_path.read_text())
        if meta.get("format") != FORMAT_VERSION:
            raise IndexNotReady(f"The screening index in {self.directory} has format {meta.get('format')}, "
                                f"this version reads {FORMAT_VERSION}; rebuild it.")
        self.meta = meta
        self.calibrating = calibrating
        size = meta["verify_size"]
        self.size = size
        count = meta["train_count"]
        self.train_verify = np.memmap(self.directory / "train_verify.u8", dtype=np.uint8, mode="r",
                                      shape=(count, size, size))
        self.train_hashes = np.load(self.directory / "train_hashes.npy")
        self.faiss_index = faiss.read_index(str(self.directory / "train_vectors.faiss"))
        with np.load(self.directory / "pca.npz") as pca:
            self.pca_mean, self.pca_components = pca["mean"], pca["components"]
        self.template = np.load(self.directory / "template.npy")
        self.canonical_index = faiss.read_index(str(self.directory / "train_canonical.faiss"))
        with np.load(self.directory / "pca_canonical.npz") as pca:
            self.canonical_mean, self.canonical_components = pca["mean"], pca["components"]
        self.holdout_verify = None
        if meta.get("holdout_count"):
            self.holdout_verify = np.load(self.directory / "holdout_verify.npy")
            self.holdout_vectors = np.load(self.directory / "holdout_vectors.npy")
        self.encoder = None
        self.stage_b_train = None
        if meta.get("stage_b"):
            if encoder is None:
                raise StageBUnavailable("This index was built with Stage B; its encoder weights must be configured.")
            if encoder.sha256 != meta["stage_b"]["sha256"]:
                raise StageBUnavailable("The configured Stage B weights are not the ones this index was built with.")
            self.encoder = encoder
            self.stage_b_train = np.load(self.directory / "stage_b_train.npy")

    # -- memory accounting for the benchmark and the admin page
    def resident_bytes(self) -> int:
        total = self.faiss_index.ntotal * self.faiss_index.d * 4 + self.train_hashes.nbytes
        total += self.pca_mean.nbytes + self.pca_components.nbytes
        total += self.canonical_index.ntotal * self.canonical_index.d * 4 + self.template.nbytes
        if self.stage_b_train is not None:
            total += self.stage_b_train.nbytes
        if self.holdout_verify is not None:
            total += self.holdout_verify.nbytes + self.holdout_vectors.nbytes
        return int(total)

    @property
    def threshold(self) -> float | None:
        calibration = self.meta.get("calibration") or {}
        return (calibration.get("stage_a") or {}).get("threshold")

    @property
    def stage_b_threshold(self) -> float | None:
        calibration = self.meta.get("calibration") or {}
        return (calibration.get("stage_b") or {}).get("threshold")

    def _query_vectors(self, query: np.ndarray) -> np.ndarray:
        vectors = []
        for flipped in (False, True):
            q = query[:, ::-1] if flipped else query
            for rotation, zoom, shift in RETRIEVAL_VARIANTS:
                warped = _warp(q, rotation, zoom, shift) if (rotation or zoom != 1.0 or any(shift)) else q.copy()
                mask = ~np.isnan(warped)
                warped[~mask] = float(np.nanmean(warped)) if mask.any() else 0.0
                vectors.append(imaging.retrieval_vector(np.clip(warped, 0, 255)))
        return project(np.asarray(vectors), self.pca_mean, self.pca_components)

    def _retrieve(self, vectors: np.ndarray, count: int) -> np.ndarray:
        """The ``count`` training images the query vectors retrieve, merged by best rank, then
        similarity: the image a variant ranks first is always kept, whichever variant undid the edit."""
        k_search = min(count, self.faiss_index.ntotal)
        sims, ids = self.faiss_index.search(np.ascontiguousarray(vectors, dtype=np.float32), k_search)
        ranked: dict[int, tuple] = {}
        for row_s, row_i in zip(sims, ids):
            for rank, (s_, i) in enumerate(zip(row_s, row_i)):
                if i >= 0:
                    key = (rank, -float(s_))
                    if key < ranked.get(int(i), (k_search, 0.0)):
                        ranked[int(i)] = key
        return np.array(sorted(sorted(ranked, key=ranked.get)[:count]), dtype=np.int64)

    def verify(self, query: np.ndarray, candidates: np.ndarray, groups: np.ndarray | None = None,
               refine: int = 3) -> list[Match]:
        return verify_candidates(query, candidates, groups, refine)


    def _exact(self, query: np.ndarray, candidate: np.ndarray, candidate_hash: int) -> bool:
        """Pixel-level identity without any alignment: the share that must be zero."""
        mask = ~np.isnan(query)
        if mask.mean() < 0.9:
            return False
        if mask.all() and imaging.hamming(imaging.perceptual_hash(query), np.array([candidate_hash]))[0] > 8:
            return False
        x = _zscore_masked(np.nan_to_num(query), mask)
        y = _zscore_masked(candidate.astype(np.float32), mask)
        return float((x[mask] * y[mask]).mean()) >= EXACT_PEARSON

    def analyse_thumbnail(self, thumb: np.ndarray, *, array: np.ndarray | None = None) -> Analysis:
        """Score a 64×64 thumbnail (0–255; NaN = padding) against the training set (and holdout)."""
        started = time.perf_counter()
        unmasked = np.asarray(thumb, dtype=np.float64)
        query = mask_dark_border(unmasked)
        vectors = self._query_vectors(query.astype(np.float32))
        train_ids = self._retrieve(vectors, RETRIEVE_K)
        # A copy cropped, rotated and shifted at once can rank below other radiographs in every
        # fixed variant. Seen in the template's frame, a copy and its original line up again.
        canonical = project(canonical_vector(query, self.template)[None], self.canonical_mean,
                            self.canonical_components)
        _, found = self.canonical_index.search(canonical, min(CANONICAL_K, self.canonical_index.ntotal))
        train_ids = np.union1d(train_ids, found[0][found[0] >= 0]).astype(np.int64)
        candidates = [np.asarray(self.train_verify[train_ids])]
        groups = [np.zeros(len(train_ids), dtype=np.int64)]
        holdout_ids = np.zeros(0, dtype=np.int64)
        if self.holdout_verify is not None and not self.calibrating:
            holdout_sims = (vectors @ self.holdout_vectors.T).max(axis=0)
            holdout_ids = np.sort(np.argsort(-holdout_sims)[:HOLDOUT_K])
            candidates.append(self.holdout_verify[holdout_ids])
            groups.append(np.ones(len(holdout_ids), dtype=np.int64))
        matches = self.verify(query, np.concatenate(candidates), np.concatenate(groups))
        offset = len(train_ids)
        train_matches = [m for m in matches if m.index < offset]
        holdout_matches = [m for m in matches if m.index >= offset]
        best = max(train_matches, key=lambda m: m.score) if train_matches else None
        if best is not None:
            position = best.index
            best.index = int(train_ids[position])
            best.exact = self._exact(unmasked, candidates[0][position], int(self.train_hashes[best.index]))
        analysis = Analysis(
            train_score=best.score if best else 0.0,
            train_match=best,
            holdout_score=max((m.score for m in holdout_matches), default=None) if len(holdout_ids) else None,
            exact=bool(best.exact) if best else False,
            candidates=len(train_ids) + len(holdout_ids),
        )
        if self.encoder is not None and array is not None:
            embedding = self.encoder.embed([np.nan_to_num(array, nan=0.0)])[0]
            b_sims = self.stage_b_train @ embedding
            analysis.stage_b_index = int(b_sims.argmax())
            analysis.stage_b_score = float(b_sims.max())
        if best is not None:
            analysis.stage_scores = {
                "fused": round(best.score, 5), "pearson": round(best.pearson, 5), "ssim": round(best.ssim, 5),
                "tiled_l2": round(best.tiled_l2, 5), "nearest_second_ratio": round(best.ratio, 5),
                "flipped": best.flipped, "rotation": best.rotation, "zoom": best.zoom, "shift": list(best.shift),
                "holdout_fused": None if analysis.holdout_score is None else round(analysis.holdout_score, 5),
                "stage_b": None if analysis.stage_b_score is None else round(analysis.stage_b_score, 5),
            }
        analysis.seconds = time.perf_counter() - started
        return analysis

    def analyse(self, array: np.ndarray) -> Analysis:
        """Score one normalised grayscale image (see imaging.load_gray; NaN = padding)."""
        return self.analyse_thumbnail(imaging.query_thumbnail(array), array=array)

    def _paths(self, name: str) -> list[str]:
        cache = self.__dict__.setdefault("_path_cache", {})
        if name not in cache:
            cache[name] = json.loads((self.directory / f"{name}_paths.json").read_text())
        return cache[name]

    def train_relative_path(self, position: int) -> str:
        return self._paths("train")[int(position)]

    def train_path(self, position: int) -> Path:
        """Where the training image at ``position`` was read from (privacy reviewers only)."""
        return Path(self.meta["train_root"]) / self.train_relative_path(position)

    def train_thumbnail(self, position: int) -> np.ndarray:
        return np.asarray(self.train_verify[int(position)])
