"""cxr models download: the Weights tier's files, resumable and checked against their SHA-256."""

from pathlib import Path

from cxr_platform.audit.models import AuditEvent

from .conftest import api_user


def test_without_the_weights_tier_the_download_is_refused_plainly(cxr, demo_model_version, tmp_path):
    _, token = api_user("export")
    cxr.login(token)
    newest = cxr("models", "download", "--dir", tmp_path)
    assert newest.code == 4 and "Weights tier" in newest.stderr
    named = cxr("models", "download", demo_model_version.pk, "--dir", tmp_path)
    assert named.code == 4
    assert "does not include downloading the weights" in named.stderr and "HTTP 403" in named.stderr
    assert not AuditEvent.objects.filter(action="weights.download_started").exists()


def test_a_weights_holder_gets_every_file_verified_resuming_a_partial_one(cxr, demo_model_version, demo_model_dir,
                                                                         tmp_path):
    _, token = api_user("weights")
    files = {f.path: f for f in demo_model_version.files.all()}
    largest = max(files.values(), key=lambda f: f.size)
    folder = tmp_path / "weights" / "RoentGen-demo-1.0"
    partial = folder / f"{largest.path}.part"
    partial.parent.mkdir(parents=True)
    kept = largest.size // 3
    partial.write_bytes((Path(demo_model_dir) / largest.path).read_bytes()[:kept])
    cxr.login(token)
    result = cxr("models", "download", "--dir", tmp_path / "weights", "--json")
    assert result.code == 0, result.stderr
    report = {entry["path"]: entry for entry in result.json()["files"]}
    assert len(report) == len(files)
    for path, model_file in files.items():
        assert (folder / path).read_bytes() == (Path(demo_model_dir) / path).read_bytes()
        assert report[str(folder / path)]["sha256"] == model_file.sha256
    assert report[str(folder / largest.path)]["resumed_from"] == kept
    first_bytes = {e.details["file"]: e.details["first_byte"] for e in AuditEvent.objects.filter(
        action="weights.download_started")}
    assert first_bytes[largest.path] == kept
    assert (folder / "sha256sums").read_text().count("\n") == len(files)
