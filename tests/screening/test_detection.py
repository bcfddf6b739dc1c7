"""Stage A on the public real radiographs (tests/assets/cxr_public): near-copies of every edit family caught,
holdout passes."""

import numpy as np
import pytest

from screening import edits, engine, imaging


@pytest.fixture(scope="module")
def screener(screening_index_dir):
    return engine.Screener(screening_index_dir)


def _train(screening_split, position):
    return np.nan_to_num(imaging.load_gray(imaging.list_images(screening_split[0])[position]), nan=0.0)


def _stored(image):
    """As a synthetic image is stored and read: 8-bit PNG."""
    return imaging.load_gray(edits._to_pil(image))


@pytest.mark.parametrize("family", sorted(edits.PHOTOMETRIC) + sorted(edits.GEOMETRIC) + ["composite"])
def test_a_near_copy_is_matched_to_its_training_original_and_flagged(family, screener, screening_split):
    position = {"blur": 2, "gamma": 4, "shift": 6, "rotation": 8, "crop": 10, "hflip": 12}.get(family, 1)
    copy = _stored(edits.FAMILIES[family](_train(screening_split, position), np.random.default_rng(position)))
    analysis = screener.analyse(copy)
    assert analysis.train_match.index == position
    assert analysis.train_score >= screener.threshold


@pytest.mark.parametrize("position", [3, 14, 27])
def test_a_copy_cropped_rotated_and_shifted_at_once_is_flagged(position, screener, screening_split):
    copy = _stored(edits.composite_geometric(_train(screening_split, position), np.random.default_rng(position)))
    analysis = screener.analyse(copy)
    assert analysis.train_match.index == position
    assert analysis.train_score >= screener.threshold


@pytest.mark.parametrize("seed, position", [(116, 26), (172, 22), (251, 11)])
def test_a_copy_the_query_variants_miss_is_retrieved_through_the_canonical_view(seed, position, screener,
                                                                                 screening_split):
    copy = _stored(edits.composite_geometric(_train(screening_split, position), np.random.default_rng(seed)))
    query = engine.mask_dark_border(imaging.query_thumbnail(copy))
    assert position not in screener._retrieve(screener._query_vectors(query.astype(np.float32)), engine.RETRIEVE_K)
    analysis = screener.analyse(copy)
    assert analysis.train_match.index == position
    assert analysis.train_score >= screener.threshold


def test_the_seam_between_padding_and_anatomy_is_left_out_of_the_comparison():
    thumb = np.full((64, 64), 150.0)
    thumb[:, :10] = 0.0  # padding from a shift
    thumb[:, 10] = 40.0  # where resampling blended padding into anatomy: above the dark level
    masked = engine.mask_dark_border(thumb)
    assert np.isnan(masked[:, :11]).all()
    assert not np.isnan(masked[:, 11:]).any()


def test_an_exact_copy_is_reported_as_exact(screener, screening_split):
    analysis = screener.analyse(_stored(_train(screening_split, 5)))
    assert analysis.exact and analysis.train_match.index == 5


def test_held_out_radiographs_of_other_patients_pass(screener, screening_split):
    holdout = imaging.list_images(screening_split[1])
    scores = [screener.analyse(imaging.load_gray(path)).train_score for path in holdout[::3]]
    assert max(scores) < screener.threshold


def test_the_calibration_flags_at_most_the_target_share_of_the_holdout(screener):
    stage_a = screener.meta["calibration"]["stage_a"]
    assert stage_a["holdout_n"] == 30
    assert stage_a["holdout_flagged"] == 0
    assert stage_a["threshold"] >= stage_a["normal_tail_bound"]


def test_threshold_for_uses_the_empirical_quantile_with_enough_holdout():
    rng = np.random.default_rng(0)
    scores = rng.normal(0.5, 0.05, 20_000)
    result = engine.threshold_for(scores, 0.001)
    assert result["holdout_fpr"] <= 0.001
    assert result["threshold"] >= np.quantile(scores, 0.999)
