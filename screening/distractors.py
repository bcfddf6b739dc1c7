"""Distractors: radiographs made from real ones, to grow an index to a size the real images alone
cannot reach (the benchmark at MIMIC-CXR scale, and the evaluation's check of how false positives
move as the index grows).

Each distractor is a real radiograph warped elastically, rotated, zoomed and shifted, with its
contrast and gamma changed and noise added: a different image at the pixel level with a radiograph's
structure (ribs, edges, texture), unlike smooth random blobs, which no real image resembles and
which would make false positives look rarer than they are. They are less varied than real patients
(all come from the few real images given), which makes matches between them and a query likelier,
not rarer.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from scipy import ndimage

from . import engine, imaging, parallel, regions, vector_index

STEP = 4096


def make(sources: np.ndarray, count: int, rng) -> np.ndarray:
    """``count`` 128×128 uint8 radiographs made from ``sources`` (K×128×128 floats 0–1): elastic
    warp (a smooth random displacement field of up to ~4 pixels), rotation ±8°, zoom 0.9–1.1, shift
    ±8 px, gamma 0.7–1.4, contrast, and noise. Each is a different image at the pixel level, with
    a radiograph's structure."""
    size = regions.REGION_SIZE
    out = np.empty((count, size, size), np.uint8)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    centre = (size - 1) / 2
    for i in range(count):
        source = sources[int(rng.integers(0, len(sources)))]
        angle = np.radians(rng.uniform(-8, 8))
        zoom = rng.uniform(0.9, 1.1)
        dy, dx = rng.uniform(-8, 8, 2)
        field = rng.normal(0, 1, (2, 6, 6)).astype(np.float32)
        flow = np.stack([ndimage.zoom(f, size / 6, order=3) for f in field]) * 4.0
        cos, sin = np.cos(angle) * zoom, np.sin(angle) * zoom
        ys = cos * (yy - centre) - sin * (xx - centre) + centre + dy + flow[0]
        xs = sin * (yy - centre) + cos * (xx - centre) + centre + dx + flow[1]
        image = ndimage.map_coordinates(source, [ys, xs], order=1, mode="nearest")
        image = np.clip(image, 0, 1) ** rng.uniform(0.7, 1.4)
        image = (image - 0.5) * rng.uniform(0.8, 1.2) + 0.5 + rng.normal(0, 0.02, image.shape)
        out[i] = np.clip(np.rint(image * 255), 0, 255).astype(np.uint8)
    return out


def build_index(directory: Path, train_real: list, calibration_set: list, n: int, rng, sources: list | None = None,
                workers: int = 1) -> dict:
    """An index of ``n`` training images — ``train_real`` (normalised arrays) and distractors made
    from ``sources`` (default: ``train_real``) — calibrated on ``calibration_set``, written as :mod:`screening.index` lays it out but
    directly (decoding hundreds of thousands of files would measure the disk, not screening).
    ``workers`` > 1 makes and describes the distractors in that many processes (each chunk draws from
    its own generator, seeded from ``rng``, so the index does not depend on ``workers``). Returns the meta."""
    import faiss

    directory = Path(directory)
    size = imaging.VERIFY_SIZE
    sources = np.stack([regions.stored_thumbnail(a) for a in (sources or train_real)]).astype(np.float32) / 255.0
    region = np.memmap(directory / "train_region.u8", dtype=np.uint8, mode="w+", shape=(n, 128, 128))
    verify = np.memmap(directory / "train_verify.u8", dtype=np.uint8, mode="w+", shape=(n, size, size))
    region[: len(train_real)] = np.stack([regions.stored_thumbnail(a) for a in train_real])
    verify[: len(train_real)] = np.stack([imaging.verification_thumbnail(a) for a in train_real])
    seed = int(rng.integers(0, 2 ** 63))

    def made(start):
        return make(sources, min(n, start + STEP) - start, np.random.default_rng([seed, start]))

    starts = range(len(train_real), n, STEP)
    for start, images in zip(starts, parallel.ordered_map(made, starts, workers=workers)):
        region[start:start + len(images)] = images
        verify[start:start + len(images)] = np.rint(
            images.astype(np.float32).reshape(-1, size, 2, size, 2).mean(axis=(2, 4)))
    region.flush()
    verify.flush()
    vectors = np.empty((n, imaging.RETRIEVAL_CROP ** 2), np.float32)
    hashes = np.empty(n, np.uint64)

    def described(start):
        chunk = np.asarray(verify[start:start + STEP])
        return (np.stack([imaging.retrieval_vector(t) for t in chunk]),
                np.array([imaging.perceptual_hash(t) for t in chunk], np.uint64))

    starts = range(0, n, STEP)
    for start, (chunk_vectors, chunk_hashes) in zip(starts, parallel.ordered_map(described, starts, workers=workers)):
        vectors[start:start + len(chunk_vectors)] = chunk_vectors
        hashes[start:start + len(chunk_hashes)] = chunk_hashes
    mean, components = engine.fit_pca(vectors)
    projected = np.concatenate([engine.project(vectors[start:start + 100_000], mean, components)
                                for start in range(0, n, 100_000)])
    index = vector_index.image_index(projected)
    faiss.write_index(index, str(directory / "train_vectors.faiss"))
    np.savez(directory / "pca.npz", mean=mean, components=components)
    del index, projected
    # The canonical view: real for the real training images. The distractors keep their plain
    # descriptors (aligning 377,000 of them would take hours), which costs the search the same.
    template = np.asarray(verify[: len(train_real)], np.float32).mean(axis=0)
    canonical = vectors
    for i in range(len(train_real)):
        canonical[i] = engine.canonical_vector(engine.mask_dark_border(verify[i]), template)
    engine.write_canonical_index(directory, template, canonical)
    del vectors, canonical
    np.save(directory / "train_hashes.npy", hashes)
    windows = regions.write_index(directory, region, workers=workers)
    (directory / "train_paths.json").write_text(json.dumps([f"distractor/{i}.png" for i in range(n)]))
    engine.write_subjects(directory, "train", [""] * n, [""] * n, ["none"] * n)  # each image its own patient
    np.save(directory / "holdout_verify.npy", np.stack([imaging.verification_thumbnail(a) for a in calibration_set]))
    np.save(directory / "holdout_region.npy", np.stack([regions.stored_thumbnail(a) for a in calibration_set]))
    holdout_vectors = np.stack([imaging.retrieval_vector(imaging.verification_thumbnail(a)) for a in calibration_set])
    np.save(directory / "holdout_vectors.npy", engine.project(holdout_vectors, mean, components))
    engine.write_subjects(directory, "holdout", [""] * len(calibration_set), [""] * len(calibration_set),
                          ["none"] * len(calibration_set))
    meta = {"format": engine.FORMAT_VERSION, "train_root": "/synthetic", "holdout_root": "", "train_count": n,
            "holdout_count": len(calibration_set), "pca_dim": int(components.shape[0]), "verify_size": size,
            "region": {"size": regions.REGION_SIZE, "window": regions.WINDOW, "windows": windows},
            "stage_b": None, "calibration": None}
    (directory / "meta.json").write_text(json.dumps(meta))
    meta["calibration"] = engine.calibrate(directory, meta, progress=False)
    (directory / "meta.json").write_text(json.dumps(meta))
    return meta
