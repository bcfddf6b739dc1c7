"""build_screening_index: formats, calibration stored with the index, resumable builds, refusals."""

import io
import json

import numpy as np
import pydicom
import pytest
from django.core.management import CommandError, call_command
from PIL import Image
from pydicom.dataset import FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from screening import engine, imaging
from screening.models import ScreeningIndex
from screening.services import ScreeningIndexMissing, ready_index

pytestmark = pytest.mark.django_db


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
    ds.PixelData = pixels.astype(np.uint16).tobytes()
    ds.save_as(path, enforce_file_format=True)


@pytest.fixture
def mixed_folders(tmp_path, screening_split):
    """A training folder with nested folders, 16-bit PNG, RGBA, JPEG, DICOM (incl. MONOCHROME1) and junk."""
    train_src, holdout_src = screening_split
    train, holdout = tmp_path / "train", tmp_path / "holdout"
    (train / "p10" / "s1").mkdir(parents=True)
    holdout.mkdir()
    sources = imaging.list_images(train_src)[:6]
    arrays = [np.nan_to_num(imaging.load_gray(p), nan=0.0) for p in sources]
    Image.fromarray((arrays[0] * 65535).astype(np.uint16)).save(train / "p10" / "s1" / "sixteen.png")
    rgb = (np.stack([arrays[1]] * 3 + [np.ones_like(arrays[1])], -1) * 255).astype(np.uint8)
    Image.fromarray(rgb, mode="RGBA").save(train / "rgba.png")
    Image.fromarray((arrays[2] * 255).astype(np.uint8)).save(train / "p10" / "photo.jpg", quality=95)
    _write_dicom(train / "p10" / "s1" / "image", arrays[3] * 4095)  # no suffix: found by its DICM magic
    _write_dicom(train / "inverted.dcm", (1 - arrays[4]) * 4095, monochrome1=True)
    Image.fromarray((arrays[5] * 255).astype(np.uint8)).save(train / "plain.png")
    (train / "notes.txt").write_text("not an image")
    (train / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    for path in imaging.list_images(holdout_src)[:6]:
        (holdout / path.name).symlink_to(path)
    return train, holdout, arrays


def test_every_format_is_read_to_the_same_grayscale(mixed_folders):
    train, _, arrays = mixed_folders
    found = {p.relative_to(train).as_posix() for p in imaging.list_images(train)}
    assert found == {"p10/s1/sixteen.png", "rgba.png", "p10/photo.jpg", "p10/s1/image", "inverted.dcm",
                     "plain.png", "broken.png"}
    for name, original in [("p10/s1/sixteen.png", 0), ("rgba.png", 1), ("p10/photo.jpg", 2), ("p10/s1/image", 3),
                           ("inverted.dcm", 4)]:
        a = imaging.verification_thumbnail(imaging.load_gray(train / name)).astype(float).ravel()
        b = imaging.verification_thumbnail(arrays[original]).astype(float).ravel()
        assert np.corrcoef(a, b)[0, 1] > 0.99, name


def test_the_command_builds_a_calibrated_index(mixed_folders, demo_model_version, settings, tmp_path):
    settings.SCREENING_INDEX_ROOT = str(tmp_path / "indexes")
    train, holdout, _ = mixed_folders
    out = io.StringIO()
    call_command("build_screening_index", "--model-version", str(demo_model_version.pk), "--train", str(train),
                 "--holdout", str(holdout), "--no-progress", stdout=out)
    index = ScreeningIndex.objects.get(model_version=demo_model_version)
    assert index.status == "ready"
    assert (index.train_count, index.holdout_count) == (6, 6)
    assert index.calibration["skipped_count"] == 1 and "broken.png" in index.calibration["skipped"][0]
    stage_a = index.calibration["stage_a"]
    assert index.threshold == stage_a["threshold"] > stage_a["holdout_max"]
    assert stage_a["holdout_flagged"] == 0 and stage_a["target_fpr"] == 0.001
    assert "Calibrated threshold" in out.getvalue()
    assert str(tmp_path / "indexes") in index.directory
    assert ready_index(demo_model_version) == index


def test_an_interrupted_build_resumes_from_its_finished_chunks(screening_split, tmp_path):
    train, holdout = screening_split
    directory = tmp_path / "index"
    engine.build_index(directory, train, holdout, progress=False, chunk=8)
    first = (directory / "train_verify.u8").read_bytes()
    first_canonical = (directory / "train_canonical.faiss").read_bytes()
    # Simulate an interruption after the first chunks: put finished chunk files back, no meta.json.
    work = directory / "work"
    work.mkdir()
    engine._describe_set("train", train.resolve(), work, None, False, 8, lambda m: None, canonical=True)
    (work / "train_000003.npz").unlink()
    (directory / "meta.json").unlink()
    messages = []
    meta = engine.build_index(directory, train, holdout, progress=False, chunk=8, log=messages.append)
    assert any("Resumed: 3 of 4 train chunk(s)" in m for m in messages)
    assert (directory / "train_verify.u8").read_bytes() == first
    assert (directory / "train_canonical.faiss").read_bytes() == first_canonical  # same template after resuming
    assert meta["train_count"] == len(imaging.list_images(train))


def test_worker_processes_build_the_same_index(screening_split, tmp_path):
    train, holdout = screening_split
    engine.build_index(tmp_path / "one", train, holdout, progress=False, chunk=8)
    engine.build_index(tmp_path / "three", train, holdout, progress=False, chunk=8, workers=3)
    for name in ("train_verify.u8", "train_vectors.faiss", "train_canonical.faiss", "template.npy",
                 "holdout_verify.npy", "holdout_vectors.npy", "region_vectors.faiss", "region_owner.npy",
                 "region_cell.npy"):
        assert (tmp_path / "three" / name).read_bytes() == (tmp_path / "one" / name).read_bytes(), name


def test_without_holdout_the_index_is_not_calibrated_and_screening_refuses(screening_split, demo_model_version,
                                                                          settings, tmp_path):
    settings.SCREENING_INDEX_ROOT = str(tmp_path / "indexes")
    train, _ = screening_split
    call_command("build_screening_index", "--model-version", f"{demo_model_version.name}:{demo_model_version.version}",
                 "--train", str(train), "--no-progress", stdout=io.StringIO(), stderr=io.StringIO())
    index = ScreeningIndex.objects.get(model_version=demo_model_version)
    assert index.status == "ready" and index.threshold is None
    with pytest.raises(ScreeningIndexMissing, match="without holdout images"):
        ready_index(demo_model_version)


def test_bad_arguments_are_clear_errors(demo_model_version, tmp_path):
    with pytest.raises(CommandError, match="No model version"):
        call_command("build_screening_index", "--model-version", "nope:1", "--train", str(tmp_path))
    with pytest.raises(CommandError, match="is not a folder"):
        call_command("build_screening_index", "--model-version", str(demo_model_version.pk),
                     "--train", str(tmp_path / "missing"))
    with pytest.raises(CommandError, match="--workers"):
        call_command("build_screening_index", "--model-version", str(demo_model_version.pk),
                     "--train", str(tmp_path), "--workers", "0")


def test_bad_input_is_indexed_or_skipped_with_a_reason_per_file(screening_split, demo_model_version, settings,
                                                                tmp_path, monkeypatch):
    """Colour, 16-bit and MONOCHROME1 files are indexed (the report says how they were read); unreadable,
    empty, blank, pixel-less and huge files are skipped, each with its reason, and counted."""
    settings.SCREENING_INDEX_ROOT = str(tmp_path / "indexes")
    monkeypatch.setattr(imaging, "MAX_PIXELS", 300 * 300)  # "huge", without writing gigabytes
    train_src, holdout_src = screening_split
    train, holdout = tmp_path / "train", tmp_path / "holdout"
    train.mkdir()
    holdout.mkdir()
    arrays = [np.nan_to_num(imaging.load_gray(p), nan=0.0) for p in imaging.list_images(train_src)[:5]]
    Image.fromarray((arrays[0] * 255).astype(np.uint8)).save(train / "a_plain.png")
    Image.fromarray((arrays[1] * 65535).astype(np.uint16)).save(train / "b_sixteen.png")
    tinted = np.stack([arrays[2], arrays[2] * 0.6, arrays[2] * 0.3], -1)  # a real colour image
    Image.fromarray((tinted * 255).astype(np.uint8), mode="RGB").save(train / "c_colour.png")
    _write_dicom(train / "d_mono1.dcm", (1 - arrays[3]) * 4095, monochrome1=True)
    Image.fromarray((arrays[4] * 255).astype(np.uint8)).resize((400, 400)).save(train / "e_huge.png")
    (train / "f_broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not a jpeg")
    (train / "g_empty.png").write_bytes(b"")
    Image.fromarray(np.full((64, 64), 128, np.uint8)).save(train / "h_blank.png")
    no_pixels = pydicom.dcmread(train / "d_mono1.dcm")
    del no_pixels.PixelData
    no_pixels.save_as(train / "i_no_pixels.dcm")
    for path in imaging.list_images(holdout_src)[:4]:
        (holdout / path.name).symlink_to(path)
    out = io.StringIO()
    call_command("build_screening_index", "--model-version", str(demo_model_version.pk), "--train", str(train),
                 "--holdout", str(holdout), "--no-progress", stdout=out)
    text = out.getvalue()
    assert "train: 4 of 9 image file(s) indexed, 5 skipped" in text
    assert "1 × colour image (RGB) converted to grayscale" in text
    assert "1 × MONOCHROME1 inverted to MONOCHROME2" in text
    assert "PNG 16-bit" in text and "DICOM 12-bit" in text
    reasons = {line.split(":", 1)[0].strip(): line for line in text.splitlines() if line.startswith("  train/")}
    assert "too large: 400 × 400 pixels" in reasons["train/e_huge.png"]
    assert "cannot read image" in reasons["train/f_broken.jpg"]
    assert "empty file" in reasons["train/g_empty.png"]
    assert "blank" in reasons["train/h_blank.png"]
    assert "without pixel data" in reasons["train/i_no_pixels.dcm"]
    assert "Skipped 5 file(s):" in text
    index = ScreeningIndex.objects.get(model_version=demo_model_version)
    assert (index.train_count, index.calibration["skipped_count"]) == (4, 5)
    assert index.calibration["report"]["train"]["conversions"]["MONOCHROME1 inverted to MONOCHROME2"] == 1


def test_an_index_of_an_older_format_is_refused_with_the_command_that_rebuilds_it(screening_index_dir):
    meta = json.loads((screening_index_dir / "meta.json").read_text())
    with pytest.raises(engine.IndexNotReady, match="rebuild it: `python manage.py build_screening_index"):
        engine.Screener(screening_index_dir, meta={**meta, "format": engine.FORMAT_VERSION - 1})


def test_past_the_exact_size_whole_images_are_searched_in_an_inverted_file_that_still_finds_a_copy(
        screening_split, tmp_path, monkeypatch):
    """At MIMIC-CXR scale the whole-image descriptors go into an inverted file (screening.vector_index),
    searched in a few of its lists: a re-encoded copy of a training image is still found and flagged."""
    import faiss

    from screening import vector_index

    monkeypatch.setattr(vector_index, "EXACT_IMAGES", 4)  # this small training set takes the path of 377,000
    monkeypatch.setattr(vector_index, "IMAGE_NPROBE", 3)  # ... and only a few of its lists are searched
    train, holdout = screening_split
    engine.build_index(tmp_path / "index", train, holdout, progress=False)
    screener = engine.Screener(tmp_path / "index")
    for index in (screener.faiss_index, screener.canonical_index):
        assert isinstance(index, faiss.IndexIVFFlat) and index.nprobe == 3 < index.nlist
    assert vector_index.resident_bytes(screener.faiss_index) > screener.faiss_index.ntotal * screener.faiss_index.d * 4
    original = imaging.list_images(train)[7]
    names = [screener.train_relative_path(i).rsplit("/", 1)[-1] for i in range(screener.meta["train_count"])]
    position = names.index(original.name)
    pixels = np.clip(np.rint(np.nan_to_num(imaging.load_gray(original), nan=0.0) * 255), 0, 255).astype(np.uint8)
    encoded = io.BytesIO()
    Image.fromarray(pixels).save(encoded, format="JPEG", quality=80)
    analysis = screener.analyse(imaging.load_gray(Image.open(encoded)))
    assert analysis.train_match.index == position
    assert analysis.train_score >= screener.threshold
