"""DICOM export throughput and memory: files per second and peak memory for 2,000 images.

Builds a throw-away platform (SQLite, temp media), registers the demo pipeline, stores a
cohort of passed images whose PNGs are the shared real chest X-rays resized to ``--px``
(512 px, RoentGen's output size; noise if the shared images are missing), written as generation
writes them (``cxr_platform.png``), and runs the real
export service (``exports.services.build_export``: DICOM encoding in encoder threads,
DICOMDIR, manifest, signature, stored zip) for each size in ``--sizes``. While it runs, the RSS of
the process is sampled every 50 ms and tracemalloc traces its Python allocations. Flat memory: the peaks do not grow with the cohort size.

    .venv/bin/python bench/exports.py [--sizes 500,2000] [--px 512] [--workers 0] [--transfer-syntaxes explicit,jpegls,rle]

Each transfer syntax is measured in turn; "vs raw" is the size of the uncompressed export's zip over
this one's (how many times smaller).

Targets: issue 7, >= 250 files/s uncompressed for 2,000 images, memory flat as the cohort grows;
issue 16, the compressed choice (JPEG-LS) >= 1.5x smaller than raw at >= 150 files/s on 2 cores.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import threading
import time
import tracemalloc
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MiB = 1024 * 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="500,2000", help="comma-separated cohort sizes")
    parser.add_argument("--px", type=int, default=512)
    parser.add_argument("--workers", type=int, default=0, help="encoder threads (0: settings default)")
    parser.add_argument("--transfer-syntaxes", default="explicit,jpegls,rle",
                        help="comma-separated: explicit, jpegls, rle")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="cxr-bench-exports-"))
    os.environ.update({
        "DJANGO_SETTINGS_MODULE": "cxr_platform.settings",
        "DJANGO_ENV": "development",
        "CXR_VAR_DIR": str(workdir / "var"),
        "MEDIA_ROOT": str(workdir / "media"),
        "MODEL_ROOT": str(workdir / "models"),
        "LOG_LEVEL": "WARNING",
        "HF_HUB_OFFLINE": "1",
    })
    if args.workers:
        os.environ["EXPORT_WORKERS"] = str(args.workers)
    sys.path.insert(0, str(ROOT))
    try:
        run(workdir, [int(s) for s in args.sizes.split(",")], args.px, args.transfer_syntaxes.split(","))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _pngs(px: int) -> list[bytes]:
    import numpy as np
    from PIL import Image

    from cxr_platform.png import encode_gray_png, picture_to_png

    shared = Path(os.environ.get("CXR_PUBLIC_DIR", ROOT.parent / "shared" / "data" / "cxr_public")) / "images"
    if not shared.is_dir():  # the downscaled copies shipped for the tests: still real radiographs
        shared = ROOT / "tests" / "assets" / "cxr_public" / "images"
    sources = sorted(shared.glob("*.png"))[:60] if shared.is_dir() else []
    out = []
    for source in sources:  # stored the way generation stores its images
        with Image.open(source) as picture:
            out.append(picture_to_png(picture.convert("L").resize((px, px))))
    if not out:
        rng = np.random.default_rng(0)
        out = [encode_gray_png((rng.random((px, px)) * 255).astype(np.uint8)) for _ in range(8)]
    return out


def _screened(version, cohort, images) -> None:
    """Sealed "passed" screening records, as generation writes them: exports refuse images without."""
    from screening.models import ScreeningIndex, ScreeningRecord
    from screening.sealing import compute_seal

    index, _ = ScreeningIndex.objects.get_or_create(
        model_version=version, defaults={"directory": "/nonexistent", "status": ScreeningIndex.Status.READY})
    records = ScreeningRecord.objects.bulk_create(
        [ScreeningRecord(image_id=image.pk, cohort=cohort, index=index, decision=ScreeningRecord.Decision.PASSED,
                         flagged=False, score=0.3, threshold=0.8) for image in images], batch_size=1000)
    for record in records:
        record.seal = compute_seal(record)
    ScreeningRecord.objects.bulk_update(records, ["seal"], batch_size=1000)


def run(workdir: Path, sizes: list[int], px: int, transfer_syntaxes: list[str]) -> None:
    import django

    django.setup()
    import psutil
    from django.conf import settings
    from django.core.files.base import ContentFile
    from django.core.files.storage import default_storage
    from django.core.management import call_command
    from django.utils import timezone

    from access import capabilities as caps
    from access.models import AccessGrant, Tier, User
    from exports import services
    from exports.models import Export
    from exports.package import _worker_count
    from generation.models import Cohort, SyntheticImage
    from registry import services as registry
    from registry.demo import create_demo_model

    call_command("migrate", verbosity=0)
    version = registry.register_model_version(name="bench", version="1",
                                              directory=create_demo_model(workdir / "models" / "bench"))
    user = User.objects.create(username="bench", email="bench@example.org")
    tier = Tier.objects.create(slug="bench-export", name="Bench export", capabilities=[caps.EXPORT_DICOM])
    now = timezone.now()
    AccessGrant.objects.create(user=user, tier=tier, granted_at=now, expires_at=now + timezone.timedelta(days=1))
    pngs = _pngs(px)
    print(f"{len(pngs)} source PNGs of {px}x{px} px ({sum(map(len, pngs)) / len(pngs) / 1024:.0f} KiB each), "
          f"encoder threads: {_worker_count(None)}, CPUs: {os.cpu_count()}")

    process = psutil.Process()
    print(f"{'syntax':>9}{'images':>7}{'build s':>9}{'files/s':>9}{'CPU s':>8}{'files/CPU-s':>13}{'zip MiB':>9}"
          f"{'vs raw':>8}{'base RSS':>10}{'peak':>10}{'Δ':>9}{'tracemalloc':>13}")
    raw_size: dict[int, int] = {}
    for transfer_syntax, size in [(t, s) for t in transfer_syntaxes for s in sizes]:
        cohort = Cohort.objects.create(owner=user, name=f"bench {size}", model_version=version, seed=1, size=size,
                                       status=Cohort.Status.COMPLETED, specification={"size": size})
        rows = []
        for index in range(size):
            name = default_storage.save(f"cohorts/{cohort.pk}/{index:06d}-0.png", ContentFile(pngs[index % len(pngs)]))
            rows.append(SyntheticImage(
                cohort=cohort, index=index, seed=index, prompt="48 year old WHITE female. Small left pleural effusion.",
                demographics={"age": 48, "sex": "F", "race": "WHITE", "view": "PA"}, findings=["pleural_effusion"],
                sampling={"steps": 50}, image=name, status=SyntheticImage.Status.PASSED))
        images = SyntheticImage.objects.bulk_create(rows, batch_size=1000)
        del rows
        _screened(version, cohort, images)
        export = services.request_export(user=user, cohort=cohort, transfer_syntax=transfer_syntax, enqueue=False)

        peak = {"rss": 0}
        done = threading.Event()

        def total_rss():
            return process.memory_info().rss  # the encoders are threads of this process

        def sample():
            while not done.is_set():
                peak["rss"] = max(peak["rss"], total_rss())
                time.sleep(0.05)

        base = total_rss()
        tracemalloc.start()
        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        cpu0 = os.times()
        t0 = time.perf_counter()
        status = services.build_export(export.pk)
        elapsed = time.perf_counter() - t0
        cpu1 = os.times()
        cpu = sum(getattr(cpu1, f) - getattr(cpu0, f) for f in ("user", "system"))
        done.set()
        sampler.join()
        _, traced = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        export.refresh_from_db()
        if status != Export.Status.READY:
            raise SystemExit(f"export failed: {export.error}")
        if transfer_syntax == "explicit":
            raw_size[size] = export.size
        ratio = f"{raw_size[size] / export.size:.2f}x" if size in raw_size else "-"
        print(f"{transfer_syntax:>9}{size:>7}{elapsed:>9.2f}{size / elapsed:>9.0f}{cpu:>8.1f}{size / cpu:>13.0f}"
              f"{export.size / MiB:>9.0f}{ratio:>8}"
              f"{base / MiB:>6.0f} MiB{peak['rss'] / MiB:>6.0f} MiB{(peak['rss'] - base) / MiB:>5.0f} MiB"
              f"{traced / MiB:>9.1f} MiB")
        default_storage.delete(export.file_name)
        for image in SyntheticImage.objects.filter(cohort=cohort).values_list("image", flat=True):
            default_storage.delete(image)
    print("build s: the whole export task (DICOM encoding straight into the stored zip, DICOMDIR, manifest, "
          "signature, SHA-256 of the zip, saving it to storage); files/s = images / build s. CPU s: CPU time of it, "
          "all threads of this process; files/CPU-s x free cores estimates files/s on an idle machine. "
          "peak: RSS of this process, sampled every 50 ms.")


if __name__ == "__main__":
    main()
