"""Aligning a screened image's thumbnail to candidate training thumbnails, and scoring the match.

Everything here works on 64×64 thumbnails (0–255 floats, NaN = padding) and knows nothing about
indexes: :func:`verify_candidates` aligns a query to each candidate (flip × rotation × zoom × every
shift, by FFT), polishes the best ones sub-pixel and scores them; :func:`orientation_prior` and
:func:`apply_variant` handle the query's polarity and quarter-turn orientation (a negative, an image
hung upside down or sideways), which :class:`screening.search.Screener` screens as well.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import fft as sfft
from scipy import ndimage

from . import imaging

SHIFT_RADIUS = 14  # pixels of the 64-pixel grid searched for translation (about 22%)
ROTATIONS = tuple(np.arange(-10.0, 10.01, 2.5))
ZOOMS = (0.95, 1.0, 1.05, 1.11, 1.18, 1.25)  # sampling factors that undo crops/zooms of up to 25%
ZOOMS_OUT = (0.8, 0.87)  # and that undo a zoom-out to 80 % (tried when the query has padding)
FUSION_WEIGHTS = {"pearson": 0.3, "ssim": 0.3, "tiled_l2": 0.2, "ratio": 0.2}
# Robust scoring (burned-in markers, text, boxes): after alignment, pixels whose standardised
# difference from the candidate is an outlier (beyond OCCLUSION_SIGMAS robust standard deviations of
# the differences, and at least OCCLUSION_FLOOR) are left out of every score, at most
# OCCLUSION_MAX_SHARE of the compared pixels; the tiled distance ignores its TILES_IGNORED worst tiles.
OCCLUSION_SIGMAS = 9.0
OCCLUSION_FLOOR = 0.5
OCCLUSION_MAX_SHARE = 0.2
TILES_IGNORED = 1

# Polarity and orientation of the query: (quarter turns counter-clockwise, inverted). The identity
# comes first. A horizontal flip is not a variant: verification already tries the mirror image, and
# together with the quarter turns it covers vertical flips and transpositions.
IDENTITY = (0, False)
VARIANTS = tuple((turns, inverted) for inverted in (False, True) for turns in range(4))


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
    occluded: float = 0.0  # share of the compared pixels left out as occluded (robust scoring)
    variant: tuple = IDENTITY  # (quarter turns, inverted) applied to the query before alignment
    group: int = 0  # which group of candidates (see verify_candidates) it was scored in


def apply_variant(thumb: np.ndarray, variant: tuple) -> np.ndarray:
    """The thumbnail turned by ``variant[0]`` quarter turns and, if ``variant[1]``, inverted (a negative)."""
    turns, inverted = variant
    out = np.rot90(np.asarray(thumb, dtype=np.float64), int(turns))
    return np.ascontiguousarray(255.0 - out if inverted else out)


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


def _tiled_l2(x: np.ndarray, y: np.ndarray, mask: np.ndarray, tiles: int = 4, ignore: int = 0) -> float:
    """Carlini et al.'s tiled distance: the largest per-tile RMS difference (standardised images).
    With ``ignore`` > 0, the ``ignore`` worst tiles are left out (robust to a few occluded tiles)."""
    size = x.shape[0] // tiles
    distances = []
    for i in range(tiles):
        for j in range(tiles):
            sl = (slice(i * size, (i + 1) * size), slice(j * size, (j + 1) * size))
            m = mask[sl]
            if m.mean() < 0.5:
                continue
            diff = (x[sl] - y[sl])[m]
            distances.append(float(np.sqrt(np.mean(diff * diff))))
    if not distances:
        return 0.0
    distances.sort(reverse=True)
    return distances[min(ignore, len(distances) - 1)]


def occluded_pixels(x: np.ndarray, y: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Where an aligned query differs from its candidate far more than it does elsewhere: burned-in
    text, markers, boxes (or anything else pasted over the image). ``x`` and ``y`` are standardised
    over ``mask``. At most OCCLUSION_MAX_SHARE of the mask, the largest differences first."""
    residual = np.abs(x - y)
    values = residual[mask]
    if values.size < 16:
        return np.zeros_like(mask)
    spread = 1.4826 * float(np.median(np.abs(values - np.median(values))))
    cut = max(OCCLUSION_SIGMAS * spread + float(np.median(values)), OCCLUSION_FLOOR)
    cap = float(np.quantile(values, 1.0 - OCCLUSION_MAX_SHARE))
    return mask & (residual > max(cut, cap))


def fuse(pearson: float, ssim: float, tiled_l2: float, ratio: float) -> float:
    w = FUSION_WEIGHTS
    return float(
        w["pearson"] * pearson + w["ssim"] * ssim + w["tiled_l2"] * (1.0 - min(tiled_l2, 2.0) / 2.0)
        + w["ratio"] * (1.0 - min(max(ratio, 0.0), 1.0))
    )


def score_alignment(aligned: np.ndarray, candidate: np.ndarray, robust: bool = True) -> dict | None:
    """Pearson, SSIM and tiled L2 of an aligned query (NaN = outside) against its candidate; with
    ``robust``, over the pixels that are not occluded (see :func:`occluded_pixels`)."""
    mask = ~np.isnan(aligned)
    if mask.sum() < 16:
        return None
    candidate = np.asarray(candidate, dtype=np.float32)
    x = _zscore_masked(np.nan_to_num(aligned), mask)
    y = _zscore_masked(candidate, mask)
    plain = float((x[mask] * y[mask]).mean())
    occluded = 0.0
    if robust:
        hidden = occluded_pixels(x, y, mask)
        if hidden.any():
            occluded = float(hidden.sum() / mask.sum())
            mask = mask & ~hidden
            x = _zscore_masked(np.nan_to_num(aligned), mask)
            y = _zscore_masked(candidate, mask)
    return {"pearson": float((x[mask] * y[mask]).mean()), "plain_pearson": plain, "ssim": _ssim(x, y, mask),
            "tiled_l2": _tiled_l2(x, y, mask, ignore=TILES_IGNORED if robust else 0), "occluded": occluded}


def verify_candidates(query: np.ndarray, candidates: np.ndarray, groups=None, refine=3,
                      orientations: tuple = (False, True), subjects: np.ndarray | None = None,
                      robust: bool = True, zooms: tuple = ZOOMS) -> list[Match]:
    """Align ``query`` (64×64 float 0–255, NaN = padding) to each candidate thumbnail and score.

    A coarse search (the orientations given × rotations × zooms, every shift within SHIFT_RADIUS by
    FFT cross-correlation) finds each candidate's best alignment; the ``refine`` best of each
    group (``groups``: one group per candidate, or a dict group → candidate positions, which may
    overlap; ``refine``: an int, or a dict group → count) are then aligned exactly and scored
    with Pearson, SSIM, tiled L2 (robust to occlusion with ``robust``) and the nearest/second-nearest
    ratio, fused into one score. The ratio's "second nearest" is the nearest candidate of the same
    group that belongs to another patient (``subjects``: one code per candidate; default: every
    candidate its own patient), so a patient's second study is never "another image". Returns one
    Match per refined candidate and group (``index`` is the position in ``candidates``)."""
    k = len(candidates)
    if k == 0:
        return []
    if not isinstance(groups, dict):
        groups = np.zeros(k, dtype=np.int64) if groups is None else np.asarray(groups)
        groups = {int(g): np.nonzero(groups == g)[0] for g in np.unique(groups)}
    subjects = np.arange(k) if subjects is None else np.asarray(subjects)
    cand = np.asarray(candidates, dtype=np.float32)
    cz = imaging.standardise(cand.reshape(k, -1), axis=1).reshape(cand.shape)
    cf = sfft.rfft2(cz, workers=1)
    cf2 = sfft.rfft2(cz * cz, workers=1)
    size = query.shape[0]
    r = SHIFT_RADIUS
    best = np.full(k, -np.inf)
    params: list = [None] * k

    # Only shifts |d| <= r are kept: the inverse FFT runs down the columns, keeps those rows, and then
    # along those rows only (the same numbers as a full inverse FFT cut to the window, in 3/4 of the time).
    kept = np.r_[0: r + 1, size - r: size]  # the shifts 0..r, then -r..-1, on either axis
    products = np.empty((3, *cf.shape), dtype=np.result_type(cf.dtype, np.complex64))

    def correlations(fa, fm):  # [a ⋆ c, mask ⋆ c, mask ⋆ c²] at the kept shifts: values[..., dy, dx]
        np.multiply(fa[None], cf, out=products[0])
        np.multiply(fm[None], cf, out=products[1])
        np.multiply(fm[None], cf2, out=products[2])
        down = sfft.ifft(products, axis=-2, workers=1)[..., kept, :]
        return sfft.irfft(down, n=size, axis=-1, workers=1)[..., kept]

    for flipped in orientations:
        q = np.ascontiguousarray(query[:, ::-1] if flipped else query, dtype=np.float64)
        for rotation in ROTATIONS:
            for zoom in zooms:
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
                ac, s1, s2 = correlations(fa, fm)
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
    matches, cache = [], {}
    for group, members in groups.items():
        members = np.asarray(members, dtype=np.int64)
        members = members[np.argsort(-best[members])]
        coarse = {int(j): float(best[j]) for j in members}
        count = refine.get(int(group), 3) if isinstance(refine, dict) else refine
        refined = []
        for j in members[:count]:
            j = int(j)
            if params[j] is None:
                continue
            if j not in cache:  # a candidate in two groups is aligned and scored once
                flipped, rotation, zoom, shift = params[j]
                q = np.ascontiguousarray(query[:, ::-1] if flipped else query, dtype=np.float64)
                rotation, zoom, shift = _refine_alignment(q, cand[j], rotation, zoom, shift)
                cache[j] = (score_alignment(_warp(q, rotation, zoom, shift), cand[j], robust),
                            (flipped, rotation, zoom, tuple(shift)))
            scores, (flipped, rotation, zoom, shift) = cache[j]
            if scores is None:
                continue
            # The ratio compares like with like: plain correlations, the refined ones where known.
            coarse[j] = max(coarse[j], scores["plain_pearson"])
            refined.append((Match(index=j, score=0.0, pearson=scores["pearson"], ssim=scores["ssim"],
                                  tiled_l2=scores["tiled_l2"], ratio=1.0, flipped=bool(flipped), rotation=rotation,
                                  zoom=zoom, shift=shift, occluded=scores["occluded"], group=int(group)),
                            scores["plain_pearson"]))
        distances = {j: 1.0 - c for j, c in coarse.items()}
        for m, plain in refined:
            others = [d for j, d in distances.items() if subjects[j] != subjects[m.index]]
            second = min(others) if others else 1.0
            m.ratio = float(min(1.0, max(0.0, 1.0 - plain) / max(second, 1e-6)))
            m.score = fuse(m.pearson, m.ssim, m.tiled_l2, m.ratio)
            matches.append(m)
    return matches


def canonical_vector(query: np.ndarray, template: np.ndarray) -> np.ndarray:
    """The retrieval vector of ``query`` (64×64, 0–255, NaN = padding) warped onto ``template`` (the
    mean training thumbnail) by its best alignment without flipping. Chest radiographs share one
    layout, so a copy and its original are both brought to nearly the same frame, whatever crop,
    rotation or shift made the copy: a view of the image that the fixed query variants lack."""
    query = np.asarray(query, dtype=np.float64)
    matches = verify_candidates(query, np.asarray(template, np.float32)[None], refine=1, orientations=(False,),
                                robust=False)
    if matches:
        warped = _warp(query, matches[0].rotation, matches[0].zoom, matches[0].shift)
        if (~np.isnan(warped)).mean() >= 0.3:
            query = warped
    return imaging.retrieval_vector(np.clip(query, 0, 255))


# --- Polarity and orientation ----------------------------------------------------------------------

PRIOR_GRID = 16


def _block_means(thumb: np.ndarray, grid: int = PRIOR_GRID) -> np.ndarray:
    """``grid``² block means of a 64×64 thumbnail; NaN where more than half a block is NaN."""
    thumb = np.asarray(thumb, dtype=np.float64)
    valid = ~np.isnan(thumb)
    step = thumb.shape[0] // grid
    sums = np.where(valid, thumb, 0.0).reshape(grid, step, grid, step).sum(axis=(1, 3))
    counts = valid.reshape(grid, step, grid, step).sum(axis=(1, 3))
    return np.where(counts > step * step / 2, sums / np.maximum(counts, 1), np.nan)


def _pearson_nan(a: np.ndarray, b: np.ndarray) -> float:
    valid = ~np.isnan(a) & ~np.isnan(b)
    if valid.sum() < 8:
        return -1.0
    x, y = a[valid] - a[valid].mean(), b[valid] - b[valid].mean()
    return float((x * y).sum() / max(np.sqrt((x * x).sum() * (y * y).sum()), 1e-9))


def template_grid(template: np.ndarray) -> np.ndarray:
    return _block_means(template)


def orientation_prior(thumb: np.ndarray, grid_template: np.ndarray, variants=VARIANTS) -> dict:
    """How much each polarity/orientation variant of ``thumb`` looks like a chest radiograph hung the
    usual way: the correlation of its 16×16 block means with the mean training thumbnail's (the
    better of the image and its mirror image), with border regions that are very dark or very bright
    (padding of either polarity) left out. The bright spine and mediastinum between dark lungs make
    this decide polarity and quarter turn reliably on whole radiographs."""
    thumb = np.asarray(thumb, dtype=np.float64)
    hidden = np.isnan(mask_dark_border(thumb)) | np.isnan(mask_dark_border(255.0 - thumb))
    blocks = _block_means(np.where(hidden, np.nan, thumb))
    prior = {}
    for variant in variants:
        v = apply_variant(blocks, variant)
        prior[variant] = max(_pearson_nan(v, grid_template), _pearson_nan(v[:, ::-1], grid_template))
    return prior
