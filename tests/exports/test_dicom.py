"""One image as a DICOM Secondary Capture dataset (no database)."""

from datetime import UTC, datetime

import numpy as np
import pytest
from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage

from exports.dicom import ImageFacts, dicom_age, image_dataset, read_private


def facts(**overrides) -> ImageFacts:
    data = dict(namespace="test", model_version_id=7, model_name="RoentGen-demo", model_version="1.0", cohort_id=12,
                cohort_name="Effusion", image_id=99, index=3, seed=2**62 + 5,
                prompt="48 year old ASIAN female. Small left pleural effusion.",
                demographics={"age": 48, "sex": "F", "race": "NATIVE HAWAIIAN OR OTHER PACIFIC ISLANDER", "view": "AP"},
                findings=["pleural_effusion"], sampling={"steps": 2, "guidance_scale": 4.0},
                created=datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC), screening_score=0.4321)
    data.update(overrides)
    return ImageFacts(**data)


PIXELS = np.arange(64 * 48, dtype=np.uint32).reshape(48, 64).astype(np.uint8)


def test_uids_are_reproducible_uuid5_under_2_25():
    first, again, other = facts(), facts(), facts(image_id=100)
    assert first.sop_instance_uid == again.sop_instance_uid
    assert first.study_uid == again.study_uid and first.series_uid == again.series_uid
    assert first.sop_instance_uid.startswith("2.25.") and len(first.sop_instance_uid) <= 64
    assert len({first.sop_instance_uid, first.study_uid, first.series_uid, other.sop_instance_uid}) == 4
    assert facts(model_version_id=8).sop_instance_uid != first.sop_instance_uid


def test_dataset_is_secondary_capture_8bit_monochrome2_explicit_le():
    ds = image_dataset(facts(), PIXELS)
    assert ds.SOPClassUID == SecondaryCaptureImageStorage
    assert ds.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
    assert (ds.PhotometricInterpretation, ds.BitsAllocated, ds.BitsStored, ds.SamplesPerPixel) == ("MONOCHROME2", 8, 8, 1)
    assert (ds.Rows, ds.Columns) == (48, 64)
    assert np.array_equal(ds.pixel_array, PIXELS)


def test_dataset_is_marked_synthetic_every_way():
    ds = image_dataset(facts(), PIXELS)
    assert ds.SyntheticData == "YES"
    assert ds.ConversionType == "SYN"
    assert list(ds.ImageType) == ["DERIVED", "SECONDARY"]
    assert ds.BurnedInAnnotation == "NO"
    item = ds.ContributingEquipmentSequence[0]
    code = item.PurposeOfReferenceCodeSequence[0]
    assert (code.CodeValue, code.CodingSchemeDesignator, code.CodeMeaning) == ("109100", "DCM", "Synthesizing Equipment")
    assert item.ManufacturerModelName == "RoentGen-demo" and item.SoftwareVersions == "1.0"
    for text in (str(ds.PatientName), ds.PatientID, ds.StudyDescription, ds.SeriesDescription, ds.ImageComments,
                 ds.DerivationDescription):
        assert "SYNTHETIC" in text


def test_demographics_and_chest_attributes():
    ds = image_dataset(facts(), PIXELS)
    assert ds.PatientSex == "F"
    assert ds.PatientAge == "048Y"
    assert ds.EthnicGroup == "NATIVE HAWAIIAN"  # cut to SH's 16 characters
    assert ds.BodyPartExamined == "CHEST" and ds.ViewPosition == "AP"
    assert list(ds.PatientOrientation) == ["L", "F"]
    assert ds.StudyDate == "20260102" and ds.StudyTime == "030405"
    assert ds.ManufacturerModelName == "RoentGen-demo" and ds.SoftwareVersions == "1.0"


@pytest.mark.parametrize("age, expected", [(48, "048Y"), (5, "005Y"), (1200, "999Y"), (None, "")])
def test_patient_age_format(age, expected):
    assert dicom_age(age) == expected


def test_provenance_in_private_block():
    ds = image_dataset(facts(), PIXELS)
    private = read_private(ds)
    assert private["prompt"] == "48 year old ASIAN female. Small left pleural effusion."
    assert private["seed"] == str(2**62 + 5)
    assert '"guidance_scale": 4.0' in private["sampling"]
    assert private["model_name"] == "RoentGen-demo" and private["model_version"] == "1.0"
    assert private["screening_score"] == "0.4321"
    assert ds[0x0011, 0x0010].value == "CXR-PLATFORM SYNTHESIS 1"


def test_rle_lossless_keeps_pixels_exactly():
    ds = image_dataset(facts(), PIXELS, transfer_syntax="rle")
    assert ds.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.5"
    assert np.array_equal(ds.pixel_array, PIXELS)


@pytest.mark.parametrize("overrides", [
    {},
    {"demographics": {"age": 7, "sex": "M", "view": "PA"}, "screening_score": None, "prompt": "é odd\\length"},
    {"index": 12345, "findings": [], "sampling": {}, "demographics": {}},
])
def test_fast_encoder_writes_exactly_what_pydicom_writes(overrides):
    """The fast encoder is checked against the reference dataset, byte for byte."""
    import io

    from pydicom.filewriter import dcmwrite

    from exports.encoder import InstanceEncoder

    encoder = InstanceEncoder()
    encoder.encode(facts(image_id=1), PIXELS)  # constants cached from another image of the export
    pixels = PIXELS[:, :63]  # odd length
    expected = io.BytesIO()
    dcmwrite(expected, image_dataset(facts(**overrides), pixels), enforce_file_format=True)
    assert encoder.encode(facts(**overrides), pixels) == expected.getvalue()


@pytest.mark.parametrize("transfer_syntax", ["explicit", "rle"])
def test_fast_directory_records_match_pydicoms_record_creators(transfer_syntax):
    from exports.dicomdir import encoded_records
    from exports.encoder import InstanceEncoder

    encoder = InstanceEncoder(transfer_syntax)
    encoder.directory_records(facts(image_id=1), ("PT000001", "ST000000", "SE000000", "IM000000"))  # cached
    file_id = ("PT000003", "ST000000", "SE000000", "IM000000")
    ds = image_dataset(facts(), PIXELS, transfer_syntax=transfer_syntax)
    assert encoder.directory_records(facts(), file_id) == encoded_records(ds, file_id)
