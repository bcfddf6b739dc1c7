"""The faiss indexes of both stages: exact while an index is small, inverted files at MIMIC-CXR scale.

Whole-image descriptors (one per training image) are searched exactly up to EXACT_IMAGES images. Beyond,
an exact search costs time in proportion to the index (11 ms per screened image measured at 20,000
images on one core, so about 0.2 s at 377,000), so they go into an inverted file (IVF-Flat: the vectors
themselves, no quantisation error) of about 4·√N lists, of which IMAGE_NPROBE are searched.

Region windows (64 per training image, 24 million at MIMIC scale) go into an inverted file of
product-quantised codes whose lists hold about REGION_LIST_SIZE windows each, whatever the index's
size: the search of a query's 900 windows then scans the same number of codes at 20,000 or 377,000
images (REGION_NPROBE lists each), where lists of √N windows made it grow with the index (0.21 s per
image measured at 20,000 images; 4.3 times the codes at 377,000).
"""

from __future__ import annotations

import math

import numpy as np

EXACT_IMAGES = 50_000
IMAGE_NPROBE = 128
REGION_LIST_SIZE = 1_500
REGION_NPROBE = 8
TRAINING_PER_LIST = 30  # k-means training points per list (faiss asks for at least 39; 30 keeps the build shorter)


def image_index(vectors: np.ndarray, seed: int = 0):
    """An inner-product index of L2-normalised whole-image descriptors (N×d float32)."""
    import faiss

    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    count, dim = vectors.shape
    if count <= EXACT_IMAGES:
        index = faiss.IndexFlatIP(dim)
    else:
        nlist = int(4 * math.sqrt(count))
        index = faiss.IndexIVFFlat(faiss.IndexFlatIP(dim), dim, nlist, faiss.METRIC_INNER_PRODUCT)
        rng = np.random.default_rng(seed)
        index.train(vectors[np.sort(rng.choice(count, min(count, 64 * nlist), replace=False))])
    index.add(vectors)
    return index


def region_lists(expected_windows: int) -> int:
    """How many inverted lists a region index of about ``expected_windows`` windows gets."""
    return max(1, int(round(expected_windows / REGION_LIST_SIZE)))


def read(path):
    """The index at ``path``, ready to search: its lists probed as this version does (an inverted file
    of whole-image descriptors also maps ids to vectors, which the like-with-like comparison
    reconstructs)."""
    import faiss

    index = faiss.read_index(str(path))
    if isinstance(index, faiss.IndexIVFFlat):
        index.nprobe = min(IMAGE_NPROBE, index.nlist)
        index.make_direct_map()
    elif hasattr(index, "nprobe"):
        index.nprobe = min(REGION_NPROBE, index.nlist)
    return index


def resident_bytes(index) -> int:
    """What ``index`` holds in memory: vectors or codes, their ids (and the direct map of an IVF-Flat
    file), and the coarse centroids."""
    import faiss

    if hasattr(index, "nlist"):
        ids = 8 * index.ntotal * (2 if isinstance(index, faiss.IndexIVFFlat) else 1)
        return int(index.ntotal * index.code_size + ids + index.nlist * index.d * 4)
    return int(index.ntotal * index.d * 4)
