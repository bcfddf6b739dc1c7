"""Time of `POST /api/v1/cohorts` for a large cohort (default 20,000 images), by phase.

Builds a throw-away platform: a new PostgreSQL database on the local server when one is reachable
(`TEST_POSTGRES_URL`, default postgres://postgres@127.0.0.1:5432/postgres; dropped afterwards),
else SQLite; a private non-persistent `redis-server` on a free loopback port as the broker when
`redis-server` is installed, else the filesystem broker; the demo model. Then it posts the create
call through Django's test client (the whole view: parsing, planning, quota, rows, audit, and the
hand-over of every batch to the broker) and prints the time of each phase.

    .venv/bin/python bench/cohort_submit.py [--size 20000] [--repeat 2]

Issue 15: ~20,000 images took 11 s synchronously.
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start_redis(workdir: Path):
    binary = shutil.which("redis-server")
    if not binary:
        return None, "filesystem://"
    port = _free_port()
    process = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                                "--dir", str(workdir)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            time.sleep(0.05)
    return process, f"redis://127.0.0.1:{port}/0"


def _create_postgres_database():
    import dj_database_url

    url = os.environ.get("TEST_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/postgres")
    try:
        import psycopg

        parts = dj_database_url.parse(url)
        conninfo = dict(host=parts["HOST"] or "127.0.0.1", port=parts["PORT"] or 5432, user=parts["USER"],
                        password=parts["PASSWORD"] or None, dbname=parts["NAME"])
        name = f"cxr_bench_submit_{os.getpid()}"
        with psycopg.connect(**conninfo, autocommit=True, connect_timeout=2) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
    except Exception:
        return None, None
    return url.rsplit("/", 1)[0] + "/" + name, (conninfo, name)


def _drop_postgres_database(handle) -> None:
    import psycopg

    conninfo, name = handle
    with psycopg.connect(**conninfo, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=20000)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--profile", action="store_true", help="print the 25 costliest calls of the last run")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="cxr-bench-submit-"))
    redis_process, broker = _start_redis(workdir)
    sys.path.insert(0, str(ROOT))
    database_url, pg = _create_postgres_database()
    os.environ.update({
        "DJANGO_SETTINGS_MODULE": "cxr_platform.settings",
        "DJANGO_ENV": "development",
        "DJANGO_DEBUG": "0",
        "DJANGO_ALLOWED_HOSTS": "testserver",
        "CXR_VAR_DIR": str(workdir / "var"),
        "MEDIA_ROOT": str(workdir / "media"),
        "MODEL_ROOT": str(workdir / "models"),
        "CELERY_BROKER_URL": broker,
        "LOG_LEVEL": "WARNING",
        "HF_HUB_OFFLINE": "1",
    })
    if database_url:
        os.environ["DATABASE_URL"] = database_url
    try:
        run(workdir, args.size, args.repeat, args.profile)
    finally:
        from django.db import connections

        connections.close_all()
        if pg:
            _drop_postgres_database(pg)
        if redis_process:
            redis_process.terminate()
            redis_process.wait(10)
        shutil.rmtree(workdir, ignore_errors=True)


def run(workdir: Path, size: int, repeat: int, profile: bool = False) -> None:
    import django

    django.setup()
    from django.conf import settings
    from django.core.management import call_command
    from django.db import connection
    from django.utils import timezone
    from rest_framework.test import APIClient

    from access import capabilities as caps
    from access.models import AccessGrant, Tier, User
    from generation import services
    from generation.models import Cohort
    from registry import services as registry
    from registry.demo import create_demo_model

    call_command("migrate", verbosity=0)
    registry.register_model_version(name="bench", version="1", directory=create_demo_model(workdir / "models" / "bench"))
    tier = Tier.objects.create(slug="bench-api", name="Bench API", capabilities=[caps.GENERATE, caps.API],
                               quotas={caps.DAILY_IMAGES: size * (repeat + 1)})
    user = User.objects.create(username="bench", email="bench@example.org")
    now = timezone.now()
    AccessGrant.objects.create(user=user, tier=tier, granted_at=now, expires_at=now + timezone.timedelta(days=1))
    client = APIClient()
    client.force_authenticate(user)
    data = {"name": "Bench", "size": size, "seed": 7, "preset": "balanced",
            "findings": {"pleural_effusion": 0.3, "cardiomegaly": 0.2}}
    print(f"{size:,} images, batches of {settings.GENERATION_BATCH_SIZE}, database {connection.vendor}, "
          f"broker {settings.CELERY_BROKER_URL.split(':')[0]}")
    services.plan_cohort(user=user, data={**data, "size": 8})  # load the tokenizer once, as a warm server has
    for attempt in range(repeat):
        t0 = time.perf_counter()
        plan = services.plan_cohort(user=user, data=data)
        profiler = cProfile.Profile() if profile and attempt == repeat - 1 else None
        t1 = time.perf_counter()
        if profiler:
            profiler.enable()
        response = client.post("/api/v1/cohorts", {**data, "name": f"Bench {attempt}"}, format="json")
        t2 = time.perf_counter()
        if profiler:
            profiler.disable()
            pstats.Stats(profiler).sort_stats(os.environ.get("BENCH_SORT", "cumulative")).print_stats(int(os.environ.get("BENCH_TOP", "25")))
        assert response.status_code in (201, 202), response.content[:500]
        cohort = Cohort.objects.get(pk=response.json()["id"])
        batches = cohort.batches.count()
        print(f"  run {attempt + 1}: POST /api/v1/cohorts {t2 - t1:6.2f} s   (of which planning alone: {t1 - t0:5.2f} s; "
              f"{cohort.images.count():,} image rows, {batches:,} batches, "
              f"{cohort.batches.filter(enqueued_at__isnull=False).count():,} handed to the broker)")
        del plan


if __name__ == "__main__":
    main()
