import threading

import pytest
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import connection

from access import capabilities as caps
from cxr_platform.audit.models import AuditEvent
from generation import services
from generation.models import Cohort, GenerationBatch, SyntheticImage
from generation.sampling import image_seed
from tests.access.factories import grant_tier
from tests.factories import UserFactory

from .conftest import cohort_request


def test_submission_creates_every_image_record_batches_and_an_audit_event(researcher, settings):
    settings.GENERATION_BATCH_SIZE = 3
    cohort = services.request_cohort(user=researcher, data=cohort_request(size=7), enqueue=False)
    assert cohort.status == Cohort.Status.QUEUED and cohort.reserved_images == 7
    images = list(cohort.images.order_by("index"))
    assert [i.index for i in images] == list(range(7))
    assert all(i.status == "pending" and i.seed == image_seed(1234, i.index) for i in images)
    assert images[0].sampling["steps"] == 4 and images[0].prompt.startswith(f"{images[0].demographics['age']} year old")
    assert [(b.first_index, b.stop_index) for b in cohort.batches.all()] == [(0, 3), (3, 6), (6, 7)]
    event = AuditEvent.objects.get(action="cohort.submitted")
    assert event.actor == researcher and event.target_id == str(cohort.pk)


def test_the_stored_specification_is_the_normalised_one(researcher):
    cohort = services.request_cohort(user=researcher, data=cohort_request(preset="balanced", sex=None), enqueue=False)
    assert cohort.specification["sex"] == {"M": 0.5, "F": 0.5}
    assert cohort.specification["age_bins"] == [{"min": 40, "max": 80, "weight": 1.0}]


def test_preview_writes_nothing_and_reports_the_quota_it_will_use(researcher):
    preview = services.plan_cohort(user=researcher, data=cohort_request(size=8)).preview()
    assert not Cohort.objects.exists()
    assert preview["quota"] == {"daily": 500, "used": 0, "this_cohort": 8, "left_after": 492}
    assert sum(n for row in preview["cells"].values() for n in row.values()) == 8
    assert len(preview["first_prompts"]) == 8


def test_a_cohort_larger_than_the_quota_left_is_refused(researcher):
    services.request_cohort(user=researcher, data=cohort_request(size=400), enqueue=False)
    with pytest.raises(services.QuotaExceeded) as caught:
        services.request_cohort(user=researcher, data=cohort_request(size=101), enqueue=False)
    assert "101 images is more than the 100 left of your daily quota of 500" in caught.value.messages[0]


def test_a_user_who_may_not_generate_is_refused(db, demo_model_version):
    with pytest.raises(PermissionDenied):
        services.plan_cohort(user=UserFactory(), data=cohort_request())


def test_a_model_version_outside_the_users_tier_is_refused(db, demo_model_dir):
    from tests.registry.factories import register_demo

    covered, other = register_demo(demo_model_dir), register_demo(demo_model_dir, version="2.0")
    user = UserFactory()
    grant_tier(user, "generate", model_versions=[covered])
    with pytest.raises(PermissionDenied):
        services.plan_cohort(user=user, data=cohort_request(model_version=other.pk))


def test_prompts_over_the_token_limit_are_refused_not_truncated(researcher):
    long_text = "Moderate bilateral pleural effusions with adjacent atelectasis. " * 8
    with pytest.raises(ValidationError) as caught:
        services.plan_cohort(user=researcher, data=cohort_request(findings=None, impressions=[long_text]))
    message = caught.value.message_dict["specification"][0]
    assert "more than the text encoder's limit of 77" in message


def test_cancelling_drops_waiting_batches_releases_quota_and_is_audited(researcher):
    cohort = services.request_cohort(user=researcher, data=cohort_request(size=20), enqueue=False)
    services.cancel_cohort(cohort=cohort, actor=researcher)
    cohort.refresh_from_db()
    assert cohort.status == "cancelled" and cohort.reserved_images == 0
    assert set(cohort.batches.values_list("status", flat=True)) == {"cancelled"}
    assert services.images_reserved(researcher) == 0
    assert AuditEvent.objects.filter(action="cohort.cancelled", actor=researcher).count() == 1


def test_a_finished_cohort_cannot_be_cancelled(researcher):
    cohort = services.request_cohort(user=researcher, data=cohort_request(), enqueue=False)
    services.cancel_cohort(cohort=cohort, actor=researcher)
    with pytest.raises(services.InvalidTransition):
        services.cancel_cohort(cohort=cohort, actor=researcher)


def test_submitting_enqueues_one_message_per_batch_after_commit(researcher, settings, django_capture_on_commit_callbacks):
    settings.GENERATION_BATCH_SIZE = 2
    with django_capture_on_commit_callbacks() as callbacks:
        cohort = services.request_cohort(user=researcher, data=cohort_request(size=4))
    assert len(callbacks) == 1  # sending waits for the commit
    assert set(cohort.batches.values_list("status", flat=True)) == {"queued"}
    assert all(b.task_id for b in cohort.batches.all())


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_two_concurrent_submissions_cannot_both_spend_the_last_of_a_quota(demo_model_version):
    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL row locks")
    user = UserFactory()
    grant_tier(user, "generate", quotas={caps.DAILY_IMAGES: 6})
    plans = [services.plan_cohort(user=user, data=cohort_request(size=4, name=f"c{i}")) for i in range(2)]
    barrier, outcomes = threading.Barrier(2), []

    def submit(plan):
        try:
            barrier.wait()
            services.submit_plan(plan, enqueue=False)
            outcomes.append("submitted")
        except services.QuotaExceeded:
            outcomes.append("refused")
        finally:
            connection.close()

    threads = [threading.Thread(target=submit, args=(plan,)) for plan in plans]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == ["refused", "submitted"]
    assert Cohort.objects.count() == 1 and SyntheticImage.objects.count() == 4
    assert GenerationBatch.objects.count() == 1
