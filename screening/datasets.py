"""Splitting one folder of real radiographs into training and holdout folders (symbolic links)."""

from __future__ import annotations

import shutil
from pathlib import Path

from .imaging import list_images


def split_folder(source: str | Path, target: str | Path, *, holdout_every: int = 2) -> tuple[Path, Path]:
    """Put every ``holdout_every``-th image (sorted by path) in ``target/holdout``, the rest in
    ``target/train``, as symbolic links; returns (train, holdout). Deterministic, so a rebuilt
    split is the same. One image per patient is assumed (true of ../shared/data/cxr_public)."""
    source, target = Path(source).resolve(), Path(target)
    images = list_images(source)
    if len(images) < 4:
        raise ValueError(f"Need at least 4 images under {source} to split, found {len(images)}")
    train, holdout = target / "train", target / "holdout"
    for folder in (train, holdout):
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
    for position, path in enumerate(images):
        folder = holdout if position % holdout_every == holdout_every - 1 else train
        name = str(path.relative_to(source)).replace("/", "__")
        (folder / name).symlink_to(path)
    return train, holdout
