"""Per-cohort privacy summary (the cohort page and exports call it)."""

import numpy as np
import pytest

from screening import imaging
from screening.selectors import privacy_summary
from screening.services import screen_images
from tests.screening.factories import make_cohort, make_image, noise_image

pytestmark = pytest.mark.django_db


def test_summary_counts_shares_and_histogram(demo_screening_index, screening_split):
    cohort = make_cohort(demo_screening_index.model_version)
    original = np.nan_to_num(imaging.load_gray(imaging.list_images(screening_split[0])[9]), nan=0.0)
    exact = make_image(cohort, original)
    images = [exact] + [make_image(cohort, noise_image(20 + i)) for i in range(3)]
    screen_images(images)
    summary = privacy_summary(cohort)
    assert summary["screened"] == 4 and summary["passed"] == 3 and summary["flagged_memorized"] == 1
    assert summary["exact_match_share"] == 0.25
    assert summary["released_exact_matches"] == 0
    assert 0.0 <= summary["closer_to_train_share"] <= 1.0
    assert sum(summary["histogram"]["counts"]) == 4
    assert len(summary["histogram"]["edges"]) == len(summary["histogram"]["counts"]) + 1
    assert summary["threshold"] == demo_screening_index.threshold


def test_summary_of_an_unscreened_cohort_is_empty(demo_screening_index):
    summary = privacy_summary(make_cohort(demo_screening_index.model_version))
    assert summary["screened"] == 0 and summary["closer_to_train_share"] is None
