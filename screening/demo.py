"""For ``make run``: give the demo model version(s) a screening index (idempotent).

The index is built from ../shared/data/cxr_public when it exists, else from the downscaled copy
of the same radiographs shipped in tests/assets/cxr_public (or from SCREENING_DEMO_TRAIN_DIR, a
folder of real radiographs split alternately into train and holdout). Should neither be there, it
is built from a small set of images the demo model itself renders with seeds no cohort uses, so
screening (and therefore generation) works everywhere.
"""

from __future__ import annotations

from pathlib import Path

from django.conf import settings

from . import engine

DEMO_RENDER_COUNT = 24
DEMO_RENDER_SEED = 900_000_000  # far from any cohort's image seeds


def _public_images() -> Path | None:
    configured = getattr(settings, "SCREENING_DEMO_TRAIN_DIR", "") or ""
    # A configured folder is the only one tried (an empty one means: render demo images).
    candidates = [Path(configured)] if configured else [
        Path(settings.BASE_DIR).parent / "shared" / "data" / "cxr_public",
        Path(settings.BASE_DIR) / "tests" / "assets" / "cxr_public",  # shipped with the repository
    ]
    for folder in candidates:
        images = folder / "images" if (folder / "images").is_dir() else folder
        if images.is_dir() and any(images.iterdir()):
            return images
    return None


def _render_demo_images(model_version, target: Path) -> Path:
    """Render DEMO_RENDER_COUNT images with the demo model into target (PNG files)."""
    from generation.inference import SamplingParams, get_engine

    target.mkdir(parents=True, exist_ok=True)
    engine = get_engine(model_version)
    params = SamplingParams.from_defaults(model_version.defaults, {})
    seeds = [DEMO_RENDER_SEED + i for i in range(DEMO_RENDER_COUNT)]
    pictures = engine.generate(["chest x-ray"] * len(seeds), seeds, params)
    for seed, picture in zip(seeds, pictures, strict=True):
        picture.convert("L").save(target / f"demo-{seed}.png")
    return target


def seed_demo(stdout) -> None:
    from registry.demo import DEMO_NAME
    from registry.models import ModelVersion

    from .datasets import split_folder
    from .models import ScreeningIndex
    from .services import build_screening_index

    for model_version in ModelVersion.objects.filter(name=DEMO_NAME):
        ready = ScreeningIndex.objects.filter(model_version=model_version, status=ScreeningIndex.Status.READY).first()
        if ready is not None and engine.is_current(ready.directory):
            stdout.write(f"Screening index of {model_version} is ready.")
            continue
        work = Path(settings.VAR_DIR if hasattr(settings, "VAR_DIR") else settings.MEDIA_ROOT) / "screening-demo"
        source = _public_images()
        if source is None:
            stdout.write(f"No real radiographs found; rendering {DEMO_RENDER_COUNT} demo images for the index…")
            source = _render_demo_images(model_version, work / f"rendered-{model_version.pk}")
        train, holdout = split_folder(source, work / f"split-{model_version.pk}")
        stdout.write(f"Building the screening index of {model_version} from {source}…")
        index = build_screening_index(model_version, train, holdout, progress=False)
        stdout.write(f"Screening index of {model_version} ready ({index.train_count} training images, "
                     f"threshold {index.threshold:.3f}).")
