"""Patients, not images (issue 14): each indexed image's patient and study, the patient-aware
nearest/second-nearest ratio, the matched patient shown to reviewers, and the like-with-like
"closer to training than to holdout" comparison."""

import numpy as np
import pydicom
import pytest
from PIL import Image
from scipy import ndimage
from pydicom.dataset import FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from screening import edits, engine, imaging
from screening.patients import resolve_subjects, subject_from_path

HOLDOUT = 10  # a holdout smaller than the training set


@pytest.fixture(scope="module")
def follow_up_index(screening_split, tmp_path_factory):
    """An index of the 30 training radiographs plus a second study of patient P3: the radiograph at
    position 3, shifted and exposed a little differently (a follow-up), labelled by a subjects CSV; 10 held-out
    images. Returns (directory, meta, position of P3's first study, of the follow-up)."""
    root = tmp_path_factory.mktemp("patients")
    train, holdout = root / "train", root / "holdout"
    train.mkdir()
    holdout.mkdir()
    sources = imaging.list_images(screening_split[0])
    for path in sources:
        (train / path.name).symlink_to(path)
    first = np.nan_to_num(imaging.load_gray(sources[3]), nan=0.0)
    follow_up = ndimage.shift(first, (first.shape[0] * 0.02, first.shape[1] * -0.015), order=1, mode="nearest")
    follow_up = np.clip(follow_up * 0.95 + 0.03, 0, 1)  # positioned and exposed a little differently
    Image.fromarray(np.rint(follow_up * 255).astype(np.uint8)).save(train / "zz_follow_up.png")
    for path in imaging.list_images(screening_split[1])[::3]:  # both sources (mhh_, nih_) in proportion
        (holdout / path.name).symlink_to(path)
    csv = root / "subjects.csv"
    csv.write_text(f"path,subject_id,study_id\n{sources[3].name},P3,S1\nzz_follow_up.png,P3,S2\n"
                   f"{train / sources[5].name},P5,S9\n")
    messages = []
    meta = engine.build_index(root / "index", train, holdout, progress=False, subjects_file=csv, log=messages.append)
    paths = [p.name for p in imaging.list_images(train)]
    return root / "index", meta, paths.index(sources[3].name), paths.index("zz_follow_up.png"), messages


def test_the_index_records_each_images_patient_and_reports_where_it_came_from(follow_up_index):
    directory, meta, first, second, messages = follow_up_index
    screener = engine.Screener(directory)
    assert (screener.train_subject(first), screener.train_study(first)) == ("P3", "S1")
    assert (screener.train_subject(second), screener.train_study(second)) == ("P3", "S2")
    assert screener.train_subject_codes[first] == screener.train_subject_codes[second]
    assert len(set(screener.train_subject_codes.tolist())) == 30  # 31 images, 30 patients
    report = meta["report"]
    assert report["train"]["subject_sources"] == {"csv": 3, "none": 28} and report["train"]["patients"] == 30
    assert report["subjects_csv"]["matched_images"] == 3  # relative and absolute paths both match
    assert any("30 patient(s); identifiers from csv 3" in m for m in messages)


def test_a_patients_second_study_does_not_collapse_a_copys_score(follow_up_index):
    directory, _, first, second, _ = follow_up_index
    screener = engine.Screener(directory)
    train = imaging.list_images(screener.meta["train_root"])
    original = np.nan_to_num(imaging.load_gray(train[first]), nan=0.0)
    copy = imaging.load_gray(edits._to_pil(edits.gamma(original, np.random.default_rng(3))))
    analysis = screener.analyse(copy)
    assert analysis.train_match.index in (first, second)
    assert analysis.train_score >= screener.threshold
    assert analysis.stage_scores["match_subject"] == "P3"
    assert analysis.stage_scores["match_study"] in ("S1", "S2")
    # Counting the follow-up as "another image", the copy's best match is hardly nearer than the
    # second nearest: the ratio term collapses and the score with it.
    per_image = engine.Screener(directory)
    per_image.train_subject_codes = np.arange(len(per_image.train_subject_codes))
    collapsed = per_image.analyse(copy)
    assert collapsed.stage_scores["nearest_second_ratio"] > 0.5 > analysis.stage_scores["nearest_second_ratio"]
    assert analysis.train_score - collapsed.train_score > 0.1


def test_closer_to_training_than_to_holdout_compares_like_with_like(follow_up_index, screening_split):
    directory, _, _, _, _ = follow_up_index
    screener = engine.Screener(directory)
    # The holdout (10) is compared with a fixed random subset of the training set (31) of its own size.
    assert len(screener.matched_train) == len(screener.matched_holdout) == HOLDOUT
    assert len(set(screener.matched_train.tolist())) == HOLDOUT
    fresh = [p for i, p in enumerate(imaging.list_images(screening_split[1])) if i % 3]  # in neither set
    matched = []
    for path in fresh[::2]:
        analysis = screener.analyse(imaging.load_gray(path))
        assert analysis.holdout_score is not None and analysis.matched_train_score is not None
        assert analysis.stage_scores["train_matched_fused"] == round(analysis.matched_train_score, 5)
        matched.append(analysis.matched_train_score > analysis.holdout_score)
    # About half (10 references a side make the share of one cohort vary; the evaluation measures it
    # leave-one-out on the whole holdout, docs/screening.md). The whole training set, three times the
    # holdout, would make non-copies look closer to training about three times in four. (Like with
    # like also needs the holdout drawn like the training set: a holdout of the first 10 files, nearly
    # all from one of the two hospitals, put every image of the other hospital closer to training.)
    assert 0.1 <= np.mean(matched) <= 0.9


def test_subjects_from_the_mimic_layout_and_the_dicom_header(tmp_path):
    assert subject_from_path("files/p10/p10000032/s50414267/02aa804e.dcm") == ("10000032", "50414267")
    assert subject_from_path("p10__p10000032__s50414267__02aa804e.dcm") == ("10000032", "50414267")
    assert subject_from_path("mhh_1d435a4b.png") is None
    subjects, studies, sources = resolve_subjects(
        tmp_path, ["p11/p11000011/s51000011/a.dcm", "b.dcm", "c.png", "p12/p12000012/s52000012/d.jpg"],
        [("", ""), ("PID-7", "1.2.3"), ("", ""), ("PID-8", "4.5.6")], {"c.png": ("C", "")})
    assert subjects == ["11000011", "PID-7", "C", "PID-8"]
    assert studies == ["51000011", "1.2.3", "", "4.5.6"]
    assert sources == ["path", "dicom", "csv", "dicom"]
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = "1.2.840.10008.5.1.4.1.1.1.1", generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = pydicom.Dataset()
    ds.file_meta = meta
    ds.PatientID, ds.StudyInstanceUID = "PID-7", "1.2.3"
    ds.Rows, ds.Columns = 16, 16
    ds.SamplesPerPixel, ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 1, 16, 16, 15, 0
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.PixelData = np.arange(256, dtype=np.uint16).tobytes()
    ds.save_as(tmp_path / "b.dcm", enforce_file_format=True)
    _, info = imaging.read_image(tmp_path / "b.dcm")
    assert (info.patient_id, info.study_id, info.bits) == ("PID-7", "1.2.3", 16)
