"""verify_export: a valid package passes; a tampered file or manifest is caught and named."""

import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

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
    assert f"CHANGED {name}: contents differ" in out
    assert out.count("CHANGED") == 1 and "MISSING" not in out and "UNLISTED" not in out


def test_tampered_manifest_breaks_the_signature(package, capsys):
    manifest = json.loads((package / "manifest.json").read_text())
    manifest["images"][0]["age"] = 99
    (package / "manifest.json").write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    with pytest.raises(CommandError):
        call_command("verify_export", str(package))
    assert "BAD SIGNATURE manifest.json" in capsys.readouterr().out


def test_manifest_with_checksums_rewritten_is_still_caught(package):
    """An attacker who edits a file and its checksum in the manifest still fails the signature."""
    name = _first_dicom(package)
    (package / name).write_bytes(b"not a dicom file")
    manifest = json.loads((package / "manifest.json").read_text())
    manifest["files"][name] = signing.sha256_file(open(package / name, "rb"))
    (package / "manifest.json").write_text(json.dumps(manifest))
    result = signing.verify_package(package)
    assert not result.signature_ok
    assert not any(name in p for p in result.problems)


def test_added_and_missing_files_are_named(package):
    shutil.copy(package / "README.md", package / "extra.txt")
    (package / "manifest.csv").unlink()
    problems = signing.verify_package(package).problems
    assert "UNLISTED extra.txt: not in the manifest (added after signing)" in problems
    assert "MISSING manifest.csv" in problems


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


def _only_cryptography(tmp_path):
    """A folder holding nothing but cryptography and what it needs: the recipient's environment."""
    import cffi
    import cryptography

    site = tmp_path / "recipient-site"
    if site.is_dir():
        return site
    site.mkdir()
    for module in (cryptography, cffi):
        folder = Path(module.__file__).parent
        (site / folder.name).symlink_to(folder)
    for backend in Path(cffi.__file__).parent.parent.glob("_cffi_backend*"):
        (site / backend.name).symlink_to(backend)
    return site


def _recipient_verify(package, tmp_path, *args) -> subprocess.CompletedProcess:
    """Run the package's own verify.py the way a recipient would: no site-packages but
    cryptography, no platform code, another working directory."""
    runner = ("import runpy, sys; sys.path.insert(0, sys.argv.pop(1)); "
              "sys.argv = sys.argv[1:]; runpy.run_path(sys.argv[0], run_name='__main__')")
    site = _only_cryptography(tmp_path)
    return subprocess.run([sys.executable, "-I", "-S", "-c", runner, str(site), str(package / "verify.py"),
                           str(package), *args], capture_output=True, text=True, timeout=60, cwd=tmp_path)


@pytest.fixture
def published_key(tmp_path):
    path = tmp_path / "published.pem"
    path.write_text(signing.public_key_pem())
    return path


def test_recipient_verifier_passes_an_intact_package(package, tmp_path, published_key):
    done = _recipient_verify(package, tmp_path, "--public-key", str(published_key))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "OK: signature valid" in done.stdout
    done = _recipient_verify(package, tmp_path, "--fingerprint", signing.key_fingerprint())
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize("tamper, expected", [
    ("change", "CHANGED"), ("remove", "MISSING"), ("add", "UNLISTED"), ("manifest", "BAD SIGNATURE"),
])
def test_recipient_verifier_fails_on_any_alteration(package, tmp_path, published_key, tamper, expected):
    name = _first_dicom(package)
    if tamper == "change":
        data = bytearray((package / name).read_bytes())
        data[-10] ^= 0xFF
        (package / name).write_bytes(bytes(data))
    elif tamper == "remove":
        (package / name).unlink()
    elif tamper == "add":
        (package / "PT000000" / "EXTRA").write_bytes(b"not signed")
    else:
        text = (package / "manifest.json").read_text()
        (package / "manifest.json").write_text(text.replace('"synthetic": true', '"synthetic": false'))
    done = _recipient_verify(package, tmp_path, "--public-key", str(published_key))
    assert done.returncode == 1, done.stdout
    assert expected in done.stdout


def test_recipient_verifier_refuses_a_key_that_is_not_the_published_one(package, tmp_path):
    """An attacker who re-signs the package with their own key and ships that key inside it fails."""
    done = _recipient_verify(package, tmp_path, "--fingerprint", "0" * 64)
    assert done.returncode == 1 and "WRONG KEY" in done.stdout
    done = _recipient_verify(package, tmp_path)
    assert done.returncode == 2 and "--public-key" in done.stderr


def test_recipient_verifier_reads_the_zip(package, tmp_path, published_key):
    with open(tmp_path / "package.zip", "wb") as handle:
        zip_package(package, handle, top="cxr-export-1-1")
    unpacked = tmp_path / "verify-only"
    unpacked.mkdir()
    shutil.copy(package / "verify.py", unpacked / "verify.py")
    runner_package = unpacked  # verify.py from elsewhere, the zip as the package
    site = _only_cryptography(tmp_path)
    runner = ("import runpy, sys; sys.path.insert(0, sys.argv.pop(1)); "
              "sys.argv = sys.argv[1:]; runpy.run_path(sys.argv[0], run_name='__main__')")
    done = subprocess.run([sys.executable, "-I", "-S", "-c", runner, str(site), str(runner_package / "verify.py"),
                           str(tmp_path / "package.zip"), "--public-key", str(published_key)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


def test_data_card_gives_the_recipient_command_and_fingerprint(package):
    card = (package / "README.md").read_text()
    assert "python verify.py . --public-key" in card
    assert signing.key_fingerprint() in card
    assert (package / "signing-key.pem").read_text() == signing.public_key_pem()


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
    assert len(problems) == 1 and problems[0].startswith(f"CHANGED {name}: contents differ")
