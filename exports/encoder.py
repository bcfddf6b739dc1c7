"""Fast byte-level encoding of export instances and their DICOMDIR records.

pydicom builds and encodes a ~60-element dataset element by element in Python: several
milliseconds per file. In an export almost every element is the same for every image (model,
equipment, descriptions, dates, the Contributing Equipment sequence...), so
:class:`InstanceEncoder` encodes those once with pydicom (from the reference
:func:`exports.dicom.image_dataset`) and writes only the per-image elements (UIDs, patient,
demographics, provenance, pixels) with a minimal Explicit VR Little Endian writer. The tests
check that the bytes are identical to ``dcmwrite(image_dataset(...))``, so the reference
implementation stays the specification. Compressed syntaxes (JPEG-LS, RLE) encode the pixels with
the same compiled codec as the reference (``exports.dicom.compressed_pixel_data``).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import numpy as np
from pydicom.charset import convert_encodings
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_data_element
from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, SecondaryCaptureImageStorage

from .dicom import (
    CHARACTER_SET,
    PRIVATE_ELEMENTS,
    PRIVATE_GROUP,
    TRANSFER_SYNTAXES,
    ImageFacts,
    compressed_pixel_data,
    dicom_age,
    dicom_text,
    image_dataset,
    orientation,
    private_values,
)

_LONG_VRS = {"OB", "OD", "OF", "OL", "OV", "OW", "SQ", "UC", "UN", "UR", "UT", "SV", "UV"}
_ENCODINGS = convert_encodings([CHARACTER_SET])
_SEQ_DELIMITER = struct.pack("<HHI", 0xFFFE, 0xE0DD, 0)
_PRIVATE_BASE = (PRIVATE_GROUP << 16) | 0x1000  # block reserved at 0x10 by the private creator


def element(tag: int, vr: str, value) -> bytes:
    """One Explicit VR Little Endian element. ``value``: str (text VRs), int (US/UL) or bytes."""
    if vr == "US":
        data = struct.pack("<H", value)
    elif vr == "UL":
        data = struct.pack("<I", value)
    elif isinstance(value, bytes):
        data = value if len(value) % 2 == 0 else value + b"\x00"
    else:
        data = value.encode("utf-8")  # ISO_IR 192; identical to ASCII for UIDs, codes, dates
        if len(data) % 2:
            data += b"\x00" if vr == "UI" else b" "
    head = struct.pack("<HH", tag >> 16, tag & 0xFFFF) + vr.encode()
    if vr in _LONG_VRS:
        return head + b"\x00\x00" + struct.pack("<I", len(data)) + data
    return head + struct.pack("<H", len(data)) + data


def per_image_elements(facts: ImageFacts, rows: int, columns: int) -> list[tuple[int, str, object]]:
    """The elements that differ between the images of one export (must match image_dataset)."""
    d = facts.demographics or {}
    sex = str(d.get("sex", "")).upper()
    out: list[tuple[int, str, object]] = [
        (0x00080018, "UI", facts.sop_instance_uid),
        (0x0008103E, "LO", facts.series_description),
        (0x00100010, "PN", facts.patient_name),
        (0x00100020, "LO", facts.patient_id),
        (0x00100040, "CS", sex if sex in ("M", "F") else "O"),
        (0x00101010, "AS", dicom_age(d.get("age"))),
        (0x00120040, "LO", facts.patient_id),
        (0x0020000D, "UI", facts.study_uid),
        (0x0020000E, "UI", facts.series_uid),
        (0x00200020, "CS", "\\".join(orientation(facts.view))),
        (0x00204000, "LT", facts.image_comments),
        (0x00280010, "US", rows),
        (0x00280011, "US", columns),
    ]
    if d.get("race"):
        out.append((0x00102160, "SH", dicom_text(d.get("race"), 16).strip()))
    shared = {"model_name", "model_version", "cohort_id"}
    for key, value in private_values(facts).items():
        if key not in shared:
            offset, vr = PRIVATE_ELEMENTS[key]
            out.append((_PRIVATE_BASE | offset, vr, value))
    return out


_PER_IMAGE_TAGS = {t for t, _, _ in per_image_elements(
    ImageFacts(namespace="", installation="", model_version_id=0, model_name="", model_version="", cohort_id=0,
               cohort_name="", image_id=0, index=0, seed=0, prompt="", demographics={"race": "X", "view": "PA"},
               findings=[], sampling={}, created=__import__("datetime").datetime(2000, 1, 1), screening_score=0.0),
    1, 1)} | {0x7FE00010}


def _export_key(facts: ImageFacts) -> tuple:
    return (facts.namespace, facts.installation, facts.model_version_id, facts.model_name, facts.model_version,
            facts.cohort_id, facts.cohort_name, facts.created)


def _joined(*elements: tuple[int, str, object]) -> bytes:
    return b"".join(element(*e) for e in elements)


@dataclass(frozen=True)
class _ExportConstants:
    """The encoded bytes every instance (and every DICOMDIR record group) of one export shares."""

    dataset: list[tuple[int, bytes]]  # (tag, encoded element), excluding the per-image ones
    meta_head: bytes  # meta elements before Media Storage SOP Instance UID
    meta_tail: bytes  # meta elements after it
    patient_head: bytes
    study_head: bytes
    study_tail: bytes
    series_head: bytes
    series_tail: bytes
    image_head: bytes
    image_middle: bytes  # between the Referenced File ID and the Referenced SOP Instance UID
    image_tail: bytes


class InstanceEncoder:
    """Encodes the instances of one export and their DICOMDIR records; encodes what they all share
    once. Safe to share between threads (the cache is replaced whole, never mutated)."""

    def __init__(self, transfer_syntax: str = "explicit"):
        self.transfer_syntax = transfer_syntax
        self.transfer_syntax_uid = TRANSFER_SYNTAXES[transfer_syntax]
        self._cache: tuple[tuple, _ExportConstants] | None = None

    def _constants(self, facts: ImageFacts) -> _ExportConstants:
        key = _export_key(facts)
        cache = self._cache
        if cache is not None and cache[0] == key:
            return cache[1]
        reference = image_dataset(facts, np.zeros((1, 1), dtype=np.uint8))
        dataset = []
        for elem in reference:
            if int(elem.tag) in _PER_IMAGE_TAGS:
                continue
            fp = DicomBytesIO()
            fp.is_little_endian, fp.is_implicit_VR = True, False
            write_data_element(fp, elem, encodings=_ENCODINGS)
            dataset.append((int(elem.tag), fp.getvalue()))

        def record_start(kind: str) -> bytes:  # offsets (zero until the DICOMDIR is laid out) and type
            return _joined((0x00041400, "UL", 0), (0x00041410, "US", 0xFFFF), (0x00041420, "UL", 0),
                           (0x00041430, "CS", kind))

        charset = (0x00080005, "CS", CHARACTER_SET)

        def record_head(kind: str) -> bytes:
            return record_start(kind) + element(*charset)

        constants = _ExportConstants(
            dataset=dataset,
            meta_head=_joined((0x00020001, "OB", b"\x00\x01"), (0x00020002, "UI", SecondaryCaptureImageStorage)),
            meta_tail=_joined((0x00020010, "UI", self.transfer_syntax_uid),
                              (0x00020012, "UI", PYDICOM_IMPLEMENTATION_UID), (0x00020013, "SH", "CXR_PLATFORM_1")),
            patient_head=record_head("PATIENT"),
            study_head=record_head("STUDY") + _joined(
                (0x00080020, "DA", facts.created.strftime("%Y%m%d")), (0x00080030, "TM", facts.created.strftime("%H%M%S")),
                (0x00080050, "SH", ""),
                (0x00081030, "LO", dicom_text(f"SYNTHETIC CXR cohort {facts.cohort_id}: {facts.cohort_name}", 64))),
            study_tail=element(0x00200010, "SH", dicom_text(f"C{facts.cohort_id}", 16)),
            series_head=record_head("SERIES") + element(0x00080060, "CS", "OT"),
            series_tail=element(0x00200011, "IS", "1"),
            image_head=record_start("IMAGE"),
            image_middle=element(0x00041510, "UI", SecondaryCaptureImageStorage),
            image_tail=_joined((0x00041512, "UI", self.transfer_syntax_uid), charset, (0x00200013, "IS", "1")),
        )
        self._cache = (key, constants)
        return constants

    def encode(self, facts: ImageFacts, pixels: np.ndarray) -> bytes:
        """The complete DICOM file (preamble, meta, dataset) for one image."""
        if pixels.ndim != 2:
            raise ValueError("pixels must be a 2-D grayscale array")
        pixels = np.ascontiguousarray(pixels, dtype=np.uint8)
        constants = self._constants(facts)
        items = constants.dataset + [(tag, element(tag, vr, value))
                                     for tag, vr, value in per_image_elements(facts, *pixels.shape)]
        items.sort(key=lambda item: item[0])
        meta = constants.meta_head + element(0x00020003, "UI", facts.sop_instance_uid) + constants.meta_tail
        if self.transfer_syntax == "explicit":
            pixel_bytes = pixels.tobytes()
            pad = b"\x00" * (len(pixel_bytes) % 2)
            length = len(pixel_bytes) + len(pad)
        else:  # encapsulated: undefined length, the items, then a sequence delimiter
            pixel_bytes, pad, length = compressed_pixel_data(pixels, self.transfer_syntax), _SEQ_DELIMITER, 0xFFFFFFFF
        pixel_head = struct.pack("<HH", 0x7FE0, 0x0010) + b"OB\x00\x00" + struct.pack("<I", length)
        return b"".join((
            b"\x00" * 128, b"DICM", element(0x00020000, "UL", len(meta)), meta,
            *(encoded for _, encoded in items),
            pixel_head, pixel_bytes, pad,
        ))

    def directory_records(self, facts: ImageFacts, file_id) -> tuple[bytes, bytes, bytes, bytes]:
        """PATIENT, STUDY, SERIES and IMAGE records of one instance, encoded with zero offsets (the
        same bytes as ``dicomdir.encoded_records`` of its dataset; checked by the tests)."""
        c = self._constants(facts)
        return (
            c.patient_head + element(0x00100010, "PN", facts.patient_name) + element(0x00100020, "LO", facts.patient_id),
            c.study_head + element(0x0020000D, "UI", facts.study_uid) + c.study_tail,
            c.series_head + element(0x0020000E, "UI", facts.series_uid) + c.series_tail,
            c.image_head + element(0x00041500, "CS", "\\".join(file_id)) + c.image_middle
            + element(0x00041511, "UI", facts.sop_instance_uid) + c.image_tail,
        )
