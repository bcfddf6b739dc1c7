"""End to end with Redis and a real Celery worker: the export is built by the task, with
progress, and the stored zip verifies."""

import time

import pytest
from django.core.files.storage import default_storage

from exports import services, signing
from exports.models import Export
from tests.access.factories import grant_tier
from tests.factories import UserFactory

from .factories import array_pngs, make_cohort

pytestmark = pytest.mark.slow


def test_worker_builds_the_export_with_progress(celery_worker_process, demo_model_version, tmp_path):
    user = UserFactory()
    grant_tier(user, "export")
    cohort = make_cohort(user, demo_model_version, pngs=array_pngs(30, size=32))
    # Two encoder threads inside the prefork pool child, as in production.
    celery_worker_process(EXPORT_WORKERS=2)
    export = services.request_export(user=user, cohort=cohort)
    seen = set()
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        current = Export.objects.get(pk=export.pk)
        seen.add((current.status, current.progress_done))
        if current.status in ("ready", "failed"):
            break
        time.sleep(0.05)
    assert current.status == "ready", current.error
    assert current.task_id
    assert ("queued", 0) in seen or any(status == "building" for status, _ in seen)
    local = tmp_path / "export.zip"
    with default_storage.open(current.file_name, "rb") as handle:
        local.write_bytes(handle.read())
    result = signing.verify_package(local)
    # + DICOMDIR, README, manifest.csv, key, verify.py, quality-card.json and .md
    assert result.ok and result.checked == 30 + 7
