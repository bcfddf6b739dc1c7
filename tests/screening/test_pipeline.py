"""Screening inside the real generation pipeline (demo model, real storage)."""

import pytest

from generation import services as generation
from screening.models import ScreeningRecord
from screening.selectors import privacy_summary
from tests.access.factories import grant_tier
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db


def _request(user, size):
    return generation.request_cohort(user=user, enqueue=False, data={
        "name": "Screened", "size": size, "seed": 99, "sex": {"F": 0.5, "M": 0.5},
        "race": {"WHITE": 0.5, "ASIAN": 0.5}, "age": {"min": 40, "max": 80}, "findings": {"pleural_effusion": 0.5},
    })


def test_every_generated_image_is_screened_before_release(demo_screening_index):
    user = UserFactory()
    grant_tier(user, "generate")
    cohort = generation.run_cohort_inline(_request(user, 3))
    assert cohort.status == "completed"
    records = ScreeningRecord.objects.filter(cohort=cohort)
    assert records.count() == 3 and set(records.values_list("decision", flat=True)) == {"passed"}
    assert privacy_summary(cohort)["passed"] == 3


def test_without_an_index_no_image_is_released(demo_model_version, settings):
    settings.GENERATION_BATCH_MAX_ATTEMPTS = 1
    user = UserFactory()
    grant_tier(user, "generate")
    cohort = generation.run_cohort_inline(_request(user, 2))
    assert cohort.status == "failed"
    assert not cohort.images.filter(status="passed").exists()
    assert "screening index" in cohort.batches.get().error
