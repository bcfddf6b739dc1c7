#!/usr/bin/env python3
"""Build tests/assets/cxr_public: the public chest X-rays the test suite uses, downscaled.

Reads the 60 real radiographs in ../shared/data/cxr_public (see its README.md) and writes
tests/assets/cxr_public with:

- ``images/<same name>.png``: 8-bit grayscale (mode ``L``) PNG, longest side scaled down to
  256 px with Pillow's LANCZOS filter (aspect ratio kept, each side rounded to the nearest pixel).
  The two RGBA NIH files (R=G=B, alpha=255) are converted to ``L`` first, which keeps their
  gray values exactly; the check below refuses an RGBA file that is not like that.
- ``metadata.csv``: the source's rows and columns, with ``width``, ``height``, ``mode``, ``bytes``
  and ``sha256`` describing the new files and the change stated at the start of ``notes``
  (the source file's size, mode and sha256 kept there for provenance).
- ``LICENSE-CC-BY-3.0-Hannover.txt``: copied unchanged.

``README.md`` in the target is written by hand (licences, attribution, changes) and left alone.

The output is deterministic: the same source and the same Pillow/zlib give byte-identical
files (no timestamps or other metadata chunks are written). Each source file is checked
against the sha256 in the source metadata.csv before it is used.

    .venv/bin/python scripts/make_test_assets.py            # (re)write tests/assets/cxr_public
    .venv/bin/python scripts/make_test_assets.py --check    # exit 1 if the committed files differ
"""

from __future__ import annotations

import argparse
import csv
import filecmp
import hashlib
import io
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_SOURCE = REPO_ROOT.parent / "shared" / "data" / "cxr_public"
DEFAULT_TARGET = REPO_ROOT / "tests" / "assets" / "cxr_public"
MAX_SIDE = 256
LICENCE_FILE = "LICENSE-CC-BY-3.0-Hannover.txt"
NOTE = "downscaled to 256 px for the test suite"


def _grayscale(picture: Image.Image, name: str) -> Image.Image:
    if picture.mode == "L":
        return picture
    if picture.mode == "RGBA":
        pixels = np.asarray(picture)
        if not ((pixels[..., 0] == pixels[..., 1]).all() and (pixels[..., 1] == pixels[..., 2]).all()
                and (pixels[..., 3] == 255).all()):
            raise SystemExit(f"{name}: RGBA but not gray with opaque alpha; refusing to convert")
        return Image.fromarray(np.ascontiguousarray(pixels[..., 0]), mode="L")  # exactly the gray values
    raise SystemExit(f"{name}: unexpected mode {picture.mode}")


def downscale(data: bytes, name: str) -> tuple[bytes, Image.Image, Image.Image]:
    """(PNG bytes, source picture, new picture) for one source file."""
    with Image.open(io.BytesIO(data)) as source:
        source.load()
    gray = _grayscale(source, name)
    width, height = gray.size
    scale = MAX_SIDE / max(width, height)
    if scale < 1:
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        gray = gray.resize(size, Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    gray.save(buffer, format="PNG", optimize=True)
    return buffer.getvalue(), source, gray


def build(source: Path, target: Path) -> None:
    with open(source / "metadata.csv", newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        columns = list(reader.fieldnames or [])
        rows = list(reader)
    if len(rows) != 60 or any(column not in columns for column in ("filename", "width", "height", "mode",
                                                                    "bytes", "sha256", "notes")):
        raise SystemExit(f"{source / 'metadata.csv'}: not the expected 60-image cxr_public metadata")
    images = target / "images"
    shutil.rmtree(images, ignore_errors=True)
    images.mkdir(parents=True)
    for row in rows:
        name = row["filename"]
        data = (source / name).read_bytes()
        if hashlib.sha256(data).hexdigest() != row["sha256"]:
            raise SystemExit(f"{source / name}: sha256 differs from metadata.csv; not the published file")
        png, original, picture = downscale(data, name)
        (target / name).write_bytes(png)
        provenance = (f"{NOTE} (Pillow LANCZOS{', RGBA converted to L' if original.mode == 'RGBA' else ''}, "
                      f"scripts/make_test_assets.py) from the shared file: {original.width}x{original.height} "
                      f"{original.mode}, {len(data)} bytes, sha256 {row['sha256']}")
        # The source says its RGBA files were "kept unmodified"; true of the shared copy, not of this one.
        notes = row["notes"].replace("(R=G=B, alpha=255) - kept unmodified",
                                     "(R=G=B, alpha=255), kept so in the shared copy")
        row.update(width=str(picture.width), height=str(picture.height), mode=picture.mode, bytes=str(len(png)),
                   sha256=hashlib.sha256(png).hexdigest(), notes=f"{provenance}; {notes}" if notes else provenance)
    with open(target / "metadata.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    shutil.copyfile(source / LICENCE_FILE, target / LICENCE_FILE)


def _differences(expected: Path, actual: Path) -> list[str]:
    names = {"metadata.csv", LICENCE_FILE} | {f"images/{p.name}" for p in (expected / "images").glob("*")}
    names |= {f"images/{p.name}" for p in (actual / "images").glob("*")} if (actual / "images").is_dir() else set()
    return sorted(n for n in names if not (actual / n).is_file() or not (expected / n).is_file()
                  or not filecmp.cmp(expected / n, actual / n, shallow=False))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", type=Path, default=DEFAULT_SOURCE, help="the shared cxr_public folder")
    parser.add_argument("--target", type=Path, default=DEFAULT_TARGET, help="the folder to write")
    parser.add_argument("--check", action="store_true", help="build in a temporary folder and compare with --target")
    args = parser.parse_args(argv)
    if not (args.source / "metadata.csv").is_file():
        print(f"source images missing: {args.source}", file=sys.stderr)
        return 2
    if args.check:
        with tempfile.TemporaryDirectory() as scratch:
            build(args.source, Path(scratch))
            differ = _differences(Path(scratch), args.target)
        if differ:
            print(f"{args.target} differs from a fresh build in: {', '.join(differ)}", file=sys.stderr)
            return 1
        print(f"{args.target} matches a fresh build")
        return 0
    args.target.mkdir(parents=True, exist_ok=True)
    build(args.source, args.target)
    total = sum(p.stat().st_size for p in args.target.rglob("*") if p.is_file())
    print(f"wrote {args.target} ({total / 1e6:.2f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
