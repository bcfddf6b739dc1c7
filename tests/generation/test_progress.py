from datetime import timedelta

from django.utils import timezone

from generation import selectors, services
from generation.models import Cohort, SyntheticImage

from .conftest import cohort_request


def test_progress_counts_each_state_and_estimates_the_time_left(researcher):
    cohort = services.request_cohort(user=researcher, data=cohort_request(size=8), enqueue=False)
    started = timezone.now() - timedelta(seconds=100)
    Cohort.objects.filter(pk=cohort.pk).update(status="running", started_at=started)
    states = ["passed", "passed", "failed", "screening", "generating", "pending", "pending", "pending"]
    for index, state in enumerate(states):
        SyntheticImage.objects.filter(cohort=cohort, index=index).update(status=state)
    cohort.refresh_from_db()
    progress = selectors.cohort_progress(cohort, now=started + timedelta(seconds=100))
    assert (progress["passed"], progress["failed"], progress["screening"], progress["generating"]) == (2, 1, 1, 1)
    assert progress["percent"] == 37.5 and not progress["finished"]
    assert progress["eta_seconds"] == 250  # 50 s per screened image, 5 images to go


def test_no_estimate_before_the_first_image_passes(researcher):
    cohort = services.request_cohort(user=researcher, data=cohort_request(size=2), enqueue=False)
    assert selectors.cohort_progress(cohort)["eta_seconds"] is None


def test_the_chart_compares_requested_and_generated_shares(researcher):
    cohort = services.run_cohort_inline(
        services.request_cohort(user=researcher, data=cohort_request(size=4, sex={"F": 1.0}), enqueue=False)
    )
    charts = {c["attribute"]: {r["category"]: r for r in c["rows"]} for c in selectors.requested_vs_generated(cohort)}
    assert charts["sex"]["F"]["requested"] == 100.0 and charts["sex"]["F"]["generated"] == 100.0
    assert charts["sex"]["M"]["requested"] == 0.0 and charts["sex"]["M"]["count"] == 0
    assert charts["findings"]["pleural_effusion"]["requested"] == 50.0
    assert charts["findings"]["pleural_effusion"]["count"] == 2
    assert abs(sum(r["requested"] for r in charts["age"].values()) - 100.0) < 0.5  # rounded per band
