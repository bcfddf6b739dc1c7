"""manage.py screen_images: any file against a model version's real index, nothing stored."""

import json
import shutil
from io import StringIO

import numpy as np
import pydicom
import pytest
from django.core.management import CommandError, call_command
from PIL import Image
from pydicom.dataset import FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from cxr_platform.audit.models import AuditEvent
from screening import imaging
from screening.models import ScreeningRecord

pytestmark = pytest.mark.django_db


def _label(index) -> str:
    version = index.model_version
    return f"{version.name}:{version.version}"


def _run(index, *files) -> tuple[list[dict], CommandError | None]:
    out = StringIO()
    error = None
    try:
        call_command("screen_images", "--model-version", _label(index), *[str(f) for f in files], stdout=out)
    except CommandError as exc:
        error = exc
    lines = [json.loads(line) for line in out.getvalue().splitlines() if line.strip()]
    return lines, error


def _write_dicom(path, pixels: np.ndarray, *, monochrome1=False):
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1.1"
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = pydicom.Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel, ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 1, 16, 12, 11, 0
    ds.PhotometricInterpretation = "MONOCHROME1" if monochrome1 else "MONOCHROME2"
    ds.PixelData = np.rint(pixels).astype(np.uint16).tobytes()
    ds.save_as(path, enforce_file_format=True)


@pytest.fixture
def files(tmp_path, screening_split):
    """A training image copied under another name, a held-out image, and the same training image as a
    16-bit PNG and as a DICOM file (12 bits stored), plus a corrupt file."""
    train, holdout = screening_split
    original = imaging.list_images(train)[5]
    array = np.nan_to_num(imaging.load_gray(original), nan=0.0)
    found = {
        "copy": tmp_path / "found-online.png",
        "holdout": tmp_path / "holdout.png",
        "sixteen": tmp_path / "sixteen-bit.png",
        "dicom": tmp_path / "scan.dcm",
        "corrupt": tmp_path / "corrupt.png",
        "original": original,
    }
    shutil.copyfile(original, found["copy"])
    shutil.copyfile(imaging.list_images(holdout)[2], found["holdout"])
    Image.fromarray((array * 65535).astype(np.uint16)).save(found["sixteen"])
    _write_dicom(found["dicom"], array * 4095)
    found["corrupt"].write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)
    return found


def test_a_copy_of_a_training_image_is_flagged_and_a_held_out_one_is_not(demo_screening_index, files):
    events = AuditEvent.objects.count()
    lines, error = _run(demo_screening_index, files["copy"], files["holdout"])
    assert error is None
    copy, holdout = lines
    assert copy["file"] == str(files["copy"]) and holdout["file"] == str(files["holdout"])
    assert copy["flagged"] is True and copy["decision"] == "memorized"
    assert copy["score"] >= copy["threshold"] == pytest.approx(demo_screening_index.threshold, abs=1e-6)
    assert "training radiograph" in copy["reason"]
    assert copy["match"]["path"] == files["original"].name  # the operator learns which training image
    assert holdout["flagged"] is False and holdout["decision"] == "passed"
    assert holdout["score"] < holdout["threshold"] and holdout["reason"].startswith("No training radiograph")
    # Nothing stored.
    assert not ScreeningRecord.objects.exists() and AuditEvent.objects.count() == events


def test_sixteen_bit_png_and_dicom_are_read(demo_screening_index, files):
    lines, error = _run(demo_screening_index, files["sixteen"], files["dicom"])
    assert error is None, error
    for line in lines:
        assert "error" not in line, line
        assert line["flagged"] is True and line["match"]["path"] == files["original"].name


def test_an_unreadable_file_gets_an_error_line_and_a_failing_exit_after_the_others(demo_screening_index, files,
                                                                                    tmp_path):
    missing = tmp_path / "nowhere.png"
    lines, error = _run(demo_screening_index, files["corrupt"], files["copy"], missing)
    assert [line["file"] for line in lines] == [str(files["corrupt"]), str(files["copy"]), str(missing)]
    assert "error" in lines[0] and "flagged" not in lines[0]
    assert lines[1]["flagged"] is True
    assert "error" in lines[2]
    assert error is not None and "2 of 3" in str(error)


def test_the_exit_status_is_non_zero(demo_screening_index, files):
    lines, error = _run(demo_screening_index, files["corrupt"])
    assert "error" in lines[0]
    assert error is not None and error.returncode == 1  # manage.py exits with it


def test_a_model_version_without_an_index_or_an_unknown_one_is_refused(demo_model_version, files):
    with pytest.raises(CommandError, match="build_screening_index"):
        call_command("screen_images", "--model-version", f"{demo_model_version.name}:{demo_model_version.version}",
                     str(files["copy"]), stdout=StringIO())
    with pytest.raises(CommandError, match="No model version"):
        call_command("screen_images", "--model-version", "nothing:0", str(files["copy"]), stdout=StringIO())
