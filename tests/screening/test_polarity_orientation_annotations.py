"""Near-copies that are negatives, upside down, sideways, MONOCHROME1 or annotated (issue 14), on the
public radiographs: flagged, and *not* flagged when the part of screening that catches them is
switched off (so each test can fail). The copies are made by screening/edits.py, PIL, numpy and
pydicom, never by the detector."""

import numpy as np
import pydicom
import pytest
from pydicom.dataset import FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from screening import edits, engine, imaging


@pytest.fixture(scope="module")
def screener(screening_index_dir):
    return engine.Screener(screening_index_dir)


@pytest.fixture(scope="module")
def as_given_only(screening_index_dir):
    """Screening without its polarity/orientation variants: the query only as given."""
    return engine.Screener(screening_index_dir, variants=[engine.IDENTITY])


def _train(screening_split, position):
    return np.nan_to_num(imaging.load_gray(imaging.list_images(screening_split[0])[position]), nan=0.0)


def _stored(image):
    """As a synthetic image is stored and read: 8-bit PNG."""
    return imaging.load_gray(edits._to_pil(image))


@pytest.mark.parametrize("family, position", [("invert", 2), ("vflip", 7), ("rot90", 11), ("rot180", 16),
                                              ("rot270", 23)])
def test_a_negative_or_a_copy_turned_by_quarter_turns_is_flagged(family, position, screener, as_given_only,
                                                                 screening_split):
    copy = _stored(edits.FAMILIES[family](_train(screening_split, position), np.random.default_rng(position)))
    analysis = screener.analyse(copy)
    assert analysis.train_match.index == position
    assert analysis.train_score >= screener.threshold
    assert analysis.exact  # a lossless transformation of the training image: an exact copy once undone
    assert analysis.stage_scores["inverted"] == (family == "invert")
    # Without the variants the same copy passes: this is what the variants catch.
    assert as_given_only.analyse(copy).train_score < screener.threshold


def test_a_copy_with_a_wrong_quarter_turn_and_jpeg_is_flagged(screener, as_given_only, screening_split):
    image = np.rot90(_train(screening_split, 5), 1)
    copy = _stored(edits.jpeg(60)(edits.gamma(np.ascontiguousarray(image), np.random.default_rng(1)), None))
    analysis = screener.analyse(copy)
    assert analysis.train_match.index == 5 and analysis.train_score >= screener.threshold
    assert as_given_only.analyse(copy).train_score < screener.threshold


def test_a_mirrored_identical_copy_is_exact(screener, screening_split):
    analysis = screener.analyse(_stored(_train(screening_split, 9)[:, ::-1]))
    assert analysis.exact and analysis.train_match.index == 9 and analysis.train_match.flipped


def _correlation(a, b) -> float:
    """Of two images' thumbnails, over the pixels that neither treats as padding."""
    x, y = imaging.query_thumbnail(a), imaging.query_thumbnail(b)
    valid = ~np.isnan(x) & ~np.isnan(y)
    return float(np.corrcoef(x[valid], y[valid])[0, 1])


def _write_dicom(path, pixels: np.ndarray, photometric: str):
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1.1"
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = pydicom.Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.PatientID, ds.StudyInstanceUID = "MONO-1", generate_uid()
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel, ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 1, 16, 12, 11, 0
    ds.PhotometricInterpretation = photometric
    ds.PixelData = np.rint(pixels).astype(np.uint16).tobytes()
    ds.save_as(path, enforce_file_format=True)


def test_a_monochrome1_dicom_copy_is_read_upright_and_flagged(screener, as_given_only, screening_split, tmp_path):
    original = _train(screening_split, 13)
    path = tmp_path / "copy.dcm"
    _write_dicom(path, (1.0 - original) * 4095, "MONOCHROME1")  # stored inverted, as MONOCHROME1 is
    array, info = imaging.read_image(path)
    assert "MONOCHROME1 inverted to MONOCHROME2" in info.notes and info.patient_id == "MONO-1"
    assert _correlation(array, original) > 0.99
    analysis = screener.analyse(array)
    assert analysis.train_match.index == 13 and analysis.train_score >= screener.threshold
    # Read without honouring MONOCHROME1 (a viewer's mix-up), the copy is a negative: only the polarity
    # variant still catches it, and with both switched off it passes.
    mixed_up = imaging.load_gray(path, photometric=False)
    assert _correlation(mixed_up, original) < -0.99
    assert screener.analyse(mixed_up).train_score >= screener.threshold
    assert as_given_only.analyse(mixed_up).train_score < screener.threshold


@pytest.mark.parametrize("position", [21, 27])
def test_a_heavily_annotated_copy_is_flagged_by_the_occlusion_robust_scores(position, screener, screening_index_dir,
                                                                           screening_split):
    copy = _stored(edits.heavy_annotation(_train(screening_split, position), np.random.default_rng(position)))
    analysis = screener.analyse(copy)
    assert analysis.train_match.index == position
    assert analysis.train_score >= screener.threshold
    assert analysis.stage_scores["occluded"] > 0.01  # burned-in text and the box were left out
    # With the worst tile deciding and every pixel counted, the markers, text and box sink it.
    assert engine.Screener(screening_index_dir, robust=False).analyse(copy).train_score < screener.threshold


def test_burned_in_markers_and_equalisation_are_flagged(screener, screening_split):
    for family, position in [("markers", 4), ("equalise", 19)]:
        copy = _stored(edits.FAMILIES[family](_train(screening_split, position), np.random.default_rng(position)))
        analysis = screener.analyse(copy)
        assert analysis.train_match.index == position and analysis.train_score >= screener.threshold, family


def test_held_out_radiographs_pass_whatever_their_orientation_and_are_screened_once(screener, screening_split):
    holdout = imaging.list_images(screening_split[1])
    for path in holdout[1::4]:
        analysis = screener.analyse(imaging.load_gray(path))
        assert analysis.train_score < screener.threshold
        assert analysis.variants == 1  # upright radiographs: no second variant, no extra time
