"""Fidelity figures separate real from unreal: on the shared real chest X-rays, the two halves score
clearly better against each other than one half against heavily degraded copies of the other."""

import numpy as np
import pytest
from PIL import Image

from quality import fidelity
from quality.checks import histogram_entropy, roughness


def features(pixels: np.ndarray) -> np.ndarray:
    """A weight-free stand-in for an encoder: layout, histogram and texture of a 64 x 64 copy."""
    small = np.asarray(Image.fromarray(pixels).resize((64, 64), Image.BILINEAR), dtype=np.float64)
    layout = np.asarray(Image.fromarray(small.astype(np.uint8)).resize((3, 3), Image.BILINEAR), dtype=np.float64)
    histogram = np.histogram(small, bins=6, range=(0, 256))[0] / small.size
    return np.concatenate([layout.ravel() / 255, histogram, [roughness(small) * 10, histogram_entropy(small) / 5]])


def degrade(pixels: np.ndarray, rng) -> np.ndarray:
    noisy = 0.4 * pixels.astype(np.float64) + 80 + rng.normal(0, 40, pixels.shape)
    return np.clip(noisy, 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def halves(cxr_public_dir):
    paths = sorted((cxr_public_dir / "images").glob("*.png"))
    pixels = [np.asarray(Image.open(p).convert("L")) for p in paths]
    return pixels[0::2], pixels[1::2]


def test_real_against_real_scores_better_than_real_against_degraded_images(halves):
    first, second = halves
    rng = np.random.default_rng(0)
    real_a = np.stack([features(p) for p in first])
    real_b = np.stack([features(p) for p in second])
    degraded_b = np.stack([features(degrade(p, rng)) for p in second])
    same = fidelity.report(real_a, real_b, rounds=50)
    other = fidelity.report(real_a, degraded_b, rounds=50)
    assert same["frechet_distance"]["ci_high"] < other["frechet_distance"]["ci_low"]
    assert same["precision"]["value"] > other["precision"]["value"]
    assert same["coverage"]["value"] > other["coverage"]["value"]
    interval = same["frechet_distance"]
    assert interval["ci_low"] <= interval["value"] <= interval["ci_high"] and interval["level"] == 0.95
    assert "biased at small sample sizes" in same["caveat"] and same["sizes"]["real"] == 30


def test_identical_sets_have_zero_frechet_distance_and_full_precision_and_recall():
    rng = np.random.default_rng(1)
    features_ = rng.normal(size=(40, 4))
    assert fidelity.frechet_distance(features_, features_) == pytest.approx(0, abs=1e-6)
    assert fidelity.precision_recall(features_, features_) == (1.0, 1.0)


def test_too_few_images_is_a_clear_error():
    with pytest.raises(ValueError, match="at least two rows"):
        fidelity.frechet_distance(np.zeros((1, 3)), np.zeros((5, 3)))


@pytest.mark.django_db
def test_real_against_real_scores_better_than_real_against_the_demo_models_images(halves, demo_model_version):
    from generation.inference import SamplingParams, get_engine

    first, second = halves
    params = SamplingParams.from_defaults(demo_model_version.defaults, {"steps": 1})
    prompts = [f"{40 + n} year old WHITE female. No acute cardiopulmonary process." for n in range(len(second))]
    pictures = get_engine(demo_model_version).generate(prompts, list(range(len(second))), params)
    real_a = np.stack([features(p) for p in first])
    real_b = np.stack([features(p) for p in second])
    demo = np.stack([features(np.asarray(p)) for p in pictures])
    same = fidelity.report(real_a, real_b, rounds=50)
    other = fidelity.report(real_a, demo, rounds=50)
    assert same["frechet_distance"]["ci_high"] < other["frechet_distance"]["ci_low"]
    assert same["precision"]["value"] > other["precision"]["value"]
