"""register_qc_model: a sound TorchScript file is registered (audited); a wrong hash, a wrong output shape
or a model that raises is refused with the reason, and nothing is stored."""

import pytest
from django.core.management import CommandError, call_command

from cxr_platform.audit.models import AuditEvent
from quality.models import QCModel
from tests.quality.qc_models import ConstantAge, MeanIntensitySex, Raising, WrongShape, save


def command(model_version, path, sha256, *extra):
    args = [str(model_version.pk), "sex", str(path), "--sha256", sha256, "--predicts", "sex", "--labels", "F,M",
            "--input-size", "32", "--threshold", "0.5", *extra]
    call_command("register_qc_model", *args)


def test_a_sound_model_is_registered_and_audited(demo_model_version, tmp_path):
    path = tmp_path / "sex.pt"
    command(demo_model_version, path, save(MeanIntensitySex(cut=0.0), path))
    qc_model = QCModel.objects.get()
    assert (qc_model.predicts, qc_model.labels, qc_model.input_size) == ("sex", ["F", "M"], 32)
    event = AuditEvent.objects.get(action="qc_model.registered")
    assert event.details["sha256"] == qc_model.sha256


def test_a_file_whose_hash_does_not_match_is_refused(demo_model_version, tmp_path):
    path = tmp_path / "sex.pt"
    save(MeanIntensitySex(cut=0.0), path)
    with pytest.raises(CommandError, match="SHA-256 of sex.pt is"):
        command(demo_model_version, path, "0" * 64)
    assert not QCModel.objects.exists()


@pytest.mark.parametrize("module, message", [
    (WrongShape(), r"output has shape \(2, 3\); \(2, 2\) was declared"),
    (Raising(), "The model raised .*this QC model is broken"),
])
def test_a_model_with_the_wrong_output_shape_or_that_raises_is_refused(demo_model_version, tmp_path, module, message):
    path = tmp_path / "bad.pt"
    with pytest.raises(CommandError, match=message):
        command(demo_model_version, path, save(module, path))
    assert not QCModel.objects.exists()


def test_a_file_that_is_not_torchscript_is_refused(demo_model_version, tmp_path):
    import hashlib

    path = tmp_path / "weights.pt"
    path.write_bytes(b"not a model")
    with pytest.raises(CommandError, match="not a loadable TorchScript file"):
        command(demo_model_version, path, hashlib.sha256(b"not a model").hexdigest())


def test_an_unknown_finding_label_is_refused(demo_model_version, tmp_path):
    path = tmp_path / "findings.pt"
    sha = save(ConstantAge(50.0), path)
    with pytest.raises(CommandError, match="Unknown finding"):
        call_command("register_qc_model", str(demo_model_version.pk), "findings", str(path), "--sha256", sha,
                     "--predicts", "findings", "--labels", "dragon_scales", "--input-size", "32", "--threshold", "0.5")


def test_an_age_model_is_registered_with_its_error_in_years(demo_model_version, tmp_path):
    path = tmp_path / "age.pt"
    call_command("register_qc_model", str(demo_model_version.pk), "age", str(path), "--sha256",
                 save(ConstantAge(50.0), path), "--predicts", "age", "--input-size", "32", "--threshold", "15")
    assert QCModel.objects.get().threshold == 15
