"""Registering the real demo pipeline from disk, refusing broken directories, and noticing
files that changed after registration."""

import hashlib
import json

import pytest
from django.core.management import CommandError, call_command

from cxr_platform.audit.models import AuditEvent
from registry import services
from registry.models import ModelVersion
from registry.vocabulary import roentgen_v2_defaults
from tests.registry.factories import register_demo

WEIGHTS = "unet/diffusion_pytorch_model.safetensors"


def test_registration_records_every_file_with_size_and_sha256(version, model_dir):
    files = {f.path: f for f in version.files.all()}
    on_disk = sorted(p.relative_to(model_dir).as_posix() for p in model_dir.rglob("*") if p.is_file())
    assert sorted(files) == on_disk
    weights = files[WEIGHTS]
    assert weights.size == (model_dir / WEIGHTS).stat().st_size
    assert weights.sha256 == hashlib.sha256((model_dir / WEIGHTS).read_bytes()).hexdigest()
    assert version.total_size == sum(f.size for f in files.values())


def test_registration_keeps_model_card_and_generation_defaults(version, model_dir):
    assert version.model_card == (model_dir / "README.md").read_text()
    assert version.defaults == json.loads((model_dir / "generation_defaults.json").read_text())


def test_without_generation_defaults_file_roentgen_v2_defaults_apply(db, model_dir):
    (model_dir / "generation_defaults.json").unlink()
    version = register_demo(model_dir)
    assert version.defaults == roentgen_v2_defaults()


def test_registration_is_audited(version):
    event = AuditEvent.objects.get(action="model_version.registered")
    assert event.target_id == str(version.pk) and event.details["files"] == version.files.count()


def test_sha256sums_manifest_checks_with_sha256sum_format(version, model_dir):
    for line in services.sha256sums(version.files.all()).splitlines():
        digest, path = line.split("  ", 1)
        assert hashlib.sha256((model_dir / path).read_bytes()).hexdigest() == digest


def test_hashing_reports_progress_up_to_each_file_size(db, model_dir):
    seen = {}
    services.register_model_version(
        name="RoentGen-v2", version="2.0", directory=model_dir, progress=lambda path, done, size: seen.update({path: (done, size)})
    )
    size = (model_dir / WEIGHTS).stat().st_size
    assert seen[WEIGHTS] == (size, size)


def test_command_registers_a_good_directory(db, model_dir, capsys):
    call_command("register_model", "RoentGen-v2", "2.0", str(model_dir))
    assert "Registered RoentGen-v2 2.0" in capsys.readouterr().out
    assert ModelVersion.objects.get(name="RoentGen-v2", version="2.0").files.exists()


def test_command_refuses_a_directory_that_is_not_a_pipeline(db, tmp_path):
    (tmp_path / "notes.txt").write_text("not a model")
    with pytest.raises(CommandError, match="not a diffusers pipeline: it has no model_index.json"):
        call_command("register_model", "Broken", "1", str(tmp_path))
    assert not ModelVersion.objects.exists()


def test_command_refuses_a_missing_directory(db, tmp_path):
    with pytest.raises(CommandError, match="is not a directory"):
        call_command("register_model", "Broken", "1", str(tmp_path / "nowhere"))


def test_directory_missing_a_component_is_refused(db, model_dir):
    for path in (model_dir / "vae").iterdir():
        path.unlink()
    (model_dir / "vae").rmdir()
    with pytest.raises(services.RegistrationError, match="missing the folder.*vae"):
        register_demo(model_dir)


def test_directory_with_corrupt_weights_is_refused_because_it_does_not_load(db, model_dir):
    (model_dir / WEIGHTS).write_bytes(b"\x00" * 1000)
    with pytest.raises(services.RegistrationError, match="does not load as a diffusers pipeline"):
        register_demo(model_dir)
    assert not ModelVersion.objects.exists()


def test_invalid_generation_defaults_are_refused(db, model_dir):
    (model_dir / "generation_defaults.json").write_text("{not json")
    with pytest.raises(services.RegistrationError, match="generation_defaults.json is not valid JSON"):
        register_demo(model_dir)


def test_same_name_and_version_cannot_be_registered_twice(version, model_dir):
    with pytest.raises(services.RegistrationError, match="already registered"):
        register_demo(model_dir)


# --- verification at load time -----------------------------------------------------------------


def test_unchanged_files_verify(version):
    services.verify_model_files(version)


def test_changed_content_of_same_size_is_detected(version, model_dir):
    data = bytearray((model_dir / WEIGHTS).read_bytes())
    data[-1] ^= 0xFF
    (model_dir / WEIGHTS).write_bytes(bytes(data))
    with pytest.raises(services.ModelFilesChanged, match=f"{WEIGHTS} changed content"):
        services.verify_model_files(version)


def test_changed_size_is_detected(version, model_dir):
    with (model_dir / WEIGHTS).open("ab") as handle:
        handle.write(b"extra")
    with pytest.raises(services.ModelFilesChanged, match=f"{WEIGHTS} changed size"):
        services.verify_model_files(version)


def test_missing_file_is_detected(version, model_dir):
    (model_dir / "vae/config.json").unlink()
    with pytest.raises(services.ModelFilesChanged, match="vae/config.json is missing"):
        services.verify_model_files(version)


def test_added_file_is_detected(version, model_dir):
    (model_dir / "unet/diffusion_pytorch_model.bin").write_bytes(b"other weights")
    with pytest.raises(services.ModelFilesChanged, match="unet/diffusion_pytorch_model.bin was added"):
        services.verify_model_files(version)


def test_rehash_catches_a_change_made_after_an_earlier_verification(version, model_dir):
    services.verify_model_files(version)
    data = bytearray((model_dir / WEIGHTS).read_bytes())
    data[0] ^= 0xFF
    (model_dir / WEIGHTS).write_bytes(bytes(data))
    with pytest.raises(services.ModelFilesChanged, match="changed content"):
        services.verify_model_files(version, rehash=True)


# --- demo seeding --------------------------------------------------------------------------------


def test_seed_demo_registers_the_demo_model_once(db, demo_model_dir, settings, tmp_path):
    import io
    import shutil

    from registry.demo import seed_demo

    settings.MODEL_ROOT = tmp_path / "models"
    shutil.copytree(demo_model_dir, settings.MODEL_ROOT / "demo")
    seed_demo(io.StringIO())
    seed_demo(io.StringIO())
    version = ModelVersion.objects.get()
    assert str(version) == "RoentGen-demo 1.0" and version.directory == str((settings.MODEL_ROOT / "demo").resolve())


def test_a_version_without_a_manifest_is_refused_at_load_time(db, model_dir):
    legacy = ModelVersion.objects.create(name="Legacy", version="0", directory=str(model_dir))
    with pytest.raises(services.ModelFilesChanged, match="no manifest"):
        services.verify_model_files(legacy)
