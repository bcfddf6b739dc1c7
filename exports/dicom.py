"""One synthetic image as a DICOM Secondary Capture instance.

Pure functions, no database access: :func:`image_dataset` takes the facts of one image
(an :class:`ImageFacts`) and its 8-bit pixels and returns a pydicom Dataset that

* is a Secondary Capture Image (1.2.840.10008.5.1.4.1.1.7), 8-bit MONOCHROME2, Explicit VR
  Little Endian (or RLE Lossless when ``transfer_syntax="rle"``);
* says it is synthetic in every way the standard offers: Synthetic Data (0008,001C) YES,
  Conversion Type SYN, Image Type DERIVED\\SECONDARY, Burned In Annotation NO, a Contributing
  Equipment item with purpose (109100, DCM, "Synthesizing Equipment") naming the model, and
  "SYNTHETIC" in Patient's Name, Patient ID and every description;
* carries demographics in standard attributes and provenance (prompt, seed, sampling) in a
  private block with its own Private Creator;
* has UIDs derived from the export identity (``2.25.`` + UUID5), so re-exporting gives the
  same UIDs.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, PYDICOM_IMPLEMENTATION_UID, RLELossless, SecondaryCaptureImageStorage

PRIVATE_GROUP = 0x0011
PRIVATE_CREATOR = "CXR-PLATFORM SYNTHESIS 1"
# Private element offsets (element = 0x10xx once the block is reserved at 0x10).
PRIVATE_ELEMENTS = {
    "model_name": (0x01, "LO"),
    "model_version": (0x02, "LO"),
    "prompt": (0x03, "UT"),
    "seed": (0x04, "LO"),
    "sampling": (0x05, "UT"),
    "cohort_id": (0x06, "LO"),
    "image_index": (0x07, "LO"),
    "findings": (0x08, "UT"),
    "screening_score": (0x09, "LO"),
}
SYNTHESIZING_EQUIPMENT = ("109100", "DCM", "Synthesizing Equipment")
UID_NAMESPACE = uuid.UUID("5d0b1f0e-6c37-4c55-9a43-7e2f3c1b8a10")  # fixed: changing it changes every UID
TRANSFER_SYNTAXES = {"explicit": ExplicitVRLittleEndian, "rle": RLELossless}
MANUFACTURER = "cxr-platform"


def reproducible_uid(*parts) -> str:
    """``2.25.`` + the integer of a UUID5 over ``parts``: the same parts give the same UID."""
    name = "/".join(str(p) for p in parts)
    return f"2.25.{uuid.uuid5(UID_NAMESPACE, name).int}"


def dicom_age(age) -> str:
    """Patient's Age (AS): ``048Y``; clamped to what AS can say."""
    try:
        years = int(age)
    except (TypeError, ValueError):
        return ""
    return f"{max(0, min(years, 999)):03d}Y"


def dicom_text(value, limit: int | None = None) -> str:
    """ASCII text without backslashes (value separators), cut to ``limit`` characters."""
    text = str(value if value is not None else "").encode("ascii", "replace").decode("ascii")
    text = text.replace("\\", "/").replace("\r", " ").replace("\n", " ").strip()
    return text[:limit].rstrip() if limit else text


@dataclass(frozen=True)
class ImageFacts:
    """What one exported image says about itself."""

    namespace: str  # deployment-wide UID namespace (settings.EXPORT_UID_NAMESPACE)
    model_version_id: int
    model_name: str
    model_version: str
    cohort_id: int
    cohort_name: str
    image_id: int
    index: int
    seed: int
    prompt: str
    demographics: dict
    findings: list
    sampling: dict
    created: datetime  # study date/time (the cohort's creation)
    screening_score: float | None = None
    impression: str = ""
    extra: dict = field(default_factory=dict)

    @property
    def patient_id(self) -> str:
        return f"SYNTHETIC-C{self.cohort_id}-{self.index:06d}"

    @property
    def patient_name(self) -> str:
        return f"SYNTHETIC^C{self.cohort_id}P{self.index:06d}"

    # The three UIDs below are cached: each is a UUID5, asked for several times per exported file.
    def uid(self, kind: str) -> str:
        return reproducible_uid(self.namespace, "mv", self.model_version_id, "cohort", self.cohort_id, "image",
                                self.image_id, kind)

    @cached_property
    def study_uid(self) -> str:
        return self.uid("study")

    @cached_property
    def series_uid(self) -> str:
        return self.uid("series")

    @cached_property
    def sop_instance_uid(self) -> str:
        return self.uid("instance")


def _model_label(facts: ImageFacts) -> str:
    return f"{facts.model_name} {facts.model_version}"


def image_dataset(facts: ImageFacts, pixels: np.ndarray, *, transfer_syntax: str = "explicit") -> Dataset:
    """The DICOM dataset (with file meta) for one synthetic image. ``pixels``: 2-D uint8."""
    if pixels.ndim != 2:
        raise ValueError("pixels must be a 2-D grayscale array")
    pixels = np.ascontiguousarray(pixels, dtype=np.uint8)
    ts_uid = TRANSFER_SYNTAXES[transfer_syntax]
    demographics = facts.demographics or {}
    sex = str(demographics.get("sex", "")).upper()
    view = str(demographics.get("view", "")).upper()
    date = facts.created.strftime("%Y%m%d")
    time = facts.created.strftime("%H%M%S")
    label = _model_label(facts)
    sop_uid = facts.sop_instance_uid

    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    ds.file_meta.MediaStorageSOPInstanceUID = sop_uid
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    ds.file_meta.ImplementationVersionName = "CXR_PLATFORM_1"

    # SOP Common
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.SOPClassUID = SecondaryCaptureImageStorage
    ds.SOPInstanceUID = sop_uid
    ds.InstanceCreationDate = date
    ds.InstanceCreationTime = time
    # General Image / SC Image
    ds.ImageType = ["DERIVED", "SECONDARY"]
    ds.StudyDate = date
    ds.ContentDate = date
    ds.StudyTime = time
    ds.ContentTime = time
    ds.AccessionNumber = ""
    ds.Modality = "OT"
    ds.ConversionType = "SYN"
    ds.Manufacturer = MANUFACTURER
    ds.ReferringPhysicianName = ""
    ds.StudyDescription = dicom_text(f"SYNTHETIC chest X-ray, cohort {facts.cohort_id}", 64)
    ds.SeriesDescription = dicom_text(f"SYNTHETIC {label}", 64)
    ds.ManufacturerModelName = dicom_text(facts.model_name, 64)
    ds.DerivationDescription = dicom_text(
        f"SYNTHETIC image generated by {label} from a text prompt; not a real patient", 1024
    )
    # Patient
    ds.PatientName = facts.patient_name
    ds.PatientID = facts.patient_id
    ds.PatientBirthDate = ""
    ds.PatientSex = sex if sex in ("M", "F") else "O"
    ds.PatientAge = dicom_age(demographics.get("age"))
    race = demographics.get("race")
    if race:
        ds.EthnicGroup = dicom_text(race, 16).strip()
    ds.PatientComments = "SYNTHETIC patient, not a real person"
    ds.BodyPartExamined = "CHEST"
    ds.SoftwareVersions = dicom_text(facts.model_version, 64)
    ds.ViewPosition = view if view in ("PA", "AP", "LL", "RL", "LATERAL") else ""
    # Study / series
    ds.StudyInstanceUID = facts.study_uid
    ds.SeriesInstanceUID = facts.series_uid
    ds.StudyID = dicom_text(f"C{facts.cohort_id}", 16)
    ds.SeriesNumber = 1
    ds.InstanceNumber = 1
    ds.PatientOrientation = ["L", "F"]  # conventional chest display: patient's left on the right, feet down
    ds.BurnedInAnnotation = "NO"
    ds.LossyImageCompression = "00"
    ds.ImageComments = dicom_text(f"SYNTHETIC - not for clinical use. Generated by {label}.", 10240)
    ds.SyntheticData = "YES"
    # SC Equipment
    ds.SecondaryCaptureDeviceManufacturer = MANUFACTURER
    ds.SecondaryCaptureDeviceManufacturerModelName = dicom_text(facts.model_name, 64)
    ds.SecondaryCaptureDeviceSoftwareVersions = dicom_text(facts.model_version, 64)
    # Contributing Equipment: the synthesizing model.
    purpose = Dataset()
    purpose.CodeValue, purpose.CodingSchemeDesignator, purpose.CodeMeaning = SYNTHESIZING_EQUIPMENT
    equipment = Dataset()
    equipment.PurposeOfReferenceCodeSequence = [purpose]
    equipment.Manufacturer = MANUFACTURER
    equipment.ManufacturerModelName = dicom_text(facts.model_name, 64)
    equipment.SoftwareVersions = dicom_text(facts.model_version, 64)
    equipment.ContributionDateTime = facts.created.strftime("%Y%m%d%H%M%S")
    equipment.ContributionDescription = dicom_text(f"SYNTHETIC image synthesized by {label}", 64)
    ds.ContributingEquipmentSequence = [equipment]
    # Image Pixel
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = pixels.shape
    ds.BitsAllocated = 8
    ds.BitsStored = 8
    ds.HighBit = 7
    ds.PixelRepresentation = 0
    # Provenance in a private block.
    block = ds.private_block(PRIVATE_GROUP, PRIVATE_CREATOR, create=True)
    values = {
        "model_name": dicom_text(facts.model_name, 64),
        "model_version": dicom_text(facts.model_version, 64),
        "prompt": dicom_text(facts.prompt),
        "seed": str(facts.seed),
        "sampling": json.dumps(facts.sampling, sort_keys=True),
        "cohort_id": str(facts.cohort_id),
        "image_index": str(facts.index),
        "findings": json.dumps(list(facts.findings)),
    }
    if facts.screening_score is not None:
        values["screening_score"] = f"{facts.screening_score:.6g}"
    for key, value in values.items():
        offset, vr = PRIVATE_ELEMENTS[key]
        block.add_new(offset, vr, value)

    if ts_uid == ExplicitVRLittleEndian:
        ds.PixelData = pixels.tobytes()
        ds["PixelData"].VR = "OB"
    else:
        # pydicom gives a compressed dataset a new random SOP Instance UID unless told not to; the
        # UID must stay the reproducible one that the manifest and the DICOMDIR name.
        ds.compress(ts_uid, pixels, encoding_plugin="pydicom", generate_instance_uid=False)
    return ds


def read_private(ds: Dataset) -> dict:
    """The provenance private block of an exported dataset, as a dict."""
    block = ds.private_block(PRIVATE_GROUP, PRIVATE_CREATOR)
    out = {}
    for key, (offset, _vr) in PRIVATE_ELEMENTS.items():
        if block.get_tag(offset) in ds:
            out[key] = str(block[offset].value)
    return out
