"""A researcher's whole journey by the client, with a real Celery worker: a cohort from YAML
generated with live progress, exported and downloaded (checksum verified), then checked offline.
One test, so that the worker (torch and the model loaded) starts once for all of it."""

import zipfile

import pytest

from exports.models import Export
from generation.models import Cohort

from .conftest import OFFLINE_URL, api_user
from .test_cohorts import SPEC
from .test_exports import listed_files


@pytest.mark.slow
def test_cohort_to_verified_export_by_the_client(cxr, celery_worker_process, screened_demo_model_version, settings,
                                                 tmp_path):
    settings.GENERATION_BATCH_SIZE = 1  # two batches, so the bar moves in steps
    user, token = api_user()
    cxr.login(token)  # also saves the platform's published signing key
    spec = tmp_path / "spec.yaml"
    spec.write_text(SPEC)
    celery_worker_process(GENERATION_BATCH_SIZE=1, EXPORT_WORKERS=1)

    created = cxr("cohort", "create", spec, "--wait", "--interval", "0.2", "--json", timeout=240)
    assert created.code == 0, created.stdout + created.stderr
    cohort = created.json()
    assert cohort["status"] == "completed" and cohort["progress"]["passed"] == 2
    assert Cohort.objects.get(pk=cohort["id"], owner=user).name == "CLI effusion study"
    bar = [line for line in created.stderr.splitlines() if line.startswith(f"Cohort {cohort['id']} [")]
    assert "0/2" in bar[0] and "completed" not in bar[0], created.stderr
    assert "2/2" in bar[-1] and "completed" in bar[-1], created.stderr

    exported = cxr("export", "create", "--cohort", cohort["id"], "--download", tmp_path / "downloads",
                   "--interval", "0.2", "--json", timeout=240)
    assert exported.code == 0, exported.stdout + exported.stderr
    result = exported.json()
    export = Export.objects.get(pk=result["id"])
    package = tmp_path / "downloads" / export.download_name
    assert result["status"] == "ready" and result["downloaded"]["path"] == str(package)
    assert result["downloaded"]["checksum_ok"] and result["downloaded"]["sha256"] == export.sha256
    assert not list((tmp_path / "downloads").glob("*.part"))

    # Offline: nothing listens at the URL now, the key saved at login is the published one.
    checked = cxr("export", "verify", package, "--json", url=OFFLINE_URL)
    assert checked.code == 0, checked.stdout + checked.stderr
    assert checked.json()["ok"] and checked.json()["checked"] == listed_files(package)
    assert "saved at login" in checked.json()["key"]

    with zipfile.ZipFile(package) as original, zipfile.ZipFile(tmp_path / "tampered.zip", "w") as tampered:
        for item in original.infolist():
            data = original.read(item)
            tampered.writestr(item, data + b"\0" if item.filename.endswith("README.md") else data)
    refused = cxr("export", "verify", tmp_path / "tampered.zip", url=OFFLINE_URL)
    assert refused.code == 1
    assert "CHANGED" in refused.stdout and "FAILED" in refused.stdout
