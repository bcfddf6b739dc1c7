"""End to end on Redis with a real worker process: a SIGKILL mid-batch loses and duplicates nothing."""

import time

import pytest

from generation import services
from generation.models import Cohort, GenerationBatch, SyntheticImage
from tests.access.factories import grant_tier
from tests.factories import UserFactory

from .conftest import cohort_request

SIZE = 4
WORKER_ENV = {"GENERATION_STALE_BATCH_SECONDS": 3, "GENERATION_CANCEL_CHECK_SECONDS": 0.2, "GENERATION_BATCH_SIZE": 2}


def wait_for(condition, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.mark.slow
def test_killing_a_worker_mid_batch_still_ends_with_exactly_n_images(
    celery_worker_process, screened_demo_model_version, settings
):
    settings.GENERATION_BATCH_SIZE = WORKER_ENV["GENERATION_BATCH_SIZE"]
    settings.GENERATION_STALE_BATCH_SECONDS = WORKER_ENV["GENERATION_STALE_BATCH_SECONDS"]
    user = UserFactory()
    grant_tier(user, "generate")
    first = celery_worker_process(**WORKER_ENV)
    cohort = services.request_cohort(user=user, data=cohort_request(size=SIZE, sampling={"steps": 12}))

    def mid_batch():
        return SyntheticImage.objects.filter(cohort=cohort, status="generating").exists()

    wait_for(mid_batch, 120, "a batch being generated")
    first.kill()  # SIGKILL to the worker and its pool child, as an OOM kill or a lost node would
    interrupted = list(GenerationBatch.objects.filter(cohort=cohort, status="running"))
    assert interrupted, "the worker was killed between batches"

    celery_worker_process(**WORKER_ENV)

    def finished():
        services.reconcile_batches()  # what beat does every GENERATION_RECONCILE_SECONDS
        return Cohort.objects.get(pk=cohort.pk).is_terminal

    wait_for(finished, 180, "the cohort to finish")
    cohort.refresh_from_db()
    assert cohort.status == "completed", cohort.error
    live = SyntheticImage.objects.filter(cohort=cohort).exclude(status="flagged")
    assert live.count() == SIZE and sorted(live.values_list("index", flat=True)) == list(range(SIZE))
    assert set(live.values_list("status", flat=True)) == {"passed"}
    for batch in interrupted:
        batch.refresh_from_db()
        assert batch.status == "completed" and batch.attempts == 2
    # One stored file per image row: nothing duplicated by the crashed attempt.
    stored = {p.name for p in (settings.MEDIA_ROOT / "cohorts" / str(cohort.pk)).iterdir()}
    assert stored == {image.image.name.rsplit("/", 1)[1] for image in SyntheticImage.objects.filter(cohort=cohort)}


@pytest.mark.slow
def test_a_batch_whose_worker_is_killed_every_time_fails_after_the_cap_and_gives_the_quota_back(
    celery_worker_process, screened_demo_model_version, settings
):
    from generation.tasks import generate_batch

    env = {**WORKER_ENV, "GENERATION_BATCH_MAX_ATTEMPTS": 3}
    settings.GENERATION_BATCH_SIZE = WORKER_ENV["GENERATION_BATCH_SIZE"]
    settings.GENERATION_STALE_BATCH_SECONDS = WORKER_ENV["GENERATION_STALE_BATCH_SECONDS"]
    settings.GENERATION_BATCH_MAX_ATTEMPTS = 3
    user = UserFactory()
    grant_tier(user, "generate")
    cohort = services.request_cohort(user=user, data=cohort_request(size=2, sampling={"steps": 40}))
    batch = cohort.batches.get()
    assert services.images_reserved(user) == 2

    def killed_mid_attempt(attempt):
        worker = celery_worker_process(**env)
        wait_for(lambda: GenerationBatch.objects.get(pk=batch.pk).attempts == attempt
                 and SyntheticImage.objects.filter(cohort=cohort, status="generating").exists(),
                 120, f"attempt {attempt} to be generating")
        worker.kill()  # SIGKILL, as the kernel's OOM killer does
        time.sleep(WORKER_ENV["GENERATION_STALE_BATCH_SECONDS"] + 0.5)  # its heartbeat goes stale

    killed_mid_attempt(1)
    assert services.reconcile_batches() == 1  # what beat does: the crash counts, the batch is sent again
    killed_mid_attempt(2)
    assert services.reconcile_batches() == 1
    killed_mid_attempt(3)
    # The broker hands the message to a new worker once more (as Redis does after its visibility timeout):
    # the claim finds the batch out of attempts and fails it instead of starting a fourth.
    celery_worker_process(**env)
    generate_batch.apply_async(args=[batch.pk])
    wait_for(lambda: Cohort.objects.get(pk=cohort.pk).is_terminal, 120, "the cohort to finish")

    batch.refresh_from_db()
    cohort.refresh_from_db()
    assert batch.status == "failed" and (batch.attempts, batch.crashes) == (3, 3)
    assert batch.error.startswith("The worker running this batch stopped 3 times (out of memory or killed)")
    assert cohort.status == "failed" and "The worker running this batch stopped 3 times" in cohort.error
    assert set(SyntheticImage.objects.filter(cohort=cohort).values_list("status", flat=True)) == {"failed"}
    assert cohort.reserved_images == 0 and services.images_reserved(user) == 0
    assert services.reconcile_batches() == 0
