"""Pushing a ready export to a PACS (exports.delivery): a real Orthanc over C-STORE and over
DICOMweb STOW-RS with encrypted credentials, refusals with readable reasons, partial delivery and
a retry that resends only what failed, and a run that resumes after its worker died."""

import io
import json
import zipfile
from datetime import timedelta

import pydicom
import pytest
from django.core.files.storage import default_storage
from django.db import connection
from django.utils import timezone

from access import encryption
from cxr_platform.audit.models import AuditEvent
from exports import delivery
from exports.models import Delivery, DeliveryInstance, Destination

from .conftest import free_port, make_destination

pytestmark = pytest.mark.slow

Status = Delivery.Status


def _package_files(export) -> dict[str, pydicom.Dataset]:
    """SOP Instance UID → dataset, straight from the stored zip."""
    out = {}
    with default_storage.open(export.file_name, "rb") as handle, zipfile.ZipFile(handle) as archive:
        for name in archive.namelist():
            if "/PT" in name and "/IM" in name:
                dataset = pydicom.dcmread(io.BytesIO(archive.read(name)))
                out[dataset.SOPInstanceUID] = dataset
    return out


def _send(exporter, export, destination) -> Delivery:
    queued = delivery.request_delivery(user=exporter, export=export, destination=destination, enqueue=False)
    delivery.deliver(queued.pk)
    queued.refresh_from_db()
    return queued


def _actions(item):
    return list(AuditEvent.objects.filter(target_type="exports.delivery", target_id=str(item.pk))
                .order_by("sequence").values_list("action", "details"))


def _orthanc_instances(server) -> dict[str, dict]:
    """SOP Instance UID → {tag: value} of everything Orthanc stored, read through its REST API."""
    out = {}
    for orthanc_id in server.request("/instances"):
        tags = {key: entry.get("Value") for key, entry in server.request(f"/instances/{orthanc_id}/tags").items()}
        tags["transfer_syntax"] = server.request(f"/instances/{orthanc_id}/metadata?expand")["TransferSyntax"]
        out[tags["0008,0018"]] = tags
    return out


@pytest.mark.parametrize("transfer_syntax", ["explicit", "jpegls"])
def test_c_store_to_orthanc_delivers_every_instance(orthanc_factory, exporter, xray_cohort, transfer_syntax):
    from exports import services

    export = services.request_export(user=exporter, cohort=xray_cohort, enqueue=False, transfer_syntax=transfer_syntax)
    services.build_export(export.pk)
    export.refresh_from_db()
    server = orthanc_factory()
    destination = make_destination(kind="dimse", host="127.0.0.1", port=server.dicom_port, called_ae_title="ORTHANC",
                                   users=[exporter])
    sent = _send(exporter, export, destination)

    assert sent.status == Status.SENT, sent.error
    assert (sent.instance_count, sent.sent_count, sent.failed_count) == (4, 4, 0)
    assert set(sent.instances.values_list("status", flat=True)) == {"sent"}
    source = _package_files(export)
    stored = _orthanc_instances(server)
    assert set(stored) == set(source) == set(sent.instances.values_list("sop_instance_uid", flat=True))
    for uid, tags in stored.items():
        assert tags["0008,001c"] == "YES"  # Synthetic Data
        assert "SYNTHETIC" in tags["0010,0010"] and tags["0010,0020"].startswith("SYNTHETIC")
        assert tags["0010,0040"] == source[uid].PatientSex in ("M", "F")
        assert tags["0010,1010"] == source[uid].PatientAge and tags["0010,1010"].endswith("Y")
        assert tags["transfer_syntax"] == source[uid].file_meta.TransferSyntaxUID  # sent as exported, not recoded
    actions = _actions(sent)
    assert [a for a, _ in actions] == ["delivery.requested", "delivery.started", "delivery.sent"]
    assert actions[-1][1]["sent"] == 4 and actions[-1][1]["failed"] == 0


def test_stow_rs_with_encrypted_credentials(orthanc_factory, exporter, ready_export):
    from dicomweb_client.api import DICOMwebClient
    from requests import Session

    server = orthanc_factory(dicomweb=True, users={"cxr-sender": "s3cret-Pa55"})
    destination = make_destination(kind="stow", base_url=server.dicomweb, username="cxr-sender",
                                   password="s3cret-Pa55", users=[exporter])
    with connection.cursor() as cursor:  # what the database really holds
        cursor.execute("SELECT password_encrypted FROM exports_destination WHERE id = %s", [destination.pk])
        raw = bytes(cursor.fetchone()[0])
    assert raw and b"s3cret-Pa55" not in raw and encryption.decrypt(raw) == b"s3cret-Pa55"

    sent = _send(exporter, ready_export, destination)

    assert sent.status == Status.SENT, sent.error
    assert (sent.sent_count, sent.failed_count) == (4, 0)
    session = Session()
    session.auth = ("cxr-sender", "s3cret-Pa55")
    found = DICOMwebClient(url=server.dicomweb, session=session).search_for_instances(
        fields=["PatientSex", "PatientAge", "PatientName", "00080016"])
    source = _package_files(ready_export)
    assert {item["00080018"]["Value"][0] for item in found} == set(source)
    for item in found:
        uid = item["00080018"]["Value"][0]
        assert item["00100040"]["Value"][0] == source[uid].PatientSex
        assert item["00101010"]["Value"][0] == source[uid].PatientAge
        assert "SYNTHETIC" in item["00100010"]["Value"][0]["Alphabetic"]
    synthetic = _orthanc_instances(server)
    assert all(tags["0008,001c"] == "YES" for tags in synthetic.values())


def test_wrong_stow_password_is_a_401_and_nothing_is_sent(orthanc_factory, exporter, ready_export):
    server = orthanc_factory(dicomweb=True, users={"cxr-sender": "right"})
    destination = make_destination(kind="stow", base_url=server.dicomweb, username="cxr-sender", password="wrong",
                                   users=[exporter])
    failed = _send(exporter, ready_export, destination)
    assert failed.status == Status.FAILED
    assert "HTTP 401" in failed.error and "password" in failed.error
    assert not failed.instances.filter(status="sent").exists()
    assert set(failed.instances.values_list("error", flat=True)) == {failed.error}
    assert server.request("/instances") == []


def test_unreachable_destination_fails_with_a_readable_reason(exporter, ready_export):
    destination = make_destination(kind="dimse", host="127.0.0.1", port=free_port(), called_ae_title="NOBODY",
                                   users=[exporter])
    failed = _send(exporter, ready_export, destination)
    assert failed.status == Status.FAILED and failed.sent_count == 0 and failed.failed_count == 4
    assert "Connection refused" in failed.error and str(destination.port) in failed.error
    rows = list(failed.instances.all())
    assert len(rows) == 4 and all(r.status == "failed" and r.attempts == 1 and r.sent_at is None for r in rows)
    assert _actions(failed)[-1][0] == "delivery.failed" and _actions(failed)[-1][1]["sent"] == 0


def test_wrong_called_ae_title_is_refused(orthanc_factory, exporter, ready_export):
    server = orthanc_factory(DicomCheckCalledAet=True)
    destination = make_destination(kind="dimse", host="127.0.0.1", port=server.dicom_port,
                                   called_ae_title="NOT-ORTHANC", users=[exporter])
    failed = _send(exporter, ready_export, destination)
    assert failed.status == Status.FAILED
    assert "refused the association" in failed.error and "Called AE title not recognised" in failed.error
    assert "NOT-ORTHANC" in failed.error
    assert server.request("/instances") == []
    assert not failed.instances.filter(status="sent").exists()


def test_refused_instances_are_listed_and_a_retry_resends_only_them(exporter, ready_export, recording_scp):
    recording_scp.refuse_every_second = True
    destination = make_destination(kind="dimse", host="127.0.0.1", port=recording_scp.port,
                                   called_ae_title=recording_scp.ae_title, users=[exporter])
    partial = _send(exporter, ready_export, destination)

    assert partial.status == Status.PARTIAL
    assert (partial.sent_count, partial.failed_count) == (2, 2)
    failed = {r.sop_instance_uid: r.error for r in partial.instances.filter(status="failed")}
    assert set(failed) == set(recording_scp.received[1::2])
    assert all("0xA700" in reason and "Out of Resources" in reason for reason in failed.values())
    assert set(partial.instances.filter(status="sent").values_list("sop_instance_uid", flat=True)) == set(
        recording_scp.stored)

    recording_scp.refuse_every_second = False
    first_pass = len(recording_scp.received)
    delivery.retry_delivery(user=exporter, delivery=partial, enqueue=False)
    partial.refresh_from_db()
    assert partial.status == Status.QUEUED and partial.failed_count == 0
    delivery.deliver(partial.pk)
    partial.refresh_from_db()

    assert partial.status == Status.SENT and (partial.sent_count, partial.failed_count) == (4, 0)
    assert sorted(recording_scp.received[first_pass:]) == sorted(failed)  # only the refused ones went again
    assert sorted(recording_scp.stored) == sorted(partial.instances.values_list("sop_instance_uid", flat=True))
    attempts = dict(partial.instances.values_list("sop_instance_uid", "attempts"))
    assert all(attempts[uid] == (2 if uid in failed else 1) for uid in attempts)
    assert [a for a, _ in _actions(partial)] == ["delivery.requested", "delivery.started", "delivery.partially_sent",
                                                 "delivery.retried", "delivery.started", "delivery.sent"]


def test_a_sent_delivery_cannot_be_retried(exporter, ready_export, recording_scp):
    destination = make_destination(kind="dimse", host="127.0.0.1", port=recording_scp.port,
                                   called_ae_title=recording_scp.ae_title, users=[exporter])
    sent = _send(exporter, ready_export, destination)
    with pytest.raises(delivery.DeliveryRefused, match="only a partly sent or failed") as refused:
        delivery.retry_delivery(user=exporter, delivery=sent, enqueue=False)
    assert refused.value.status == 409


def test_a_redelivered_task_carries_on_where_the_dead_worker_stopped(exporter, ready_export, recording_scp, settings):
    """A worker killed mid-delivery: what it recorded as sent stays sent; the redelivered task
    (once the lease has lapsed) sends the rest; while the lease is fresh it waits."""
    settings.DELIVERY_LEASE_SECONDS = 60
    destination = make_destination(kind="dimse", host="127.0.0.1", port=recording_scp.port,
                                   called_ae_title=recording_scp.ae_title, users=[exporter])
    queued = delivery.request_delivery(user=exporter, export=ready_export, destination=destination, enqueue=False)
    # The first run: claimed, instances listed, two recorded as sent, then the worker died.
    claimed = delivery._claim(queued.pk)
    rows = json.loads(_manifest(ready_export))["images"]
    DeliveryInstance.objects.bulk_create([DeliveryInstance(delivery=claimed, sop_instance_uid=r["sop_instance_uid"],
                                                           path=r["file"]) for r in rows])
    already = [r["sop_instance_uid"] for r in rows[:2]]
    DeliveryInstance.objects.filter(sop_instance_uid__in=already).update(status="sent", attempts=1,
                                                                         sent_at=timezone.now())
    with pytest.raises(delivery.DeliveryBusy):  # the lease is fresh: it might still be running
        delivery.deliver(queued.pk)
    Delivery.objects.filter(pk=queued.pk).update(updated_at=timezone.now() - timedelta(seconds=61))

    assert delivery.deliver(queued.pk) == Status.SENT
    queued.refresh_from_db()
    assert sorted(recording_scp.received) == sorted(r["sop_instance_uid"] for r in rows[2:])
    assert (queued.sent_count, queued.failed_count, queued.runs) == (4, 0, 2)
    assert [a for a, _ in _actions(queued)] == ["delivery.requested", "delivery.started", "delivery.resumed",
                                                "delivery.sent"]


def _manifest(export) -> bytes:
    with default_storage.open(export.file_name, "rb") as handle, zipfile.ZipFile(handle) as archive:
        return archive.read(next(n for n in archive.namelist() if n.endswith("/manifest.json")))


def test_a_stale_delivery_is_failed_and_can_be_retried(exporter, ready_export, recording_scp):
    destination = make_destination(kind="dimse", host="127.0.0.1", port=recording_scp.port,
                                   called_ae_title=recording_scp.ae_title, users=[exporter])
    queued = delivery.request_delivery(user=exporter, export=ready_export, destination=destination, enqueue=False)
    delivery._claim(queued.pk)
    Delivery.objects.filter(pk=queued.pk).update(updated_at=timezone.now() - timedelta(hours=2))
    assert delivery.fail_stale_deliveries() == 1
    queued.refresh_from_db()
    assert queued.status == Status.FAILED and "stopped making progress" in queued.error
    delivery.retry_delivery(user=exporter, delivery=queued, enqueue=False)
    assert delivery.deliver(queued.pk) == Status.SENT


def test_access_lost_before_the_run_fails_the_delivery_unsent(exporter, ready_export, recording_scp):
    from access.models import AccessGrant

    destination = make_destination(kind="dimse", host="127.0.0.1", port=recording_scp.port,
                                   called_ae_title=recording_scp.ae_title, users=[exporter])
    queued = delivery.request_delivery(user=exporter, export=ready_export, destination=destination, enqueue=False)
    destination.allowed_users.remove(exporter)
    assert delivery.deliver(queued.pk) == "skipped"
    queued.refresh_from_db()
    assert queued.status == Status.FAILED and "not open to you" in queued.error
    assert recording_scp.received == []
    AccessGrant.objects.filter(user=exporter).update(status=AccessGrant.Status.REVOKED)
    with pytest.raises(delivery.DeliveryRefused) as refused:
        delivery.retry_delivery(user=exporter, delivery=queued, enqueue=False)
    assert refused.value.status == 403


def test_a_changed_package_is_not_sent(exporter, ready_export, recording_scp):
    destination = make_destination(kind="dimse", host="127.0.0.1", port=recording_scp.port,
                                   called_ae_title=recording_scp.ae_title, users=[exporter])
    ready_export.manifest_sha256 = "0" * 64  # as if the stored zip had been replaced
    ready_export.save(update_fields=["manifest_sha256"])
    failed = _send(exporter, ready_export, destination)
    assert failed.status == Status.FAILED and "manifest changed" in failed.error
    assert recording_scp.received == []


def test_destination_password_is_write_only(exporter):
    destination = make_destination(kind="stow", base_url="https://pacs.example.org/dicom-web", username="u",
                                   password="hunter2-long")
    assert delivery.destination_password(destination) == "hunter2-long"
    assert b"hunter2" not in bytes(Destination.objects.get(pk=destination.pk).password_encrypted)
    events = AuditEvent.objects.filter(action="pacs_destination.created", target_id=str(destination.pk))
    assert events.count() == 1 and "hunter2" not in json.dumps(events.get().details)


def test_a_celery_worker_delivers_it(celery_worker_process, exporter, ready_export, recording_scp):
    """The real path: request → on_commit → Redis → worker (acks_late task) → PACS."""
    import time

    destination = make_destination(kind="dimse", host="127.0.0.1", port=recording_scp.port,
                                   called_ae_title=recording_scp.ae_title, users=[exporter])
    worker = celery_worker_process()
    queued = delivery.request_delivery(user=exporter, export=ready_export, destination=destination)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        queued.refresh_from_db()
        if queued.status in (Status.SENT, Status.PARTIAL, Status.FAILED):
            break
        time.sleep(0.1)
    assert queued.status == Status.SENT, queued.error or worker.output()[-3000:]
    assert queued.task_id and queued.sent_count == 4
    assert sorted(recording_scp.stored) == sorted(queued.instances.values_list("sop_instance_uid", flat=True))
