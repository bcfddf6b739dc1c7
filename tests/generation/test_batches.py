"""Running batches with the real demo pipeline, real storage and real screening."""

import numpy as np
import pytest
from django.core.files.storage import default_storage
from PIL import Image

from cxr_platform.audit.models import AuditEvent
from generation import batches, pipeline, services
from generation.models import Cohort, GenerationBatch, SyntheticImage

from .conftest import cohort_request


def submitted(user, **overrides):
    return services.request_cohort(user=user, data=cohort_request(**overrides), enqueue=False)


def test_a_batch_stores_8_bit_grayscale_pngs_and_releases_screened_images(researcher):
    cohort = submitted(researcher, size=3)
    batch = cohort.batches.get()
    assert services.run_batch(batch.pk) == services.COMPLETED
    images = list(cohort.images.all())
    assert [i.status for i in images] == ["passed"] * 3
    with default_storage.open(images[0].image.name) as handle:
        picture = Image.open(handle)
        picture.load()
    assert picture.format == "PNG" and picture.mode == "L" and picture.size == (64, 64)
    cohort.refresh_from_db()
    assert cohort.status == "completed"
    assert AuditEvent.objects.filter(action="cohort.completed", target_id=str(cohort.pk)).exists()


def test_running_a_finished_batch_again_changes_nothing(researcher):
    cohort = submitted(researcher, size=2)
    batch = cohort.batches.get()
    services.run_batch(batch.pk)
    before = list(SyntheticImage.objects.values_list("pk", "status", "image", "updated_at"))
    assert services.run_batch(batch.pk) == services.SKIPPED
    assert list(SyntheticImage.objects.values_list("pk", "status", "image", "updated_at")) == before


def test_a_batch_whose_worker_died_redoes_only_unfinished_images(researcher, settings):
    cohort = submitted(researcher, size=3)
    batch = cohort.batches.get()
    services.run_batch(batch.pk)
    # As a killed worker leaves it: batch running with an old heartbeat, one image half done.
    GenerationBatch.objects.filter(pk=batch.pk).update(status="running", heartbeat_at="2000-01-01T00:00Z")
    Cohort.objects.filter(pk=cohort.pk).update(status="running")
    crashed = cohort.images.get(index=1)
    SyntheticImage.objects.filter(pk=crashed.pk).update(status="generating")
    untouched = cohort.images.get(index=0)
    assert services.run_batch(batch.pk) == services.COMPLETED
    assert cohort.images.count() == 3 and set(cohort.images.values_list("status", flat=True)) == {"passed"}
    assert cohort.images.get(index=0).updated_at == untouched.updated_at
    assert cohort.images.get(index=1).image.name == crashed.image.name  # overwritten, never duplicated
    assert AuditEvent.objects.filter(action="generation_batch.reclaimed").count() == 1


def test_a_running_batch_with_a_live_worker_is_not_started_twice(researcher):
    cohort = submitted(researcher, size=2)
    batch = cohort.batches.get()
    batches.claim_batch(batch.pk)
    assert services.run_batch(batch.pk) == services.SKIPPED
    assert set(cohort.images.values_list("status", flat=True)) == {"pending"}


def test_the_same_specification_seed_and_model_version_reproduce_the_same_images(researcher):
    first, second = submitted(researcher, size=3, name="a"), submitted(researcher, size=3, name="b")
    other_seed = submitted(researcher, size=3, name="c", seed=99)
    for cohort in (first, second, other_seed):
        services.run_cohort_inline(cohort)

    def pixels(cohort):
        result = []
        for image in cohort.images.order_by("index"):
            with default_storage.open(image.image.name) as handle:
                result.append(np.asarray(Image.open(handle)))
        return result

    assert all(np.array_equal(a, b) for a, b in zip(pixels(first), pixels(second), strict=True))
    assert not np.array_equal(pixels(first)[0], pixels(other_seed)[0])


def test_cancelling_interrupts_a_running_batch_between_denoising_steps(researcher):
    from generation.inference import GenerationCancelled

    cohort = submitted(researcher, size=2)
    batch = batches.claim_batch(cohort.batches.get().pk)
    services.cancel_cohort(cohort=cohort, actor=researcher)
    with pytest.raises(GenerationCancelled):
        pipeline.generate_and_screen(batch)
    assert not cohort.images.filter(status="passed").exists()


def test_a_batch_of_a_cancelled_cohort_is_skipped(researcher):
    cohort = submitted(researcher, size=2)
    services.cancel_cohort(cohort=cohort, actor=researcher)
    assert services.run_batch(cohort.batches.get().pk) == services.SKIPPED
    assert set(cohort.images.values_list("status", flat=True)) == {"pending"}


def test_failing_batches_retry_a_bounded_number_of_times_then_report_which_images_failed(researcher, settings, tmp_path):
    settings.GENERATION_BATCH_MAX_ATTEMPTS = 2
    cohort = submitted(researcher, size=2)
    # Storage breaks between submission and generation: its location is a file, not a folder.
    (tmp_path / "not-a-folder").write_text("")
    settings.STORAGES = {**settings.STORAGES, "default": {
        "BACKEND": "django.core.files.storage.FileSystemStorage",
        "OPTIONS": {"location": str(tmp_path / "not-a-folder" / "media")},
    }}
    batch = cohort.batches.get()
    assert services.run_batch(batch.pk) == services.RETRY
    assert cohort.batches.get().status == "pending"
    assert services.run_batch(batch.pk) == services.FAILED
    cohort.refresh_from_db()
    assert cohort.status == "failed" and "2 of 2 images failed" in cohort.error
    images = list(cohort.images.all())
    assert {i.status for i in images} == {"failed"} and all("Error" in i.error for i in images)
    assert AuditEvent.objects.filter(action="generation_batch.failed").count() == 1
    assert AuditEvent.objects.filter(action="cohort.failed").count() == 1


def test_images_are_never_released_unscreened_without_a_screening_index(unscreened_researcher, settings):
    settings.GENERATION_BATCH_MAX_ATTEMPTS = 2
    cohort = submitted(unscreened_researcher, size=1)
    batch = cohort.batches.get()
    assert services.run_batch(batch.pk) == services.RETRY
    assert cohort.images.get().status == "pending"
    assert services.run_batch(batch.pk) == services.FAILED
    image = cohort.images.get()
    assert image.status == "failed" and "no memorization-screening index" in image.error
    cohort.refresh_from_db()
    assert cohort.status == "failed" and not cohort.images.filter(status="passed").exists()


def test_the_reconciler_re_enqueues_a_batch_whose_worker_died(researcher, eager_celery, django_capture_on_commit_callbacks):
    cohort = submitted(researcher, size=2)
    batch = cohort.batches.get()
    batches.claim_batch(batch.pk)
    GenerationBatch.objects.filter(pk=batch.pk).update(heartbeat_at="2000-01-01T00:00Z")
    with django_capture_on_commit_callbacks(execute=True):
        assert services.reconcile_batches() == 1
    cohort.refresh_from_db()
    assert cohort.status == "completed" and cohort.images.filter(status="passed").count() == 2
    assert AuditEvent.objects.filter(action="generation_batch.requeued").count() == 1


def test_revoked_access_stops_the_cohort(researcher):
    cohort = submitted(researcher, size=2)
    researcher.grants.update(status="revoked")
    assert services.run_batch(cohort.batches.get().pk) == services.SKIPPED
    cohort.refresh_from_db()
    assert cohort.status == "failed" and "access" in cohort.error


def test_the_reconciler_runs_on_beat_well_inside_the_stale_threshold(settings):
    from cxr_platform.celery import app

    entry = app.conf.beat_schedule["generation-reconcile-batches"]
    assert entry["task"] == "generation.tasks.reconcile_batches"
    assert entry["schedule"] < settings.GENERATION_STALE_BATCH_SECONDS


def test_a_batch_in_progress_keeps_its_heartbeat_fresh(researcher, settings):
    settings.GENERATION_STALE_BATCH_SECONDS = 3
    cohort = submitted(researcher, size=2)
    batch = batches.claim_batch(cohort.batches.get().pk)
    GenerationBatch.objects.filter(pk=batch.pk).update(heartbeat_at="2000-01-01T00:00Z")
    with pipeline.Heartbeat(batch.pk) as heartbeat:
        assert heartbeat.interval == 0.6
        heartbeat.beat()
    batch.refresh_from_db()
    assert batch.heartbeat_at >= batches.stale_before()
    assert services.reconcile_batches() == 0  # a live batch is left alone


def make_patient_1_a_copy_of_patient_0(cohort):
    """As if the model had produced the same picture twice: same prompt and seed for two patients."""
    first = cohort.images.get(index=0)
    SyntheticImage.objects.filter(cohort=cohort, index=1).update(seed=first.seed, prompt=first.prompt)


def test_an_image_flagged_by_screening_is_quarantined_and_its_patient_regenerated_with_a_fresh_seed(researcher):
    from generation.sampling import image_seed
    from generation.selectors import cohort_progress

    cohort = submitted(researcher, size=2)
    make_patient_1_a_copy_of_patient_0(cohort)
    assert services.run_batch(cohort.batches.get().pk) == services.COMPLETED
    cohort.refresh_from_db()
    assert cohort.status == "completed"
    flagged = cohort.images.get(status="flagged")
    assert (flagged.index, flagged.attempt) == (1, 0) and "Nearly identical" in flagged.error
    replacement = cohort.images.get(index=1, status="passed")
    assert replacement.attempt == 1 and replacement.seed == image_seed(cohort.seed, 1, 1)
    progress = cohort_progress(cohort)
    assert (progress["passed"], progress["flagged"], progress["failed"]) == (2, 1, 0)
    event = AuditEvent.objects.get(action="synthetic_image.flagged")
    assert event.target_id == str(flagged.pk) and event.details["index"] == 1


def test_a_patient_flagged_more_often_than_allowed_is_reported_failed(researcher, settings):
    settings.SCREENING_MAX_REGENERATIONS = 0
    cohort = submitted(researcher, size=2)
    make_patient_1_a_copy_of_patient_0(cohort)
    services.run_batch(cohort.batches.get().pk)
    cohort.refresh_from_db()
    assert cohort.status == "failed" and "1 of 2 images failed" in cohort.error
    failed = cohort.images.get(status="failed")
    assert failed.index == 1 and "Flagged by memorization screening" in failed.error
    assert cohort.images.filter(status="passed").count() == 1


def test_generate_batch_is_routed_to_the_gpu_queue():
    from cxr_platform.celery import app

    assert app.amqp.router.route({}, "generation.tasks.generate_batch")["queue"].name == "gpu"
    assert app.amqp.router.route({}, "generation.tasks.reconcile_batches")["queue"].name == "default"


def test_a_retried_batch_is_queued_again_under_a_new_message(researcher):
    cohort = submitted(researcher, size=1)
    batch = batches.claim_batch(cohort.batches.get().pk)
    batches.after_interruption(batch, GenerationBatch.Status.PENDING, error="RuntimeError: out of memory")
    services.retry_batch(batch.pk)
    batch.refresh_from_db()
    assert batch.status == "queued" and batch.task_id and batch.error == "RuntimeError: out of memory"
    assert AuditEvent.objects.filter(action="generation_batch.retry").count() == 1


@pytest.mark.django_db(transaction=True)
def test_cancelling_stops_a_batch_running_in_another_thread_within_a_few_steps(screened_demo_model_version, settings):
    import threading
    import time

    from django.db import connection

    from tests.access.factories import grant_tier
    from tests.factories import UserFactory

    settings.GENERATION_CANCEL_CHECK_SECONDS = 0.05
    user = UserFactory()
    grant_tier(user, "generate")
    # 150 denoising steps would take far longer than the few the cancel lets it run.
    cohort = services.request_cohort(user=user, data=cohort_request(size=2, sampling={"steps": 150}), enqueue=False)
    batch = cohort.batches.get()
    outcome = []

    def work():
        try:
            outcome.append(services.run_batch(batch.pk))
        finally:
            connection.close()

    worker = threading.Thread(target=work)
    worker.start()
    deadline = time.monotonic() + 60
    while not cohort.images.filter(status="generating").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    services.cancel_cohort(cohort=cohort, actor=user)
    cancelled_at = time.monotonic()
    worker.join(60)
    assert outcome == [services.CANCELLED] and time.monotonic() - cancelled_at < 10
    batch.refresh_from_db()
    cohort.refresh_from_db()
    assert batch.status == "cancelled" and cohort.status == "cancelled"
    assert set(cohort.images.values_list("status", flat=True)) == {"pending"}
    assert cohort.reserved_images == 0 and services.images_reserved(user) == 0
    # Stopped while denoising: nothing was decoded and stored.
    assert not (settings.MEDIA_ROOT / "cohorts" / str(cohort.pk)).exists()
