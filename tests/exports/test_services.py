"""Export lifecycle: access, transitions with audit events, building into storage, expiry."""

from datetime import timedelta

import pytest
from django.core.files.storage import default_storage
from django.utils import timezone

from access.models import AccessGrant
from access.policy import AccessDenied
from cxr_platform.audit.models import AuditEvent
from exports import services, signing
from exports.models import Export
from generation.models import Cohort, SyntheticImage
from tests.access.factories import grant_tier
from tests.factories import UserFactory

from .factories import array_pngs, make_cohort


def _actions(export):
    return list(AuditEvent.objects.filter(target_id=str(export.pk), action__startswith="export.")
                .order_by("sequence").values_list("action", flat=True))


def test_export_needs_the_export_capability(demo_model_version, small_cohort):
    generator = UserFactory()
    grant_tier(generator, "generate")
    cohort = make_cohort(generator, demo_model_version, pngs=array_pngs(1))
    with pytest.raises(AccessDenied):
        services.request_export(user=generator, cohort=cohort, enqueue=False)


def test_a_cohort_still_running_is_refused(exporter, demo_model_version):
    cohort = make_cohort(exporter, demo_model_version, pngs=array_pngs(1), status=Cohort.Status.RUNNING)
    with pytest.raises(services.ExportRefused, match="still being generated"):
        services.request_export(user=exporter, cohort=cohort, enqueue=False)


def test_a_cohort_without_screened_images_is_refused(exporter, demo_model_version):
    cohort = make_cohort(exporter, demo_model_version, pngs=[])
    with pytest.raises(services.ExportRefused, match="no screened images"):
        services.request_export(user=exporter, cohort=cohort, enqueue=False)


def test_build_stores_a_verified_zip_and_audits_each_transition(exporter, small_cohort, tmp_path):
    export = services.request_export(user=exporter, cohort=small_cohort, enqueue=False)
    assert services.build_export(export.pk) == Export.Status.READY
    export.refresh_from_db()
    assert export.status == "ready" and export.image_count == 3 and export.percent == 100
    assert export.expires_at > timezone.now() + timedelta(days=6)
    with default_storage.open(export.file_name, "rb") as handle:
        assert signing.sha256_file(handle) == export.sha256
    local = tmp_path / "copy.zip"
    with default_storage.open(export.file_name, "rb") as handle:
        local.write_bytes(handle.read())
    assert signing.verify_package(local).ok
    assert _actions(export) == ["export.requested", "export.started", "export.completed"]


def test_invalid_transition_is_refused(exporter, small_cohort):
    export = services.request_export(user=exporter, cohort=small_cohort, enqueue=False)
    with pytest.raises(services.InvalidTransition):
        services._transition(export, Export.Status.READY)
    assert Export.objects.get(pk=export.pk).status == "queued"


def test_build_fails_cleanly_when_access_was_revoked(exporter, small_cohort):
    export = services.request_export(user=exporter, cohort=small_cohort, enqueue=False)
    AccessGrant.objects.filter(user=exporter).delete()
    assert services.build_export(export.pk) == "skipped"
    export.refresh_from_db()
    assert export.status == "failed" and "no longer includes" in export.error
    assert _actions(export)[-1] == "export.failed"


def test_a_missing_image_file_fails_the_export_with_a_message(exporter, small_cohort):
    image = small_cohort.images.first()
    default_storage.delete(image.image.name)
    export = services.request_export(user=exporter, cohort=small_cohort, enqueue=False)
    assert services.build_export(export.pk) == Export.Status.FAILED
    export.refresh_from_db()
    assert export.status == "failed" and export.error.startswith("The export could not be built")


def test_expiry_deletes_the_package(exporter, small_cohort):
    export = services.request_export(user=exporter, cohort=small_cohort, enqueue=False)
    services.build_export(export.pk)
    export.refresh_from_db()
    name = export.file_name
    assert services.expire_exports() == 0
    assert services.expire_exports(now=export.expires_at + timedelta(seconds=1)) == 1
    export.refresh_from_db()
    assert export.status == "expired" and not default_storage.exists(name)
    assert _actions(export)[-1] == "export.expired"


def test_retention_is_configurable(exporter, small_cohort, settings):
    settings.EXPORT_RETENTION_SECONDS = 60
    export = services.request_export(user=exporter, cohort=small_cohort, enqueue=False)
    services.build_export(export.pk)
    export.refresh_from_db()
    assert export.expires_at - export.finished_at == timedelta(seconds=60)


def test_stale_building_export_is_failed(exporter, small_cohort):
    export = services.request_export(user=exporter, cohort=small_cohort, enqueue=False)
    services._transition(export, Export.Status.BUILDING)
    Export.objects.filter(pk=export.pk).update(updated_at=timezone.now() - timedelta(hours=2))
    assert services.fail_stale_exports() == 1
    assert Export.objects.get(pk=export.pk).status == "failed"


def test_export_cohort_command_writes_the_package(small_cohort, tmp_path):
    from django.core.management import call_command

    call_command("export_cohort", str(small_cohort.pk), "--out", str(tmp_path / "out"), "--png",
                 "--zip", str(tmp_path / "out.zip"))
    assert signing.verify_package(tmp_path / "out").ok
    assert signing.verify_package(tmp_path / "out.zip").ok
    assert len(list((tmp_path / "out" / "PNG").iterdir())) == 3


def test_an_image_whose_verdict_was_edited_in_the_database_never_leaves(exporter, demo_model_version):
    """A flagged image turned "passed" with SQL has a broken seal: no export is requested or built."""
    from django.db import connection

    from screening.models import ScreeningRecord

    from .factories import array_pngs, make_cohort

    cohort = make_cohort(exporter, demo_model_version, pngs=array_pngs(2), flagged=1)
    export = services.request_export(user=exporter, cohort=cohort, enqueue=False)  # all intact so far
    flagged = ScreeningRecord.objects.get(cohort=cohort, flagged=True)
    with connection.cursor() as cursor:
        cursor.execute(f"UPDATE {SyntheticImage._meta.db_table} SET status = 'passed' WHERE id = %s", [flagged.image_id])
        cursor.execute(f"UPDATE {ScreeningRecord._meta.db_table} SET flagged = %s, decision = 'passed' WHERE id = %s",
                       [False, flagged.pk])
    with pytest.raises(services.ExportRefused, match="no intact screening verdict") as refused:
        services.request_export(user=exporter, cohort=cohort, enqueue=False)
    assert refused.value.status == 409
    assert services.build_export(export.pk) == Export.Status.FAILED  # the one requested before the edit
    export.refresh_from_db()
    assert "no intact screening verdict" in export.error and not export.file_name
