"""The cohort list and status endpoints cost a fixed number of queries, however many cohorts,
batches and images there are (no N+1). Cohorts are written directly: this is about reading them."""

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from rest_framework.test import APIClient

from generation.models import Cohort, GenerationBatch, SyntheticImage, WorkerHeartbeat
from generation.queueing import generation_queue
from tests.access.factories import grant_tier
from tests.factories import UserFactory

Status = Cohort.Status
BatchStatus = GenerationBatch.Status
ImageStatus = SyntheticImage.Status

# One of each state a cohort's notice and progress read differently.
_STATES = [
    (Status.RUNNING, BatchStatus.RUNNING),
    (Status.QUEUED, BatchStatus.QUEUED),
    (Status.QUEUED, None),  # queued, its message never sent (broker down at submit)
    (Status.COMPLETED, BatchStatus.COMPLETED),
    (Status.CANCELLED, BatchStatus.CANCELLED),
]


def add_cohorts(owner, model_version, count: int, *, batches: int = 2, images_per_batch: int = 3) -> list[Cohort]:
    now = timezone.now()
    cohorts = []
    for n in range(count):
        status, batch_status = _STATES[n % len(_STATES)]
        cohort = Cohort.objects.create(
            owner=owner, name=f"c{n}", model_version=model_version, seed=n, size=batches * images_per_batch,
            status=status, submitted_at=now, started_at=now - timedelta(minutes=1) if status == Status.RUNNING else None,
        )
        GenerationBatch.objects.bulk_create(
            GenerationBatch(
                cohort=cohort, first_index=b * images_per_batch, stop_index=(b + 1) * images_per_batch,
                status=batch_status or BatchStatus.QUEUED, enqueued_at=now if batch_status else None,
            )
            for b in range(batches)
        )
        SyntheticImage.objects.bulk_create(
            SyntheticImage(cohort=cohort, index=i, seed=i, prompt="chest x-ray",
                           status=ImageStatus.PASSED if i % 2 else ImageStatus.GENERATING)
            for i in range(batches * images_per_batch)
        )
        cohorts.append(cohort)
    return cohorts


@pytest.fixture
def owner(db, demo_model_version):
    user = UserFactory()
    grant_tier(user, "export")
    return user


@pytest.fixture
def api(owner):
    client = APIClient()
    client.force_authenticate(owner)
    return client


def queries_for(api, url: str) -> int:
    with CaptureQueriesContext(connection) as captured:
        response = api.get(url)
    assert response.status_code == 200, response.content
    return len(captured)


@pytest.fixture(params=[False, True], ids=["no-worker", "worker-up"])
def worker(request, db):
    if request.param:
        now = timezone.now()
        WorkerHeartbeat.objects.create(name="gpu0@test", queues=[generation_queue()], started_at=now, last_seen_at=now)
    return request.param


def test_the_cohort_list_costs_the_same_queries_for_2_or_20_cohorts(api, owner, demo_model_version, worker):
    add_cohorts(owner, demo_model_version, 2)
    api.get("/api/v1/cohorts")  # warm per-process caches, as a running server has them
    few = queries_for(api, "/api/v1/cohorts")
    add_cohorts(owner, demo_model_version, 18)
    body = api.get("/api/v1/cohorts").json()
    assert body["count"] == 20
    assert queries_for(api, "/api/v1/cohorts") == few


def test_the_list_says_what_each_cohort_waits_for_as_its_status_does(api, owner, demo_model_version, worker):
    running, queued, unsent, completed, cancelled = add_cohorts(owner, demo_model_version, 5)
    listed = {c["id"]: c["notice"] for c in api.get("/api/v1/cohorts").json()["results"]}
    if worker:
        assert listed[running.pk] is None and listed[queued.pk] is None
    else:
        assert "No GPU worker" in listed[running.pk] and "No GPU worker" in listed[queued.pk]
    assert "cannot be reached" in listed[unsent.pk]
    assert listed[completed.pk] is None and listed[cancelled.pk] is None
    for cohort in (running, queued, unsent, completed, cancelled):
        assert api.get(f"/api/v1/cohorts/{cohort.pk}").json()["notice"] == listed[cohort.pk]


def test_the_cohort_status_costs_the_same_queries_for_few_or_many_batches_and_images(api, owner, demo_model_version, worker):
    small = add_cohorts(owner, demo_model_version, 1, batches=1, images_per_batch=2)[0]
    large = add_cohorts(owner, demo_model_version, 1, batches=20, images_per_batch=10)[0]
    api.get(f"/api/v1/cohorts/{small.pk}")
    assert queries_for(api, f"/api/v1/cohorts/{large.pk}") == queries_for(api, f"/api/v1/cohorts/{small.pk}")
    assert api.get(f"/api/v1/cohorts/{large.pk}").json()["progress"]["passed"] == 100


def test_status_and_list_read_the_policy_the_cohort_and_its_progress_in_a_handful_of_queries(api, owner, demo_model_version, worker):
    # Authentication is forced here (a token adds one). Status: the access policy (credentials and
    # grants) 1, the cohort with its counts and notice 1. List: the policy 1, the count 1, the page 1.
    cohort = add_cohorts(owner, demo_model_version, 3)[0]
    api.get(f"/api/v1/cohorts/{cohort.pk}")
    assert queries_for(api, f"/api/v1/cohorts/{cohort.pk}") == 2
    assert queries_for(api, "/api/v1/cohorts") == 3


def test_the_written_out_representation_is_drfs_field_by_field_one(owner, demo_model_version, worker):
    from generation import selectors
    from rest_framework import serializers

    from generation.api.serializers import CohortSerializer

    add_cohorts(owner, demo_model_version, 5)
    Cohort.objects.filter(status=Status.COMPLETED).update(finished_at=timezone.now(), error="")
    Cohort.objects.filter(status=Status.CANCELLED).update(error="Cancelled by its owner.")
    serializer = CohortSerializer()
    listed = selectors.CohortListing(owner)[0:10]
    assert len(listed) == 5
    for cohort in listed + [selectors.cohort_of(owner, c.pk, with_progress=True) for c in listed]:
        written = serializer.to_representation(cohort)
        generic = serializers.ModelSerializer.to_representation(serializer, cohort)  # DRF's, field by field
        assert written == generic and list(written) == list(generic)
