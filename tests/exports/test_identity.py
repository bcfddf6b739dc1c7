"""Every deployment has its own UID root, so two installations never hand a PACS the same UIDs;
every export setting the docs name is read from the environment and changes behaviour."""

import json
import os
import re
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from django.utils import timezone

from exports import services
from exports.dicom import ImageFacts
from exports.models import Export, Installation

from .factories import array_pngs, make_cohort

REPO = Path(__file__).resolve().parents[2]


def _deployment(tmp_path, name: str, **env) -> dict:
    """A fresh installation with default settings: its own SQLite database, migrated."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("EXPORT_", "DATABASE", "PYTEST"))}
    environment.update(DJANGO_ENV="development", DATABASE_URL=f"sqlite:///{tmp_path / name}.sqlite3", **env)
    manage = [sys.executable, str(REPO / "manage.py")]
    subprocess.run([*manage, "migrate", "-v0"], env=environment, check=True, timeout=300, cwd=REPO)
    out = subprocess.run([*manage, "shell", "-c", "import json; from exports import services as s; "
                          "i = s.installation(); print(json.dumps({'namespace': s.uid_namespace(i), 'tag': i.tag}))"],
                         env=environment, check=True, timeout=120, capture_output=True, text=True, cwd=REPO)
    return json.loads(out.stdout.strip().splitlines()[-1])


def _facts(identity: dict, image_id: int) -> ImageFacts:
    return ImageFacts(namespace=identity["namespace"], installation=identity["tag"], model_version_id=1,
                      model_name="RoentGen", model_version="1", cohort_id=1, cohort_name="c", image_id=image_id,
                      index=image_id - 1, seed=0, prompt="", demographics={}, findings=[], sampling={},
                      created=timezone.now())


@pytest.mark.slow
def test_two_deployments_with_default_settings_get_disjoint_uids(tmp_path):
    first, second = _deployment(tmp_path, "one"), _deployment(tmp_path, "two")
    assert first["namespace"] != second["namespace"]

    def identifiers(identity):
        out = set()
        for image_id in range(1, 17):  # cohort 1's 16 images, as both deployments number them
            facts = _facts(identity, image_id)
            out |= {facts.sop_instance_uid, facts.study_uid, facts.series_uid, facts.patient_id}
        return out

    assert len(identifiers(first)) == 64
    assert identifiers(first).isdisjoint(identifiers(second))


def test_an_installation_exists_even_after_the_database_was_emptied(db):
    Installation.objects.all().delete()
    identity = services.installation()
    assert identity.uid_root and services.installation() == identity


def test_uid_namespace_setting_adds_to_the_installation_root(exporter, demo_model_version, settings, tmp_path):
    cohort = make_cohort(exporter, demo_model_version, pngs=array_pngs(2))
    services.write_cohort_package(cohort, tmp_path / "a")
    settings.EXPORT_UID_NAMESPACE = "second-restore"
    services.write_cohort_package(cohort, tmp_path / "b")
    uids = [{row["sop_instance_uid"] for row in json.loads((tmp_path / name / "manifest.json").read_text())["images"]}
            for name in ("a", "b")]
    assert uids[0].isdisjoint(uids[1])


# --- Every documented setting is read from the environment ------------------------------------------

ENVIRONMENT = {
    "EXPORT_SIGNING_KEY": "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=",
    "EXPORT_RETENTION_SECONDS": "123",
    "EXPORT_TRANSFER_SYNTAX": "jpegls",
    "EXPORT_WORKERS": "3",
    "EXPORT_UID_NAMESPACE": "ns-x",
    "EXPORT_WORK_DIR": "/tmp/export-work-x",
    "EXPORT_MAX_ACTIVE_PER_USER": "7",
    "EXPORT_STALE_SECONDS": "99",
    "EXPORT_LEASE_SECONDS": "45",
    "EXPORT_REQUEUE_AFTER_SECONDS": "321",
}


def test_every_documented_export_setting_is_read_from_the_environment():
    documented = set(re.findall(r"^\| `(EXPORT_[A-Z_]+)` \|", (REPO / "docs" / "exports.md").read_text(), re.M))
    assert documented == set(ENVIRONMENT), "docs/exports.md's settings table and this test disagree"
    environment = {**os.environ, **ENVIRONMENT, "DJANGO_ENV": "development"}
    code = ("import json, django; django.setup(); from django.conf import settings; "
            f"print(json.dumps({{n: str(getattr(settings, n)) for n in {sorted(ENVIRONMENT)!r}}}))")
    out = subprocess.run([sys.executable, "-c", code], env={**environment, "DJANGO_SETTINGS_MODULE": "cxr_platform.settings"},
                         capture_output=True, text=True, timeout=120, cwd=REPO, check=True)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == ENVIRONMENT


def test_max_active_exports_per_user_is_enforced(exporter, demo_model_version, settings):
    settings.EXPORT_MAX_ACTIVE_PER_USER = 1
    cohort = make_cohort(exporter, demo_model_version, pngs=array_pngs(1))
    services.request_export(user=exporter, cohort=cohort, enqueue=False)
    with pytest.raises(services.ExportRefused) as refused:
        services.request_export(user=exporter, cohort=cohort, enqueue=False)
    assert refused.value.status == 429


def test_stale_seconds_decides_when_a_silent_export_fails(exporter, demo_model_version, settings):
    cohort = make_cohort(exporter, demo_model_version, pngs=array_pngs(1))
    export = services.request_export(user=exporter, cohort=cohort, enqueue=False)
    Export.objects.filter(pk=export.pk).update(status=Export.Status.BUILDING,
                                               updated_at=timezone.now() - timedelta(seconds=120))
    settings.EXPORT_STALE_SECONDS = 600
    assert services.fail_stale_exports() == 0
    settings.EXPORT_STALE_SECONDS = 60
    assert services.fail_stale_exports() == 1


def test_work_dir_is_where_the_zip_is_built(exporter, demo_model_version, settings, tmp_path):
    settings.EXPORT_WORK_DIR = str(tmp_path / "no-such-dir")
    cohort = make_cohort(exporter, demo_model_version, pngs=array_pngs(1))
    export = services.request_export(user=exporter, cohort=cohort, enqueue=False)
    assert services.build_export(export.pk) == Export.Status.FAILED
    export.refresh_from_db()
    assert "no-such-dir" in export.error  # said plainly, not left "building"
    settings.EXPORT_WORK_DIR = str(tmp_path)
    retry = services.request_export(user=exporter, cohort=cohort, enqueue=False)
    assert services.build_export(retry.pk) == Export.Status.READY
