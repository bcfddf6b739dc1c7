"""The coarse alignment search finds shifts anywhere in its window, both signs on both axes.

The shifted copies are cut with numpy slicing, not with the aligner's own warp, so a mix-up of which
correlation lag means which shift (or a window that drops the negative lags) fails here.
"""

import numpy as np
import pytest
from scipy import ndimage

from screening import align


def _texture(seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    smooth = ndimage.gaussian_filter(rng.normal(0.0, 1.0, (64, 64)), 1.5)
    return 255.0 * (smooth - smooth.min()) / (smooth.max() - smooth.min())


def _moved(image: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """``image`` with its content moved down by ``dy`` and right by ``dx``; NaN where nothing came in."""
    out = np.full_like(image, np.nan)
    h, w = image.shape
    out[max(dy, 0): h + min(dy, 0), max(dx, 0): w + min(dx, 0)] = \
        image[max(-dy, 0): h + min(-dy, 0), max(-dx, 0): w + min(-dx, 0)]
    return out


@pytest.mark.parametrize("dy, dx", [(0, 0), (9, -12), (-13, 5), (-11, -11), (12, 13)])
def test_coarse_search_recovers_a_shift_of_either_sign(dy, dx):
    original = _texture(1)
    others = [_texture(seed) for seed in (2, 3, 4)]
    candidates = np.stack([others[0], original, *others[1:]]).astype(np.float32)

    matches = align.verify_candidates(_moved(original, dy, dx), candidates, refine=1, orientations=(False,))

    best = max(matches, key=lambda m: m.score)
    assert best.index == 1
    # The query is warped by ``shift`` onto the candidate: moving the content back is a shift of -d.
    assert best.shift == pytest.approx((-dy, -dx), abs=0.6)
    assert best.pearson > 0.99


def test_the_mirror_image_is_found_mirrored():
    original = _texture(5)
    candidates = np.stack([_texture(6), original]).astype(np.float32)

    matches = align.verify_candidates(_moved(original[:, ::-1], 4, -7), candidates, refine=2)

    best = max(matches, key=lambda m: m.score)
    assert best.index == 1 and best.flipped
    assert best.pearson > 0.99
