"""Built-in quality checks: plain functions of an image's pixels that need no weights.

Each returns a ``CheckResult``. Thresholds are set against real radiographs: on the 60 public chest
X-rays of tests/assets/cxr_public the closest values are a standard deviation of 17.6 (limit 2), a
1st-99th percentile range of 89 grey levels (limit 24), 17 % of pixels at the extremes (limit 60 %),
a histogram entropy of 2.9 bits (limit 1.5), a roughness of 0.042 (limit 0.5: white noise is 1.0)
and a 16 x 16 thumbnail correlation of 0.95 between two different images (limit 0.98). None fails,
and neither do the tiny demo model's outputs (roughness about 0.15).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

PASSED, FAILED, UNAVAILABLE = "passed", "failed", "unavailable"

BLANK_MIN_STD = 2.0
MIN_DYNAMIC_RANGE = 24.0
MAX_EXTREME_FRACTION = 0.6
MIN_HISTOGRAM_ENTROPY = 1.5
MAX_ROUGHNESS = 0.5
NEAR_DUPLICATE_CORRELATION = 0.98
FINGERPRINT_SIZE = 16


@dataclass(frozen=True)
class CheckResult:
    name: str
    status: str  # passed, failed or unavailable
    reason: str
    value: float | None = None
    threshold: float | None = None
    kind: str = "builtin"  # builtin or model
    extra: dict = field(default_factory=dict)

    @property
    def failed(self) -> bool:
        return self.status == FAILED

    def as_dict(self) -> dict:
        data = asdict(self)
        if not data["extra"]:
            del data["extra"]
        return data


def _gray(pixels) -> np.ndarray:
    array = np.asarray(pixels)
    if array.ndim == 3:  # an RGB(A) array: its luma is what a radiograph viewer shows
        array = array[..., :3].mean(axis=2)
    if array.ndim != 2 or array.size == 0:
        raise ValueError("a quality check needs a 2-D grayscale image")
    return array.astype(np.float64)


def blank(pixels) -> CheckResult:
    std = float(_gray(pixels).std())
    if std < BLANK_MIN_STD:
        return CheckResult("blank", FAILED, f"The image is blank (one grey level, standard deviation {std:.2f}).",
                           std, BLANK_MIN_STD)
    return CheckResult("blank", PASSED, "Not blank.", std, BLANK_MIN_STD)


def saturated(pixels) -> CheckResult:
    array = _gray(pixels)
    fraction = float(((array <= 2) | (array >= 253)).mean())
    if fraction > MAX_EXTREME_FRACTION:
        return CheckResult("saturated", FAILED,
                           f"{fraction:.0%} of the pixels are pure black or white (limit {MAX_EXTREME_FRACTION:.0%}).",
                           fraction, MAX_EXTREME_FRACTION)
    return CheckResult("saturated", PASSED, "Not saturated.", fraction, MAX_EXTREME_FRACTION)


def dynamic_range(pixels) -> CheckResult:
    low, high = np.percentile(_gray(pixels), [1, 99])
    spread = float(high - low)
    if spread < MIN_DYNAMIC_RANGE:
        return CheckResult("dynamic_range", FAILED,
                           f"Low dynamic range: 98 % of the pixels lie within {spread:.0f} grey levels "
                           f"(at least {MIN_DYNAMIC_RANGE:.0f} expected).", spread, MIN_DYNAMIC_RANGE)
    return CheckResult("dynamic_range", PASSED, "Enough dynamic range.", spread, MIN_DYNAMIC_RANGE)


def finite(nonfinite_values: int | None, total: int | None = None) -> CheckResult:
    """NaN or infinite values in the decoder's output (counted before the 8-bit conversion, which hides them)."""
    if nonfinite_values is None:
        return CheckResult("finite", UNAVAILABLE, "The engine did not report its decoder output.")
    count = int(nonfinite_values)
    if count:
        of = f" of {total:,}" if total else ""
        return CheckResult("finite", FAILED, f"The decoder produced {count:,}{of} NaN or infinite values.",
                           float(count), 0.0)
    return CheckResult("finite", PASSED, "No NaN or infinite values.", 0.0, 0.0)


def histogram_entropy(array: np.ndarray) -> float:
    counts = np.histogram(array, bins=32, range=(0, 256))[0].astype(np.float64)
    share = counts[counts > 0] / counts.sum()
    return float(-(share * np.log2(share)).sum())


def roughness(array: np.ndarray) -> float:
    """Mean squared difference of neighbouring pixels over twice the variance: about 1 for white noise,
    a few hundredths for a radiograph, whose grey levels change smoothly across anatomy."""
    variance = array.var()
    if variance == 0:
        return 0.0
    dx, dy = np.diff(array, axis=1), np.diff(array, axis=0)
    return float((np.mean(dx ** 2) + np.mean(dy ** 2)) / (4 * variance))


def radiograph_structure(pixels) -> CheckResult:
    """No radiograph-like structure: a histogram of a few grey levels (posterised, binary) or pixels
    that vary like noise rather than like anatomy."""
    array = _gray(pixels)
    entropy, rough = histogram_entropy(array), roughness(array)
    extra = {"entropy": round(entropy, 4), "roughness": round(rough, 4)}
    if entropy < MIN_HISTOGRAM_ENTROPY:
        return CheckResult("structure", FAILED,
                           f"Implausible histogram for a radiograph: {entropy:.2f} bits of grey-level entropy "
                           f"(at least {MIN_HISTOGRAM_ENTROPY} expected).", entropy, MIN_HISTOGRAM_ENTROPY, extra=extra)
    if rough > MAX_ROUGHNESS:
        return CheckResult("structure", FAILED,
                           f"No radiograph-like structure: the pixels vary like noise (roughness {rough:.2f}, "
                           f"limit {MAX_ROUGHNESS}).", rough, MAX_ROUGHNESS, extra=extra)
    return CheckResult("structure", PASSED, "Radiograph-like histogram and structure.", rough, MAX_ROUGHNESS,
                       extra=extra)


def fingerprint(pixels) -> np.ndarray:
    """A standardised 16 x 16 thumbnail (zero mean, unit variance): near-duplicates correlate close to 1."""
    from PIL import Image

    array = _gray(pixels)
    thumb = Image.fromarray(np.clip(array, 0, 255).astype(np.uint8)).resize(
        (FINGERPRINT_SIZE, FINGERPRINT_SIZE), Image.BILINEAR)
    vector = np.asarray(thumb, dtype=np.float64).ravel()
    vector = vector - vector.mean()
    std = vector.std()
    return (vector / std if std > 0 else vector).astype(np.float32)


def near_duplicate(vector: np.ndarray, earlier: np.ndarray | None) -> CheckResult:
    """Within-cohort near-duplicate (mode collapse): the image's fingerprint against those of the
    cohort's images that passed before it (``earlier``: one row per image)."""
    if earlier is None or len(earlier) == 0:
        return CheckResult("near_duplicate", PASSED, "No earlier image to compare with.", None,
                           NEAR_DUPLICATE_CORRELATION)
    correlations = np.asarray(earlier, dtype=np.float32) @ vector / vector.size
    best = int(correlations.argmax())
    value = float(correlations[best])
    if value >= NEAR_DUPLICATE_CORRELATION:
        return CheckResult("near_duplicate", FAILED,
                           f"Nearly identical to an earlier image of this cohort (correlation {value:.3f}, limit "
                           f"{NEAR_DUPLICATE_CORRELATION}): a sign of mode collapse.", value,
                           NEAR_DUPLICATE_CORRELATION, extra={"position": best})
    return CheckResult("near_duplicate", PASSED, "No near-duplicate in the cohort.", value, NEAR_DUPLICATE_CORRELATION)


def builtin_checks(pixels, *, nonfinite_values: int | None = None, earlier: np.ndarray | None = None,
                   vector: np.ndarray | None = None) -> list[CheckResult]:
    """Every built-in check of one image, in a fixed order."""
    array = _gray(pixels)
    vector = fingerprint(array) if vector is None else vector
    return [
        finite(nonfinite_values, array.size),
        blank(array),
        saturated(array),
        dynamic_range(array),
        radiograph_structure(array),
        near_duplicate(vector, earlier),
    ]
