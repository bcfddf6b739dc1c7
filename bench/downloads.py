"""Download a 1 GiB model file through a real signed link and print memory figures.

Builds a throw-away platform (SQLite, a temp MODEL_ROOT), registers the demo pipeline with
an extra 1 GiB file through the real register service, issues a signed link to a Weights-tier
user, and fetches it over HTTP from a real WSGI server (wsgiref, in a thread) with a personal
API token, as ``curl -H "Authorization: Bearer …"`` would: once whole, once resumed from the
middle (Range). While the bytes flow, RSS is sampled every 5 ms and tracemalloc traces Python
allocations. Flat memory means the peaks stay within a few MiB of the baseline, whatever the
file size.

    .venv/bin/python bench/downloads.py [--size-mib 1024]
"""

from __future__ import annotations

import argparse
import hashlib
import http.client
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
    parser.add_argument("--size-mib", type=int, default=1024)
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="cxr-bench-downloads-"))
    os.environ.update(
        {
            "DJANGO_SETTINGS_MODULE": "cxr_platform.settings",
            "DJANGO_ENV": "development",
            "CXR_VAR_DIR": str(workdir / "var"),
            "MODEL_ROOT": str(workdir / "models"),
            "DOWNLOAD_OFFLOAD": "django",
            "LOG_LEVEL": "WARNING",
        }
    )
    sys.path.insert(0, str(ROOT))
    try:
        run(workdir, args.size_mib * MiB)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def run(workdir: Path, size: int) -> None:
    import django

    django.setup()
    import psutil
    from django.core.management import call_command
    from django.core.wsgi import get_wsgi_application
    from django.urls import reverse
    from django.utils import timezone
    from wsgiref.simple_server import WSGIRequestHandler, make_server

    from access import capabilities as caps
    from access.models import AccessGrant, Tier, User
    from cxr_platform.api.services import create_api_token
    from registry import services
    from registry.demo import create_demo_model

    call_command("migrate", verbosity=0)
    model_dir = create_demo_model(workdir / "models" / "bench")
    big = model_dir / "unet" / "bench-1GiB.bin"
    block = os.urandom(MiB)
    with big.open("wb") as handle:
        for _ in range(size // MiB):
            handle.write(block)
    started = time.perf_counter()
    version = services.register_model_version(name="bench", version="1", directory=model_dir)
    print(f"registered {version} ({version.total_size / MiB:,.0f} MiB) in {time.perf_counter() - started:.1f} s")

    user = User.objects.create(username="bench", email="bench@example.org")
    tier = Tier.objects.create(slug="bench-weights", name="Bench weights", capabilities=[caps.DOWNLOAD_WEIGHTS])
    now = timezone.now()
    AccessGrant.objects.create(user=user, tier=tier, granted_at=now, expires_at=now + timezone.timedelta(days=1))
    _, raw_token = create_api_token(user=user, name="bench")
    model_file = version.files.get(path="unet/bench-1GiB.bin")
    link = services.issue_download_link(user=user, model_file=model_file)
    url = reverse("model-download", args=[link.token, model_file.path])

    class QuietHandler(WSGIRequestHandler):
        def log_message(self, *args):
            pass

    server = make_server("127.0.0.1", 0, get_wsgi_application(), handler_class=QuietHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port = server.server_address[1]
    process = psutil.Process()

    def fetch(range_header: str | None):
        headers = {"Authorization": f"Bearer {raw_token}"}
        if range_header:
            headers["Range"] = range_header
        peak = {"rss": 0}
        done = threading.Event()

        def sample():
            while not done.is_set():
                peak["rss"] = max(peak["rss"], process.memory_info().rss)
                time.sleep(0.005)

        baseline = process.memory_info().rss
        sampler = threading.Thread(target=sample, daemon=True)
        tracemalloc.start()
        sampler.start()
        t0 = time.perf_counter()
        connection = http.client.HTTPConnection("127.0.0.1", port)
        connection.request("GET", url, headers=headers)
        response = connection.getresponse()
        digest, received = hashlib.sha256(), 0
        while chunk := response.read(MiB):
            digest.update(chunk)
            received += len(chunk)
        elapsed = time.perf_counter() - t0
        connection.close()
        done.set()
        sampler.join()
        _, traced_peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        return response.status, received, digest.hexdigest(), elapsed, baseline, peak["rss"], traced_peak

    print(f"{'request':<22}{'status':>7}{'received':>12}{'MiB/s':>9}{'base RSS':>11}{'peak RSS':>11}{'Δ RSS':>9}{'tracemalloc':>13}")
    for label, range_header in (("whole file", None), ("resume from middle", f"bytes={size // 2}-")):
        status, received, sha, elapsed, base, peak, traced = fetch(range_header)
        print(
            f"{label:<22}{status:>7}{received / MiB:>9,.0f} MiB{received / MiB / elapsed:>9.0f}"
            f"{base / MiB:>8.0f} MiB{peak / MiB:>8.0f} MiB{(peak - base) / MiB:>6.1f} MiB{traced / MiB:>10.2f} MiB"
        )
        if range_header is None and (status != 200 or sha != model_file.sha256):
            raise SystemExit("the whole download does not match the registered SHA-256")
        if range_header is not None and (status != 206 or received != size - size // 2):
            raise SystemExit("the resumed download did not return the second half of the file")
    server.shutdown()
    server.server_close()
    print(f"file size {size / MiB:,.0f} MiB; chunk size 1 MiB; both transfers checked (status; SHA-256 of the whole; length of the resumed half).")


if __name__ == "__main__":
    main()
