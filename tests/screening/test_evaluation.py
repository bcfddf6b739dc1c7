"""``evaluate_screening``: the measurement command, on the shared radiographs."""

import json

import numpy as np
import pytest
from django.core.management import CommandError, call_command

from screening import edits
from screening.evaluation import auroc, tpr_at_fpr

pytestmark = pytest.mark.slow


def test_writes_the_documented_json_for_each_family_including_the_vae_round_trip(
        demo_model_version, screening_split, tmp_path):
    out = tmp_path / "result.json"
    call_command("evaluate_screening", "--train", str(screening_split[0]), "--holdout", str(screening_split[1]),
                 "--model-version", str(demo_model_version.pk), "--families", "jpeg_q75,vae_roundtrip",
                 "--limit", "2", "--json", str(out), "--no-progress")
    result = json.loads(out.read_text())
    assert set(result) == {"families", "holdout_fpr", "threshold", "seconds_per_image"}
    assert set(result["families"]) == {"jpeg_q75", "vae_roundtrip"}
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
