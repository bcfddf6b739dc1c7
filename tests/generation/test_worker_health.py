"""Worker liveness: workers write heartbeats, health reports each queue's consumers and the oldest
waiting batch, and cohorts say plainly when no GPU worker is running."""

import signal
import time
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone
from rest_framework.test import APIClient

from generation import services
from generation.models import Cohort, GenerationBatch, WorkerHeartbeat
from generation.workers import NO_GPU_WORKER, WorkerBeat, queue_report
from tests.fixtures.celery_worker import free_port

from .conftest import cohort_request
from .test_worker_crash import wait_for

pytestmark = pytest.mark.django_db


@pytest.fixture
def api(api_researcher):
    client = APIClient()
    client.force_authenticate(api_researcher)
    return client


def health(client):
    response = client.get(reverse("api-health"))
    return response.status_code, response.json()


def test_health_is_ok_with_no_work_and_no_worker(client):
    status, report = health(client)
    workers = report["checks"]["workers"]
    assert workers["ok"] is True and workers["queues"]["gpu"]["consumers"] == 0
    assert workers["queues"]["gpu"]["waiting_batches"] == 0 and workers["queues"]["gpu"]["oldest_waiting_seconds"] is None


def test_waiting_work_without_a_gpu_consumer_is_not_ok_and_cohorts_say_why(client, api, api_researcher):
    cohort = services.request_cohort(user=api_researcher, data=cohort_request(size=4), enqueue=False)
    Cohort.objects.filter(pk=cohort.pk).update(submitted_at=timezone.now() - timedelta(minutes=5))
    status, report = health(client)
    gpu = report["checks"]["workers"]["queues"]["gpu"]
    # Degraded but serving: no web node is taken out of rotation for a missing GPU worker.
    assert status == 200 and report["status"] == "degraded" and report["problems"] == ["workers"]
    assert report["checks"]["workers"]["ok"] is False and "no worker consumes the 'gpu' queue" in report["checks"]["workers"]["problem"]
    assert gpu["consumers"] == 0 and gpu["waiting_batches"] == 1 and gpu["oldest_waiting_seconds"] >= 300
    expected = NO_GPU_WORKER.format(verb="start")
    assert expected == "No GPU worker is running — your cohort will start when one is."
    assert api.get(f"/api/v1/cohorts/{cohort.pk}").json()["notice"] == expected
    assert api.get("/api/v1/cohorts").json()["results"][0]["notice"] == expected
    page_client = client
    page_client.force_login(api_researcher)
    assert expected in page_client.get(reverse("cohort-detail", args=[cohort.pk])).content.decode()
    assert page_client.get(reverse("cohort-progress", args=[cohort.pk])).json()["notice"] == expected

    # A worker on the default queue only does not help; one on gpu does.
    WorkerBeat("default@host", ["default"]).beat()
    assert queue_report()["ok"] is False
    WorkerBeat("gpu0@host", ["gpu"]).beat()
    status, report = health(client)
    gpu = report["checks"]["workers"]["queues"]["gpu"]
    assert status == 200 and report["status"] == "ok"
    assert gpu["consumers"] == 1 and gpu["workers"] == ["gpu0@host"] and gpu["last_seen"]
    assert api.get(f"/api/v1/cohorts/{cohort.pk}").json()["notice"] is None


def test_a_worker_that_stopped_beating_no_longer_counts(settings, researcher):
    settings.GENERATION_WORKER_STALE_SECONDS = 30
    WorkerBeat("gpu0@host", ["gpu"]).beat()
    assert queue_report()["queues"]["gpu"]["consumers"] == 1
    WorkerHeartbeat.objects.update(last_seen_at=timezone.now() - timedelta(seconds=31))
    gpu = queue_report()["queues"]["gpu"]
    assert gpu["consumers"] == 0 and gpu["last_seen"]  # when it was last seen is still reported


def test_a_finished_or_running_cohort_says_the_right_thing(researcher):
    cohort = services.request_cohort(user=researcher, data=cohort_request(size=2), enqueue=False)
    services.run_cohort_inline(cohort)
    cohort.refresh_from_db()
    from generation.workers import cohort_notice

    assert cohort.status == "completed" and cohort_notice(cohort) is None
    running = services.request_cohort(user=researcher, data=cohort_request(size=2, name="b"), enqueue=False)
    Cohort.objects.filter(pk=running.pk).update(status="running")
    running.refresh_from_db()
    assert cohort_notice(running) == "No GPU worker is running — your cohort will continue when one is."


def test_health_answers_quickly_when_the_broker_is_down(client, app_broker):
    app_broker(f"redis://127.0.0.1:{free_port()}/0")
    started = time.monotonic()
    status, report = health(client)
    assert time.monotonic() - started < 6
    # Submissions wait in the database while the broker is down: degraded, still serving.
    assert status == 200 and report["status"] == "degraded" and report["problems"] == ["broker"]
    assert report["checks"]["broker"]["ok"] is False
    assert report["checks"]["workers"]["ok"] is True  # read from the database, not the broker


@pytest.mark.slow
def test_a_real_worker_is_seen_while_it_runs_and_gone_when_it_stops(
    celery_worker_process, screened_demo_model_version, settings, client
):
    from tests.access.factories import grant_tier
    from tests.factories import UserFactory

    settings.GENERATION_WORKER_HEARTBEAT_SECONDS = 0.5
    settings.GENERATION_WORKER_STALE_SECONDS = 2
    env = {"GENERATION_WORKER_HEARTBEAT_SECONDS": 0.5, "GENERATION_WORKER_STALE_SECONDS": 2}
    user = UserFactory()
    grant_tier(user, "export")
    api = APIClient()
    api.force_authenticate(user)
    body = api.post("/api/v1/cohorts", cohort_request(size=2, sampling={"steps": 2}), format="json").json()
    assert body["notice"] == NO_GPU_WORKER.format(verb="start")
    assert health(client)[1]["problems"] == ["workers"]  # degraded, still 200

    worker = celery_worker_process(queues="gpu", **env)
    status, report = health(client)  # the worker wrote its heartbeat before it said it was ready
    gpu = report["checks"]["workers"]["queues"]["gpu"]
    assert gpu["consumers"] == 1 and gpu["workers"][0].startswith("pytest-")
    wait_for(lambda: Cohort.objects.get(pk=body["id"]).is_terminal, 180, "the cohort to finish")
    assert api.get(f"/api/v1/cohorts/{body['id']}").json()["status"] == "completed"
    time.sleep(1.2)  # more than two beats: it keeps beating while idle
    assert health(client)[1]["checks"]["workers"]["queues"]["gpu"]["consumers"] == 1

    worker.kill(signal.SIGTERM)  # a warm shutdown removes its heartbeat at once
    assert queue_report()["queues"]["gpu"]["consumers"] == 0 and not WorkerHeartbeat.objects.exists()

    killed = celery_worker_process(queues="gpu", **env)
    assert queue_report()["queues"]["gpu"]["consumers"] == 1
    killed.kill()  # SIGKILL: its heartbeat stops and goes stale
    wait_for(lambda: queue_report()["queues"]["gpu"]["consumers"] == 0, 10, "the killed worker to go stale")
    waiting = services.request_cohort(user=user, data=cohort_request(size=2, name="later"))
    assert GenerationBatch.objects.filter(cohort=waiting).exists()
    assert api.get(f"/api/v1/cohorts/{waiting.pk}").json()["notice"] == NO_GPU_WORKER.format(verb="start")
    assert health(client)[1]["problems"] == ["workers"]  # degraded, still 200
