"""Screening speed and index size at MIMIC-CXR scale (a synthetic scale test).

Builds an index of N (default 377,000) training thumbnails — the real public radiographs of
../shared/data/cxr_public (when present) plus synthetic smooth images — then screens near-copies
and unrelated images pinned to ONE CPU core, and prints seconds per image and the index's memory:
what stays resident (descriptors, faiss index, hashes, PCA, holdout) and what is memory-mapped
from disk (verification thumbnails, read only for each image's ~28 candidates).

    .venv/bin/python bench/screening.py [--n 377000] [--queries 20]
"""

import argparse
import os
import sys

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import json  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from screening import edits, engine, imaging  # noqa: E402

SHARED = ROOT.parent / "shared" / "data" / "cxr_public" / "images"


def synthetic_thumbnails(count: int, rng) -> np.ndarray:
    """Smooth random 64×64 images around a chest-like mean (cheap, vectorised)."""
    size = imaging.VERIFY_SIZE
    yy, xx = np.mgrid[0:size, 0:size] / (size - 1)
    base = 0.35 + 0.3 * (np.abs(xx - 0.5) < 0.08) + 0.25 * np.exp(-((xx - 0.5) ** 2) / 0.08)
    coarse = rng.normal(0, 0.12, (count, 8, 8)).astype(np.float32)
    fine = np.kron(coarse, np.ones((8, 8), np.float32))
    from scipy import ndimage

    fine = ndimage.uniform_filter(fine, size=(1, 9, 9))
    images = np.clip(base[None] + fine, 0, 1)
    return np.rint(images * 255).astype(np.uint8)


def build(directory: Path, n: int, rng) -> tuple[list[np.ndarray], np.ndarray]:
    import faiss

    real_paths = imaging.list_images(SHARED) if SHARED.is_dir() else []
    real = [imaging.load_gray(p) for p in real_paths]
    real_thumbs = np.stack([imaging.verification_thumbnail(a) for a in real]) if real else np.zeros((0, 64, 64), np.uint8)
    holdout_real = real_thumbs[1::2]
    train_real = real_thumbs[0::2]
    size = imaging.VERIFY_SIZE
    verify = np.lib.format.open_memmap(directory / "build.npy", mode="w+", dtype=np.uint8, shape=(n, size, size))
    verify[: len(train_real)] = train_real
    step = 20_000
    for start in range(len(train_real), n, step):
        stop = min(n, start + step)
        verify[start:stop] = synthetic_thumbnails(stop - start, rng)
    # retrieval descriptors: the standardised centre of 32×32 thumbnails (the maths of imaging.retrieval_vector)
    crop, side = imaging.RETRIEVAL_CROP, imaging.THUMB_SIZE
    first = (side - crop) // 2
    vectors = np.empty((n, crop ** 2), np.float32)
    for start in range(0, n, step):
        chunk = verify[start : start + step].astype(np.float32).reshape(-1, side, 2, side, 2).mean(axis=(2, 4))
        chunk = chunk[:, first : first + crop, first : first + crop].reshape(len(chunk), -1)
        vectors[start : start + step] = imaging.standardise(chunk, axis=1)
    mean, components = engine.fit_pca(vectors)
    projected = engine.project(vectors, mean, components)
    index = faiss.IndexFlatIP(projected.shape[1])
    index.add(projected)
    faiss.write_index(index, str(directory / "train_vectors.faiss"))
    del index, projected
    # The canonical view: real for the real training images. The distractors keep their plain
    # descriptors (aligning 377,000 of them would take hours), which costs the search the same.
    template = (train_real if len(train_real) else np.asarray(verify[: engine.CHUNK])).astype(np.float32).mean(axis=0)
    for i, thumb in enumerate(train_real):
        vectors[i] = engine.canonical_vector(engine.mask_dark_border(thumb), template)
    engine.write_canonical_index(directory, template, vectors)
    del vectors
    np.asarray(verify).tofile(directory / "train_verify.u8")
    del verify
    (directory / "build.npy").unlink()
    np.save(directory / "train_hashes.npy", rng.integers(0, 2**63, n, dtype=np.int64).astype(np.uint64))
    np.savez(directory / "pca.npz", mean=mean, components=components)
    (directory / "train_paths.json").write_text(json.dumps([f"synthetic/{i}.png" for i in range(n)]))
    if len(holdout_real):
        np.save(directory / "holdout_verify.npy", holdout_real)
        holdout_vectors = np.stack([imaging.retrieval_vector(t) for t in holdout_real])
        np.save(directory / "holdout_vectors.npy", engine.project(holdout_vectors, mean, components))
    meta = {"format": engine.FORMAT_VERSION, "train_root": "/synthetic", "holdout_root": "", "train_count": n,
            "holdout_count": int(len(holdout_real)), "pca_dim": int(components.shape[0]), "verify_size": size,
            "stage_b": None, "calibration": {"stage_a": {"threshold": 0.75}, "stage_b": None}}
    (directory / "meta.json").write_text(json.dumps(meta))
    return real[0::2], holdout_real


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=377_000)
    parser.add_argument("--queries", type=int, default=20)
    args = parser.parse_args()
    import faiss
    import psutil

    faiss.omp_set_num_threads(1)
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory(prefix="screening-bench-") as scratch:
        directory = Path(scratch)
        started = time.perf_counter()
        train_real, _ = build(directory, args.n, rng)
        print(f"built a synthetic index of {args.n:,} images in {time.perf_counter() - started:.1f} s")
        process = psutil.Process()
        before = process.memory_info().rss
        screener = engine.Screener(directory)
        loaded = process.memory_info().rss
        queries = []
        for i in range(args.queries):
            if train_real and i % 2 == 0:  # a near-copy of a real training image
                original = np.nan_to_num(train_real[(i // 2) % len(train_real)], nan=0.0)
                edit = list(edits.FAMILIES.values())[i % len(edits.FAMILIES)]
                queries.append(("near-copy", imaging.load_gray(edits._to_pil(edit(original, rng)))))
            else:
                queries.append(("unrelated", synthetic_thumbnails(1, rng)[0].astype(np.float32) / 255.0))
        screener.analyse(queries[0][1])  # warm up
        timings, caught = [], 0
        for kind, array in queries:
            t = time.perf_counter()
            analysis = screener.analyse(array)
            timings.append(time.perf_counter() - t)
            caught += kind == "near-copy" and analysis.train_match is not None and analysis.train_match.index < len(train_real)
        after = process.memory_info().rss
        disk = sum(f.stat().st_size for f in directory.iterdir())
        resident = screener.resident_bytes()
        verify_bytes = (directory / "train_verify.u8").stat().st_size
        print(f"index: {args.n:,} training images, one CPU core")
        print(f"seconds per image: mean {np.mean(timings):.3f}, median {np.median(timings):.3f}, "
              f"max {np.max(timings):.3f} (target <= 1.0)")
        print(f"resident index memory: {resident / 2**20:.1f} MiB (target < 1024 MiB); "
              f"process RSS grew {(loaded - before) / 2**20:.1f} MiB on load, {(after - before) / 2**20:.1f} MiB after "
              f"{len(queries)} screenings")
        print(f"memory-mapped verification thumbnails on disk: {verify_bytes / 2**20:.1f} MiB; index on disk "
              f"{disk / 2**20:.1f} MiB")
        near = sum(1 for kind, _ in queries if kind == "near-copy")
        print(f"near-copies whose training original was the best match: {caught} of {near}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
