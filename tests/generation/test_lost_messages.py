"""A non-persistent Redis restarted while a cohort's batches wait: their messages are gone, the
reconciler sends them again, and a real worker still makes exactly N images, each once."""

import time

import pytest

from generation import services
from generation.models import Cohort, SyntheticImage
from generation.tasks import generate_batch
from tests.access.factories import grant_tier
from tests.factories import UserFactory

from .conftest import cohort_request
from .test_worker_crash import wait_for

SIZE = 6
BATCH_SIZE = 2


@pytest.mark.slow
def test_a_restarted_redis_loses_queued_batches_and_the_cohort_still_ends_with_exactly_n_images(
    celery_worker_process, private_redis, app_broker, screened_demo_model_version, settings
):
    settings.GENERATION_BATCH_SIZE = BATCH_SIZE
    settings.GENERATION_REQUEUE_AFTER_SECONDS = 1
    app_broker(private_redis.url)
    user = UserFactory()
    grant_tier(user, "generate")
    # Submitted while no worker consumes: every batch waits in Redis.
    cohort = services.request_cohort(user=user, data=cohort_request(size=SIZE, sampling={"steps": 2}))
    assert private_redis.client().llen("gpu") == SIZE // BATCH_SIZE

    private_redis.restart()  # kill -9 and start again: a non-persistent Redis comes back empty
    assert private_redis.client().llen("gpu") == 0
    time.sleep(1.2)  # the messages are older than GENERATION_REQUEUE_AFTER_SECONDS
    assert services.reconcile_batches() == SIZE // BATCH_SIZE
    assert private_redis.client().llen("gpu") == SIZE // BATCH_SIZE
    # And every batch delivered twice more (as if the first messages had survived after all): harmless.
    for batch_id in cohort.batches.values_list("pk", flat=True):
        generate_batch.apply_async(args=[batch_id])
        generate_batch.apply_async(args=[batch_id])

    celery_worker_process(CELERY_BROKER_URL=private_redis.url, GENERATION_BATCH_SIZE=BATCH_SIZE)
    wait_for(lambda: Cohort.objects.get(pk=cohort.pk).is_terminal, 240, "the cohort to finish")
    cohort.refresh_from_db()
    assert cohort.status == "completed", cohort.error
    images = SyntheticImage.objects.filter(cohort=cohort)
    live = images.exclude(status="flagged")
    assert live.count() == SIZE and sorted(live.values_list("index", flat=True)) == list(range(SIZE))
    assert set(live.values_list("status", flat=True)) == {"passed"}
    assert all(b.attempts == 1 for b in cohort.batches.all())  # the duplicates were skipped, not run
    stored = {p.name for p in (settings.MEDIA_ROOT / "cohorts" / str(cohort.pk)).iterdir()}
    assert stored == {image.image.name.rsplit("/", 1)[1] for image in images}
    assert services.reconcile_batches() == 0
