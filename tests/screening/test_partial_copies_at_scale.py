"""Partial copies among many look-alikes (issue 14): the smallest copies the region stage promises to
catch — a quarter of the image at an aspect of 4:3, which may hold only two of the original's
training windows — are found when the index also holds thousands of radiograph-like distractors,
as a MIMIC-CXR-sized index holds millions of look-alike windows.

The copies are cut and pasted here with plain numpy and PIL; the distractors are warped copies of
other patients' radiographs (screening.distractors, the benchmark's generator), never of a copied
original."""

import numpy as np
import pytest
from PIL import Image

from screening import calibration, distractors, imaging, regions

DISTRACTORS = 5_000  # 320,000 windows: an inverted file of product-quantised codes, as at scale
COPIES = 24


def _image(folder, position):
    return np.nan_to_num(imaging.load_gray(imaging.list_images(folder)[position]), nan=0.0)


def _paste(source, background, share, aspect, source_at, target_at):
    out = np.asarray(Image.fromarray(background.astype(np.float32), mode="F").resize(source.shape[::-1]), np.float32).copy()
    h, w = source.shape
    ph, pw = int(h * np.sqrt(share * aspect)), int(w * np.sqrt(share / aspect))
    sy, sx = int(source_at[0] * (h - ph)), int(source_at[1] * (w - pw))
    ty, tx = int(target_at[0] * (h - ph)), int(target_at[1] * (w - pw))
    out[ty:ty + ph, tx:tx + pw] = source[sy:sy + ph, sx:sx + pw]
    return out


def _as_png(image):
    pixels = np.clip(np.rint(image * 255), 0, 255).astype(np.uint8)
    return imaging.load_gray(Image.fromarray(pixels, mode="L"))


@pytest.fixture(scope="module")
def crowded(screening_split, tmp_path_factory):
    """(region search, training images, other patients): 30 training radiographs and DISTRACTORS warped
    copies of 15 other patients' radiographs; the other 15 patients are the copies' backgrounds."""
    train_dir, holdout_dir = screening_split
    train = [_image(train_dir, i) for i in range(len(imaging.list_images(train_dir)))]
    others = [_image(holdout_dir, i) for i in range(len(imaging.list_images(holdout_dir)))]
    sources = np.stack([regions.stored_thumbnail(a) for a in others[:15]]).astype(np.float32) / 255.0
    thumbnails = np.concatenate([np.stack([regions.stored_thumbnail(a) for a in train]),
                                 distractors.make(sources, DISTRACTORS, np.random.default_rng(0))])
    directory = tmp_path_factory.mktemp("crowded-region-index")
    regions.write_index(directory, thumbnails)
    return regions.RegionSearch(directory, len(thumbnails)), train, others[15:]


def test_quarter_area_copies_are_found_among_thousands_of_look_alike_radiographs(crowded):
    search, train, backgrounds = crowded
    assert search.index.ntotal > regions.EXACT_SEARCH_LIMIT  # the approximate index, as at MIMIC scale
    rng = np.random.default_rng(5)
    missed = []
    for case in range(COPIES):
        position = int(rng.integers(0, len(train)))
        source_at, target_at = tuple(rng.uniform(0, 1, 2)), tuple(rng.uniform(0, 1, 2))
        aspect = rng.uniform(0.75, 1.33)
        background = backgrounds[int(rng.integers(0, len(backgrounds)))]
        copy = regions.region_thumbnail(_as_png(_paste(train[position], background, 0.25, aspect, source_at, target_at)))

        match = search.analyse(copy)

        if match is None or match.index != position or match.score < calibration.REGION_FLOOR:
            missed.append((case, position, None if match is None else (match.index, round(match.score, 3))))
    assert not missed, f"{len(missed)} of {COPIES} quarter-area copies not found: {missed}"
