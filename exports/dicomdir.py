"""A DICOMDIR (Basic Directory, PS3.10 / PS3.3 F) for a package of single-instance studies.

pydicom's ``FileSet.add`` compares each new instance with every one already added, which makes a
2,000-patient file-set take minutes, and it writes every file twice. The export writes the
instance files itself (in parallel) and uses this writer for the DICOMDIR: the records are
made by pydicom's own record creators (``pydicom.fileset.DIRECTORY_RECORDERS``) from a
header-only dataset of each instance, and encoded with pydicom in one streaming pass after a
sizing pass, so memory holds one small header per image. The result is read back by
``pydicom.fileset.FileSet`` and ``dcmdump`` in the tests, and checked by ``dciodvfy``.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence

from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filebase import DicomBytesIO
from pydicom.fileset import DIRECTORY_RECORDERS
from pydicom.filewriter import write_dataset, write_file_meta_info
from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, ExplicitVRLittleEndian, MediaStorageDirectoryStorage

ITEM = struct.pack("<HH", 0xFFFE, 0xE000)
SEQ_DELIMITER = struct.pack("<HHI", 0xFFFE, 0xE0DD, 0)
LEVELS = ("PATIENT", "STUDY", "SERIES", "IMAGE")
HEADER_KEYWORDS = (
    "SpecificCharacterSet", "PatientName", "PatientID", "StudyDate", "StudyTime", "StudyDescription",
    "StudyInstanceUID", "StudyID", "AccessionNumber", "Modality", "SeriesInstanceUID", "SeriesNumber",
    "InstanceNumber", "SOPClassUID", "SOPInstanceUID", "Rows", "Columns",
)


def header_of(ds: Dataset) -> Dataset:
    """The attributes the directory records are made from (no pixels), with the file's syntax."""
    header = Dataset()
    for keyword in HEADER_KEYWORDS:
        if keyword in ds:
            header[keyword] = ds[keyword]
    header.file_meta = FileMetaDataset()
    header.file_meta.TransferSyntaxUID = ds.file_meta.TransferSyntaxUID
    return header


def _records(header: Dataset, file_id: Sequence[str]) -> list[Dataset]:
    records = []
    for level in LEVELS:
        record = DIRECTORY_RECORDERS[level](header)
        record.OffsetOfTheNextDirectoryRecord = 0
        record.RecordInUseFlag = 0xFFFF
        record.OffsetOfReferencedLowerLevelDirectoryEntity = 0
        record.DirectoryRecordType = level
        if "SpecificCharacterSet" in header:
            record.SpecificCharacterSet = header.SpecificCharacterSet
        records.append(record)
    leaf = records[-1]
    leaf.ReferencedFileID = list(file_id)
    leaf.ReferencedSOPClassUIDInFile = header.SOPClassUID
    leaf.ReferencedSOPInstanceUIDInFile = header.SOPInstanceUID
    leaf.ReferencedTransferSyntaxUIDInFile = header.file_meta.TransferSyntaxUID
    return records


def _encode(record: Dataset) -> bytes:
    fp = DicomBytesIO()
    fp.is_little_endian = True
    fp.is_implicit_VR = False
    write_dataset(fp, record)
    return fp.getvalue()


def encoded_records(ds: Dataset, file_id: Sequence[str]) -> tuple[bytes, bytes, bytes, bytes]:
    """The PATIENT, STUDY, SERIES and IMAGE records of one instance, encoded (Explicit VR LE)
    with zero offsets; :func:`write_dicomdir` patches the offsets in place."""
    records = tuple(_encode(r) for r in _records(header_of(ds), file_id))
    for encoded in records:  # the offsets must be the first elements, where we patch them
        if encoded[:4] != _NEXT_TAG or encoded[22:26] != _LOWER_TAG:
            raise RuntimeError("unexpected directory record layout")
    return records  # type: ignore[return-value]


_NEXT_TAG = struct.pack("<HH", 0x0004, 0x1400)
_LOWER_TAG = struct.pack("<HH", 0x0004, 0x1420)


def write_dicomdir(path, groups, *, uid: str, fileset_id: str = "SYNTHETIC") -> None:
    """Write a DICOMDIR at ``path`` from the encoded records of each instance (an iterable of
    (patient, study, series, image) bytes, zero offsets, as :func:`encoded_records` makes them; one
    patient / study / series / image per instance), consumed once: each PATIENT's next-record
    offset and the header's first/last offsets are patched in place when known. ``uid``: the
    file-set's own SOP Instance UID, unique to the export (``PackageSpec.dicomdir_uid``)."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = MediaStorageDirectoryStorage
    meta.MediaStorageSOPInstanceUID = uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID

    head = Dataset()
    head.FileSetID = fileset_id
    head.OffsetOfTheFirstDirectoryRecordOfTheRootDirectoryEntity = 0
    head.OffsetOfTheLastDirectoryRecordOfTheRootDirectoryEntity = 0
    head.FileSetConsistencyFlag = 0

    meta_fp = DicomBytesIO()
    write_file_meta_info(meta_fp, meta, enforce_standard=True)
    prefix = b"\x00" * 128 + b"DICM" + meta_fp.getvalue()
    first_item = len(prefix) + len(_encode(head)) + 12  # + (0004,1220) SQ header, undefined length

    # The records go to the file after the header, whose offsets are patched in at the end.
    with open(path, "wb") as out:
        out.write(prefix)
        head_at = out.tell()
        out.write(_encode(head))
        out.write(struct.pack("<HH2sHI", 0x0004, 0x1220, b"SQ", 0, 0xFFFFFFFF))
        here = first_item
        first = last = 0
        previous_patient_next = None  # file position of the previous PATIENT's next-offset value
        n = -1
        for n, group in enumerate(groups):
            if n == 0:
                first = here
            last = here
            if previous_patient_next is not None:
                position = out.tell()
                out.seek(previous_patient_next)
                out.write(struct.pack("<I", here))
                out.seek(position)
            starts = []
            for record in group:
                starts.append(here)
                here += 8 + len(record)
            for level, record in enumerate(group):
                patched = bytearray(record)
                if level == 0:
                    previous_patient_next = out.tell() + 8 + 8
                if level < 3:
                    struct.pack_into("<I", patched, 30, starts[level + 1])
                out.write(ITEM + struct.pack("<I", len(patched)))
                out.write(patched)
        out.write(SEQ_DELIMITER)
        if n >= 0:
            head.OffsetOfTheFirstDirectoryRecordOfTheRootDirectoryEntity = first
            head.OffsetOfTheLastDirectoryRecordOfTheRootDirectoryEntity = last
            out.seek(head_at)
            out.write(_encode(head))  # same length: only UL values changed

