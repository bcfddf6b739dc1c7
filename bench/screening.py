"""Screening speed, memory and false positives at MIMIC-CXR scale.

Builds an index of N (default 377,000) training images: a third of the real public radiographs of
../shared/data/cxr_public (or, without it, the downscaled copies in tests/assets) plus distractors
made from another third — each a real radiograph warped elastically, rotated, zoomed, shifted, with
its contrast and gamma changed and noise added, so they look like radiographs (ribs, edges,
texture), not smooth blobs. Then screens, pinned to ONE CPU core, near-copies of the real training
images (whole-image edits and partial copies) and the last third — other patients, never indexed —
and prints seconds per image (both stages: whole image and region), the index's memory
(resident vs memory-mapped) and the false positives among the other patients. The thresholds are
calibrated on part of those other patients and the false positives counted on the rest.

    .venv/bin/python bench/screening.py [--n 377000] [--queries 24] [--index DIR] [--build-workers 2]

``--index DIR`` keeps the built index in DIR and reuses it on the next run with the same ``--n``
(building 377,000 images takes about an hour and a half on one core; screening it takes minutes).
``--build-workers`` builds with that many processes; screening is always timed on one core.
``--recalibrate`` calibrates a reused index again, as a build would with the code that runs now.
"""

import argparse
import os
import sys

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import contextlib  # noqa: E402
import json  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from screening import distractors, edits, engine, imaging  # noqa: E402

SHARED = ROOT.parent / "shared" / "data" / "cxr_public" / "images"
ASSETS = ROOT / "tests" / "assets" / "cxr_public" / "images"


def real_images():
    folder = SHARED if SHARED.is_dir() else ASSETS
    real = [np.nan_to_num(imaging.load_gray(p), nan=0.0) for p in imaging.list_images(folder)]
    return real[0::3], real[1::3], real[2::3]


def build(directory: Path, n: int, rng, workers: int = 1):
    """A third of the real radiographs are training images (their copies are screened), a third are
    the sources of the distractors (N images in all) — so no distractor is a warped twin of a copied
    original, which no real patient is either — and the last third are other patients: half calibrate,
    half are screened. Returns (real training images, other patients' images)."""
    train_real, sources, others = real_images()
    calibration_set = others[: len(others) // 2]
    distractors.build_index(directory, train_real, calibration_set, n, rng, sources=sources, workers=workers)
    return train_real, others[len(others) // 2:]


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=377_000)
    parser.add_argument("--queries", type=int, default=24, help="near-copies screened (half whole-image, half partial)")
    parser.add_argument("--index", type=Path, help="keep the index here and reuse it when it has --n images")
    parser.add_argument("--build-workers", type=int, default=1, help="processes that build the index")
    parser.add_argument("--recalibrate", action="store_true",
                        help="calibrate a reused index again (after a change to how images are scored)")
    args = parser.parse_args()
    import faiss
    import psutil

    faiss.omp_set_num_threads(max(1, args.build_workers))
    rng = np.random.default_rng(0)
    with contextlib.ExitStack() as stack:
        if args.index is None:
            directory = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="screening-bench-")))
        else:
            directory = args.index
            directory.mkdir(parents=True, exist_ok=True)
        if _reusable(directory, args.n):
            train_real, _, others = real_images()
            others = others[len(others) // 2:]
            print(f"reusing the index of {args.n:,} images in {directory}")
            if args.recalibrate:
                meta = json.loads((directory / "meta.json").read_text())
                meta["calibration"] = engine.calibrate(directory, meta, progress=False)
                (directory / "meta.json").write_text(json.dumps(meta))
                print("calibrated it again with this code")
        else:
            started = time.perf_counter()
            train_real, others = build(directory, args.n, rng, args.build_workers)
            print(f"built an index of {args.n:,} images ({len(train_real)} real, the rest distractors made from them) "
                  f"in {time.perf_counter() - started:.0f} s with {args.build_workers} process(es)")
        faiss.omp_set_num_threads(1)  # screening: one core
        if hasattr(os, "sched_setaffinity"):
            os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
        process = psutil.Process()
        before = process.memory_info().rss
        screener = engine.Screener(directory)
        loaded = process.memory_info().rss
        whole_image_only = engine.Screener(directory, regions_enabled=False)
        rng = np.random.default_rng(1)  # the queries' own draws: the same edits on a built or a reused index
        whole = [edits.FAMILIES[k] for k in ("jpeg_q75", "gamma", "crop", "invert", "markers", "composite")]
        partial = ["patch_copy_25", "splice", "patch_copy_50"]
        queries = []
        for i in range(args.queries):
            position = i % len(train_real)
            original = train_real[position]
            if i % 2 == 0:
                copy = whole[(i // 2) % len(whole)](original, rng)
            else:
                name = partial[(i // 2) % len(partial)]
                other = others[i % len(others)] if edits.PARTIAL_OTHER[name] == "holdout" else \
                    train_real[(position + 1) % len(train_real)]
                copy = edits.PARTIAL[name](original, rng, other)
            queries.append(("near-copy", imaging.load_gray(edits._to_pil(copy))))
        queries += [("other patient", np.asarray(a, np.float32)) for a in others]
        screener.analyse(queries[0][1])  # warm up
        timings, caught, false_positives = [], 0, 0
        for kind, array in queries:
            t = time.perf_counter()
            analysis = screener.analyse(array)
            timings.append(time.perf_counter() - t)
            flagged = analysis.exact or analysis.train_score >= screener.threshold or (
                analysis.region_score is not None and analysis.region_score >= screener.region_threshold)
            caught += kind == "near-copy" and flagged
            false_positives += kind == "other patient" and flagged
        after = process.memory_info().rss
        whole_image_timings = []
        for _, array in queries:
            t = time.perf_counter()
            whole_image_only.analyse(array)
            whole_image_timings.append(time.perf_counter() - t)
        disk = sum(f.stat().st_size for f in directory.iterdir() if f.is_file())
        resident = screener.resident_bytes()
        mapped = sum((directory / name).stat().st_size for name in ("train_verify.u8", "train_region.u8"))
        print(f"index: {args.n:,} training images, {screener.regions.index.ntotal:,} region windows, one CPU core")
        print(f"seconds per image (both stages): mean {np.mean(timings):.3f}, median {np.median(timings):.3f}, "
              f"max {np.max(timings):.3f} (target <= 1.0); whole-image stage alone: mean "
              f"{np.mean(whole_image_timings):.3f}")
        print(f"resident index memory: {resident / 2**20:.1f} MiB (target <= 1024 MiB); process RSS grew "
              f"{(loaded - before) / 2**20:.1f} MiB on load, {(after - before) / 2**20:.1f} MiB after {len(queries)} screenings")
        print(f"memory-mapped thumbnails on disk (read only for candidates): {mapped / 2**20:.1f} MiB; "
              f"index on disk {disk / 2**20:.1f} MiB")
        near = sum(1 for kind, _ in queries if kind == "near-copy")
        print(f"near-copies flagged: {caught} of {near} (whole-image edits and partial copies)")
        print(f"other patients flagged (false positives): {false_positives} of {len(others)} "
              f"(thresholds: whole image {screener.threshold:.3f}, region {screener.region_threshold:.3f}, "
              f"calibrated on {screener.holdout_count} other patients)")
    return 0


def _reusable(directory: Path, n: int) -> bool:
    try:
        meta = json.loads((directory / "meta.json").read_text())
    except (OSError, ValueError):
        return False
    return engine.is_current(directory) and meta.get("train_count") == n and bool(meta.get("calibration"))


if __name__ == "__main__":
    sys.exit(main())
