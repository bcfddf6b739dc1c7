"""cxr export download (resumable with Range, checksum verified) against the live server, and
cxr export verify offline (create --wait --download with a worker: test_journey.py)."""

import zipfile

import pytest
from django.core.files.storage import default_storage

from cxr_platform.audit.models import AuditEvent
from exports import services, signing
from tests.exports.factories import array_pngs, make_cohort

from .conftest import api_user


def ready_export(user, model_version, images: int = 3):
    cohort = make_cohort(user, model_version, pngs=array_pngs(images, size=32))
    export = services.request_export(user=user, cohort=cohort, enqueue=False)
    assert services.build_export(export.pk) == "ready"
    export.refresh_from_db()
    return export


def starts(export) -> list[int]:
    """The first byte of every download of ``export`` the server began, in order (from the audit log)."""
    events = AuditEvent.objects.filter(action="export.download_started", target_id=str(export.pk)).order_by("pk")
    return [event.details["first_byte"] for event in events]


def test_an_interrupted_download_resumes_with_range_and_verifies(cxr, demo_model_version, tmp_path):
    user, token = api_user()
    export = ready_export(user, demo_model_version)
    stored = default_storage.open(export.file_name).read()
    half = len(stored) // 2
    folder = tmp_path / "downloads"
    folder.mkdir()
    (folder / f"{export.download_name}.part").write_bytes(stored[:half])  # what a killed run leaves
    cxr.login(token)
    result = cxr("export", "download", export.pk, "--dir", folder, "--json")
    assert result.code == 0, result.stderr
    assert (result.json()["resumed_from"], result.json()["bytes_fetched"]) == (half, len(stored) - half)
    assert starts(export) == [half]  # the server was asked for the rest only
    assert (folder / export.download_name).read_bytes() == stored
    assert not (folder / f"{export.download_name}.part").exists()


def test_a_corrupted_partial_download_is_fetched_again_whole(cxr, demo_model_version, tmp_path):
    user, token = api_user()
    export = ready_export(user, demo_model_version)
    stored = default_storage.open(export.file_name).read()
    half = len(stored) // 2
    folder = tmp_path / "downloads"
    folder.mkdir()
    (folder / f"{export.download_name}.part").write_bytes(b"\xff" * half)
    cxr.login(token)
    result = cxr("export", "download", export.pk, "--dir", folder, "--json")
    assert result.code == 0, result.stderr
    assert starts(export) == [half, 0]  # the resumed file failed its checksum, so it came again whole
    assert (folder / export.download_name).read_bytes() == stored


def listed_files(package) -> int:
    """Every file of a package but the manifest and its signature: what a full check reads."""
    with zipfile.ZipFile(package) as archive:
        names = [name for name in archive.namelist() if not name.endswith("/")]
    return len([name for name in names if not name.endswith(("manifest.json", "manifest.json.sig"))])


@pytest.fixture
def package(db, demo_model_version, tmp_path):
    """A ready export's zip, copied out of storage, and the platform's published key in a file."""
    user, _ = api_user()
    export = ready_export(user, demo_model_version, images=2)
    path = tmp_path / export.download_name
    path.write_bytes(default_storage.open(export.file_name).read())
    key = tmp_path / "signing-key.pem"
    key.write_text(signing.public_key_pem())
    return path, key


def test_verify_works_offline_with_the_published_key_and_fails_on_a_tampered_file(offline_cxr, package, tmp_path):
    path, key = package
    good = offline_cxr("export", "verify", path, "--public-key", key, "--json")
    assert good.code == 0, good.stdout + good.stderr
    assert good.json()["ok"] and good.json()["signature_ok"] and good.json()["checked"] == listed_files(path)
    assert offline_cxr("export", "verify", path, "--fingerprint", signing.key_fingerprint()).code == 0

    tampered = tmp_path / "tampered.zip"
    with zipfile.ZipFile(path) as original, zipfile.ZipFile(tampered, "w") as copy:
        for item in original.infolist():
            data = original.read(item)
            copy.writestr(item, data[:-1] + bytes([data[-1] ^ 1]) if item.filename.endswith("IM000000") else data)
    bad = offline_cxr("export", "verify", tampered, "--public-key", key)
    assert bad.code == 1
    assert "CHANGED" in bad.stdout and "IM000000" in bad.stdout


def test_verify_refuses_a_package_signed_with_another_key(offline_cxr, package, tmp_path):
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    path, _ = package
    other = tmp_path / "other.pem"
    other.write_text(signing.public_key_pem(Ed25519PrivateKey.generate()))
    result = offline_cxr("export", "verify", path, "--public-key", other)
    assert result.code == 1 and "BAD SIGNATURE" in result.stdout
