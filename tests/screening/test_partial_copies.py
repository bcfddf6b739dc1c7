"""Partial copies (issue 14): part of a training radiograph inside another patient's radiograph is
flagged by the region stage, wherever it sits — and is *not* flagged with the region stage switched
off, so each test can fail. The copies are cut and pasted here with plain numpy and PIL, never with
the detector's code or screening/edits.py."""

import numpy as np
import pytest
from PIL import Image

from screening import engine, imaging, services


@pytest.fixture(scope="module")
def screener(screening_index_dir):
    return engine.Screener(screening_index_dir)


@pytest.fixture(scope="module")
def without_regions(screening_index_dir):
    return engine.Screener(screening_index_dir, regions_enabled=False)


def _image(folder, position):
    return np.nan_to_num(imaging.load_gray(imaging.list_images(folder)[position]), nan=0.0)


def _same_size(image, shape):
    return np.asarray(Image.fromarray(image.astype(np.float32), mode="F").resize((shape[1], shape[0])), np.float32)


def _as_png(image):
    """As a synthetic image is stored and read back: 8-bit PNG."""
    pixels = np.clip(np.rint(image * 255), 0, 255).astype(np.uint8)
    return imaging.load_gray(Image.fromarray(pixels, mode="L"))


def _paste(source, background, share, source_at, target_at):
    """A rectangle of ``share`` of the area, from ``source_at`` (fractions of the free range) in the
    source to ``target_at`` in the background."""
    out = _same_size(background, source.shape).copy()
    h, w = source.shape
    ph, pw = int(h * np.sqrt(share)), int(w * np.sqrt(share))
    sy, sx = int(source_at[0] * (h - ph)), int(source_at[1] * (w - pw))
    ty, tx = int(target_at[0] * (h - ph)), int(target_at[1] * (w - pw))
    out[ty:ty + ph, tx:tx + pw] = source[sy:sy + ph, sx:sx + pw]
    return out


@pytest.mark.parametrize("position, share, source_at, target_at", [
    (3, 0.25, (0.5, 0.5), (0.1, 0.8)),  # the centre quarter, pasted near a top corner
    (8, 0.30, (0.3, 0.1), (0.7, 0.6)),
    (14, 0.45, (0.6, 0.9), (0.2, 0.2)),
])
def test_a_quarter_of_a_training_image_pasted_into_another_patients_radiograph_is_flagged(
        position, share, source_at, target_at, screener, without_regions, screening_split):
    background = _image(screening_split[1], position)  # a held-out radiograph: another patient
    copy = _as_png(_paste(_image(screening_split[0], position), background, share, source_at, target_at))
    analysis = screener.analyse(copy)
    assert analysis.region_match is not None and analysis.region_match.index == position
    assert analysis.region_score >= screener.region_threshold
    verdict = services.training_verdict(analysis, screener.threshold, None, screener.region_threshold)
    assert verdict.flagged and verdict.best_index == position
    # The whole-image stage alone lets it through: this is what the region stage catches.
    alone = without_regions.analyse(copy)
    assert alone.region_score is None
    assert not services.training_verdict(alone, screener.threshold, None, None).flagged


def test_left_half_of_one_training_image_and_right_half_of_another_is_flagged(screener, screening_split):
    left, right = _image(screening_split[0], 4), _image(screening_split[0], 12)
    spliced = _same_size(right, left.shape).copy()
    spliced[:, : left.shape[1] // 2] = left[:, : left.shape[1] // 2]
    analysis = screener.analyse(_as_png(spliced))
    verdict = services.training_verdict(analysis, screener.threshold, None, screener.region_threshold)
    assert verdict.flagged
    assert verdict.best_index in (4, 12)


def test_held_out_radiographs_of_other_patients_pass_the_region_stage(screener, screening_split):
    holdout = imaging.list_images(screening_split[1])
    scores = [screener.analyse(imaging.load_gray(path)).region_score for path in holdout[::4]]
    assert all(score is not None for score in scores)
    assert max(scores) < screener.region_threshold


def test_the_region_match_names_where_it_was_found(screener, screening_split):
    copy = _as_png(_paste(_image(screening_split[0], 6), _image(screening_split[1], 2), 0.3, (0.5, 0.5),
                          (0.0, 0.0)))
    analysis = screener.analyse(copy)
    region = analysis.stage_scores["region"]
    assert region["match_position"] == 6
    assert region["query_window"][0] < 64 and region["query_window"][1] < 64  # the paste is top left
    assert 0.1 <= region["area"] <= 0.6
    verdict = services.training_verdict(analysis, screener.threshold, None, screener.region_threshold)
    assert "Part of it" in verdict.reason


def test_the_region_threshold_is_calibrated_on_held_out_patients(screener):
    calibration = screener.meta["calibration"]
    held_out = calibration["region_holdout_scores"]
    assert len(held_out) == screener.holdout_count
    assert calibration["region"]["threshold"] > max(held_out)


def test_the_approximate_window_index_used_at_scale_still_finds_a_copied_region(screening_split, tmp_path,
                                                                                 monkeypatch):
    from screening import regions

    # Past EXACT_SEARCH_LIMIT windows the index is an inverted file of product-quantised vectors; make
    # this small training set take that path.
    monkeypatch.setattr(regions, "EXACT_SEARCH_LIMIT", 500)
    train = [_image(screening_split[0], i) for i in range(len(imaging.list_images(screening_split[0])))]
    windows = regions.write_index(tmp_path, np.stack([regions.stored_thumbnail(a) for a in train]))
    search = regions.RegionSearch(tmp_path, len(train))
    assert windows > 500 and hasattr(search.index, "nprobe")
    copy = _as_png(_paste(train[10], _image(screening_split[1], 5), 0.3, (0.4, 0.6), (0.7, 0.1)))
    match = search.analyse(regions.region_thumbnail(copy))
    assert match.index == 10 and match.area >= 0.1


def test_a_straight_edge_that_two_radiographs_share_is_not_a_copied_area():
    """An edge (the image's border, a rib's outline, a tube) correlates with any other straight edge
    along its whole length: tiles holding only an edge do not count towards the copied area, tiles
    with two-dimensional detail do."""
    from screening import region_match, regions

    rng = np.random.default_rng(0)
    rows = np.arange(regions.REGION_SIZE)[:, None]
    edge = np.where(rows < 40, 60.0, 160.0) + np.zeros((1, regions.REGION_SIZE))  # one horizontal edge
    query = region_match.detail(edge + rng.normal(0, 0.2, edge.shape))
    other = region_match.detail(edge + rng.normal(0, 0.2, edge.shape))  # another image with the same edge
    everywhere = np.ones_like(region_match.structured_tiles(query))
    assert region_match.agreement_area(query, other, (0, 17), everywhere) > 0.05  # the edge agrees at any shift
    assert region_match.agreement_area(query, other, (0, 17)) == 0.0
    texture = region_match.detail(rng.normal(128, 30, edge.shape))
    assert region_match.structured_tiles(texture).mean() > 0.9
    assert region_match.agreement_area(texture, texture, (0, 0)) > 0.9


def test_windows_that_agree_on_one_displacement_outvote_more_numerous_scattered_look_alikes():
    """A copied region moves as a whole: its windows match the original's at one displacement. Chance
    look-alikes among millions of windows match anywhere. Hits made up here with numpy: image 7's
    training windows (12-pixel grid) are copied displaced by (-20.4, +30.6) pixels and each is found by
    the query windows (3-pixel grid) up to 4 pixels off, image 3 gets 40 hits at random displacements."""
    from screening import regions

    rng = np.random.default_rng(0)
    grid = np.arange(0, 88, 3)
    query_positions = np.stack(np.meshgrid(grid, grid, indexing="ij"), -1).reshape(-1, 2)
    displacement = np.array([-20.4, 30.6])  # training position minus query position
    copied, trained = [], []
    for t in np.stack(np.meshgrid(np.arange(24, 85, 12), np.arange(36, 85, 12), indexing="ij"), -1).reshape(-1, 2):
        near = np.nonzero(np.abs(query_positions - (t - displacement)).max(axis=1) <= 4)[0]
        copied += near.tolist()
        trained += [t] * len(near)
    scattered = rng.choice(len(query_positions), 40)
    rows = np.concatenate([copied, scattered])
    owners = np.array([7] * len(copied) + [3] * len(scattered))
    train_positions = np.concatenate([np.array(trained), rng.integers(0, 8, (len(scattered), 2)) * 12])

    votes = regions.consistent_votes(query_positions, rows, owners, train_positions)

    assert votes[7][0] == len(set(copied)) and set(votes[7][1]) == set(copied)
    assert votes[3][0] < len(set(copied)) / 4
    assert list(votes)[0] == 7


def test_a_training_windows_cell_gives_back_its_position():
    from screening import regions

    starts = np.arange(0, regions.REGION_SIZE - regions.WINDOW + 1, regions.TRAIN_STRIDE)
    positions = np.stack(np.meshgrid(starts, starts, indexing="ij"), -1).reshape(-1, 2)
    cells = regions.train_cell(positions)
    assert len(set(cells.tolist())) == len(positions)
    assert (regions.cell_position(cells) == positions).all()


def test_a_training_windows_exact_descriptor_is_the_one_indexed():
    """The exact check of agreeing windows recomputes training windows' descriptors from the stored
    thumbnail: they must be the ones the index was built from, window for window."""
    from screening import regions

    rng = np.random.default_rng(3)
    thumb = np.clip(rng.normal(128, 40, (regions.REGION_SIZE, regions.REGION_SIZE)), 0, 255).astype(np.uint8)
    positions, descriptors = regions.window_descriptors(thumb.astype(np.float64), regions.TRAIN_STRIDE)
    cells = regions.train_cell(positions)
    again = regions.train_window_descriptors(thumb, cells[::-1])
    assert np.allclose(again, descriptors[::-1], atol=1e-5)


def test_the_displacement_vote_alone_finds_a_copied_region(screening_split, tmp_path, monkeypatch):
    """With the most-similar-window candidates switched off, the windows agreeing on a displacement
    still bring the original to verification; with both off nothing is found."""
    from screening import regions

    train = [_image(screening_split[0], i) for i in range(len(imaging.list_images(screening_split[0])))]
    regions.write_index(tmp_path, np.stack([regions.stored_thumbnail(a) for a in train]))
    search = regions.RegionSearch(tmp_path, len(train))
    copy = regions.region_thumbnail(_as_png(_paste(train[6], _image(screening_split[1], 2), 0.3, (0.5, 0.3),
                                                   (0.1, 0.9))))
    monkeypatch.setattr(regions, "CANDIDATES", 0)
    match = search.analyse(copy)
    assert match is not None and match.index == 6 and match.area >= 0.1
    monkeypatch.setattr(regions, "CONSISTENT_CANDIDATES", 0)
    assert search.analyse(copy) is None
