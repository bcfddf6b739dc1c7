"""Verifying a region match: is a candidate training image really where a screened image's region came from?

The region stage (:mod:`screening.regions`) retrieves candidate training images by their windows; this
module decides. Both images are compared as band-pass "detail" (:func:`detail`): the best query windows
are correlated at every position in the candidate (:class:`NccPlan`, by FFT), and the match is grown to
the share of the query's area whose tiles agree at that displacement (:func:`agreement_area`), counting
only tiles with two-dimensional structure (:func:`structured_tiles`). :func:`fuse` makes the score.
"""

from __future__ import annotations

import numpy as np
from scipy import fft as sfft

AGREEMENT_TILE = 16
AGREEMENT_STRIDE = 8
AGREEMENT_PEARSON = 0.85  # a 16×16 tile agrees when its correlation at the match's displacement is this high
# ... and when its detail is two-dimensional: the smaller eigenvalue of its gradients' structure tensor
# at least this share of the larger (see structured_tiles). On the 60 public images this ratio had a
# median of 0.10 in tiles agreeing by chance between patients (a tenth below 0.012: straight edges,
# the image's border) and of 0.36 in tiles of copied regions (5 % below 0.08).
MIN_ISOTROPY = 0.1
FULL_AREA = 0.25
DETAIL_SIGMA = 3.0  # verification compares detail (a band of the image between these blurs), see detail()
DETAIL_FINE = 0.8


def box_sums(values: np.ndarray, size: int) -> np.ndarray:
    """Sums over every size×size box (valid positions), by an integral image."""
    total = np.pad(np.cumsum(np.cumsum(values, axis=0), axis=1), ((1, 0), (1, 0)))
    return total[size:, size:] - total[:-size, size:] - total[size:, :-size] + total[:-size, :-size]


def detail(thumb: np.ndarray) -> np.ndarray:
    """The thumbnail minus its Gaussian blur (NaN kept): ribs, vessels, edges and texture. Chest
    radiographs of different patients share their smooth layout, so raw windows of two patients
    correlate at 0.97 or more; their detail does not."""
    from scipy import ndimage

    thumb = np.asarray(thumb, dtype=np.float64)
    invalid = np.isnan(thumb)
    filled = np.where(invalid, np.nanmean(thumb) if (~invalid).any() else 0.0, thumb)
    out = ndimage.gaussian_filter(filled, DETAIL_FINE) - ndimage.gaussian_filter(filled, DETAIL_SIGMA)
    out[invalid] = np.nan
    return out


class NccPlan:
    """Normalised cross-correlation of square windows of one size at every valid position in ``image``
    (finite): the image's FFT and local variances are computed once and shared by all its windows."""

    def __init__(self, image: np.ndarray, size: int, floor: float = 1.0):
        self.image, self.size = image, size
        # A circular correlation as large as the image is exact at every valid position (what wraps
        # around lands only on positions where the window would overhang), and 128 is a fast FFT
        # size where the full linear size, 167, is a prime.
        self.shape = tuple(sfft.next_fast_len(n, real=True) for n in image.shape)
        self.spectrum = sfft.rfft2(image, self.shape, workers=1)
        sums = box_sums(image, size)
        variance = np.maximum(box_sums(image * image, size) - sums * sums / (size * size), 1e-6)
        # No peaks on flat regions: a window can only match where the candidate has some pattern.
        self.scale = np.sqrt(np.maximum(variance, (size * size) * floor ** 2))

    def __call__(self, window: np.ndarray) -> np.ndarray:
        h, w = window.shape
        z = window - window.mean()
        norm = float(np.sqrt((z * z).sum()))
        if norm < 1e-6:
            return np.full(self.scale.shape, -1.0)
        corr = sfft.irfft2(self.spectrum * sfft.rfft2(z[::-1, ::-1], self.shape, workers=1), self.shape,
                           workers=1)[h - 1:self.image.shape[0], w - 1:self.image.shape[1]]
        return corr / (norm * self.scale)


def _tile_starts(size: int) -> np.ndarray:
    return np.arange(0, size - AGREEMENT_TILE + 1, AGREEMENT_STRIDE)


def structured_tiles(query: np.ndarray) -> np.ndarray:
    """Which AGREEMENT_TILE tiles (on the AGREEMENT_STRIDE grid) of a detail image have two-dimensional
    structure: the smaller eigenvalue of the tile's structure tensor (summed outer products of the
    gradient) is at least MIN_ISOTROPY of the larger. A straight edge (the image's border, a rib's or
    the diaphragm's outline, a tube) correlates with any straight edge of another radiograph anywhere
    along its length, so tiles holding only edges say nothing about where a region came from."""
    gy, gx = np.gradient(np.nan_to_num(query))
    starts = _tile_starts(query.shape[0])
    xx, yy, xy = (box_sums(v, AGREEMENT_TILE)[np.ix_(starts, starts)] for v in (gx * gx, gy * gy, gx * gy))
    half_trace = (xx + yy) / 2
    spread = np.sqrt(np.maximum(half_trace ** 2 - (xx * yy - xy * xy), 0.0))
    return (half_trace - spread) >= MIN_ISOTROPY * np.maximum(half_trace + spread, 1e-9)


def agreement_area(query: np.ndarray, candidate: np.ndarray, displacement: tuple,
                   structured: np.ndarray | None = None) -> float:
    """Share of the query's (valid) AGREEMENT_TILE tiles, on an AGREEMENT_STRIDE grid, that correlate
    at least AGREEMENT_PEARSON with the candidate moved by ``displacement`` (candidate = query + d)
    and have two-dimensional structure (``structured``, see :func:`structured_tiles`): how much of
    the image the match covers. A copied region agrees over its whole area; a chance match of one
    window between two patients' radiographs does not spread beyond it."""
    dy, dx = (int(v) for v in displacement)
    size, tile = query.shape[0], AGREEMENT_TILE
    starts = _tile_starts(size)
    if structured is None:
        structured = structured_tiles(query)
    valid_tiles = box_sums((~np.isnan(query)).astype(np.float64), tile)[np.ix_(starts, starts)] >= tile * tile - 0.5
    total = int(valid_tiles.sum())
    if not total:
        return 0.0
    # The overlap of the query and the moved candidate, in query coordinates.
    top, left = max(0, -dy), max(0, -dx)
    bottom, right = min(size, size - dy), min(size, size - dx)
    if bottom - top < tile or right - left < tile:
        return 0.0
    q = np.nan_to_num(query[top:bottom, left:right])
    t = candidate[top + dy:bottom + dy, left + dx:right + dx]
    n = tile * tile
    sq, st = box_sums(q, tile), box_sums(t, tile)
    cov = box_sums(q * t, tile) - sq * st / n
    vq = box_sums(q * q, tile) - sq * sq / n
    vt = box_sums(t * t, tile) - st * st / n
    pearson = cov / np.sqrt(np.maximum(vq * vt, 1e-9))
    agree = np.zeros((size - tile + 1, size - tile + 1), dtype=bool)
    agree[top:top + pearson.shape[0], left:left + pearson.shape[1]] = (pearson >= AGREEMENT_PEARSON) & (vq > n) & (vt > n)
    return float((agree[np.ix_(starts, starts)] & valid_tiles & structured).sum() / total)


def fuse(correlation: float, area: float) -> float:
    """The region score: half the best window's correlation, half the matched area (full at a
    quarter of the image). The area is what separates a copied region from a chance match of one
    window, which grows likelier as the index grows; the correlation ranks matches of equal area."""
    return 0.5 * correlation + 0.5 * min(1.0, area / FULL_AREA)
