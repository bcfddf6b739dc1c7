"""Stage B: a learned encoder from a local TorchScript file with a configured SHA-256, own calibration."""

import numpy as np
import pytest
import torch

from screening import edits, engine, imaging
from screening.services import ScreeningIndexMissing, build_screening_index, get_screener, screen_images
from tests.screening.factories import make_cohort, make_image

pytestmark = pytest.mark.django_db


class TinyEncoder(torch.nn.Module):
    """Random zero-sum (high-pass) filters on a 16×16 thumbnail: different radiographs differ."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(1, 4, 3, bias=False)
        with torch.no_grad():
            self.conv.weight -= self.conv.weight.mean(dim=(2, 3), keepdim=True)

    def forward(self, x):
        features = self.conv(torch.nn.functional.adaptive_avg_pool2d(x, 16)).flatten(1)
        return features - features.mean(dim=1, keepdim=True)


@pytest.fixture
def encoder_file(tmp_path):
    torch.manual_seed(0)
    path = tmp_path / "encoder.pt"
    torch.jit.script(TinyEncoder().eval()).save(str(path))
    return path, engine.sha256_of(path)


@pytest.fixture
def stage_b_settings(settings, encoder_file, tmp_path):
    path, sha = encoder_file
    settings.SCREENING_STAGE_B_WEIGHTS = str(path)
    settings.SCREENING_STAGE_B_SHA256 = sha
    settings.SCREENING_STAGE_B_INPUT_SIZE = 64
    settings.SCREENING_INDEX_ROOT = str(tmp_path / "indexes")
    return settings


def _small_split(screening_split, tmp_path):
    folders = []
    for name, source in zip(("train", "holdout"), screening_split):
        folder = tmp_path / name
        folder.mkdir()
        for path in imaging.list_images(source)[:8]:
            (folder / path.name).symlink_to(path)
        folders.append(folder)
    return folders


def test_weights_whose_sha256_differs_are_refused(encoder_file):
    path, _ = encoder_file
    with pytest.raises(engine.StageBUnavailable, match="not the configured"):
        engine.StageBEncoder(path, "0" * 64)
    with pytest.raises(engine.StageBUnavailable, match="not found"):
        engine.StageBEncoder(path.with_name("missing.pt"), "0" * 64)


def test_an_index_with_stage_b_has_its_own_calibration_and_flags_copies(stage_b_settings, demo_model_version,
                                                                       screening_split, tmp_path):
    train, holdout = _small_split(screening_split, tmp_path)
    index = build_screening_index(demo_model_version, train, holdout)
    assert index.stage_b_sha256 == stage_b_settings.SCREENING_STAGE_B_SHA256
    assert index.stage_b_threshold is not None
    assert index.calibration["stage_b"]["holdout_n"] == 8
    cohort = make_cohort(demo_model_version)
    original = np.nan_to_num(imaging.load_gray(imaging.list_images(train)[2]), nan=0.0)
    image = make_image(cohort, edits.jpeg(75)(original, np.random.default_rng(0)))
    [verdict] = screen_images([image])
    assert verdict.flagged
    assert image.screening.stage_scores["stage_b"] >= index.stage_b_threshold


def test_screening_refuses_when_the_stage_b_weights_are_no_longer_configured(stage_b_settings, demo_model_version,
                                                                              screening_split, tmp_path):
    train, holdout = _small_split(screening_split, tmp_path)
    index = build_screening_index(demo_model_version, train, holdout)
    stage_b_settings.SCREENING_STAGE_B_WEIGHTS = ""
    from screening import services

    services._screeners.clear()
    with pytest.raises(ScreeningIndexMissing, match="Stage B"):
        get_screener(index)
