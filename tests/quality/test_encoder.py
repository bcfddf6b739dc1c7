"""A registered encoder with reference features of real radiographs: the card's fidelity and diversity
figures, with intervals and the caveat; an encoder without a reference set is refused."""

import numpy as np
import pytest
from django.core.management import CommandError, call_command

from generation import services
from quality.models import QCModel
from quality.selectors import card_text, quality_card
from tests.quality.qc_models import LayoutEncoder, save
from tests.quality.test_regeneration import request


@pytest.fixture
def encoder(demo_model_version, tmp_path, cxr_public_dir, settings):
    settings.QC_REFERENCE_ROOT = str(tmp_path / "references")
    path = tmp_path / "encoder.pt"
    call_command("register_qc_model", str(demo_model_version.pk), "layout", str(path), "--sha256",
                 save(LayoutEncoder(), path), "--predicts", "features", "--input-size", "64",
                 "--reference-dir", str(cxr_public_dir / "images"))
    return QCModel.objects.get(name="layout")


def test_registration_stores_the_reference_features_only(encoder):
    reference = np.load(encoder.reference_path)
    assert reference.shape == (60, 11) and encoder.feature_dim == 11 and encoder.reference_count == 60


def test_the_card_reports_fidelity_and_diversity_with_intervals(researcher, encoder):
    cohort = services.run_cohort_inline(services.request_cohort(user=researcher, data=request(size=2), enqueue=False))
    card = quality_card(cohort)
    fidelity = card["fidelity"]
    assert fidelity["available"] and fidelity["reference_images"] == 60 and fidelity["sizes"]["synthetic"] == 2
    interval = fidelity["frechet_distance"]
    assert interval["ci_low"] <= interval["value"] <= interval["ci_high"] and interval["value"] > 0
    assert "especially unreliable" in fidelity["caveat"]  # 2 images, 11 dimensions
    assert card["diversity"]["mean_pairwise_distance"]["synthetic"] > 0
    assert "- frechet distance:" in card_text(card)


def test_an_encoder_without_reference_images_is_refused(demo_model_version, tmp_path):
    path = tmp_path / "encoder.pt"
    with pytest.raises(CommandError, match="reference_dir"):
        call_command("register_qc_model", str(demo_model_version.pk), "layout", str(path), "--sha256",
                     save(LayoutEncoder(), path), "--predicts", "features", "--input-size", "64")
