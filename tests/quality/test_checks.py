"""Built-in checks: real radiographs pass every one; each kind of broken image fails its own."""

import numpy as np
import pytest
from PIL import Image

from quality import checks


def real_images(cxr_public_dir):
    return [(path.name, np.asarray(Image.open(path).convert("L"))) for path in sorted((cxr_public_dir / "images").glob("*.png"))]


def test_no_real_chest_x_ray_fails_a_builtin_check(cxr_public_dir):
    images = real_images(cxr_public_dir)
    earlier = []
    failures = []
    for name, pixels in images:
        vector = checks.fingerprint(pixels)
        results = checks.builtin_checks(pixels, nonfinite_values=0, earlier=np.stack(earlier) if earlier else None,
                                        vector=vector)
        failures += [(name, r.name, r.reason) for r in results if r.status != checks.PASSED]
        earlier.append(vector)
    assert len(images) == 60 and failures == []


@pytest.fixture
def radiograph(cxr_public_dir):
    return real_images(cxr_public_dir)[0][1]


def test_a_blank_image_fails_as_blank():
    assert checks.blank(np.full((64, 64), 90, dtype=np.uint8)).failed


def test_a_mostly_white_image_fails_as_saturated(radiograph):
    burnt = radiograph.copy()
    burnt[: int(burnt.shape[0] * 0.7)] = 255
    assert checks.saturated(burnt).failed and not checks.saturated(radiograph).failed


def test_a_washed_out_image_fails_for_low_dynamic_range(radiograph):
    flat = (120 + radiograph.astype(np.float64) / 255 * 10).astype(np.uint8)
    result = checks.dynamic_range(flat)
    assert result.failed and result.value < checks.MIN_DYNAMIC_RANGE


def test_nan_or_inf_in_the_decoder_output_fails():
    assert checks.finite(3, 4096).failed
    assert checks.finite(0).status == checks.PASSED
    assert checks.finite(None).status == checks.UNAVAILABLE


def test_noise_has_no_radiograph_like_structure():
    noise = np.random.default_rng(0).integers(0, 256, (128, 128), dtype=np.uint8)
    result = checks.radiograph_structure(noise)
    assert result.failed and "noise" in result.reason


def test_a_two_level_image_has_an_implausible_histogram(radiograph):
    binary = np.where(radiograph > 128, 255, 0).astype(np.uint8)
    result = checks.radiograph_structure(binary)
    assert result.failed and "histogram" in result.reason


def test_a_near_copy_of_an_earlier_image_fails_as_a_near_duplicate(cxr_public_dir):
    (_, first), (_, second) = real_images(cxr_public_dir)[:2]
    shifted = np.clip(first.astype(np.int16) + 3, 0, 255).astype(np.uint8)
    earlier = np.stack([checks.fingerprint(first)])
    assert checks.near_duplicate(checks.fingerprint(shifted), earlier).failed
    assert not checks.near_duplicate(checks.fingerprint(second), earlier).failed
