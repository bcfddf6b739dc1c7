"""``evaluate_screening``: the measurement command, on the public radiographs of ``cxr_public_dir``."""

import json

import numpy as np
import pytest
from django.core.management import CommandError, call_command

from screening import edits
from screening import imaging
from screening.calibration import REGION_FLOOR, region_threshold_for
from screening.evaluation import auroc, index_size_check, leave_one_out_fpr, tpr_at_fpr

pytestmark = pytest.mark.slow


def test_writes_the_documented_json_for_each_family_including_the_vae_round_trip(
        demo_model_version, screening_split, tmp_path):
    out = tmp_path / "result.json"
    call_command("evaluate_screening", "--train", str(screening_split[0]), "--holdout", str(screening_split[1]),
                 "--model-version", str(demo_model_version.pk), "--families", "jpeg_q75,vae_roundtrip",
                 "--limit", "2", "--json", str(out), "--no-progress", "--scale", "")
    result = json.loads(out.read_text())
    assert {"families", "holdout_fpr", "threshold", "seconds_per_image"} <= set(result)  # the shape kept
    assert set(result["families"]) == {"jpeg_q75", "vae_roundtrip"}
    assert set(result["exact_share"]) == {"jpeg_q75", "vae_roundtrip"}
    non_copies = result["non_copies"]  # held-out images, each left out of the holdout it is compared with
    assert non_copies["n"] == 2 and 0.0 <= non_copies["closer_to_train_share"] <= 1.0  # --limit 2
    assert "29 training and 29 held-out images" in non_copies["compared_with"]
    for figures in result["families"].values():
        assert set(figures) == {"n", "tpr_at_threshold", "tpr_at_fpr_1pct", "tpr_at_fpr_0_1pct", "auroc"}
        assert figures["n"] == 2
    assert result["families"]["jpeg_q75"]["tpr_at_fpr_0_1pct"] == 1.0
    assert result["holdout_fpr"] <= 0.01 and result["seconds_per_image"] > 0


def test_the_vae_round_trip_runs_at_the_size_it_is_given(demo_model_dir):
    round_trip = edits.VaeRoundTrip(demo_model_dir, size=32)
    image = np.random.default_rng(0).random((100, 80)).astype(np.float32)
    out = round_trip(image, np.random.default_rng(1))
    assert round_trip.size == 32 and out.shape == (100, 80) and 0 <= out.min() <= out.max() <= 1


def test_refuses_an_unusable_round_trip_size(screening_split):
    with pytest.raises(CommandError, match="--vae-size"):
        call_command("evaluate_screening", "--train", str(screening_split[0]), "--holdout", str(screening_split[1]),
                     "--vae-dir", "/nonexistent", "--vae-size", "4")


def test_detection_rate_at_a_false_positive_rate_reads_the_threshold_off_the_negatives():
    negatives = np.linspace(0, 1, 1000)  # the strictest cut flagging at most 1 % is the 990th score
    assert tpr_at_fpr([0.985, 0.995, 0.999], negatives, 0.01) == pytest.approx(2 / 3)
    assert auroc([2, 3], [0, 1]) == 1.0 and auroc([0], [0]) == 0.5


def test_the_region_floor_is_applied_by_one_function_in_calibration_and_leave_one_out():
    low = np.linspace(0.30, 0.40, 30)  # a tight, low holdout: its own bound lies far below the floor
    region = region_threshold_for(low)
    assert region["threshold"] == REGION_FLOOR and "floor" in region["method"]
    assert region["holdout_flagged"] == 0 and region["holdout_fpr"] == 0.0
    spread = np.r_[np.linspace(0.2, 0.5, 29), 0.9]  # above the floor: the bound is kept as it is
    assert region_threshold_for(spread)["threshold"] > REGION_FLOOR
    assert "floor" not in region_threshold_for(spread)["method"]
    # Leave-one-out uses the same floor: a held-out score just above it is flagged, one just below is not.
    whole = np.full(30, 0.1)
    assert leave_one_out_fpr(whole, region_scores=np.r_[low[:-1], REGION_FLOOR + 0.001]) == pytest.approx(1 / 30)
    assert leave_one_out_fpr(whole, region_scores=np.r_[low[:-1], REGION_FLOOR - 0.001]) == 0.0


def test_partial_copy_families_are_new_keys_scored_by_both_stages(screening_split, tmp_path):
    out = tmp_path / "result.json"
    call_command("evaluate_screening", "--train", str(screening_split[0]), "--holdout", str(screening_split[1]),
                 "--families", "splice,patch_copy_50", "--limit", "2", "--json", str(out), "--no-progress",
                 "--scale", "")
    result = json.loads(out.read_text())
    assert set(result["families"]) == {"splice", "patch_copy_50"}
    assert result["region_threshold"] > 0 and result["holdout_n"] == 30
    assert set(result["holdout_margin"]) == {"stage_a", "region"}
    assert result["by_stage"]["patch_copy_50"]["region_at_threshold"] == 1.0
    assert result["families"]["patch_copy_50"]["tpr_at_threshold"] == 1.0


def test_the_index_size_check_reports_each_size_and_extrapolates_to_mimic_scale(screening_split):
    def arrays(folder, count):
        return [np.nan_to_num(imaging.load_gray(p), nan=0.0) for p in imaging.list_images(folder)[:count]]

    train, holdout = arrays(screening_split[0], 6), arrays(screening_split[1], 6)
    calibration = {"stage_a": {"threshold": 0.8}, "region": {"threshold": 0.6},
                   "stage_a_holdout_scores": [0.5] * 6, "region_holdout_scores": [0.3] * 6}
    report = index_size_check(train, holdout, calibration, factors=(3,))
    assert [row["index_size"] for row in report["rows"]] == [6, 18]
    assert all(0.0 <= row["flagged"] <= 1.0 for row in report["rows"])
    assert set(report["extrapolated"]) == {"stage_a", "region"}
    assert report["extrapolated_to"] == 377_000


def test_a_holdout_too_small_for_the_target_is_warned_about():
    from screening.evaluation import target_report

    result = {"families": {}, "holdout_fpr": 0.0, "threshold": 0.8, "seconds_per_image": 0.3, "holdout_n": 30}
    assert any("30 held-out images cannot support" in line for line in target_report(result))


def test_refuses_a_bad_scale(screening_split):
    with pytest.raises(CommandError, match="--scale"):
        call_command("evaluate_screening", "--train", str(screening_split[0]), "--holdout", str(screening_split[1]),
                     "--scale", "x")
