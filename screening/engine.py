"""The screening engine, independent of Django models: one import for the rest of the platform.

It is split by responsibility:

* :mod:`screening.index` — building an index from folders of radiographs (resumable, in chunks,
  with a per-file report), its files; :mod:`screening.patients` — each image's patient and study;
  :mod:`screening.calibration` — the threshold from held-out radiographs;
* :mod:`screening.search` — :class:`Screener`: retrieval, polarity/orientation variants of the query,
  verification, the numbers behind a verdict;
* :mod:`screening.align` — aligning thumbnails and scoring a match (occlusion-robust), and the
  polarity/orientation prior.

Everything callers use is re-exported here, so ``from screening import engine`` keeps working.
"""

from cxr_platform.hashing import sha256_path as sha256_of  # noqa: F401

from .align import (  # noqa: F401
    FUSION_WEIGHTS,
    IDENTITY,
    ROTATIONS,
    SHIFT_RADIUS,
    VARIANTS,
    ZOOMS,
    Match,
    apply_variant,
    canonical_vector,
    fuse,
    mask_dark_border,
    orientation_prior,
    verify_candidates,
)
from .calibration import calibrate, threshold_for  # noqa: F401
from .index import (  # noqa: F401
    CHUNK,
    PCA_DIM,
    _describe_chunk,
    _describe_set,
    build_index,
    fit_pca,
    report_lines,
    write_canonical_index,
)
from .patients import read_subjects_csv, resolve_subjects, subject_codes, subject_from_path, write_subjects  # noqa: F401
from .search import (  # noqa: F401
    CANONICAL_K,
    EXACT_PEARSON,
    FORMAT_VERSION,
    HOLDOUT_K,
    REBUILD_COMMAND,
    RETRIEVAL_VARIANTS,
    RETRIEVE_K,
    TARGET_FPR,
    Analysis,
    IndexNotReady,
    Screener,
    StageBEncoder,
    StageBUnavailable,
    is_current,
    project,
)
