"""DICOM exports: requesting, building (Celery task), downloading and expiring packages.

State changes live here; the Celery tasks, views, API and management commands only call these.

Lifecycle of an Export (``TRANSITIONS``; each transition writes its audit event in the same
database transaction):

    queued → building → ready → expired
    queued / building → failed → expired
    building → building   (the worker died; the redelivered task starts over)
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import threading
import uuid
from datetime import timedelta
from pathlib import Path

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.files import File
from django.core.files.storage import default_storage
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from access import capabilities as caps
from access.policy import AccessDenied, access_policy, require_capability
from cxr_platform import downloads
from cxr_platform.audit.services import record_event
from cxr_platform.hashing import sha256_path
from generation.models import Cohort

from . import selectors
from .dicom import TRANSFER_SYNTAXES, ImageFacts, protocol_id
from .models import Export, Installation
from .package import PackageImage, PackageSpec, ZipSink, write_package

logger = logging.getLogger(__name__)
Status = Export.Status
LINK_PURPOSE = "exports"

TRANSITIONS = {
    (Status.QUEUED, Status.BUILDING): "export.started",
    (Status.BUILDING, Status.BUILDING): "export.restarted",
    (Status.BUILDING, Status.READY): "export.completed",
    (Status.QUEUED, Status.FAILED): "export.failed",
    (Status.BUILDING, Status.FAILED): "export.failed",
    (Status.READY, Status.EXPIRED): "export.expired",
    (Status.FAILED, Status.EXPIRED): "export.expired",
}


class InvalidTransition(ValidationError):
    pass


class ExportBusy(Exception):
    """Another worker holds this export's lease (a broker redelivered the task while the first run
    goes on): try again in ``retry_in`` seconds, when the lease has either been renewed or lapsed."""

    def __init__(self, retry_in: float):
        super().__init__(f"export is being built by another worker; retry in {retry_in:.0f} s")
        self.retry_in = retry_in


class ExportRefused(Exception):
    """A request the user cannot make now; ``message`` says why, ``status`` is the HTTP status."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.message = message
        self.status = status


def setting(name: str, default):
    return getattr(settings, name, default)


def retention() -> timedelta:
    return timedelta(seconds=setting("EXPORT_RETENTION_SECONDS", 7 * 24 * 3600))


def lease_seconds() -> int:
    """How long a building export's lease lasts without renewal (the builder renews it every third
    of that): a redelivered task restarts the build only once the lease has lapsed."""
    return max(3, int(setting("EXPORT_LEASE_SECONDS", 120)))


def _transition(export: Export, target: str, *, actor=None, details: dict | None = None, **fields) -> None:
    action = TRANSITIONS.get((export.status, target))
    if action is None:
        raise InvalidTransition(f"This export is {export.get_status_display().lower()} and cannot become {target}.")
    previous = export.status
    export.status = target
    for name, value in fields.items():
        setattr(export, name, value)
    with transaction.atomic():
        export.save(update_fields=["status", "updated_at", *fields])
        record_event(action, actor=actor, target=export,
                     details={"from": previous, "to": target, "cohort": export.cohort_id, **(details or {})})


# --- Requesting ---------------------------------------------------------------------------------------


def request_export_once(*, user, cohort: Cohort, idempotency_key: str, include_png: bool = False,
                        transfer_syntax: str | None = None, enqueue: bool = True) -> tuple[Export, bool]:
    """``request_export`` under a client's Idempotency-Key: the first request creates the export,
    a repeat (a retried POST, a double click) returns it — (export, created). The same key with
    another request is refused (422); the database's unique constraint settles a race."""
    from generation.services import check_idempotency_key, request_fingerprint

    try:
        key = check_idempotency_key(idempotency_key)
    except ValidationError:
        raise ExportRefused("An Idempotency-Key is 1 to 255 visible ASCII characters (a UUID is a good one).") from None
    fingerprint = request_fingerprint({"cohort": cohort.pk, "include_png": bool(include_png),
                                       "transfer_syntax": transfer_syntax})

    def earlier() -> Export | None:
        found = Export.objects.filter(owner=user, idempotency_key=key).first()
        if found is not None and found.request_fingerprint != fingerprint:
            raise ExportRefused(f"This Idempotency-Key was already used for a different request, which created export "
                                f"{found.pk}. Send a new key for another export.", status=422)
        return found

    found = earlier()  # before the other checks: a retried request that succeeded is not refused now
    if found is not None:
        return found, False
    try:
        return request_export(user=user, cohort=cohort, include_png=include_png, transfer_syntax=transfer_syntax,
                              enqueue=enqueue, idempotency=(key, fingerprint)), True
    except IntegrityError:  # a concurrent request with the same key won
        return earlier(), False


def request_export(*, user, cohort: Cohort, include_png: bool = False, transfer_syntax: str | None = None,
                   enqueue: bool = True, idempotency: tuple[str, str] | None = None) -> Export:
    """Queue an export of ``cohort`` (the user's own) for ``user``. Needs EXPORT_DICOM for the
    cohort's model version; refuses a cohort without screened images or one still running."""
    require_capability(user, caps.EXPORT_DICOM, cohort.model_version)
    if cohort.owner_id != user.pk:
        raise ExportRefused("You can only export your own cohorts.", status=404)
    syntax = transfer_syntax or setting("EXPORT_TRANSFER_SYNTAX", "explicit")
    if syntax not in TRANSFER_SYNTAXES:
        raise ExportRefused(f"Unknown transfer syntax “{syntax}”; use one of: {', '.join(TRANSFER_SYNTAXES)}.")
    if not cohort.is_terminal:
        raise ExportRefused("This cohort is still being generated. Export it when it has finished.", status=409)
    count = selectors.exportable_images(cohort).count()
    if count == 0:
        raise ExportRefused("This cohort has no screened images to export.", status=409)
    _refuse_unscreened(cohort)
    active = selectors.active_exports(user).count()
    limit = setting("EXPORT_MAX_ACTIVE_PER_USER", 3)
    if active >= limit:
        raise ExportRefused(f"You already have {active} exports being built. Wait for one to finish.", status=429)
    with transaction.atomic():
        key, fingerprint = idempotency or (None, "")
        export = Export.objects.create(cohort=cohort, owner=user, include_png=bool(include_png),
                                       transfer_syntax=syntax, progress_total=count, idempotency_key=key,
                                       request_fingerprint=fingerprint)
        record_event("export.requested", actor=user, target=export,
                     details={"cohort": cohort.pk, "images": count, "include_png": bool(include_png),
                              "transfer_syntax": syntax})
        if enqueue:
            transaction.on_commit(lambda: _enqueue(export.pk))
    return export


def _refuse_unscreened(cohort: Cohort) -> None:
    """No image leaves unless its screening record is there, says *passed* and still carries the
    seal the platform wrote (a verdict edited in the database is not a verdict)."""
    from screening.selectors import unreleasable_image_ids

    blocked = unreleasable_image_ids(selectors.exportable_images(cohort))
    if blocked:
        record_event("export.refused_unscreened", target=cohort, details={"images": sorted(blocked)[:100],
                                                                         "count": len(blocked)})
        raise ExportRefused(f"{len(blocked)} image(s) of this cohort have no intact screening verdict (missing, or "
                            "changed outside the platform), so nothing is exported. An operator can see which with "
                            "`manage.py verify_screening_seals`.", status=409)


def _enqueue(export_id: int) -> bool:
    """Hand the build to the broker. If it cannot be reached, the export stays queued without a task
    id and ``requeue_lost_exports`` sends it once the broker is back: never a 500 for the user."""
    from .tasks import build_export

    try:
        result = build_export.delay(export_id)
    except Exception:  # noqa: BLE001 - any broker failure: kombu, redis, OSError
        logger.exception("export %s: the job queue could not be reached; it will be sent later", export_id)
        return False
    Export.objects.filter(pk=export_id).update(task_id=str(result.id or ""), updated_at=timezone.now())
    return True


def requeue_lost_exports(*, now=None) -> int:
    """Queued exports whose message never reached the broker (it was down at request time), or was
    lost since (a non-persistent Redis restarted) are sent again. A duplicate is harmless: the
    build's claim and lease let only one run build it."""
    now = now or timezone.now()
    never_sent = Q(task_id="", created_at__lt=now - timedelta(seconds=30))
    lost = Q(updated_at__lt=now - timedelta(seconds=setting("EXPORT_REQUEUE_AFTER_SECONDS", 900)))
    sent = 0
    for pk in Export.objects.filter(never_sent | lost, status=Status.QUEUED).values_list("pk", flat=True):
        if not _enqueue(pk):
            break  # still unreachable: try again on the next run
        record_event("export.resent", target=Export(pk=pk), details={"reason": "no build task ran"})
        sent += 1
    return sent


# --- Identity -----------------------------------------------------------------------------------------


def installation() -> Installation:
    """This deployment's identity. The first ``migrate`` creates it; a database emptied since (a
    flushed test database) gets a new one here, so no export ever runs without one."""
    found = Installation.objects.order_by("pk").first()
    if found is None:
        found = Installation.objects.create(uid_root=uuid.uuid4())
        record_event("exports.installation_created", details={"uid_root": str(found.uid_root)})
    return found


def uid_namespace(identity: Installation | None = None) -> str:
    """What every UID of this deployment is derived from: the installation's random UUID, plus
    EXPORT_UID_NAMESPACE when the operator sets one (e.g. to tell apart two restores of one backup)."""
    identity = identity or installation()
    extra = setting("EXPORT_UID_NAMESPACE", "")
    return f"{identity.uid_root}/{extra}" if extra else str(identity.uid_root)


# --- Building ---------------------------------------------------------------------------------------


def package_spec(cohort: Cohort, *, export: Export | None = None, include_png: bool = False,
                 transfer_syntax: str = "explicit", created_by: str = "") -> PackageSpec:
    model_version = cohort.model_version
    identity = installation()
    return PackageSpec(
        export_id=export.pk if export else None,
        cohort_id=cohort.pk,
        cohort_name=cohort.name,
        specification=cohort.specification,
        model_name=model_version.name,
        model_version=model_version.version,
        model_card=model_version.model_card,
        privacy_summary=selectors.privacy_summary_text(cohort),
        created=cohort.created_at,
        created_by=created_by,
        transfer_syntax=transfer_syntax,
        include_png=include_png,
        vocabulary=(model_version.defaults or {}).get("findings"),
        namespace=uid_namespace(identity),
        protocol_id=protocol_id(identity.tag, cohort.pk),
    )


def package_images(cohort: Cohort):
    """The cohort's passed images as PackageImages, streamed from the database."""
    model_version = cohort.model_version
    identity = installation()
    namespace = uid_namespace(identity)
    images = selectors.exportable_images(cohort)
    scores = selectors.screening_scores(cohort)
    for image in images.iterator(chunk_size=500):
        facts = ImageFacts(
            namespace=namespace,
            installation=identity.tag,
            model_version_id=model_version.pk,
            model_name=model_version.name,
            model_version=model_version.version,
            cohort_id=cohort.pk,
            cohort_name=cohort.name,
            image_id=image.pk,
            index=image.index,
            seed=image.seed,
            prompt=image.prompt,
            demographics=image.demographics,
            findings=image.findings,
            sampling=image.sampling,
            created=cohort.created_at,
            screening_score=scores.get(image.pk),
            impression=image.impression,
        )
        storage = image.image.storage
        yield PackageImage(facts=facts, open_png=_opener(storage, image.image.name),
                           local_path=_local_path(storage, image.image.name))


def _opener(storage, name):
    return lambda: storage.open(name, "rb")


def _local_path(storage, name) -> str | None:
    try:
        return storage.path(name)
    except NotImplementedError:  # remote storage (S3): read through the storage API
        return None


def write_cohort_package(cohort: Cohort, out_dir=None, *, zip_to=None, zip_top: str = "export",
                         export: Export | None = None, include_png: bool = False, transfer_syntax: str = "explicit",
                         created_by: str = "", on_progress=None, workers: int | None = None):
    """The package of ``cohort`` written into the folder ``out_dir`` (``manage.py export_cohort``),
    or straight into a stored zip in the open binary file ``zip_to`` under the folder ``zip_top``
    (the Celery task)."""
    spec = package_spec(cohort, export=export, include_png=include_png, transfer_syntax=transfer_syntax,
                        created_by=created_by)
    total = selectors.exportable_images(cohort).count()
    sink = ZipSink(zip_to, zip_top, cohort.created_at.timetuple()[:6]) if zip_to is not None else None
    return write_package(out_dir, sink=sink, spec=spec, images=package_images(cohort), total=total,
                         on_progress=on_progress, workers=workers)


def _claim(export_id: int) -> Export | None:
    with transaction.atomic():
        export = Export.objects.select_for_update().select_related("cohort__model_version", "owner").filter(
            pk=export_id).first()
        if export is None or export.status not in (Status.QUEUED, Status.BUILDING):
            return None
        if export.status == Status.BUILDING:
            lapses = export.updated_at + timedelta(seconds=lease_seconds())
            if lapses > timezone.now():  # its builder is alive: don't build it twice
                raise ExportBusy(retry_in=(lapses - timezone.now()).total_seconds() + 1)
        policy = access_policy(export.owner)
        if not policy.can(caps.EXPORT_DICOM, export.cohort.model_version):
            _transition(export, Status.FAILED, error="Your access no longer includes DICOM export of this model.",
                        finished_at=timezone.now(), details={"reason": "access"})
            return None
        _transition(export, Status.BUILDING, started_at=timezone.now(), progress_done=0, error="")
        return export


class _BuiltFile(File):
    """The built zip, offered to storage as a finished temporary file: local storage then moves it into
    place (a rename on the same filesystem) instead of copying hundreds of megabytes; others upload it."""

    def temporary_file_path(self) -> str:
        return self.file.name


class _Lease:
    """Renews a building export's lease (its ``updated_at``) from a thread while the build runs,
    also through long stretches without progress (hashing and storing a large zip)."""

    def __init__(self, export_id: int):
        self.export_id = export_id
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name=f"export-{export_id}-lease", daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc_info):
        self.stop.set()
        self.thread.join()

    def _run(self) -> None:
        from django.db import connection

        try:
            while not self.stop.wait(lease_seconds() / 3):
                Export.objects.filter(pk=self.export_id, status=Status.BUILDING).update(updated_at=timezone.now())
        finally:
            connection.close()  # this thread's own connection


def build_export(export_id: int, *, workers: int | None = None) -> str:
    """Build the package of a queued export into storage as a zip. Returns the final status.
    Raises ExportBusy when another worker is building it now."""
    export = _claim(export_id)
    if export is None:
        return "skipped"
    with _Lease(export.pk):
        return _build(export, workers=workers)


def _build(export: Export, *, workers: int | None) -> str:
    cohort = export.cohort

    def progress(done, total):
        Export.objects.filter(pk=export.pk).update(progress_done=done, progress_total=total,
                                                   updated_at=timezone.now())

    work = None
    try:
        _refuse_unscreened(cohort)  # again: a verdict may have been changed since the request
        work = Path(tempfile.mkdtemp(prefix=f"cxr-export-{export.pk}-", dir=setting("EXPORT_WORK_DIR", None)))
        zip_path = work / export.download_name
        with open(zip_path, "wb") as handle:
            result = write_cohort_package(cohort, zip_to=handle, zip_top=Path(export.download_name).stem,
                                          export=export, include_png=export.include_png,
                                          transfer_syntax=export.transfer_syntax,
                                          created_by=export.owner.get_username(), on_progress=progress,
                                          workers=workers)
        size = zip_path.stat().st_size
        sha256 = sha256_path(zip_path)
        name = f"exports/{export.pk}/{export.download_name}"
        if default_storage.exists(name):
            default_storage.delete(name)
        with open(zip_path, "rb") as handle:
            stored = default_storage.save(name, _BuiltFile(handle, name=export.download_name))
    except Exception as error:  # noqa: BLE001 - any failure ends the export, with a clear message
        logger.exception("export %s failed", export.pk)
        _transition(Export.objects.get(pk=export.pk), Status.FAILED, error=f"The export could not be built: {error}",
                    finished_at=timezone.now())
        return Status.FAILED
    finally:
        if work is not None:
            shutil.rmtree(work, ignore_errors=True)
    now = timezone.now()
    export.refresh_from_db()
    _transition(export, Status.READY, file_name=stored, size=size, sha256=sha256,
                manifest_sha256=result.manifest_sha256, image_count=result.image_count,
                progress_done=result.image_count, progress_total=result.image_count, finished_at=now,
                expires_at=now + retention(), details={"images": result.image_count, "size": size})
    return Status.READY


# --- Downloading ----------------------------------------------------------------------------------


def _check_downloadable(user, export: Export) -> None:
    if export.owner_id != getattr(user, "pk", None):
        raise ExportRefused("Not found.", status=404)
    try:
        require_capability(user, caps.EXPORT_DICOM, export.cohort.model_version)
    except AccessDenied as denied:
        raise ExportRefused(str(denied), status=403) from None
    if export.status == Status.EXPIRED or (export.expires_at and export.expires_at <= timezone.now()):
        raise ExportRefused("This export has expired and was deleted. Create a new one.", status=410)
    if export.status != Status.READY:
        raise ExportRefused("This export is not ready yet.", status=409)


def issue_download_link(*, user, export: Export) -> downloads.SignedLink:
    _check_downloadable(user, export)
    ttl = setting("DOWNLOAD_LINK_TTL_SECONDS", 3600)
    if export.expires_at:
        ttl = max(1, min(ttl, int((export.expires_at - timezone.now()).total_seconds())))
    link = downloads.sign_link(purpose=LINK_PURPOSE, user=user, object_id=export.pk, path=export.download_name,
                               ttl_seconds=ttl)
    record_event("export.link_issued", actor=user, target=export, details={"expires_at": link.expires_at.isoformat()})
    return link


def authorize_download(*, user, token: str, path: str) -> Export:
    """The export a link is for, after checking the link (this user, not expired) and the
    export's own policy now (owner, capability, ready, not expired)."""
    try:
        claim = downloads.verify_link(token, purpose=LINK_PURPOSE, user=user, path=path)
    except downloads.LinkError as error:
        raise ExportRefused(str(error), status=error.status) from None
    export = Export.objects.select_related("cohort__model_version").filter(pk=int(claim.object_id)).first()
    if export is None:
        raise ExportRefused("This export no longer exists.", status=404)
    _check_downloadable(user, export)
    return export


def record_download_started(*, user, export: Export, first: int, last: int) -> None:
    record_event("export.download_started", actor=user, target=export,
                 details={"first_byte": first, "last_byte": last, "size": export.size})


# --- Expiry ---------------------------------------------------------------------------------------


def expire_exports(*, now=None) -> int:
    """Delete the packages of exports past their expiry time (and failed exports older than the
    retention period). Returns how many were expired."""
    now = now or timezone.now()
    due = list(
        Export.objects.filter(status=Status.READY, expires_at__lte=now).values_list("pk", flat=True)
    ) + list(
        Export.objects.filter(status=Status.FAILED, finished_at__lte=now - retention()).values_list("pk", flat=True)
    )
    expired = 0
    for pk in due:
        with transaction.atomic():
            export = Export.objects.select_for_update().filter(pk=pk).first()
            if export is None or export.status not in (Status.READY, Status.FAILED):
                continue
            if export.file_name:
                default_storage.delete(export.file_name)
            _transition(export, Status.EXPIRED, file_name="", details={"deleted": True})
            expired += 1
    return expired


def fail_stale_exports(*, now=None) -> int:
    """Exports left building with no progress for EXPORT_STALE_SECONDS (their worker died and the
    task was not redelivered) are marked failed."""
    now = now or timezone.now()
    stale = now - timedelta(seconds=setting("EXPORT_STALE_SECONDS", 3600))
    count = 0
    for pk in Export.objects.filter(status=Status.BUILDING, updated_at__lt=stale).values_list("pk", flat=True):
        with transaction.atomic():
            export = Export.objects.select_for_update().get(pk=pk)
            if export.status == Status.BUILDING and export.updated_at < stale:
                _transition(export, Status.FAILED, error="The export stopped making progress (its worker died).",
                            finished_at=now)
                count += 1
    return count
