"""Fidelity and diversity of synthetic images against real radiographs, on features of an encoder.

Plain functions of two feature matrices (one row per image): the Fréchet distance (FID's formula on
whatever encoder is given), precision and recall of Kynkäänniemi et al. (2019), density and coverage of
Naeem et al. (2020), intra-set diversity, and percentile bootstrap confidence intervals. All of these are
biased at small sample sizes (the Fréchet distance upwards, strongly so when there are fewer images than
feature dimensions); ``report`` prints that caveat with the sample sizes, and figures should only be
compared at equal sample sizes and with the same encoder.
"""

from __future__ import annotations

import warnings

import numpy as np
from scipy import linalg

DEFAULT_K = 5
DEFAULT_BOOTSTRAP = 200


def _as_matrix(features) -> np.ndarray:
    matrix = np.asarray(features, dtype=np.float64)
    if matrix.ndim != 2 or matrix.shape[0] < 2:
        raise ValueError("features must be a 2-D array with at least two rows (images)")
    if not np.isfinite(matrix).all():
        raise ValueError("features must be finite")
    return matrix


def frechet_distance(real, fake) -> float:
    """||mu_r - mu_f||^2 + Tr(S_r + S_f - 2 (S_r S_f)^(1/2)) of Gaussians fitted to each set."""
    real, fake = _as_matrix(real), _as_matrix(fake)
    mu_r, mu_f = real.mean(0), fake.mean(0)
    cov_r, cov_f = np.atleast_2d(np.cov(real, rowvar=False)), np.atleast_2d(np.cov(fake, rowvar=False))
    # A small ridge keeps the product well-conditioned (features that sum to a constant make the
    # covariances singular), as the FID reference code does when the plain square root fails.
    offset = np.eye(cov_r.shape[0]) * 1e-6
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", linalg.LinAlgWarning)
        root = linalg.sqrtm((cov_r + offset) @ (cov_f + offset))
    root = np.real(root)
    return float(max(((mu_r - mu_f) ** 2).sum() + np.trace(cov_r + cov_f - 2 * root), 0.0))


def _distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    squared = (a ** 2).sum(1)[:, None] + (b ** 2).sum(1)[None, :] - 2 * a @ b.T
    return np.sqrt(np.maximum(squared, 0.0))


def _knn_radii(features: np.ndarray, k: int) -> np.ndarray:
    """Distance of each row to its k-th nearest other row."""
    distances = _distances(features, features)
    k = min(k, features.shape[0] - 1)
    return np.sort(distances, axis=1)[:, k]  # column 0 is the row itself


def precision_recall(real, fake, k: int = DEFAULT_K) -> tuple[float, float]:
    """Precision: share of fake images inside the real manifold (some real image's k-NN ball);
    recall: share of real images inside the fake manifold."""
    real, fake = _as_matrix(real), _as_matrix(fake)
    real_radii, fake_radii = _knn_radii(real, k), _knn_radii(fake, k)
    cross = _distances(real, fake)  # real x fake
    precision = float((cross <= real_radii[:, None]).any(axis=0).mean())
    recall = float((cross <= fake_radii[None, :]).any(axis=1).mean())
    return precision, recall


def density_coverage(real, fake, k: int = DEFAULT_K) -> tuple[float, float]:
    """Density: how many real k-NN balls contain each fake image, over k (1 when they match, > 1 when
    fakes crowd real modes); coverage: share of real images whose ball contains a fake image."""
    real, fake = _as_matrix(real), _as_matrix(fake)
    real_radii = _knn_radii(real, k)
    inside = _distances(real, fake) <= real_radii[:, None]
    k = min(k, real.shape[0] - 1)
    return float(inside.sum(axis=0).mean() / k), float(inside.any(axis=1).mean())


def diversity(features) -> float:
    """Mean pairwise Euclidean distance between the rows (intra-set diversity)."""
    features = _as_matrix(features)
    distances = _distances(features, features)
    n = features.shape[0]
    return float(distances.sum() / (n * (n - 1)))


def bootstrap(statistic, real, fake, *, rounds: int = DEFAULT_BOOTSTRAP, seed: int = 0,
              level: float = 0.95) -> dict:
    """The statistic on the full sets and a percentile bootstrap interval (both sets resampled)."""
    real, fake = _as_matrix(real), _as_matrix(fake)
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(rounds):
        values.append(statistic(real[rng.integers(0, len(real), len(real))],
                                fake[rng.integers(0, len(fake), len(fake))]))
    low, high = np.percentile(values, [(1 - level) / 2 * 100, (1 + level) / 2 * 100])
    return {"value": round(float(statistic(real, fake)), 6), "ci_low": round(float(low), 6),
            "ci_high": round(float(high), 6), "level": level, "rounds": rounds}


def caveat(n_real: int, n_fake: int, dimensions: int) -> str:
    text = (f"Computed on {n_fake} synthetic and {n_real} real images with {dimensions}-dimensional features. "
            "These figures are biased at small sample sizes (the Fréchet distance upwards); compare them only "
            "at equal sample sizes and with the same encoder.")
    if min(n_real, n_fake) < 2 * dimensions:
        text += (f" With fewer than {2 * dimensions} images per set the covariance estimates are poor and the "
                 "Fréchet distance is especially unreliable.")
    return text


def report(real, fake, *, k: int = DEFAULT_K, rounds: int = DEFAULT_BOOTSTRAP, seed: int = 0) -> dict:
    """Every fidelity and diversity figure with its bootstrap interval and the sample-size caveat."""
    real, fake = _as_matrix(real), _as_matrix(fake)
    return {
        "frechet_distance": bootstrap(frechet_distance, real, fake, rounds=rounds, seed=seed),
        "precision": bootstrap(lambda r, f: precision_recall(r, f, k)[0], real, fake, rounds=rounds, seed=seed),
        "recall": bootstrap(lambda r, f: precision_recall(r, f, k)[1], real, fake, rounds=rounds, seed=seed),
        "density": bootstrap(lambda r, f: density_coverage(r, f, k)[0], real, fake, rounds=rounds, seed=seed),
        "coverage": bootstrap(lambda r, f: density_coverage(r, f, k)[1], real, fake, rounds=rounds, seed=seed),
        "diversity": {"synthetic": round(diversity(fake), 6), "real": round(diversity(real), 6)},
        "k": k,
        "sizes": {"real": int(real.shape[0]), "synthetic": int(fake.shape[0]), "dimensions": int(real.shape[1])},
        "caveat": caveat(real.shape[0], fake.shape[0], real.shape[1]),
    }
