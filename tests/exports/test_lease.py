"""An export is built once: a task the broker redelivers while the first run goes on (an export
that outlasts the visibility timeout) waits for the first run's lease; only a lapsed lease (its
worker died) lets it start over."""

import threading
import time
from datetime import timedelta

import pytest
from django.utils import timezone

from cxr_platform.audit.models import AuditEvent
from exports import services, tasks
from exports.models import Export

from .factories import array_pngs, make_cohort


def _events(export, action):
    return AuditEvent.objects.filter(action=action, target_id=str(export.pk)).count()


def _building(export, *, seconds_ago: float):
    Export.objects.filter(pk=export.pk).update(status=Export.Status.BUILDING,
                                               updated_at=timezone.now() - timedelta(seconds=seconds_ago))


@pytest.mark.django_db(transaction=True)
def test_a_second_build_while_the_first_runs_is_refused(exporter, demo_model_version):
    cohort = make_cohort(exporter, demo_model_version, pngs=array_pngs(400, size=32))
    export = services.request_export(user=exporter, cohort=cohort, enqueue=False)
    outcome = {}

    def first_worker():
        from django.db import connection

        try:
            outcome["status"] = services.build_export(export.pk)
        finally:
            connection.close()

    first = threading.Thread(target=first_worker)
    first.start()
    deadline = time.monotonic() + 30
    while Export.objects.get(pk=export.pk).status == Export.Status.QUEUED and time.monotonic() < deadline:
        time.sleep(0.005)
    with pytest.raises(services.ExportBusy) as busy:
        services.build_export(export.pk)  # the redelivered task, while the first one builds
    first.join(timeout=120)
    assert outcome["status"] == Export.Status.READY
    assert 0 < busy.value.retry_in <= services.lease_seconds() + 1
    assert _events(export, "export.started") == 1 and _events(export, "export.restarted") == 0
    assert services.build_export(export.pk) == "skipped"  # once ready, a late redelivery does nothing


def test_a_lapsed_lease_is_taken_over(small_cohort, exporter, settings):
    settings.EXPORT_LEASE_SECONDS = 60
    export = services.request_export(user=exporter, cohort=small_cohort, enqueue=False)
    _building(export, seconds_ago=61)  # its worker died a minute ago
    assert services.build_export(export.pk) == Export.Status.READY
    assert _events(export, "export.restarted") == 1


def test_the_task_retries_instead_of_building_twice(small_cohort, exporter):
    from celery.exceptions import Retry

    export = services.request_export(user=exporter, cohort=small_cohort, enqueue=False)
    _building(export, seconds_ago=1)
    with pytest.raises(Retry):
        tasks.build_export(export.pk)  # what the redelivered task does: retry later, not build
    export.refresh_from_db()
    assert export.status == Export.Status.BUILDING and _events(export, "export.restarted") == 0


@pytest.mark.django_db(transaction=True)
def test_the_lease_is_renewed_while_the_build_makes_no_progress(small_cohort, exporter, settings):
    settings.EXPORT_LEASE_SECONDS = 3
    export = services.request_export(user=exporter, cohort=small_cohort, enqueue=False)
    _building(export, seconds_ago=600)
    with services._Lease(export.pk):
        time.sleep(1.6)  # a renewal every second
        renewed = Export.objects.get(pk=export.pk).updated_at
    assert timezone.now() - renewed < timedelta(seconds=1.5)


@pytest.mark.django_db(transaction=True)
def test_an_export_requested_while_the_broker_is_down_is_stored_and_sent_once_it_is_back(
        small_cohort, exporter, app_broker, private_redis):
    from tests.fixtures.celery_worker import free_port

    app_broker(f"redis://127.0.0.1:{free_port()}/0")  # nothing listens there
    export = services.request_export(user=exporter, cohort=small_cohort)  # no 500: stored, queued
    export.refresh_from_db()
    assert export.status == Export.Status.QUEUED and export.task_id == ""
    later = timezone.now() + timedelta(minutes=1)
    assert services.requeue_lost_exports(now=later) == 0  # still down: nothing lost, nothing sent

    app_broker(private_redis.url)  # the broker is back
    assert services.requeue_lost_exports(now=later) == 1
    export.refresh_from_db()
    assert export.task_id and private_redis.client().llen("default") == 1
    assert services.requeue_lost_exports(now=later) == 0  # sent once, not on every run
