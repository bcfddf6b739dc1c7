"""Screening an image against a built index: retrieval, verification, the verdict's numbers.

:class:`Screener` loads one index directory (see :mod:`screening.index` for its files) and scores
thumbnails against it: candidates are retrieved with faiss for variants of the query (small
rotations, zooms and shifts, the mirror image, and the canonical view), aligned and scored by
:func:`screening.align.verify_candidates`. The query is screened as given and, when it looks like a
negative or like a radiograph turned by quarter turns, also in that polarity/orientation; the better
of the two decides.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from cxr_platform.hashing import sha256_path as sha256_of

from . import align, imaging, regions, vector_index
from .align import IDENTITY, VARIANTS, Match, apply_variant, canonical_vector, mask_dark_border

# 5: each region window's place in its image (region_cell.npy), for displacement-consistent votes
# 4: the region stage (partial copies: screening.regions)
# 3: patient (subject) and study identifiers per image, a patient-aware ratio, polarity/orientation
#    variants and occlusion-robust scores (2: centre descriptors and the canonical view)
FORMAT_VERSION = 5
REBUILD_COMMAND = "python manage.py build_screening_index --model-version <id|name:version> --train DIR --holdout DIR"
RETRIEVE_K = 20  # training candidates verified per image
CANONICAL_K = 5  # more candidates: the nearest in the canonical view
HOLDOUT_K = 8  # holdout candidates verified per image (privacy summary)
RETRIEVAL_VARIANTS = (  # (rotation, zoom, shift) applied to the query before the descriptor search
    (0.0, 1.0, (0, 0)), (6.0, 1.0, (0, 0)), (-6.0, 1.0, (0, 0)), (0.0, 1.15, (0, 0)), (6.0, 1.15, (0, 0)),
    (-6.0, 1.15, (0, 0)), (0.0, 1.0, (6, 0)), (0.0, 1.0, (-6, 0)), (0.0, 1.0, (0, 6)), (0.0, 1.0, (0, -6)),
    (0.0, 1.0, (6, 6)), (0.0, 1.0, (-6, -6)), (0.0, 1.0, (6, -6)), (0.0, 1.0, (-6, 6)),
    (0.0, 1.2, (5, 5)), (0.0, 1.2, (-5, -5)), (0.0, 1.2, (5, -5)), (0.0, 1.2, (-5, 5)),
)
# A query with a wide padded border (at least PADDED_SHARE of it) may be a zoomed-out copy: it is also
# retrieved magnified and aligned with the zooms of align.ZOOMS_OUT.
PADDED_SHARE = 0.15
ZOOM_OUT_VARIANTS = ((0.0, 0.8, (0, 0)), (0.0, 0.8, (5, 5)), (0.0, 0.8, (-5, -5)), (0.0, 0.8, (5, -5)),
                     (0.0, 0.8, (-5, 5)))
TARGET_FPR = 0.001
EXACT_PEARSON = 0.995
MATCHED_SEED = 20261203  # the fixed draw of the holdout-sized training subset (like-with-like comparison)
GROUP_TRAIN, GROUP_HOLDOUT, GROUP_MATCHED = 0, 1, 2
# Refined per group: 3 training candidates (the verdict), the best holdout and matched-training one
# (the privacy summary's comparison: the ratio's "second nearest" comes from the coarse alignment).
REFINE = {GROUP_TRAIN: 3, GROUP_HOLDOUT: 1, GROUP_MATCHED: 1}


def is_current(directory: str | Path) -> bool:
    """Whether ``directory`` holds a finished index of the format this version reads."""
    try:
        return json.loads((Path(directory) / "meta.json").read_text()).get("format") == FORMAT_VERSION
    except (OSError, ValueError):
        return False


class IndexNotReady(RuntimeError):
    """The index directory is missing, incomplete or of another format."""


class StageBUnavailable(RuntimeError):
    """Stage B weights are missing or do not match the configured SHA-256."""


class StageBEncoder:
    """A TorchScript image encoder (1×1×S×S float input in [0, 1] → embedding), loaded only from
    a local file whose SHA-256 equals the configured one. Nothing is ever downloaded."""

    def __init__(self, path: str | Path, sha256: str, input_size: int = 224):
        path = Path(path)
        if not path.is_file():
            raise StageBUnavailable(f"Stage B weights not found at {path}")
        if not sha256 or len(sha256) != 64:
            raise StageBUnavailable("Stage B needs SCREENING_STAGE_B_SHA256 (64 hex digits) for its weights file")
        actual = sha256_of(path)
        if actual != sha256.lower():
            raise StageBUnavailable(f"Stage B weights {path} have SHA-256 {actual}, not the configured {sha256.lower()}")
        import torch

        self.torch = torch
        self.model = torch.jit.load(str(path), map_location="cpu").eval()
        self.sha256 = actual
        self.input_size = int(input_size)

    def embed(self, arrays: list[np.ndarray]) -> np.ndarray:
        torch = self.torch
        batch = np.stack([imaging.resize(np.nan_to_num(a, nan=0.0), self.input_size) for a in arrays])[:, None]
        with torch.inference_mode():
            out = self.model(torch.from_numpy(batch.astype(np.float32))).float().reshape(len(arrays), -1).numpy()
        return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)


def project(vectors: np.ndarray, mean: np.ndarray, components: np.ndarray) -> np.ndarray:
    reduced = (np.asarray(vectors, np.float32) - mean) @ components.T
    return (reduced / np.maximum(np.linalg.norm(reduced, axis=1, keepdims=True), 1e-12)).astype(np.float32)


@dataclass
class Analysis:
    train_score: float
    train_match: Match | None
    holdout_score: float | None
    exact: bool
    stage_b_score: float | None = None
    stage_b_index: int | None = None
    seconds: float = 0.0
    candidates: int = 0
    stage_scores: dict = field(default_factory=dict)
    # The best score against a random subset of the training set as large as the holdout compared:
    # what ``holdout_score`` is compared with ("closer to training than to holdout", like with like).
    matched_train_score: float | None = None
    variants: int = 1  # polarity/orientation variants of the query screened
    # The region stage (partial copies): the best window correlation and its match, if it ran.
    region_score: float | None = None
    region_match: regions.RegionMatch | None = None

    def as_dict(self) -> dict:
        return asdict(self)


def _padded(query: np.ndarray) -> bool:
    return bool(np.isnan(query).mean() >= PADDED_SHARE)


def _plain(vector_query: np.ndarray) -> np.ndarray:
    mask = ~np.isnan(vector_query)
    filled = np.where(mask, vector_query, float(np.nanmean(vector_query)) if mask.any() else 0.0)
    return imaging.retrieval_vector(np.clip(filled, 0, 255))


class Screener:
    """Loads one index directory and scores images against it.

    ``variants`` (default: all of :data:`screening.align.VARIANTS`) are the polarity/orientation
    variants the query may be screened in besides itself, ``robust`` turns on the occlusion-robust
    scores and ``regions_enabled`` the region stage (partial copies); all exist to be switched off in
    measurements and tests, never in production."""

    def __init__(self, directory: str | Path, *, meta: dict | None = None, encoder: StageBEncoder | None = None,
                 calibrating: bool = False, variants=VARIANTS, robust: bool = True, regions_enabled: bool = True):
        self.directory = Path(directory)
        if meta is None:
            meta_path = self.directory / "meta.json"
            if not meta_path.exists():
                raise IndexNotReady(f"The screening index in {self.directory} is missing or unfinished (no meta.json).")
            meta = json.loads(meta_path.read_text())
        if meta.get("format") != FORMAT_VERSION:
            raise IndexNotReady(f"The screening index in {self.directory} has format {meta.get('format')}, "
                                f"this version reads {FORMAT_VERSION}; rebuild it: `{REBUILD_COMMAND}`.")
        self.meta = meta
        self.calibrating = calibrating
        self.variants = tuple(dict.fromkeys([IDENTITY, *[tuple(v) for v in variants]]))
        self.robust = robust
        self.regions_enabled = regions_enabled
        size = meta["verify_size"]
        self.size = size
        count = meta["train_count"]
        self.train_verify = np.memmap(self.directory / "train_verify.u8", dtype=np.uint8, mode="r",
                                      shape=(count, size, size))
        self.train_hashes = np.load(self.directory / "train_hashes.npy")
        self.faiss_index = vector_index.read(self.directory / "train_vectors.faiss")
        with np.load(self.directory / "pca.npz") as pca:
            self.pca_mean, self.pca_components = pca["mean"], pca["components"]
        self.template = np.load(self.directory / "template.npy")
        self.template_grid = align.template_grid(self.template)
        self.canonical_index = vector_index.read(self.directory / "train_canonical.faiss")
        with np.load(self.directory / "pca_canonical.npz") as pca:
            self.canonical_mean, self.canonical_components = pca["mean"], pca["components"]
        self.train_subject_codes = np.load(self.directory / "train_subject_codes.npy")
        self.regions = regions.RegionSearch(self.directory, count)
        self.holdout_verify = None
        self.holdout_region = None
        self.holdout_count = int(meta.get("holdout_count") or 0)
        if self.holdout_count:
            self.holdout_verify = np.load(self.directory / "holdout_verify.npy")
            self.holdout_region = np.load(self.directory / "holdout_region.npy", mmap_mode="r")
            self.holdout_vectors = np.load(self.directory / "holdout_vectors.npy")
            self.holdout_subject_codes = np.load(self.directory / "holdout_subject_codes.npy")
            # Like with like: the holdout is compared with a training subset of its own size (and a
            # holdout larger than the training set with a subset of the training set's size).
            matched = min(count, self.holdout_count)
            rng = np.random.default_rng(MATCHED_SEED)
            self.matched_train = np.sort(rng.choice(count, matched, replace=False)) if matched < count \
                else np.arange(count)
            self.matched_holdout = np.sort(rng.choice(self.holdout_count, matched, replace=False)) \
                if matched < self.holdout_count else np.arange(self.holdout_count)
            self.matched_train_vectors = np.stack([self.faiss_index.reconstruct(int(i)) for i in self.matched_train])
        self.encoder = None
        self.stage_b_train = None
        if meta.get("stage_b"):
            if encoder is None:
                raise StageBUnavailable("This index was built with Stage B; its encoder weights must be configured.")
            if encoder.sha256 != meta["stage_b"]["sha256"]:
                raise StageBUnavailable("The configured Stage B weights are not the ones this index was built with.")
            self.encoder = encoder
            self.stage_b_train = np.load(self.directory / "stage_b_train.npy")

    # -- memory accounting for the benchmark and the admin page
    def resident_bytes(self) -> int:
        total = vector_index.resident_bytes(self.faiss_index) + self.train_hashes.nbytes
        total += self.pca_mean.nbytes + self.pca_components.nbytes + self.train_subject_codes.nbytes
        total += vector_index.resident_bytes(self.canonical_index) + self.template.nbytes
        total += self.regions.resident_bytes()
        if self.stage_b_train is not None:
            total += self.stage_b_train.nbytes
        if self.holdout_verify is not None:
            total += self.holdout_verify.nbytes + self.holdout_vectors.nbytes + self.matched_train_vectors.nbytes
        return int(total)

    @property
    def threshold(self) -> float | None:
        calibration = self.meta.get("calibration") or {}
        return (calibration.get("stage_a") or {}).get("threshold")

    @property
    def region_threshold(self) -> float | None:
        calibration = self.meta.get("calibration") or {}
        return (calibration.get("region") or {}).get("threshold")

    @property
    def stage_b_threshold(self) -> float | None:
        calibration = self.meta.get("calibration") or {}
        return (calibration.get("stage_b") or {}).get("threshold")

    # -- retrieval
    def _query_vectors(self, query: np.ndarray, padded: bool = False) -> np.ndarray:
        """Retrieval vectors of ``query``: RETRIEVAL_VARIANTS of it and of its mirror image (rows 0 and
        len(RETRIEVAL_VARIANTS): the unwarped ones), then, when ``padded``, the ZOOM_OUT_VARIANTS."""
        vectors = []
        variants = [(False, v) for v in RETRIEVAL_VARIANTS] + [(True, v) for v in RETRIEVAL_VARIANTS]
        if padded:
            variants += [(flipped, v) for flipped in (False, True) for v in ZOOM_OUT_VARIANTS]
        for flipped, (rotation, zoom, shift) in variants:
            q = query[:, ::-1] if flipped else query
            warped = align._warp(q, rotation, zoom, shift) if (rotation or zoom != 1.0 or any(shift)) else q.copy()
            vectors.append(_plain(warped))
        return project(np.asarray(vectors), self.pca_mean, self.pca_components)

    def _search(self, vectors: np.ndarray, count: int):
        k_search = min(count, self.faiss_index.ntotal)
        return self.faiss_index.search(np.ascontiguousarray(vectors, dtype=np.float32), k_search)

    def _retrieve(self, vectors: np.ndarray, count: int, found=None) -> np.ndarray:
        """The ``count`` training images the query vectors retrieve, merged by best rank, then
        similarity: the image a variant ranks first is always kept, whichever variant undid the edit."""
        sims, ids = found if found is not None else self._search(vectors, count)
        k_search = sims.shape[1]
        ranked: dict[int, tuple] = {}
        for row_s, row_i in zip(sims, ids):
            for rank, (s_, i) in enumerate(zip(row_s, row_i)):
                if i >= 0:
                    key = (rank, -float(s_))
                    if key < ranked.get(int(i), (k_search, 0.0)):
                        ranked[int(i)] = key
        return np.array(sorted(sorted(ranked, key=ranked.get)[:count]), dtype=np.int64)

    def _choose_variants(self, raw: np.ndarray, identity_vectors: np.ndarray):
        """The variants to screen: the query as given, and the polarity/orientation variant that looks
        most like a radiograph of the training set when it looks more like one than the query itself
        (a negative, an image upside down or sideways). "Looks like": the orientation prior (against
        the mean training thumbnail) plus the similarity of its nearest training descriptor.
        Returns (variants, faiss result for ``identity_vectors``)."""
        others = [v for v in self.variants if v != IDENTITY]
        if not others:
            return [IDENTITY], self._search(identity_vectors, RETRIEVE_K)
        prior = align.orientation_prior(raw, self.template_grid, self.variants)
        plain = []
        for variant in others:
            q = mask_dark_border(apply_variant(raw, variant)).astype(np.float32)
            plain.extend([_plain(q), _plain(q[:, ::-1])])
        extra = project(np.asarray(plain), self.pca_mean, self.pca_components)
        sims, ids = self._search(np.concatenate([identity_vectors, extra]), RETRIEVE_K)
        n = len(identity_vectors)
        half = len(RETRIEVAL_VARIANTS)  # rows 0 and ``half``: the unwarped query and its mirror image
        looks = {IDENTITY: prior[IDENTITY] + float(max(sims[0, 0], sims[half, 0]))}
        for i, variant in enumerate(others):
            looks[variant] = prior[variant] + float(sims[n + 2 * i: n + 2 * i + 2, 0].max())
        best = max(others, key=looks.get)
        chosen = [IDENTITY, best] if looks[best] > looks[IDENTITY] else [IDENTITY]
        return chosen, (sims[:n], ids[:n])

    def verify(self, query: np.ndarray, candidates: np.ndarray, groups=None, refine=REFINE,
               subjects: np.ndarray | None = None) -> list[Match]:
        zooms = align.ZOOMS + align.ZOOMS_OUT if _padded(query) else align.ZOOMS
        return align.verify_candidates(query, candidates, groups, refine, subjects=subjects, robust=self.robust,
                                       zooms=zooms)

    def _exact(self, query: np.ndarray, match: Match, candidate: np.ndarray, candidate_hash: int) -> bool:
        """Pixel-level identity once the lossless part of the alignment is undone (polarity, quarter
        turns, mirror image): the share that must be zero. ``query`` is the unmasked thumbnail."""
        query = apply_variant(query, match.variant)
        if match.flipped:
            query = np.ascontiguousarray(query[:, ::-1])
        mask = ~np.isnan(query)
        if mask.mean() < 0.9:
            return False
        if mask.all() and imaging.hamming(imaging.perceptual_hash(query), np.array([candidate_hash]))[0] > 8:
            return False
        x = align._zscore_masked(np.nan_to_num(query), mask)
        y = align._zscore_masked(candidate.astype(np.float32), mask)
        return float((x[mask] * y[mask]).mean()) >= EXACT_PEARSON

    def _analyse_variant(self, raw: np.ndarray, variant: tuple, vectors=None, found=None,
                         exclude_holdout: int | None = None):
        """(best training match, best holdout score, best matched-training score, candidates) for one
        variant of the query (``vectors``, ``found``: its retrieval vectors and their search, if done)."""
        query = mask_dark_border(apply_variant(raw, variant))
        if vectors is None:
            vectors = self._query_vectors(query.astype(np.float32), _padded(query))
        train_ids = self._retrieve(vectors, RETRIEVE_K, found)
        # A copy cropped, rotated and shifted at once can rank below other radiographs in every
        # fixed variant. Seen in the template's frame, a copy and its original line up again.
        canonical = project(canonical_vector(query, self.template)[None], self.canonical_mean,
                            self.canonical_components)
        _, found_canonical = self.canonical_index.search(canonical, min(CANONICAL_K, self.canonical_index.ntotal))
        train_ids = np.union1d(train_ids, found_canonical[0][found_canonical[0] >= 0]).astype(np.int64)
        groups = {GROUP_TRAIN: train_ids}
        holdout_ids = np.zeros(0, dtype=np.int64)
        if self.holdout_verify is not None and not self.calibrating:
            pool, matched = self.matched_holdout, np.arange(len(self.matched_train))
            if exclude_holdout is not None and exclude_holdout in set(pool.tolist()):
                pool = pool[pool != exclude_holdout]
                matched = matched[:-1]  # one fewer on both sides: still like with like
            holdout_sims = (vectors @ self.holdout_vectors[pool].T).max(axis=0)
            holdout_ids = np.sort(pool[np.argsort(-holdout_sims)[:HOLDOUT_K]])
            matched_sims = (vectors @ self.matched_train_vectors[matched].T).max(axis=0)
            groups[GROUP_MATCHED] = np.sort(self.matched_train[matched[np.argsort(-matched_sims)[:HOLDOUT_K]]])
        # Training candidates of both training groups are aligned once; the holdout's after them.
        train_unique = np.union1d(train_ids, groups.get(GROUP_MATCHED, np.zeros(0, np.int64))).astype(np.int64)
        candidates = np.concatenate([np.asarray(self.train_verify[train_unique]),
                                     np.asarray(self.holdout_verify[holdout_ids]) if len(holdout_ids)
                                     else np.zeros((0, self.size, self.size), np.uint8)])
        positions = np.concatenate([train_unique, holdout_ids])
        subjects = np.concatenate([self.train_subject_codes[train_unique],
                                   self.holdout_subject_codes[holdout_ids] if len(holdout_ids)
                                   else np.zeros(0, np.int64)])
        members = {g: np.searchsorted(train_unique, ids) for g, ids in groups.items()}
        if len(holdout_ids):
            members[GROUP_HOLDOUT] = len(train_unique) + np.arange(len(holdout_ids))
        matches = self.verify(query, candidates, members, subjects=subjects)
        best: dict[int, Match] = {}
        for m in matches:
            m.variant = tuple(variant)
            m.index = int(positions[m.index])
            if m.group not in best or m.score > best[m.group].score:
                best[m.group] = m
        if GROUP_TRAIN in best:
            m = best[GROUP_TRAIN]
            m.exact = self._exact(raw, m, np.asarray(self.train_verify[m.index]), int(self.train_hashes[m.index]))
        scores = {g: best[g].score if g in best else None for g in (GROUP_HOLDOUT, GROUP_MATCHED)}
        return best.get(GROUP_TRAIN), scores[GROUP_HOLDOUT], scores[GROUP_MATCHED], len(candidates)

    def analyse_thumbnail(self, thumb: np.ndarray, *, array: np.ndarray | None = None,
                          region: np.ndarray | None = None, exclude_holdout: int | None = None) -> Analysis:
        """Score a 64×64 thumbnail (0–255; NaN = padding) against the training set (and holdout);
        with ``region`` (its 128×128 thumbnail, see screening.regions) the region stage runs too.
        ``exclude_holdout`` leaves one held-out image out of the comparison (evaluation only)."""
        started = time.perf_counter()
        raw = np.asarray(thumb, dtype=np.float64)
        masked = mask_dark_border(raw)
        identity_vectors = self._query_vectors(masked.astype(np.float32), _padded(masked))
        variants, found = self._choose_variants(raw, identity_vectors)
        results = [self._analyse_variant(raw, v, identity_vectors, found, exclude_holdout) if v == IDENTITY
                   else self._analyse_variant(raw, v, exclude_holdout=exclude_holdout) for v in variants]
        best, holdout, matched, candidates = max(results, key=lambda r: r[0].score if r[0] else -1.0)
        holdout = max((r[1] for r in results if r[1] is not None), default=None)
        matched = max((r[2] for r in results if r[2] is not None), default=None)
        analysis = Analysis(
            train_score=best.score if best else 0.0,
            train_match=best,
            holdout_score=holdout,
            exact=bool(best.exact) if best else False,
            candidates=sum(r[3] for r in results),
            matched_train_score=matched,
            variants=len(variants),
        )
        if region is not None and self.regions_enabled:
            also = [] if best is None else [best.index]
            match = self.regions.analyse(region, also=also)
            if match is not None:
                analysis.region_score, analysis.region_match = match.score, match
        if self.encoder is not None and array is not None:
            embedding = self.encoder.embed([np.nan_to_num(array, nan=0.0)])[0]
            b_sims = self.stage_b_train @ embedding
            analysis.stage_b_index = int(b_sims.argmax())
            analysis.stage_b_score = float(b_sims.max())
        if best is not None:
            analysis.stage_scores = {
                "fused": round(best.score, 5), "pearson": round(best.pearson, 5), "ssim": round(best.ssim, 5),
                "tiled_l2": round(best.tiled_l2, 5), "nearest_second_ratio": round(best.ratio, 5),
                "occluded": round(best.occluded, 4), "flipped": best.flipped, "rotation": best.rotation,
                "zoom": best.zoom, "shift": list(best.shift), "quarter_turns": int(best.variant[0]),
                "inverted": bool(best.variant[1]), "variants_screened": len(variants),
                "holdout_fused": None if holdout is None else round(holdout, 5),
                "train_matched_fused": None if matched is None else round(matched, 5),
                "stage_b": None if analysis.stage_b_score is None else round(analysis.stage_b_score, 5),
                "match_subject": self.train_subject(best.index), "match_study": self.train_study(best.index),
            }
        if analysis.region_match is not None:
            m = analysis.region_match
            analysis.stage_scores["region"] = {
                "score": round(m.score, 5), "correlation": round(m.correlation, 5), "area": m.area, "query_window": list(m.query_window),
                "train_window": list(m.train_window), "window": regions.WINDOW, "size": regions.REGION_SIZE,
                "match_position": m.index, "match_subject": self.train_subject(m.index),
                "match_study": self.train_study(m.index)}
        analysis.seconds = time.perf_counter() - started
        return analysis

    def analyse(self, array: np.ndarray, **options) -> Analysis:
        """Score one normalised grayscale image (see imaging.load_gray; NaN = padding)."""
        return self.analyse_thumbnail(imaging.query_thumbnail(array), array=array,
                                      region=regions.region_thumbnail(array), **options)

    # -- what reviewers see of a match
    def _json(self, name: str):
        cache = self.__dict__.setdefault("_json_cache", {})
        if name not in cache:
            cache[name] = json.loads((self.directory / name).read_text())
        return cache[name]

    def train_relative_path(self, position: int) -> str:
        return self._json("train_paths.json")[int(position)]

    def train_path(self, position: int) -> Path:
        """Where the training image at ``position`` was read from (privacy reviewers only)."""
        return Path(self.meta["train_root"]) / self.train_relative_path(position)

    def train_subject(self, position: int) -> str | None:
        """The patient (subject) identifier of the training image at ``position``, or None when the
        index does not know it (then every image counts as its own patient)."""
        return self._json("train_subjects.json")["subject"][int(position)] or None

    def train_study(self, position: int) -> str | None:
        return self._json("train_subjects.json")["study"][int(position)] or None

    def train_thumbnail(self, position: int) -> np.ndarray:
        return np.asarray(self.train_verify[int(position)])

