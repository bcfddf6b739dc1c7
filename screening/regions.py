"""The region stage: finding a copied part of a training radiograph, wherever it sits in an image.

Diffusion models copy parts of training images as well as whole ones, and a patch of a real
patient's radiograph pasted into an otherwise new image is as much a leak as a whole copy. The
whole-image stage (:mod:`screening.search`) cannot see it: the rest of the image decides its score.

This stage works on 128×128 thumbnails (four times the pixels of the whole-image stage):

* **Index** — every training thumbnail is cut into WINDOW×WINDOW windows on a TRAIN_STRIDE grid
  (64 per image). A window is described by its 8×8 block means, standardised (so brightness,
  contrast and gamma change little), reduced by PCA and kept in a faiss inner-product index; each
  vector remembers its image (``region_owner.npy``) and its place in it (``region_cell.npy``).
* **Query** — the screened image's windows on a finer QUERY_STRIDE grid (900 of them) are searched.
  A copied region of at least a quarter of the image area (e.g. 64×64 of 128×128, or 55×74) always
  contains a whole training window, and some query window lies within QUERY_STRIDE/2 pixels of it,
  whatever the region's position in either image, so its descriptor is found. The grid is fine because
  the descriptor is not shift-tolerant: two pixels off, a copied window's similarity drops from 0.99 to
  about 0.90, below look-alikes of other images (0.95–0.99 among 24 million windows). Candidates are the
  images with the most similar windows, and the images with the most query windows that agree on one
  displacement (see :func:`consistent_votes`: a copied region moves as a whole; chance look-alikes among
  millions of windows scatter) and whose agreeing windows match exactly, not only by their quantised
  codes (see :meth:`RegionSearch._checked_exactly`): a copy of a quarter of the image may hold only two
  training windows, too few votes to stand out among thousands of images on their own.
* **Verification** (:mod:`screening.region_match`) — the training images the windows vote for are
  checked by normalised cross-correlation of the best query windows at every position in the
  candidate (a locally aligned match, by FFT), and the match is grown: the share of the query's area
  where the two images agree at that displacement is the copied area reported to reviewers. Only tiles with two-dimensional
  structure count as agreeing (see :func:`structured_tiles`): a straight edge matches any other
  straight edge anywhere along it, which is how two patients' radiographs agreed by chance.

The region score (:func:`fuse`) weighs the best window's correlation and the agreeing area; its
threshold is calibrated separately, on held-out patients (:func:`screening.calibration.calibrate`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from . import imaging, parallel, vector_index
from .region_match import NccPlan, agreement_area, box_sums, detail, fuse, structured_tiles

REGION_SIZE = 128
# A copied region of a quarter of the image area with an aspect up to 4:3 is at least 55 pixels on
# its short side (of 128): it always holds a whole training window, since WINDOW + TRAIN_STRIDE - 1 <= 55.
WINDOW = 40
TRAIN_STRIDE = 12
# 3, not 4: 1.5 pixels at most from any training window. At 377,000 images a 4-pixel grid let the
# originals of 4 of 48 partial copies go unretrieved (see docs/screening.md, 2026-12-07).
QUERY_STRIDE = 3
BLOCK = WINDOW // 8  # 8×8 block means per window
REGION_PCA_DIM = 32
MIN_SPREAD = 6.0  # windows flatter than this (0–255 scale) carry no pattern to match: not used
NEIGHBOURS = 6  # training windows retrieved per query window
# Pixels: query windows vote for (image, displacement) in bins this wide, ±1 bin. 4, not 8: in a small
# index every image gets hits all over, and boxes of 24 pixels gathered enough of them to outrank a
# copied region (4th of 30 images on the public test images; first with 4-pixel bins).
DISPLACEMENT_BIN = 4
# Training images verified, ranked by their best window similarity. The true original of a quarter-
# image copy ranked as low as 7th on the 60 public images. Verifying 10 instead of 5 raised the
# highest held-out patient's score from 0.52 to 0.58 while straight edges counted as agreement; with
# structured_tiles it stays at 0.48 for 10 or 20. Each candidate's FFT (of a fast size) is shared by
# its windows (NccPlan), so 10 candidates take less time than 5 did before.
CANDIDATES = 10  # verified: the images with the most similar single windows ...
CONSISTENT_CANDIDATES = 5  # ... and those whose windows agreeing on a displacement match best exactly,
VOTE_POOL = 50  # ... among this many with the most agreeing windows
EXACT_SIMILARITY = 0.985  # an agreeing window counts when its exact similarity is at least this
WINDOWS_VERIFIED = 4  # query windows correlated per candidate
EXACT_SEARCH_LIMIT = 200_000  # windows (about 3,000 images); beyond, an approximate (inverted-file) index
PQ_BYTES = 16
SAMPLE_IMAGES = 20_000  # images whose windows fit the PCA (and the quantiser at scale)


@dataclass
class RegionMatch:
    index: int  # position of the training image
    score: float  # see fuse()
    query_window: tuple  # (row, column) of that window in the 128×128 query thumbnail
    train_window: tuple  # where it matched in the training thumbnail
    area: float  # share of the query's area that agrees with the training image at that displacement
    correlation: float = 0.0  # the best window's normalised cross-correlation

    def as_dict(self) -> dict:
        return asdict(self)


def region_thumbnail(array: np.ndarray) -> np.ndarray:
    """The REGION_SIZE² float thumbnail (0–255) of a normalised image; NaN where it is padding."""
    return imaging.resize(array, REGION_SIZE) * 255.0


def stored_thumbnail(array: np.ndarray) -> np.ndarray:
    """The uint8 REGION_SIZE² thumbnail kept for each training image (padding stored as black)."""
    return np.clip(np.rint(np.nan_to_num(region_thumbnail(array), nan=0.0)), 0, 255).astype(np.uint8)


def _block_means(means: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """The 8×8 block means (n, 64) of the windows at ``positions`` (n, 2), from a map of BLOCK×BLOCK means."""
    offsets = np.arange(8) * BLOCK
    return means[positions[:, 0, None, None] + offsets[None, :, None],
                 positions[:, 1, None, None] + offsets[None, None, :]].reshape(len(positions), 64)


def _standardised(blocks: np.ndarray) -> np.ndarray:
    spread = blocks.std(axis=1, keepdims=True)
    return ((blocks - blocks.mean(axis=1, keepdims=True)) / np.maximum(spread, 1e-6)).astype(np.float32)


def window_descriptors(thumb: np.ndarray, stride: int) -> tuple[np.ndarray, np.ndarray]:
    """(positions (n, 2), descriptors (n, 64)) of the WINDOW×WINDOW windows of ``thumb`` on a
    ``stride`` grid that lie wholly inside the image (no padding) and are not flat."""
    thumb = np.asarray(thumb, dtype=np.float64)
    invalid = np.isnan(thumb)
    means = box_sums(np.where(invalid, 0.0, thumb), BLOCK) / (BLOCK * BLOCK)
    holes = box_sums(invalid.astype(np.float64), WINDOW)
    starts = np.arange(0, thumb.shape[0] - WINDOW + 1, stride)
    positions = np.stack(np.meshgrid(starts, starts, indexing="ij"), axis=-1).reshape(-1, 2)
    blocks = _block_means(means, positions)
    keep = (holes[positions[:, 0], positions[:, 1]] < 0.5) & (blocks.std(axis=1) >= MIN_SPREAD)
    return positions[keep], _standardised(blocks[keep])


_TRAIN_STARTS = np.arange(0, REGION_SIZE - WINDOW + 1, TRAIN_STRIDE)  # a training window's rows and columns


def train_cell(positions: np.ndarray) -> np.ndarray:
    """The grid cell (one byte) of each training window's (row, column): row index × grid width + column index."""
    positions = np.asarray(positions, dtype=np.int64).reshape(-1, 2)
    return (positions[:, 0] // TRAIN_STRIDE * len(_TRAIN_STARTS) + positions[:, 1] // TRAIN_STRIDE).astype(np.uint8)


def cell_position(cells: np.ndarray) -> np.ndarray:
    """(row, column) of training windows from their cells (the inverse of :func:`train_cell`)."""
    cells = np.asarray(cells, dtype=np.int64)
    return np.stack([_TRAIN_STARTS[cells // len(_TRAIN_STARTS)], _TRAIN_STARTS[cells % len(_TRAIN_STARTS)]], axis=-1)


def train_window_descriptors(thumb: np.ndarray, cells: np.ndarray) -> np.ndarray:
    """The descriptors (n, 64) of a stored training thumbnail's windows at grid ``cells`` (see
    :func:`train_cell`), as :func:`window_descriptors` made them for the index, unquantised."""
    means = box_sums(np.asarray(thumb, dtype=np.float64), BLOCK) / (BLOCK * BLOCK)
    return _standardised(_block_means(means, cell_position(cells).reshape(-1, 2)))


def consistent_votes(query_positions: np.ndarray, rows: np.ndarray, owners: np.ndarray,
                     train_positions: np.ndarray, limit: int | None = None) -> dict[int, tuple[int, np.ndarray]]:
    """Per training image, the most query windows that agree on one displacement: each hit (query window
    ``rows[h]`` at ``query_positions[rows[h]]`` matched a window of image ``owners[h]`` at
    ``train_positions[h]``) votes for its displacement's bin of DISPLACEMENT_BIN pixels and the 8 around
    it: a hit of a copied region lies within QUERY_STRIDE/2 pixels of the copy's true displacement when
    its query window is the one nearest the training window, a stride further when it is the next. A
    query window counts once per bin. Returns image → (votes, the query windows that gave them), for the
    ``limit`` images with the most votes (all by default), most votes first."""
    if not len(rows) or limit == 0:
        return {}
    shift = (np.asarray(train_positions) - np.asarray(query_positions)[rows]) // DISPLACEMENT_BIN
    span = 2 * (REGION_SIZE // DISPLACEMENT_BIN + 2)  # displacement bins fit in [0, span) once offset
    around = np.array([(a, b) for a in (-1, 0, 1) for b in (-1, 0, 1)])
    bins = (shift[:, None, :] + around[None] + span // 2)  # hits × 9 × 2
    keys = ((np.repeat(owners, 9).astype(np.int64) * span + bins[..., 0].ravel()) * span + bins[..., 1].ravel())
    radix = len(query_positions) + 1  # (bin key, query window) packed into one integer
    votes = np.unique(keys * radix + np.repeat(rows, 9))  # one vote per window and bin
    keys, starts, counts = np.unique(votes // radix, return_index=True, return_counts=True)
    image = keys // (span * span)
    order = np.lexsort((-counts, image))  # by image, its fullest bin first
    best = order[np.r_[True, image[order][1:] != image[order][:-1]]]
    best = best[np.argsort(-counts[best], kind="stable")][:limit]
    return {int(image[b]): (int(counts[b]), votes[starts[b]: starts[b] + counts[b]] % radix) for b in best}


def fit(descriptors: np.ndarray, dim: int = REGION_PCA_DIM, max_samples: int = 100_000, seed: int = 0):
    rng = np.random.default_rng(seed)
    sample = descriptors if len(descriptors) <= max_samples else descriptors[
        rng.choice(len(descriptors), max_samples, replace=False)]
    mean = sample.mean(axis=0)
    _, _, vt = np.linalg.svd(sample - mean, full_matrices=False)
    return mean.astype(np.float32), vt[:min(dim, vt.shape[0])].astype(np.float32)


def project(descriptors: np.ndarray, mean: np.ndarray, components: np.ndarray) -> np.ndarray:
    reduced = (np.asarray(descriptors, np.float32) - mean) @ components.T
    return np.ascontiguousarray(reduced / np.maximum(np.linalg.norm(reduced, axis=1, keepdims=True), 1e-12),
                                dtype=np.float32)


def write_index(directory: Path, thumbnails: np.ndarray, workers: int = 1) -> int:
    """Write the region stage's files for the training thumbnails (N×128×128 uint8): the thumbnails
    themselves (memory-mapped at screening time), the PCA, the window index and each window's image.
    ``workers`` > 1 describes the windows in that many processes (the index is the same). Returns
    the number of windows indexed."""
    import faiss

    directory = Path(directory)
    count = len(thumbnails)
    if isinstance(thumbnails, np.memmap) and Path(thumbnails.filename).resolve() == (directory / "train_region.u8").resolve():
        pass  # written in place already
    else:
        np.asarray(thumbnails, dtype=np.uint8).tofile(directory / "train_region.u8")

    def described(first: int, last: int):
        owners, parts, cells = [], [], []
        for i in range(first, last):
            positions, d = window_descriptors(np.asarray(thumbnails[i], dtype=np.float64), TRAIN_STRIDE)
            parts.append(d)
            owners.append(np.full(len(d), i, dtype=np.int32))
            cells.append(train_cell(positions))
        return (np.concatenate(parts) if parts else np.zeros((0, 64), np.float32),
                np.concatenate(owners) if owners else np.zeros(0, np.int32),
                np.concatenate(cells) if cells else np.zeros(0, np.uint8))

    # The PCA (and, at scale, the coarse quantiser) are fitted on a sample of images, then every
    # image's windows are described and added chunk by chunk: the 24 million windows of MIMIC-CXR
    # never sit in memory at once as floats.
    rng = np.random.default_rng(0)
    sample_images = np.sort(rng.choice(count, min(count, SAMPLE_IMAGES), replace=False))
    sample = np.concatenate([described(int(i), int(i) + 1)[0] for i in sample_images])
    if len(sample) < 2:
        raise ValueError("The training images have no structured regions to index (all flat or padding).")
    mean, components = fit(sample)
    np.savez(directory / "region_pca.npz", mean=mean, components=components)
    dim = components.shape[0]
    expected = len(sample) * count / max(1, len(sample_images))
    if expected > EXACT_SEARCH_LIMIT:
        # MIMIC scale (24 million windows): an inverted file of product-quantised vectors (16 bytes
        # each) keeps the index near 0.6 GB, and lists of a fixed size (screening.vector_index) keep
        # the search of the query's windows as fast on one core at 377,000 images as at 20,000.
        nlist = vector_index.region_lists(expected)
        index = faiss.IndexIVFPQ(faiss.IndexFlatIP(dim), dim, nlist, PQ_BYTES, 8, faiss.METRIC_INNER_PRODUCT)
        # At least 10,000 points also for few lists: each 8-bit sub-quantiser fits 256 centroids.
        training = min(len(sample), max(vector_index.TRAINING_PER_LIST * nlist, 10_000))
        index.train(project(sample[rng.choice(len(sample), training, replace=False)], mean, components))
    else:
        index = faiss.IndexFlatIP(dim)
    owners, cells = [], []
    firsts = range(0, count, 2048)
    # In order: a window's id is its position in the index.
    for descriptors, owner, cell in parallel.ordered_map(described, firsts, [min(count, f + 2048) for f in firsts],
                                                         workers=workers):
        if len(descriptors):
            index.add(project(descriptors, mean, components))
        owners.append(owner)
        cells.append(cell)
    faiss.write_index(index, str(directory / "region_vectors.faiss"))
    np.save(directory / "region_owner.npy", np.concatenate(owners))
    np.save(directory / "region_cell.npy", np.concatenate(cells))
    return int(index.ntotal)


class RegionSearch:
    """The region stage of one index directory (see :func:`write_index`)."""

    def __init__(self, directory: str | Path, count: int):
        directory = Path(directory)
        self.thumbnails = np.memmap(directory / "train_region.u8", dtype=np.uint8, mode="r",
                                    shape=(count, REGION_SIZE, REGION_SIZE))
        with np.load(directory / "region_pca.npz") as pca:
            self.mean, self.components = pca["mean"], pca["components"]
        self.index = vector_index.read(directory / "region_vectors.faiss")
        self.owners = np.load(directory / "region_owner.npy")
        self.cells = np.load(directory / "region_cell.npy")

    def resident_bytes(self) -> int:
        return int(vector_index.resident_bytes(self.index) + self.owners.nbytes + self.cells.nbytes
                   + self.components.nbytes)

    def candidates(self, thumb: np.ndarray) -> dict[int, list[tuple[float, tuple]]]:
        """Training images to verify, each with its query windows: image → [(similarity, query window)],
        best first. The CANDIDATES images with the most similar single window, and the
        CONSISTENT_CANDIDATES whose windows agreeing on a displacement match best (with those windows):
        of the VOTE_POOL images with the most agreeing windows, those with the most agreeing windows
        that are at least EXACT_SIMILARITY similar, measured exactly (see :meth:`_checked_exactly`)."""
        positions, descriptors = window_descriptors(thumb, QUERY_STRIDE)
        if not len(descriptors):
            return {}
        projected = project(descriptors, self.mean, self.components)
        sims, ids = self.index.search(projected, min(NEIGHBOURS, self.index.ntotal))
        votes: dict[int, dict[tuple, float]] = {}
        for row, (row_s, row_i) in enumerate(zip(sims, ids)):
            window = (int(positions[row, 0]), int(positions[row, 1]))
            for s, i in zip(row_s, row_i):
                if i < 0:
                    continue
                owner = int(self.owners[i])
                windows = votes.setdefault(owner, {})
                if float(s) > windows.get(window, -2.0):
                    windows[window] = float(s)
        ranked = sorted(votes, key=lambda o: -max(votes[o].values()))[:CANDIDATES]
        chosen = {o: sorted(((s, w) for w, s in votes[o].items()), reverse=True) for o in ranked}
        rows, neighbour = np.nonzero(ids >= 0)
        hits = ids[rows, neighbour]
        owners, cells = self.owners[hits], self.cells[hits]
        pool = consistent_votes(positions, rows, owners, cell_position(cells), limit=VOTE_POOL)
        for owner, windows in self._checked_exactly(pool, projected, rows, owners, cells)[:CONSISTENT_CANDIDATES]:
            if owner not in chosen:
                chosen[owner] = [(s, (int(positions[r, 0]), int(positions[r, 1]))) for s, r in windows]
        return chosen

    def _checked_exactly(self, pool: dict, projected: np.ndarray, rows: np.ndarray, owners: np.ndarray,
                         cells: np.ndarray) -> list[tuple[int, list[tuple[float, int]]]]:
        """The images of ``pool`` (see :func:`consistent_votes`), best first, by their agreeing query
        windows' exact similarity to the training windows they hit: windows at least EXACT_SIMILARITY
        similar, then the sum of the three best similarities. Each with its windows: [(similarity, query
        window's row in ``projected``)], best first.

        The search ranks by product-quantised similarity, which is off by about 0.01: among millions of
        windows, look-alikes at 0.98–0.99 outrank a copied window at 0.995. A quarter-area copy may hold
        only two training windows, so it can gather fewer agreeing votes than chance look-alikes; its
        windows still match exactly, which the look-alikes' rarely do. Only the pool's thumbnails are read."""
        ranked = []
        for owner, (_, windows) in pool.items():
            hit = np.nonzero((owners == owner) & np.isin(rows, windows))[0]
            train = project(train_window_descriptors(self.thumbnails[owner], cells[hit]), self.mean, self.components)
            similarity = (projected[rows[hit]] * train).sum(axis=1)
            best: dict[int, float] = {}
            for row, value in zip(rows[hit].tolist(), similarity.tolist()):
                best[row] = max(best.get(row, -2.0), value)
            values = sorted(best.values(), reverse=True)
            key = (sum(v >= EXACT_SIMILARITY for v in values), sum(values[:3]))
            ranked.append((key, owner, sorted(((v, r) for r, v in best.items()), reverse=True)))
        ranked.sort(key=lambda item: item[0], reverse=True)
        return [(owner, windows) for _, owner, windows in ranked]

    def analyse(self, thumb: np.ndarray, also: tuple = ()) -> RegionMatch | None:
        """The best region match of a 128×128 query thumbnail (0–255, NaN = padding). ``also``: more
        training images to verify (the whole-image stage's best candidates), with a fixed spread of
        query windows — a blend of two training images confuses window retrieval more than it
        confuses the whole-image search."""
        thumb = np.asarray(thumb, dtype=np.float64)
        query = detail(thumb)
        structured = structured_tiles(query)
        verified = {owner: [w for _, w in windows[:WINDOWS_VERIFIED]] for owner, windows in self.candidates(thumb).items()}
        spread = [(r, c) for r in range(0, REGION_SIZE - WINDOW + 1, 40) for c in range(0, REGION_SIZE - WINDOW + 1, 40)
                  if not np.isnan(thumb[r:r + WINDOW, c:c + WINDOW]).any()]
        for owner in also:
            windows = verified.setdefault(int(owner), [])
            windows += [w for w in spread if w not in windows]
        best = None
        for owner, windows in verified.items():
            candidate = detail(np.asarray(self.thumbnails[owner], dtype=np.float64))
            plan = NccPlan(candidate, WINDOW)
            found = None
            for r, c in windows:
                ncc = plan(query[r:r + WINDOW, c:c + WINDOW])
                arg = int(ncc.argmax())
                if found is None or float(ncc.flat[arg]) > found[0]:
                    tr, tc = divmod(arg, ncc.shape[1])
                    found = (float(ncc.flat[arg]), (r, c), (tr, tc))
            if found is None:
                continue
            correlation, (r, c), (tr, tc) = found
            area = agreement_area(query, candidate, (tr - r, tc - c), structured)
            score = fuse(correlation, area)
            if best is None or score > best[0]:
                best = (score, owner, (r, c), (tr, tc), correlation, area)
        if best is None:
            return None
        score, owner, (r, c), (tr, tc), correlation, area = best
        return RegionMatch(index=owner, score=score, query_window=(r, c), train_window=(tr, tc), area=round(area, 4),
                           correlation=correlation)
