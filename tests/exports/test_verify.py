"""verify_export: a valid package passes; a tampered file or manifest is caught and named."""

import json
import shutil
import zipfile

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from django.core.management import call_command
from django.core.management.base import CommandError

from exports import services, signing
from exports.package import zip_package


@pytest.fixture
def package(small_cohort, tmp_path):
    services.write_cohort_package(small_cohort, tmp_path / "pkg")
    return tmp_path / "pkg"


def _first_dicom(package):
    return json.loads((package / "manifest.json").read_text())["images"][0]["file"]


def test_valid_package_passes(package, capsys):
    call_command("verify_export", str(package))
    assert "OK: signature valid" in capsys.readouterr().out


def test_tampered_dicom_is_named(package, capsys):
    name = _first_dicom(package)
    data = bytearray((package / name).read_bytes())
    data[-10] ^= 0xFF  # one pixel
    (package / name).write_bytes(bytes(data))
    with pytest.raises(CommandError):
        call_command("verify_export", str(package))
    out = capsys.readouterr().out
    assert f"DIFFERS {name}: contents differ" in out
    assert out.count("DIFFERS") == 1


def test_tampered_manifest_breaks_the_signature(package, capsys):
    manifest = json.loads((package / "manifest.json").read_text())
    manifest["images"][0]["age"] = 99
    (package / "manifest.json").write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    with pytest.raises(CommandError):
        call_command("verify_export", str(package))
    assert "DIFFERS manifest.json: signature does not match" in capsys.readouterr().out


def test_manifest_with_checksums_rewritten_is_still_caught(package):
    """An attacker who edits a file and its checksum in the manifest still fails the signature."""
    name = _first_dicom(package)
    (package / name).write_bytes(b"not a dicom file")
    manifest = json.loads((package / "manifest.json").read_text())
    manifest["files"][name] = signing.sha256_file(open(package / name, "rb"))
    (package / "manifest.json").write_text(json.dumps(manifest))
    result = signing.verify_package(package)
    assert not result.signature_ok
    assert not any(p.startswith(name) for p in result.problems)


def test_added_and_missing_files_are_named(package):
    shutil.copy(package / "README.md", package / "extra.txt")
    (package / "manifest.csv").unlink()
    problems = signing.verify_package(package).problems
    assert "extra.txt: not listed in the manifest (added after signing)." in problems
    assert "manifest.csv: missing." in problems


def test_zip_is_verified_in_place(package, tmp_path):
    target = tmp_path / "export.zip"
    with open(target, "wb") as handle:
        zip_package(package, handle, top="cxr-export-1-1")
    with zipfile.ZipFile(target) as archive:
        assert {i.compress_type for i in archive.infolist()} == {zipfile.ZIP_STORED}
    assert signing.verify_package(target).ok


def test_other_key_is_refused(package, tmp_path):
    other = Ed25519PrivateKey.generate().public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    (tmp_path / "other.pem").write_bytes(other)
    with pytest.raises(CommandError):
        call_command("verify_export", str(package), "--public-key", str(tmp_path / "other.pem"))


def test_recipe_with_only_cryptography(package):
    """The recipient recipe in docs/exports.md, verbatim in spirit: no Django, no platform code."""
    import base64
    import hashlib
    from pathlib import Path

    from cryptography.hazmat.primitives.serialization import load_pem_public_key

    root = Path(package)
    public_key = load_pem_public_key(signing.public_key_pem().encode())  # downloaded from the platform
    manifest_bytes = (root / "manifest.json").read_bytes()
    public_key.verify(base64.b64decode((root / "manifest.json.sig").read_bytes()), manifest_bytes)
    bad = [name for name, digest in json.loads(manifest_bytes)["files"].items()
           if hashlib.sha256((root / name).read_bytes()).hexdigest() != digest]
    assert bad == []


def test_signing_key_from_pem_setting(settings):
    key = Ed25519PrivateKey.generate()
    settings.EXPORT_SIGNING_KEY = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()).decode()
    assert signing.public_key_pem() == key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()


def test_tampered_member_of_the_zip_is_named(package, tmp_path):
    target = tmp_path / "export.zip"
    with open(target, "wb") as handle:
        zip_package(package, handle, top="cxr-export-1-1")
    name = _first_dicom(package)
    data = bytearray(target.read_bytes())
    original = (package / name).read_bytes()
    at = data.find(original) + len(original) - 10  # one pixel inside the stored member
    data[at] ^= 0xFF
    target.write_bytes(bytes(data))
    problems = signing.verify_package(target).problems
    assert len(problems) == 1 and problems[0].startswith(f"{name}: contents differ")
