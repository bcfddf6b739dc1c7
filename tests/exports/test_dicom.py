"""One image as a DICOM Secondary Capture dataset (no database)."""

from datetime import UTC, datetime

import numpy as np
import pytest
from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage

from exports.dicom import ImageFacts, dicom_age, image_dataset, read_private


def facts(**overrides) -> ImageFacts:
    data = dict(namespace="test", installation="AB12CD34", model_version_id=7, model_name="RoentGen-demo", model_version="1.0", cohort_id=12,
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
    assert ds.BodyPartExamined == "CHEST"
    assert list(ds.PatientOrientation) == ["L", "F"]
    assert ds.StudyDate == "20260102" and ds.StudyTime == "030405"
    assert ds.ManufacturerModelName == "RoentGen-demo" and ds.SoftwareVersions == "1.0"


def test_view_goes_to_the_private_block_not_to_view_position():
    """View Position (0018,5101) is not part of the Secondary Capture IOD."""
    ds = image_dataset(facts(), PIXELS)
    assert "ViewPosition" not in ds
    assert read_private(ds)["view"] == "AP"


@pytest.mark.parametrize("view, expected", [("PA", ["L", "F"]), ("AP", ["L", "F"]), ("LATERAL", ["P", "F"]),
                                            ("LL", ["P", "F"])])
def test_patient_orientation_follows_the_view(view, expected):
    ds = image_dataset(facts(demographics={"age": 50, "sex": "M", "view": view}), PIXELS)
    assert list(ds.PatientOrientation) == expected


def test_times_carry_their_offset_from_utc():
    ds = image_dataset(facts(), PIXELS)
    assert ds.TimezoneOffsetFromUTC == "+0000"
    assert ds.ContributingEquipmentSequence[0].ContributionDateTime == "20260102030405+0000"


@pytest.mark.parametrize("age, expected", [(48, "048Y"), (5, "005Y"), (89, "089Y"), (90, "090Y"), (91, "090Y"),
                                           (1200, "090Y"), (None, "")])
def test_patient_age_format(age, expected):
    assert dicom_age(age) == expected


def test_ninety_and_over_is_explained_in_image_comments():
    ds = image_dataset(facts(demographics={"age": 91, "sex": "F", "view": "PA"}), PIXELS)
    assert ds.PatientAge == "090Y"
    assert "90 years or older" in ds.ImageComments
    assert "90+ y" in ds.SeriesDescription
    assert "older" not in image_dataset(facts(), PIXELS).ImageComments


def test_accented_text_arrives_unchanged_in_utf8(tmp_path):
    """Free text may be any language: UTF-8 is declared and written, so nothing turns into '?'."""
    import pydicom

    name, impression = "Cardiomégalie légère — 心脏", "48 year old ASIAN female. Cardiomégalie légère."
    path = tmp_path / "x.dcm"
    image_dataset(facts(cohort_name=name, prompt=impression), PIXELS).save_as(path, enforce_file_format=True)
    raw = path.read_bytes()
    assert "Cardiomégalie légère".encode("utf-8") in raw and b"Cardiom?galie" not in raw
    ds = pydicom.dcmread(path)
    assert ds.SpecificCharacterSet == "ISO_IR 192"
    assert read_private(ds)["prompt"] == impression
    assert name[:20] in ds.StudyDescription and name[:20] in ds.ClinicalTrialProtocolName


def test_the_cohort_is_one_clinical_trial_protocol():
    first, other = image_dataset(facts(), PIXELS), image_dataset(facts(image_id=100, index=4), PIXELS)
    assert first.ClinicalTrialProtocolID == other.ClinicalTrialProtocolID == "CXR-AB12CD34-C12"
    assert first.ClinicalTrialSponsorName == "cxr-platform synthetic data"
    assert first.ClinicalTrialSubjectID == first.PatientID != other.PatientID
    assert first.SeriesDescription == "SYNTHETIC CXR AP, 48 y F, pleural effusion"


def test_patient_ids_name_the_installation():
    assert facts().patient_id == "SYNTHETIC-AB12CD34-C12-000003"
    assert facts(installation="FFFF0000").patient_id != facts().patient_id


def test_provenance_in_private_block():
    ds = image_dataset(facts(), PIXELS)
    private = read_private(ds)
    assert private["prompt"] == "48 year old ASIAN female. Small left pleural effusion."
    assert private["seed"] == str(2**62 + 5)
    assert '"guidance_scale": 4.0' in private["sampling"]
    assert private["model_name"] == "RoentGen-demo" and private["model_version"] == "1.0"
    assert private["screening_score"] == "0.4321"
    assert ds[0x0011, 0x0010].value == "CXR-PLATFORM SYNTHESIS 1"


@pytest.mark.parametrize("transfer_syntax, uid", [("rle", "1.2.840.10008.1.2.5"), ("jpegls", "1.2.840.10008.1.2.4.80")])
def test_compressed_syntaxes_keep_pixels_exactly(transfer_syntax, uid):
    ds = image_dataset(facts(), PIXELS, transfer_syntax=transfer_syntax)
    assert ds.file_meta.TransferSyntaxUID == uid
    assert np.array_equal(ds.pixel_array, PIXELS)


def test_jpeg_ls_shrinks_a_radiograph(cxr_public_dir):
    """The compressed choice must actually compress: at least 1.5x on a real chest X-ray."""
    from PIL import Image

    with Image.open(sorted((cxr_public_dir / "images").glob("nih_*.png"))[0]) as picture:
        pixels = np.asarray(picture.convert("L").resize((256, 256)))
    raw = len(image_dataset(facts(), pixels).PixelData)
    compressed = len(image_dataset(facts(), pixels, transfer_syntax="jpegls").PixelData)
    assert raw / compressed >= 1.5


@pytest.mark.parametrize("transfer_syntax", ["explicit", "jpegls", "rle"])
@pytest.mark.parametrize("overrides", [
    {},
    {"demographics": {"age": 91, "sex": "M", "view": "PA"}, "screening_score": None, "prompt": "é odd\\length 心"},
    {"index": 12345, "findings": [], "sampling": {}, "demographics": {}},
    {"cohort_name": "Épanchement — 心脏", "model_name": "RöntGen"},
])
def test_fast_encoder_writes_exactly_what_pydicom_writes(overrides, transfer_syntax):
    """The fast encoder is checked against the reference dataset, byte for byte."""
    import io

    from pydicom.filewriter import dcmwrite

    from exports.encoder import InstanceEncoder

    encoder = InstanceEncoder(transfer_syntax)
    encoder.encode(facts(image_id=1), PIXELS)  # constants cached from another image of the export
    pixels = PIXELS[:, :63]  # odd length
    expected = io.BytesIO()
    dcmwrite(expected, image_dataset(facts(**overrides), pixels, transfer_syntax=transfer_syntax),
             enforce_file_format=True)
    assert encoder.encode(facts(**overrides), pixels) == expected.getvalue()


@pytest.mark.parametrize("transfer_syntax", ["explicit", "jpegls", "rle"])
def test_fast_directory_records_match_pydicoms_record_creators(transfer_syntax):
    from exports.dicomdir import encoded_records
    from exports.encoder import InstanceEncoder

    encoder = InstanceEncoder(transfer_syntax)
    named = {"cohort_name": "Épanchement — 心脏"}
    encoder.directory_records(facts(image_id=1, **named), ("PT000001", "ST000000", "SE000000", "IM000000"))  # cached
    file_id = ("PT000003", "ST000000", "SE000000", "IM000000")
    ds = image_dataset(facts(**named), PIXELS, transfer_syntax=transfer_syntax)
    assert encoder.directory_records(facts(**named), file_id) == encoded_records(ds, file_id)
