"""Pushing a ready export to a PACS: requesting, sending (Celery task), retrying.

Lifecycle of a Delivery (``TRANSITIONS``; each transition writes its audit event in the same
database transaction):

    queued → sending → sent | partial | failed
    partial / failed → queued        (retry: only what was not sent goes again)
    sending → sending                (the worker died; the redelivered task carries on)
    queued → failed                  (access, destination or export gone before it started)

Each instance is recorded as it is acknowledged (or refused), so a killed worker loses nothing:
the redelivered task sends only what is not yet ``sent``. Sending is at least once: an instance
the PACS stored just before the worker died, unrecorded, is sent again (a PACS keeps one copy
per SOP Instance UID).
"""

from __future__ import annotations

import hashlib
import json
import logging
import zipfile
from datetime import timedelta

from django.core.exceptions import ValidationError
from django.core.files.storage import default_storage
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from access import capabilities as caps
from access import encryption
from access.policy import AccessDenied, require_capability
from cxr_platform.audit.services import record_event

from . import pacs, selectors
from .models import Delivery, DeliveryInstance, Destination, Export
from .services import ExportRefused, setting

logger = logging.getLogger(__name__)
Status = Delivery.Status
InstanceStatus = DeliveryInstance.Status

TRANSITIONS = {
    (Status.QUEUED, Status.SENDING): "delivery.started",
    (Status.SENDING, Status.SENDING): "delivery.resumed",
    (Status.SENDING, Status.SENT): "delivery.sent",
    (Status.SENDING, Status.PARTIAL): "delivery.partially_sent",
    (Status.SENDING, Status.FAILED): "delivery.failed",
    (Status.QUEUED, Status.FAILED): "delivery.failed",
    (Status.PARTIAL, Status.QUEUED): "delivery.retried",
    (Status.FAILED, Status.QUEUED): "delivery.retried",
}


class InvalidTransition(ValidationError):
    pass


class DeliveryRefused(ExportRefused):
    """A delivery request the user cannot make now; ``message`` says why, ``status`` is the HTTP status."""


class DeliveryBusy(Exception):
    """Another worker is sending this delivery now (the broker redelivered the task early)."""

    def __init__(self, retry_in: float):
        super().__init__(f"delivery is being sent by another worker; retry in {retry_in:.0f} s")
        self.retry_in = retry_in


def lease_seconds() -> int:
    """A sending delivery whose progress was not saved for this long is taken over by a redelivered
    task. Longer than a PACS may take to answer (DELIVERY_TIMEOUT_SECONDS, twice when connecting)."""
    return max(3, int(setting("DELIVERY_LEASE_SECONDS", 120)))


def _transition(delivery: Delivery, target: str, *, actor, details: dict | None = None, **fields) -> None:
    action = TRANSITIONS.get((delivery.status, target))
    if action is None:
        raise InvalidTransition(f"This delivery is {delivery.get_status_display().lower()} and cannot become {target}.")
    previous = delivery.status
    delivery.status = target
    for name, value in fields.items():
        setattr(delivery, name, value)
    with transaction.atomic():
        delivery.save(update_fields=["status", "updated_at", *fields])
        record_event(action, actor=actor, target=delivery,
                     details={"from": previous, "to": target, "export": delivery.export_id,
                              "destination": delivery.destination.name, "requested_by": delivery.requested_by_id,
                              **(details or {})})


# --- Destinations (admin) ----------------------------------------------------------------------------


def destination_password(destination: Destination) -> str:
    token = bytes(destination.password_encrypted or b"")
    return encryption.decrypt(token).decode() if token else ""


def save_destination(destination: Destination, *, actor=None, password: str | None = None,
                     clear_password: bool = False, changed: list[str] | None = None) -> Destination:
    """Save a destination (admin form or command); ``password`` is encrypted, never stored in clear.
    Audited without the secret."""
    creating = destination.pk is None
    if clear_password:
        destination.password_encrypted = b""
    elif password:
        destination.password_encrypted = encryption.encrypt(password.encode())
    destination.full_clean(exclude=["password_encrypted"])
    with transaction.atomic():
        destination.save()
        record_event("pacs_destination.created" if creating else "pacs_destination.changed", actor=actor,
                     target=destination,
                     details={"name": destination.name, "kind": destination.kind, "address": destination.address,
                              "changed": changed or [], "password_changed": bool(password or clear_password)})
    return destination


def rotate_destination_passwords() -> int:
    """Re-encrypt every stored destination password with the newest FILE_ENCRYPTION_KEYS key."""
    count = 0
    for destination in Destination.objects.exclude(password_encrypted=b""):
        token = bytes(destination.password_encrypted)
        if token and not encryption.is_current(token):
            Destination.objects.filter(pk=destination.pk).update(password_encrypted=encryption.rotate(token))
            count += 1
    return count


# --- Requesting and retrying -------------------------------------------------------------------------


def _check_may_deliver(user, export: Export, destination: Destination | None) -> None:
    """The one check for sending ``export`` to ``destination``: the user's own export, the Export
    capability for its model version, a destination open to them, and a package ready to read."""
    if export.owner_id != getattr(user, "pk", None):
        raise DeliveryRefused("Not found.", status=404)
    try:
        require_capability(user, caps.EXPORT_DICOM, export.cohort.model_version)
    except AccessDenied as denied:
        raise DeliveryRefused(str(denied), status=403) from None
    if destination is None or not selectors.may_use_destination(user, destination):
        raise DeliveryRefused("This destination does not exist or is not open to you.", status=403)
    if export.status == Export.Status.EXPIRED or (export.expires_at and export.expires_at <= timezone.now()):
        raise DeliveryRefused("This export has expired and was deleted. Create a new one.", status=410)
    if export.status != Export.Status.READY:
        raise DeliveryRefused("This export is not ready yet: send it once it has been built.", status=409)


def request_delivery(*, user, export: Export, destination: Destination | None, enqueue: bool = True) -> Delivery:
    """Queue sending ``export`` to ``destination`` for ``user``."""
    _check_may_deliver(user, export, destination)
    if selectors.active_deliveries(user).filter(export=export, destination=destination).exists():
        raise DeliveryRefused("This export is already being sent to that destination.", status=409)
    limit = setting("DELIVERY_MAX_ACTIVE_PER_USER", 5)
    if selectors.active_deliveries(user).count() >= limit:
        raise DeliveryRefused(f"You already have {limit} deliveries queued or sending. Wait for one to finish.",
                              status=429)
    with transaction.atomic():
        delivery = Delivery.objects.create(export=export, destination=destination, requested_by=user,
                                           instance_count=export.image_count)
        record_event("delivery.requested", actor=user, target=delivery,
                     details={"export": export.pk, "cohort": export.cohort_id, "destination": destination.name,
                              "address": destination.address, "instances": export.image_count})
        if enqueue:
            transaction.on_commit(lambda: _enqueue(delivery.pk))
    return delivery


def retry_delivery(*, user, delivery: Delivery, enqueue: bool = True) -> Delivery:
    """Queue a partial or failed delivery again; only its unsent instances will be sent."""
    if delivery.requested_by_id != getattr(user, "pk", None):
        raise DeliveryRefused("Not found.", status=404)
    _check_may_deliver(user, delivery.export, delivery.destination)
    with transaction.atomic():
        delivery = Delivery.objects.select_for_update().select_related("destination").get(pk=delivery.pk)
        if not delivery.can_retry:
            raise DeliveryRefused(f"This delivery is {delivery.get_status_display().lower()}; only a partly sent "
                                  "or failed delivery can be retried.", status=409)
        unsent = delivery.instances.exclude(status=InstanceStatus.SENT).update(status=InstanceStatus.PENDING)
        _transition(delivery, Status.QUEUED, actor=user, failed_count=0, error="", finished_at=None,
                    details={"to_resend": unsent, "already_sent": delivery.sent_count})
        if enqueue:
            transaction.on_commit(lambda: _enqueue(delivery.pk))
    return delivery


def _enqueue(delivery_id: int) -> None:
    from .tasks import deliver_export

    result = deliver_export.delay(delivery_id)
    Delivery.objects.filter(pk=delivery_id).update(task_id=str(result.id or ""))


# --- Sending ------------------------------------------------------------------------------------------


def deliver(delivery_id: int) -> str:
    """Send every instance of the delivery not yet sent. Returns the final status ("skipped" when
    there is nothing to do). Raises DeliveryBusy when another worker is sending it now."""
    delivery = _claim(delivery_id)
    if delivery is None:
        return "skipped"
    reason = ""
    try:
        reason = _send(delivery)
    except Exception as error:  # noqa: BLE001 - whatever happens, what was sent stays sent
        logger.exception("delivery %s stopped", delivery.pk)
        reason = f"The delivery stopped unexpectedly: {error}"
        _fail_pending(delivery, reason)
    return _finish(delivery, reason)


def _refusal_at_start(delivery: Delivery) -> str:
    try:
        _check_may_deliver(delivery.requested_by, delivery.export, delivery.destination)
    except DeliveryRefused as refusal:
        return refusal.message
    return ""


def _claim(delivery_id: int) -> Delivery | None:
    with transaction.atomic():
        delivery = (Delivery.objects.select_for_update(of=("self",))
                    .select_related("export__cohort__model_version", "destination", "requested_by")
                    .filter(pk=delivery_id).first())
        if delivery is None or not delivery.is_active:
            return None
        if delivery.status == Status.SENDING:
            lapses = delivery.updated_at + timedelta(seconds=lease_seconds())
            if lapses > timezone.now():  # its sender is alive: don't send twice at once
                raise DeliveryBusy(retry_in=(lapses - timezone.now()).total_seconds() + 1)
        refusal = _refusal_at_start(delivery)
        if refusal:
            _fail_pending(delivery, f"Not sent: {refusal}", attempted=False)
            counts = selectors.instance_counts(delivery)
            _transition(delivery, Status.FAILED, actor=None, error=f"Not sent: {refusal}", finished_at=timezone.now(),
                        failed_count=counts[InstanceStatus.FAILED], sent_count=counts[InstanceStatus.SENT],
                        details={"reason": refusal})
            return None
        delivery.instances.exclude(status=InstanceStatus.SENT).update(status=InstanceStatus.PENDING)
        sent = delivery.instances.filter(status=InstanceStatus.SENT).count()
        _transition(delivery, Status.SENDING, actor=None, started_at=timezone.now(), runs=delivery.runs + 1,
                    sent_count=sent, failed_count=0, error="")
        return delivery


class PackageProblem(Exception):
    pass


class _Package:
    """The stored export zip, read member by member. Its manifest must be the one recorded when the
    export was built, and each file must match the manifest's SHA-256, or it is not sent."""

    def __init__(self, archive: zipfile.ZipFile, export: Export):
        self.archive = archive
        manifests = [n for n in archive.namelist() if n.count("/") == 1 and n.endswith("/manifest.json")]
        if len(manifests) != 1:
            raise PackageProblem("The stored package has no manifest; export the cohort again.")
        self.top = manifests[0].split("/")[0]
        data = archive.read(manifests[0])
        if export.manifest_sha256 and hashlib.sha256(data).hexdigest() != export.manifest_sha256:
            raise PackageProblem("The stored package's manifest changed after it was built; nothing was sent.")
        self.rows = {row["file"]: row for row in json.loads(data)["images"]}

    def instance_rows(self):
        return [(row["sop_instance_uid"], path) for path, row in sorted(self.rows.items())]

    def member(self, path: str) -> str:
        return f"{self.top}/{path}"

    def intact(self, path: str) -> bool:
        """Whether the file still has the SHA-256 the signed manifest lists (read in chunks)."""
        digest = hashlib.sha256()
        with self.archive.open(self.member(path)) as member:
            for chunk in iter(lambda: member.read(1 << 20), b""):
                digest.update(chunk)
        return digest.hexdigest() == self.rows[path]["sha256"]

    def item(self, row: DeliveryInstance) -> pacs.Item:
        name = self.member(row.path)
        return pacs.Item(row.sop_instance_uid, lambda: self.archive.open(name))


def _send(delivery: Delivery) -> str:
    """Send what is pending, saving each instance's outcome as the PACS answers; returns why the
    run stopped early ("" when it did not)."""
    export, destination = delivery.export, delivery.destination
    with default_storage.open(export.file_name, "rb") as handle, zipfile.ZipFile(handle) as archive:
        try:
            package = _Package(archive, export)
        except PackageProblem as problem:
            _fail_pending(delivery, str(problem))
            return str(problem)
        _ensure_instances(delivery, package)
        rows = {}
        for row in delivery.instances.filter(status=InstanceStatus.PENDING).order_by("path"):
            if package.intact(row.path):
                rows[row.sop_instance_uid] = row
            else:
                _record(delivery, row, pacs.Outcome(row.sop_instance_uid, False,
                                                    "The stored file differs from the signed manifest; not sent."))
        login = (destination.username, destination_password(destination)) if destination.username else None
        try:
            for outcome in pacs.send(destination, [package.item(row) for row in rows.values()], login=login,
                                     timeout=float(setting("DELIVERY_TIMEOUT_SECONDS", 30)),
                                     stow_batch=int(setting("DELIVERY_STOW_BATCH", 20))):
                _record(delivery, rows[outcome.sop_instance_uid], outcome)
        except pacs.TransferStopped as stop:
            _fail_pending(delivery, stop.reason)
            return stop.reason
    return ""


def _ensure_instances(delivery: Delivery, package: _Package) -> None:
    """One row per DICOM file of the package, made on the first run (idempotent)."""
    if not delivery.instances.exists():
        DeliveryInstance.objects.bulk_create(
            [DeliveryInstance(delivery=delivery, sop_instance_uid=uid, path=path)
             for uid, path in package.instance_rows()], ignore_conflicts=True, batch_size=500)
    count = delivery.instances.count()
    if count != delivery.instance_count:
        Delivery.objects.filter(pk=delivery.pk).update(instance_count=count)
        delivery.instance_count = count


def _record(delivery: Delivery, row: DeliveryInstance, outcome: pacs.Outcome) -> None:
    """Save one instance's outcome at once: this is what a redelivered task resumes from."""
    now = timezone.now()
    with transaction.atomic():
        DeliveryInstance.objects.filter(pk=row.pk).update(
            status=InstanceStatus.SENT if outcome.sent else InstanceStatus.FAILED, error=outcome.reason,
            attempts=F("attempts") + 1, sent_at=now if outcome.sent else None)
        Delivery.objects.filter(pk=delivery.pk).update(sent_count=F("sent_count") + int(outcome.sent),
                                                       failed_count=F("failed_count") + int(not outcome.sent),
                                                       updated_at=now)


def _fail_pending(delivery: Delivery, reason: str, *, attempted: bool = True) -> None:
    """What this run did not get to send fails with ``reason`` (and will go again on retry)."""
    delivery.instances.filter(status=InstanceStatus.PENDING).update(
        status=InstanceStatus.FAILED, error=reason, attempts=F("attempts") + int(attempted))


def _finish(delivery: Delivery, reason: str) -> str:
    counts = selectors.instance_counts(delivery)
    sent, failed = counts[InstanceStatus.SENT], counts[InstanceStatus.FAILED] + counts[InstanceStatus.PENDING]
    total = sent + failed
    if total and sent == total:
        target = Status.SENT
    elif sent:
        target = Status.PARTIAL
    else:
        target = Status.FAILED
    if not reason and failed:
        reason = f"{failed} of {total} instances were not stored; see the reasons below."
    with transaction.atomic():
        delivery = Delivery.objects.select_for_update().select_related("destination").get(pk=delivery.pk)
        _transition(delivery, target, actor=None, sent_count=sent, failed_count=failed, instance_count=total,
                    error=reason, finished_at=timezone.now(),
                    details={"instances": total, "sent": sent, "failed": failed, "reason": reason})
    return target


def fail_stale_deliveries(*, now=None) -> int:
    """Deliveries left sending without progress for DELIVERY_STALE_SECONDS (their worker died and the
    task was not redelivered) are failed, so they can be retried."""
    now = now or timezone.now()
    stale = now - timedelta(seconds=setting("DELIVERY_STALE_SECONDS", 3600))
    count = 0
    for pk in Delivery.objects.filter(status=Status.SENDING, updated_at__lt=stale).values_list("pk", flat=True):
        with transaction.atomic():
            delivery = Delivery.objects.select_for_update().select_related("destination").get(pk=pk)
            if delivery.status != Status.SENDING or delivery.updated_at >= stale:
                continue
            reason = "The delivery stopped making progress (its worker died). Retry it."
            _fail_pending(delivery, reason, attempted=False)
            counts = selectors.instance_counts(delivery)
            _transition(delivery, Status.FAILED, actor=None, error=reason, finished_at=now,
                        sent_count=counts[InstanceStatus.SENT], failed_count=counts[InstanceStatus.FAILED],
                        details={"reason": "stale", "sent": counts[InstanceStatus.SENT]})
            count += 1
    return count

