"""Registering model versions, checking their files, changing their status, and the
decisions behind weight downloads. Every state change writes its audit event in the
same transaction."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings
from django.core.files.storage import FileSystemStorage
from django.db import IntegrityError, transaction
from django.utils import timezone

from access import capabilities as caps
from access.policy import access_policy
from cxr_platform import downloads
from cxr_platform.audit.services import record_event
from cxr_platform.hashing import sha256_stream

from .models import ModelFile, ModelVersion
from .vocabulary import roentgen_v2_defaults

logger = logging.getLogger(__name__)

DEFAULTS_FILE = "generation_defaults.json"
MODEL_CARD_NAMES = ("README.md", "MODEL_CARD.md", "model_card.md", "README.txt", "README")
MODEL_CARD_MAX_CHARS = 200_000
WEIGHTS_LINK_PURPOSE = "weights"

Status = ModelVersion.Status
# Withdrawn is final: a version withdrawn for cause is never quietly brought back;
# corrected weights are registered as a new version.
STATUS_TRANSITIONS: dict[str, set[str]] = {
    Status.ACTIVE: {Status.DEPRECATED, Status.WITHDRAWN},
    Status.DEPRECATED: {Status.ACTIVE, Status.WITHDRAWN},
    Status.WITHDRAWN: set(),
}
STATUS_ACTIONS = {
    Status.ACTIVE: "model_version.reactivated",
    Status.DEPRECATED: "model_version.deprecated",
    Status.WITHDRAWN: "model_version.withdrawn",
}

# progress(path, bytes_hashed, file_size) is called while large files are hashed.
Progress = Callable[[str, int, int], None]


class RegistrationError(Exception):
    """The directory cannot be registered; the message says why."""


class ModelFilesChanged(RuntimeError):
    """A model version's files on disk are not the files that were registered."""


class StatusChangeError(Exception):
    pass


@dataclass(frozen=True)
class FileDigest:
    path: str
    size: int
    sha256: str


# --- Files and manifests --------------------------------------------------------------------


def hash_file(path: Path, *, progress: Progress | None = None, label: str = "") -> str:
    """SHA-256 of a file, read in chunks so multi-GB weights never sit in memory."""
    size = path.stat().st_size
    done = 0

    def advanced(n: int) -> None:
        nonlocal done
        done += n
        progress(label or path.name, done, size)

    with path.open("rb") as handle:
        return sha256_stream(handle, on_chunk=advanced if progress is not None else None)


def model_file_paths(directory: Path) -> list[str]:
    """Relative paths of the files that make up a model directory, sorted.

    Hidden files and folders (``.git``, the Hugging Face ``.cache``) are tooling, not model."""
    found = []
    for root, dirnames, filenames in os.walk(directory, followlinks=False):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for filename in filenames:
            if filename.startswith("."):
                continue
            full = Path(root) / filename
            if full.is_file():
                found.append(full.relative_to(directory).as_posix())
    return sorted(found)


def scan_directory(directory: Path, *, progress: Progress | None = None) -> list[FileDigest]:
    return [
        FileDigest(path=rel, size=(directory / rel).stat().st_size, sha256=hash_file(directory / rel, progress=progress, label=rel))
        for rel in model_file_paths(directory)
    ]


def sha256sums(files) -> str:
    """The manifest in ``sha256sum -c`` format."""
    return "".join(f"{f.sha256}  {f.path}\n" for f in sorted(files, key=lambda f: f.path))


def manifest_fingerprint(files) -> str:
    return hashlib.sha256(sha256sums(files).encode()).hexdigest()


# --- Registration --------------------------------------------------------------------------------

# Fingerprints of manifests that loaded as a pipeline in this process: the same bytes load the
# same way, so registering an identical copy again need not load it again.
_LOADABLE: set[str] = set()


def _check_layout(directory: Path) -> None:
    index_path = directory / "model_index.json"
    if not index_path.is_file():
        raise RegistrationError(f"{directory} is not a diffusers pipeline: it has no model_index.json.")
    try:
        index = json.loads(index_path.read_text())
    except (ValueError, UnicodeDecodeError) as exc:
        raise RegistrationError(f"{directory}/model_index.json is not valid JSON: {exc}") from None
    if not isinstance(index, dict) or "_class_name" not in index:
        raise RegistrationError(f"{directory}/model_index.json does not name a pipeline class (_class_name).")
    missing = [
        component
        for component, spec in index.items()
        if not component.startswith("_")
        and isinstance(spec, list)
        and spec[0] is not None
        and not (directory / component).is_dir()
    ]
    if missing:
        raise RegistrationError(f"{directory} is missing the folder(s) of component(s): {', '.join(sorted(missing))}.")


def _check_loads(directory: Path, fingerprint: str) -> None:
    """Load the pipeline from disk only, as the generation workers will."""
    if fingerprint in _LOADABLE:
        return
    from diffusers import DiffusionPipeline
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    # The loaders' progress bars would interleave with register_model's own progress.
    quieted = [lib for lib in (diffusers_logging, transformers_logging) if lib.is_progress_bar_enabled()]
    for lib in quieted:
        lib.disable_progress_bar()
    try:
        pipeline = DiffusionPipeline.from_pretrained(str(directory), local_files_only=True)
    except Exception as exc:  # whatever the loader objects to, the directory is unusable
        raise RegistrationError(f"{directory} does not load as a diffusers pipeline: {type(exc).__name__}: {exc}") from None
    finally:
        for lib in quieted:
            lib.enable_progress_bar()
    del pipeline
    _LOADABLE.add(fingerprint)


def read_generation_defaults(directory: Path) -> dict:
    """RoentGen-v2's defaults, overridden key by key by the directory's generation_defaults.json."""
    defaults = roentgen_v2_defaults()
    path = directory / DEFAULTS_FILE
    if path.is_file():
        try:
            overrides = json.loads(path.read_text())
        except (ValueError, UnicodeDecodeError) as exc:
            raise RegistrationError(f"{path} is not valid JSON: {exc}") from None
        if not isinstance(overrides, dict):
            raise RegistrationError(f"{path} must hold a JSON object of generation defaults.")
        defaults.update(overrides)
    return defaults


def read_model_card(directory: Path) -> str:
    for name in MODEL_CARD_NAMES:
        path = directory / name
        if path.is_file():
            return path.read_text(errors="replace")[:MODEL_CARD_MAX_CHARS]
    return ""


def register_model_version(
    *, name: str, version: str, directory, actor=None, progress: Progress | None = None
) -> ModelVersion:
    """Validate ``directory`` as an offline-loadable diffusers pipeline, hash every file and record
    the version with its manifest, model card and generation defaults."""
    name, version = (name or "").strip(), (version or "").strip()
    if not name or not version:
        raise RegistrationError("A model version needs a name and a version.")
    if len(name) > ModelVersion._meta.get_field("name").max_length or len(version) > ModelVersion._meta.get_field("version").max_length:
        raise RegistrationError("The name may have at most 100 characters and the version at most 50.")
    directory = Path(directory).expanduser().resolve()
    if not directory.is_dir():
        raise RegistrationError(f"{directory} is not a directory.")
    if ModelVersion.objects.filter(name=name, version=version).exists():
        raise RegistrationError(f"{name} {version} is already registered; register changed weights as a new version.")
    _check_layout(directory)
    defaults = read_generation_defaults(directory)
    card = read_model_card(directory)
    files = scan_directory(directory, progress=progress)
    _check_loads(directory, manifest_fingerprint(files))
    try:
        with transaction.atomic():
            model_version = ModelVersion.objects.create(
                name=name,
                version=version,
                directory=str(directory),
                defaults=defaults,
                model_card=card,
                total_size=sum(f.size for f in files),
                registered_by=actor if getattr(actor, "is_authenticated", False) else None,
            )
            ModelFile.objects.bulk_create(
                ModelFile(model_version=model_version, path=f.path, size=f.size, sha256=f.sha256) for f in files
            )
            record_event(
                "model_version.registered",
                actor=actor,
                target=model_version,
                details={
                    "name": name,
                    "version": version,
                    "directory": str(directory),
                    "files": len(files),
                    "total_size": model_version.total_size,
                    "manifest_sha256": manifest_fingerprint(files),
                },
            )
    except IntegrityError:
        raise RegistrationError(f"{name} {version} is already registered; register changed weights as a new version.") from None
    return model_version


# --- Load-time verification ------------------------------------------------------------------------

# version id -> directory and manifest fingerprint whose files were fully re-hashed in this process.
_VERIFIED: dict[int, str] = {}
_VERIFIED_LOCK = threading.Lock()


def verify_model_files(model_version: ModelVersion, *, rehash: bool = False, progress: Progress | None = None) -> None:
    """Raise ModelFilesChanged unless the version's directory holds exactly the registered files.

    The first call for a version in a process re-hashes every file (size and SHA-256); later
    calls in the same process only compare the file list and sizes, unless ``rehash``. Generation
    workers call this before loading a pipeline.
    """
    registered = list(model_version.files.all())
    if not registered:
        raise ModelFilesChanged(f"{model_version} has no manifest to check its files against; register it with register_model.")
    directory = Path(model_version.directory)
    fingerprint = f"{directory}:{manifest_fingerprint(registered)}"
    if not directory.is_dir():
        raise ModelFilesChanged(f"{model_version}: its directory {directory} no longer exists.")
    full = rehash or _VERIFIED.get(model_version.pk) != fingerprint
    on_disk = set(model_file_paths(directory))
    problems = [f"{path} was added" for path in sorted(on_disk - {f.path for f in registered})]
    for expected in registered:
        path = directory / expected.path
        if expected.path not in on_disk:
            problems.append(f"{expected.path} is missing")
        elif path.stat().st_size != expected.size:
            problems.append(f"{expected.path} changed size ({expected.size} → {path.stat().st_size} bytes)")
        elif full and hash_file(path, progress=progress, label=expected.path) != expected.sha256:
            problems.append(f"{expected.path} changed content (SHA-256 differs)")
    if problems:
        with _VERIFIED_LOCK:
            _VERIFIED.pop(model_version.pk, None)
        raise ModelFilesChanged(
            f"{model_version} was registered from {directory}, but its files have changed since: "
            + "; ".join(problems)
            + ". Refusing to load it. Restore the registered files, or register the directory as a new version."
        )
    if full:
        with _VERIFIED_LOCK:
            _VERIFIED[model_version.pk] = fingerprint


# --- Status -------------------------------------------------------------------------------------------


@transaction.atomic
def change_status(*, model_version: ModelVersion, status: str, actor, reason: str = "") -> ModelVersion:
    model_version = ModelVersion.objects.select_for_update().get(pk=model_version.pk)
    if status not in Status.values:
        raise StatusChangeError(f"{status!r} is not a model version status.")
    previous = model_version.status
    if status not in STATUS_TRANSITIONS[previous]:
        raise StatusChangeError(f"{model_version} is {previous}; it cannot become {status}.")
    model_version.status = status
    model_version.status_changed_at = timezone.now()
    model_version.save(update_fields=["status", "status_changed_at"])
    record_event(
        STATUS_ACTIONS[status],
        actor=actor,
        target=model_version,
        details={"from": previous, "to": status, "reason": reason},
    )
    return model_version


# --- Weight downloads ----------------------------------------------------------------------------------


class DownloadRefused(Exception):
    def __init__(self, message: str, status: int = 403):
        super().__init__(message)
        self.message = message
        self.status = status


def can_download(user, model_version: ModelVersion) -> bool:
    return access_policy(user).can(caps.DOWNLOAD_WEIGHTS, model_version)


def issue_download_link(*, user, model_file: ModelFile, ttl_seconds: int | None = None) -> downloads.SignedLink:
    """A signed link for ``user`` to fetch one file, after checking they may; audited."""
    [link] = issue_download_links(user=user, model_version=model_file.model_version, files=[model_file],
                                  ttl_seconds=ttl_seconds)
    return link


def issue_download_links(*, user, model_version: ModelVersion, files, ttl_seconds: int | None = None) -> list:
    """Signed links for several files of one version, with one access check for all of them; each audited."""
    if model_version.status == Status.WITHDRAWN:
        raise DownloadRefused(f"{model_version} has been withdrawn and cannot be downloaded.", status=410)
    policy = access_policy(user)
    if not policy.can(caps.DOWNLOAD_WEIGHTS, model_version):
        raise DownloadRefused(policy.explain_denial(caps.DOWNLOAD_WEIGHTS))
    return [_sign_and_audit(user, model_version, model_file, ttl_seconds) for model_file in files]


def _sign_and_audit(user, model_version: ModelVersion, model_file: ModelFile, ttl_seconds) -> downloads.SignedLink:
    link = downloads.sign_link(
        purpose=WEIGHTS_LINK_PURPOSE, user=user, object_id=model_version.pk, path=model_file.path, ttl_seconds=ttl_seconds
    )
    record_event(
        "weights.link_issued",
        actor=user,
        target=model_version,
        details={"file": model_file.path, "size": model_file.size, "expires_at": link.expires_at.isoformat()},
    )
    return link


def authorize_download(*, user, token: str, path: str) -> ModelFile:
    """The file a signed link lets ``user`` fetch now, re-checking the policy; raises DownloadRefused.

    Refusals of genuine links are audited: a link used by someone else is a link that was shared.
    """
    try:
        claim = downloads.read_link(token, purpose=WEIGHTS_LINK_PURPOSE)
        model_file = (
            ModelFile.objects.select_related("model_version").filter(model_version_id=int(claim.object_id), path=claim.path).first()
        )
        if model_file is None:
            raise downloads.InvalidLink("This download link is not valid. Ask for a new one.")
        downloads.verify_link(token, purpose=WEIGHTS_LINK_PURPOSE, user=user, path=path)
    except downloads.InvalidLink as exc:
        raise DownloadRefused(str(exc), status=exc.status) from None
    except downloads.LinkError as exc:
        _refused(user, model_file, exc.__class__.__name__, str(exc))
        raise DownloadRefused(str(exc), status=exc.status) from None
    model_version = model_file.model_version
    if model_version.status == Status.WITHDRAWN:
        message = f"{model_version} has been withdrawn and can no longer be downloaded."
        _refused(user, model_file, "withdrawn", message)
        raise DownloadRefused(message, status=410)
    policy = access_policy(user)
    if not policy.can(caps.DOWNLOAD_WEIGHTS, model_version):
        message = "Your access no longer covers downloading these weights. " + policy.explain_denial(caps.DOWNLOAD_WEIGHTS)
        _refused(user, model_file, "no_grant", message)
        raise DownloadRefused(message)
    return model_file


def _refused(user, model_file: ModelFile, reason: str, message: str) -> None:
    record_event(
        "weights.download_refused",
        actor=user,
        target=model_file.model_version,
        details={"file": model_file.path, "reason": reason, "message": message},
    )


def record_download_started(*, user, model_file: ModelFile, first: int, last: int) -> None:
    record_event(
        "weights.download_started",
        actor=user,
        target=model_file.model_version,
        details={
            "file": model_file.path,
            "first_byte": first,
            "last_byte": last,
            "bytes_requested": last - first + 1,
            "file_size": model_file.size,
        },
    )


@dataclass(frozen=True)
class StoredFile:
    storage: FileSystemStorage
    name: str
    # Where the front server finds it (DOWNLOAD_OFFLOAD), or None when only Django can send it.
    offload_prefix: str | None


def stored_file(model_file: ModelFile) -> StoredFile:
    """Where a model file is read from.

    The front server's protected location ``DOWNLOAD_OFFLOAD_PREFIX + "models/"`` maps to
    MODEL_ROOT, so only versions registered from under MODEL_ROOT can be handed to it."""
    directory = Path(model_file.model_version.directory)
    root = Path(settings.MODEL_ROOT).resolve()
    if directory.is_relative_to(root):
        prefix = settings.DOWNLOAD_OFFLOAD_PREFIX.rstrip("/") + "/models/"
        return StoredFile(FileSystemStorage(location=root), (directory.relative_to(root) / model_file.path).as_posix(), prefix)
    return StoredFile(FileSystemStorage(location=directory), model_file.path, None)


def open_download(*, model_file: ModelFile) -> StoredFile:
    """The stored file about to be sent, refusing one that no longer matches its registration
    (a cheap size check; the full hash check is verify_model_files)."""
    stored = stored_file(model_file)
    try:
        current_size = stored.storage.size(stored.name)
    except OSError:
        current_size = None
    if current_size != model_file.size:
        logger.error("Model file %s of %s changed on disk since registration", model_file.path, model_file.model_version)
        raise DownloadRefused(
            f"{model_file.path} no longer matches its registration; the administrators have been notified.", status=503
        )
    return stored
