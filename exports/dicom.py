"""One synthetic image as a DICOM Secondary Capture instance.

Pure functions, no database access: :func:`image_dataset` takes the facts of one image
(an :class:`ImageFacts`) and its 8-bit pixels and returns a pydicom Dataset that

* is a Secondary Capture Image (1.2.840.10008.5.1.4.1.1.7), 8-bit MONOCHROME2, Explicit VR
  Little Endian, JPEG-LS Lossless (``transfer_syntax="jpegls"``, CharLS through imagecodecs) or RLE
  Lossless (``"rle"``, pylibjpeg-rle's compiled encoder);
* says it is synthetic in every way the standard offers: Synthetic Data (0008,001C) YES,
  Conversion Type SYN, Image Type DERIVED\\SECONDARY, Burned In Annotation NO, a Contributing
  Equipment item with purpose (109100, DCM, "Synthesizing Equipment") naming the model, and
  "SYNTHETIC" in Patient's Name, Patient ID and every description;
* carries demographics in standard attributes and provenance (prompt, seed, sampling) in a
  private block with its own Private Creator;
* has UIDs derived from this installation's identity and the image (``2.25.`` + UUID5), so
  re-exporting gives the same UIDs and no two deployments ever share one;
* keeps free text exactly (UTF-8, ``ISO_IR 192``), and groups the cohort for PACS users with the
  Clinical Trial Subject / Study / Series attributes (sponsor ``cxr-platform``, one protocol ID per
  cohort).
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property

import imagecodecs
import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.pixels import get_encoder
from pydicom.uid import (
    PYDICOM_IMPLEMENTATION_UID,
    ExplicitVRLittleEndian,
    JPEGLSLossless,
    RLELossless,
    SecondaryCaptureImageStorage,
)

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
    "view": (0x0A, "CS"),  # View Position belongs to DX/CR, not to the Secondary Capture IOD
}
SYNTHESIZING_EQUIPMENT = ("109100", "DCM", "Synthesizing Equipment")
UID_NAMESPACE = uuid.UUID("5d0b1f0e-6c37-4c55-9a43-7e2f3c1b8a10")  # fixed: changing it changes every UID
TRANSFER_SYNTAXES = {"explicit": ExplicitVRLittleEndian, "jpegls": JPEGLSLossless, "rle": RLELossless}
TRANSFER_SYNTAX_NAMES = {"explicit": "Explicit VR Little Endian (uncompressed)",
                         "jpegls": "JPEG-LS Lossless (about 3x smaller)",
                         "rle": "RLE Lossless (no smaller for radiographs)"}
# Compiled codecs only: pydicom's own RLE encoder is pure Python (~100 ms per 512² image).
ENCODING_PLUGINS = {"rle": "pylibjpeg"}
MANUFACTURER = "cxr-platform"
CHARACTER_SET = "ISO_IR 192"  # UTF-8: prompts, impressions and cohort names arrive unchanged
SPONSOR = "cxr-platform synthetic data"
OLDEST_AGE = 90  # MIMIC-CXR records everyone over 89 as 91: the age says "90 or older", no more
OLDEST_AGE_NOTE = "Patient's Age 090Y means 90 years or older (MIMIC-CXR does not record exact ages over 89)."
# Patient Orientation as the image is conventionally displayed: frontal views with the patient's
# left on the viewer's right, laterals with the patient facing the viewer's left.
ORIENTATIONS = {"PA": ("L", "F"), "AP": ("L", "F"), "LL": ("P", "F"), "RL": ("P", "F"), "LATERAL": ("P", "F")}


def reproducible_uid(*parts) -> str:
    """``2.25.`` + the integer of a UUID5 over ``parts``: the same parts give the same UID."""
    name = "/".join(str(p) for p in parts)
    return f"2.25.{uuid.uuid5(UID_NAMESPACE, name).int}"


def dicom_age(age) -> str:
    """Patient's Age (AS): ``048Y``; 90 and over (MIMIC's "91") is ``090Y``, explained in Image
    Comments and the data card."""
    try:
        years = int(age)
    except (TypeError, ValueError):
        return ""
    return f"{max(0, min(years, OLDEST_AGE)):03d}Y"


def is_oldest_age(age) -> bool:
    try:
        return int(age) >= OLDEST_AGE
    except (TypeError, ValueError):
        return False


_CONTROL = {c: " " for c in range(32)} | {0x7F: " ", ord("\\"): "/"}


def dicom_text(value, limit: int | None = None) -> str:
    """Text as it was (UTF-8 is declared), without backslashes (value separators) or control
    characters, cut to ``limit`` characters."""
    text = str(value if value is not None else "").translate(_CONTROL).strip()
    return text[:limit].rstrip() if limit else text


def protocol_id(installation: str, cohort_id: int) -> str:
    """Clinical Trial Protocol ID: what finds a whole cohort in a PACS."""
    return f"CXR-{installation}-C{cohort_id}"


def orientation(view: str) -> list[str]:
    return list(ORIENTATIONS.get(view, ("L", "F")))


def timezone_offset(moment: datetime) -> str:
    """Timezone Offset From UTC (0008,0201) of ``moment``: ``+0000``."""
    offset = moment.utcoffset()
    minutes = int(offset.total_seconds() // 60) if offset is not None else 0
    sign = "-" if minutes < 0 else "+"
    return f"{sign}{abs(minutes) // 60:02d}{abs(minutes) % 60:02d}"


def compressed_pixel_data(pixels: np.ndarray, transfer_syntax: str) -> bytes:
    """The encapsulated Pixel Data items (an empty basic offset table, one fragment) of one 8-bit
    frame in ``transfer_syntax``, encoded by a compiled codec; the writer adds the sequence
    delimiter."""
    if transfer_syntax == "jpegls":
        # CharLS through imagecodecs: ~5 ms per 512² image and the GIL released while it runs
        # (pyjpegls, pydicom's own plugin, holds it: the encoder threads would run one at a time).
        frame = imagecodecs.jpegls_encode(np.ascontiguousarray(pixels), level=0)
    else:
        rows, columns = pixels.shape
        frame = get_encoder(TRANSFER_SYNTAXES[transfer_syntax]).encode(
            pixels, encoding_plugin=ENCODING_PLUGINS[transfer_syntax], rows=rows, columns=columns,
            samples_per_pixel=1, bits_allocated=8, bits_stored=8, pixel_representation=0,
            photometric_interpretation="MONOCHROME2", number_of_frames=1)
    return encapsulate([frame])


@dataclass(frozen=True)
class ImageFacts:
    """What one exported image says about itself."""

    namespace: str  # this installation's UID namespace (exports.selectors.uid_namespace)
    installation: str  # this installation's short tag (Patient IDs)
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
        return f"SYNTHETIC-{self.installation}-C{self.cohort_id}-{self.index:06d}"

    @property
    def patient_name(self) -> str:
        return f"SYNTHETIC^{self.installation}C{self.cohort_id}P{self.index:06d}"

    @property
    def protocol_id(self) -> str:
        return protocol_id(self.installation, self.cohort_id)

    @property
    def view(self) -> str:
        return str((self.demographics or {}).get("view", "")).upper()

    @property
    def series_description(self) -> str:
        """A line a person reads in a PACS worklist: ``SYNTHETIC CXR PA, 48 y F, pleural effusion``."""
        d = self.demographics or {}
        age = "90+ y" if is_oldest_age(d.get("age")) else (f"{d['age']} y" if d.get("age") is not None else "")
        who = " ".join(part for part in (age, str(d.get("sex") or "").upper()) if part)
        findings = ", ".join(str(f).replace("_", " ") for f in self.findings) or "no finding requested"
        return dicom_text(", ".join(p for p in (f"SYNTHETIC CXR {self.view}".rstrip(), who, findings) if p), 64)

    @property
    def image_comments(self) -> str:
        comments = f"SYNTHETIC - not for clinical use. Generated by {self.model_name} {self.model_version}."
        if is_oldest_age((self.demographics or {}).get("age")):
            comments += " " + OLDEST_AGE_NOTE
        return dicom_text(comments, 10240)

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
    """The DICOM dataset (with file meta) for one synthetic image. ``pixels``: 2-D uint8.

    This is the reference definition of an exported instance: exports.encoder writes the same
    bytes faster, and the tests compare the two."""
    if pixels.ndim != 2:
        raise ValueError("pixels must be a 2-D grayscale array")
    pixels = np.ascontiguousarray(pixels, dtype=np.uint8)
    ts_uid = TRANSFER_SYNTAXES[transfer_syntax]
    demographics = facts.demographics or {}
    sex = str(demographics.get("sex", "")).upper()
    date = facts.created.strftime("%Y%m%d")
    time = facts.created.strftime("%H%M%S")
    label = _model_label(facts)
    sop_uid = facts.sop_instance_uid

    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    ds.file_meta.MediaStorageSOPInstanceUID = sop_uid
    ds.file_meta.TransferSyntaxUID = ts_uid
    ds.file_meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    ds.file_meta.ImplementationVersionName = "CXR_PLATFORM_1"

    # SOP Common
    ds.SpecificCharacterSet = CHARACTER_SET
    ds.SOPClassUID = SecondaryCaptureImageStorage
    ds.SOPInstanceUID = sop_uid
    ds.InstanceCreationDate = date
    ds.InstanceCreationTime = time
    ds.TimezoneOffsetFromUTC = timezone_offset(facts.created)
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
    ds.StudyDescription = dicom_text(f"SYNTHETIC CXR cohort {facts.cohort_id}: {facts.cohort_name}", 64)
    ds.SeriesDescription = facts.series_description
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
    # Clinical Trial Subject / Study / Series: one protocol per cohort, so a PACS finds the cohort
    # as a unit (every synthetic patient is its own study, as a real patient would be).
    ds.ClinicalTrialSponsorName = SPONSOR
    ds.ClinicalTrialProtocolID = facts.protocol_id
    ds.ClinicalTrialProtocolName = dicom_text(f"SYNTHETIC cohort: {facts.cohort_name}", 64)
    ds.ClinicalTrialSiteID = facts.installation
    ds.ClinicalTrialSiteName = MANUFACTURER
    ds.ClinicalTrialSubjectID = facts.patient_id
    ds.ClinicalTrialTimePointID = ""
    ds.ClinicalTrialCoordinatingCenterName = MANUFACTURER
    ds.BodyPartExamined = "CHEST"
    ds.SoftwareVersions = dicom_text(facts.model_version, 64)
    # Study / series
    ds.StudyInstanceUID = facts.study_uid
    ds.SeriesInstanceUID = facts.series_uid
    ds.StudyID = dicom_text(f"C{facts.cohort_id}", 16)
    ds.SeriesNumber = 1
    ds.InstanceNumber = 1
    ds.PatientOrientation = orientation(facts.view)
    ds.BurnedInAnnotation = "NO"
    ds.LossyImageCompression = "00"
    ds.ImageComments = facts.image_comments
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
    equipment.ContributionDateTime = facts.created.strftime("%Y%m%d%H%M%S") + timezone_offset(facts.created)
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
    for key, value in private_values(facts).items():
        offset, vr = PRIVATE_ELEMENTS[key]
        block.add_new(offset, vr, value)

    if ts_uid == ExplicitVRLittleEndian:
        ds.PixelData = pixels.tobytes()
        ds["PixelData"].VR = "OB"
    else:
        ds.PixelData = compressed_pixel_data(pixels, transfer_syntax)
        ds["PixelData"].VR = "OB"
        ds["PixelData"].is_undefined_length = True
    return ds


def private_values(facts: ImageFacts) -> dict[str, str]:
    values = {
        "model_name": dicom_text(facts.model_name, 64),
        "model_version": dicom_text(facts.model_version, 64),
        "prompt": dicom_text(facts.prompt),
        "seed": str(facts.seed),
        "sampling": json.dumps(facts.sampling, sort_keys=True, ensure_ascii=False),
        "cohort_id": str(facts.cohort_id),
        "image_index": str(facts.index),
        "findings": json.dumps(list(facts.findings), ensure_ascii=False),
    }
    if facts.screening_score is not None:
        values["screening_score"] = f"{facts.screening_score:.6g}"
    if facts.view in ORIENTATIONS:
        values["view"] = facts.view
    return values


def read_private(ds: Dataset) -> dict:
    """The provenance private block of an exported dataset, as a dict."""
    block = ds.private_block(PRIVATE_GROUP, PRIVATE_CREATOR)
    out = {}
    for key, (offset, _vr) in PRIVATE_ELEMENTS.items():
        if block.get_tag(offset) in ds:
            out[key] = str(block[offset].value)
    return out
