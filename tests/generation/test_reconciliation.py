"""Work that can no longer happen on its own is found and sent again, against real brokers (a private,
restartable redis-server; a closed port; a filesystem broker without its folders), never a mock."""

import time
from datetime import timedelta

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from cxr_platform.audit.models import AuditEvent
from generation import batches, queueing, services
from generation.models import Cohort, GenerationBatch
from generation.workers import BROKER_UNREACHABLE, NO_GPU_WORKER
from tests.fixtures.celery_worker import free_port

from .conftest import cohort_request


def submitted(user, **overrides):
    return services.request_cohort(user=user, data=cohort_request(**overrides), enqueue=False)


def age_messages(cohort, seconds=3600):
    """As if the cohort's messages had been sent an hour ago."""
    GenerationBatch.objects.filter(cohort=cohort).update(enqueued_at=timezone.now() - timedelta(seconds=seconds))


# --- The attempt cap counts crashes -------------------------------------------------------------------


def crash(batch_id):
    """What a SIGKILL leaves behind: the batch running, its heartbeat stopped."""
    GenerationBatch.objects.filter(pk=batch_id).update(heartbeat_at=timezone.now() - timedelta(days=1))


def test_every_claim_counts_and_a_batch_whose_worker_keeps_dying_fails_after_the_cap(researcher, settings):
    settings.GENERATION_BATCH_MAX_ATTEMPTS = 3
    cohort = submitted(researcher, size=4)
    batch_id = cohort.batches.get().pk
    for attempt in (1, 2, 3):
        assert batches.claim_batch(batch_id) is not None
        crash(batch_id)
        batch = GenerationBatch.objects.get(pk=batch_id)
        assert batch.attempts == attempt
        if attempt < 3:
            # The reconciler sends it again (the message is not delivered here: the claim above is the worker).
            assert batches._recover_crashed() == 1
            assert GenerationBatch.objects.get(pk=batch_id).crashes == attempt
    assert batches.reconcile_batches() == 0  # no fourth attempt
    batch = GenerationBatch.objects.get(pk=batch_id)
    assert batch.status == "failed" and (batch.attempts, batch.crashes) == (3, 3)
    assert batch.error.startswith("The worker running this batch stopped 3 times (out of memory or killed)")
    cohort.refresh_from_db()
    assert cohort.status == "failed" and "4 of 4 images failed" in cohort.error and "stopped 3 times" in cohort.error
    assert set(cohort.images.values_list("status", flat=True)) == {"failed"}
    assert "out of memory or killed" in cohort.images.first().error
    # The quota it held comes back.
    assert cohort.reserved_images == 0 and services.images_reserved(researcher) == 0
    event = AuditEvent.objects.get(action="generation_batch.failed")
    assert event.details["attempts"] == 3 and event.details["crashes"] == 3


def test_a_redelivered_message_of_a_batch_out_of_attempts_is_not_a_fourth_attempt(researcher, settings):
    settings.GENERATION_BATCH_MAX_ATTEMPTS = 2
    cohort = submitted(researcher, size=2)
    batch_id = cohort.batches.get().pk
    batches.claim_batch(batch_id)
    crash(batch_id)
    assert batches.claim_batch(batch_id) is not None  # the broker redelivers: a second attempt, reclaimed
    crash(batch_id)
    assert services.run_batch(batch_id) == services.SKIPPED  # and again: out of attempts
    batch = GenerationBatch.objects.get(pk=batch_id)
    assert batch.status == "failed" and (batch.attempts, batch.crashes) == (2, 2)
    assert "stopped twice" in batch.error
    cohort.refresh_from_db()
    assert cohort.status == "failed" and cohort.reserved_images == 0


def test_crashes_and_errors_together_are_both_named(researcher, settings, tmp_path):
    settings.GENERATION_BATCH_MAX_ATTEMPTS = 2
    cohort = submitted(researcher, size=1)
    batch_id = cohort.batches.get().pk
    batches.claim_batch(batch_id)
    crash(batch_id)
    (tmp_path / "not-a-folder").write_text("")  # storage breaks: the second attempt raises
    settings.STORAGES = {**settings.STORAGES, "default": {
        "BACKEND": "django.core.files.storage.FileSystemStorage",
        "OPTIONS": {"location": str(tmp_path / "not-a-folder" / "media")},
    }}
    assert services.run_batch(batch_id) == services.FAILED
    batch = GenerationBatch.objects.get(pk=batch_id)
    assert "tried twice: the worker running it stopped once (out of memory or killed) and it failed once" in batch.error
    assert "The last error: " in batch.error


def test_a_failed_cohort_keeps_only_its_passed_images_on_the_quota(researcher, settings):
    settings.GENERATION_BATCH_SIZE = 2
    settings.GENERATION_BATCH_MAX_ATTEMPTS = 1
    cohort = submitted(researcher, size=4)
    first, second = cohort.batches.order_by("first_index")
    assert services.run_batch(first.pk) == services.COMPLETED
    batches.claim_batch(second.pk)
    crash(second.pk)
    batches.reconcile_batches()
    cohort.refresh_from_db()
    assert cohort.status == "failed" and cohort.reserved_images == 2
    assert services.images_reserved(researcher) == 2


# --- Queued work whose message is gone --------------------------------------------------------------


def test_queued_batches_whose_messages_a_restarted_redis_lost_are_sent_again(
    researcher, private_redis, app_broker, settings, django_capture_on_commit_callbacks
):
    settings.GENERATION_BATCH_SIZE = 2
    settings.GENERATION_REQUEUE_AFTER_SECONDS = 60
    app_broker(private_redis.url)
    with django_capture_on_commit_callbacks(execute=True):
        cohort = services.request_cohort(user=researcher, data=cohort_request(size=6))
    redis = private_redis.client()
    assert redis.llen("gpu") == 3
    age_messages(cohort)
    assert batches.reconcile_batches() == 0  # the messages still wait: nothing is sent twice

    sent_first = dict(cohort.batches.values_list("pk", "task_id"))
    private_redis.restart()
    assert private_redis.client().llen("gpu") == 0
    GenerationBatch.objects.filter(pk=cohort.batches.first().pk).update(enqueued_at=timezone.now())
    with django_capture_on_commit_callbacks(execute=True):
        assert batches.reconcile_batches() == 2  # the one sent a moment ago is not overdue yet
    assert private_redis.client().llen("gpu") == 2
    age_messages(cohort)
    with django_capture_on_commit_callbacks(execute=True):
        assert batches.reconcile_batches() == 0  # the queue holds messages again
    event = AuditEvent.objects.get(action="generation_batch.resent")
    assert event.target_id == str(cohort.pk) and event.details["batches"] == 2
    assert "lost its message" in event.details["reason"]
    # Under new task ids; a message that was not lost after all would still be harmless (the claim skips it).
    resent = {pk: task_id for pk, task_id in cohort.batches.values_list("pk", "task_id") if task_id != sent_first[pk]}
    assert len(resent) == 2 and cohort.batches.filter(pk__in=resent, status="queued").count() == 2


def test_the_reconciler_leaves_queued_batches_alone_while_the_broker_is_unreachable(
    researcher, app_broker, settings, django_capture_on_commit_callbacks
):
    cohort = submitted(researcher, size=2)
    with django_capture_on_commit_callbacks(execute=False):
        queueing.enqueue(list(cohort.batches.all()))  # queued; the message is never sent
    age_messages(cohort)
    app_broker(f"redis://127.0.0.1:{free_port()}/0")
    started = time.monotonic()
    assert batches.reconcile_batches() == 0
    assert time.monotonic() - started < 10
    assert cohort.batches.get().status == "queued"


# --- The broker unreachable at submission ---------------------------------------------------------------


@pytest.fixture
def api(api_researcher):
    client = APIClient()
    client.force_authenticate(api_researcher)
    return client


def closed_port_broker(tmp_path):
    return f"redis://127.0.0.1:{free_port()}/0", None


def missing_folders_broker(tmp_path):
    # The filesystem broker of `make run`, in a web process started without its folders.
    missing = tmp_path / "absent" / "broker"
    return "filesystem://", {"data_folder_in": str(missing / "queue"), "data_folder_out": str(missing / "queue"),
                             "processed_folder": str(missing / "processed"), "control_folder": str(missing / "control")}


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("broker", [closed_port_broker, missing_folders_broker])
def test_an_unreachable_broker_at_submission_stores_the_cohort_and_says_it_waits(
    api, api_researcher, app_broker, private_redis, settings, tmp_path, broker
):
    settings.GENERATION_BATCH_SIZE = 2
    app_broker(*broker(tmp_path))
    started = time.monotonic()
    response = api.post("/api/v1/cohorts", cohort_request(size=4), format="json")
    assert time.monotonic() - started < 15
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["status"] == "queued" and body["notice"] == BROKER_UNREACHABLE.format(verb="start")
    cohort = Cohort.objects.get(pk=body["id"])
    assert [(b.status, b.enqueued_at) for b in cohort.batches.all()] == [("queued", None)] * 2
    assert services.images_reserved(api_researcher) == 4
    assert batches.reconcile_batches() == 0  # still unreachable

    app_broker(private_redis.url)  # the broker is back
    assert batches.reconcile_batches() == 2
    assert private_redis.client().llen("gpu") == 2
    assert all(b.enqueued_at for b in cohort.batches.all())
    assert api.get(f"/api/v1/cohorts/{cohort.pk}").json()["notice"] == NO_GPU_WORKER.format(verb="start")
    event = AuditEvent.objects.get(action="generation_batch.resent")
    assert event.details == {"batches": 2, "reason": "the broker could not be reached when it was queued"}


@pytest.mark.django_db(transaction=True)
def test_the_browser_form_with_the_broker_down_submits_and_says_the_cohort_waits(
    client, researcher, app_broker
):
    from django.urls import reverse

    app_broker(f"redis://127.0.0.1:{free_port()}/0")
    client.force_login(researcher)
    response = client.post(reverse("cohort-create"), {
        "name": "Broker down", "size": 2, "preset": "balanced", "action": "submit",
        "submission_token": "a" * 32,
    }, follow=True)
    assert response.status_code == 200
    cohort = Cohort.objects.get()
    page = response.content.decode()
    assert response.redirect_chain[-1][0].endswith(f"/cohorts/{cohort.pk}/")
    assert "The job queue cannot be reached right now" in page
