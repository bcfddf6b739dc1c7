"""API latency: the cohort list and cohort status endpoints under gunicorn + PostgreSQL at a fixed
request rate, with p50/p95/p99 and the queries each request costs (issue 18).

What it does, all on loopback and all torn down afterwards:

1. creates a throw-away PostgreSQL database ``bench_api_<pid>`` (TEST_POSTGRES_URL's server) and migrates it;
2. seeds one researcher (Export tier: generation + API, with a personal API token) and ``--cohorts``
   cohorts with their batches and ``--images`` images each, in the mix of states a busy account has
   (running, queued, one whose message never reached the broker, completed, cancelled);
3. counts the SQL queries of one request to each endpoint in-process (CaptureQueriesContext) at 5
   cohorts and at ``--cohorts``: equal counts mean no N+1;
4. starts gunicorn (``--workers`` sync workers, as docs/foundation.md deploys it) on a free port and
   drives each endpoint open-loop at ``--rate`` requests/s for ``--seconds``: requests are sent on a
   fixed schedule whatever the server's speed, and latency counts from the scheduled time, so a slow
   server's queueing shows in the tail instead of lowering the rate (no coordinated omission). The load
   generator is one thread on non-blocking sockets, so it takes little of the cores it shares with the
   server;
5. reports the CPU time each request cost the server (gunicorn), PostgreSQL, the load generator and the
   whole machine, so a run on another machine can be read against the cores it had.

Bounded: at most ``--rate * --seconds`` requests per endpoint and MAX_IN_FLIGHT connections open; a
request not answered 10 s after its scheduled time fails ("timeout"), one still waiting for a connection
then fails unsent ("late"), so an overloaded server ends a run at most ~10 s after its schedule. Exit
status 1 when any request failed (also a response cut short of its Content-Length).
Cohorts and images are written with the ORM and the model version without weights: these endpoints
read rows and never open a model file, and building the demo pipeline would take longer than the run.

    .venv/bin/python bench/api.py [--rate 200] [--seconds 10] [--cohorts 50] [--images 40] [--workers 4]
"""

from __future__ import annotations

import argparse
import http.client
import math
import os
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SMALL = 5  # cohorts at the first query count
MAX_IN_FLIGHT = 512  # open connections at most (the open-file limit is 1024)
TIMEOUT_S = 10.0
SAY = print


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=200.0, help="requests per second, per endpoint run")
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each endpoint's run")
    parser.add_argument("--cohorts", type=int, default=50)
    parser.add_argument("--images", type=int, default=40, help="images per cohort")
    parser.add_argument("--workers", type=int, default=4, help="gunicorn sync workers (docs/foundation.md deploys 4)")
    args = parser.parse_args()
    if not (0 < args.rate <= 2000 and 0 < args.seconds <= 120 and SMALL < args.cohorts <= 500 and 0 <= args.images <= 1000):
        parser.error("keep it bounded: rate 1-2000/s, seconds 1-120, cohorts 6-500, images 0-1000")

    import dj_database_url

    server = dj_database_url.parse(os.environ.get("TEST_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/postgres"))
    name = f"bench_api_{os.getpid()}"
    workdir = Path(tempfile.mkdtemp(prefix="cxr-bench-api-"))
    database_url = _url(server, name)
    os.environ.update({
        "DJANGO_SETTINGS_MODULE": "cxr_platform.settings",
        "DJANGO_ENV": "development",
        "DJANGO_DEBUG": "0",
        "DATABASE_URL": database_url,
        "DB_CONN_MAX_AGE": "60",  # as docs/foundation.md's production example
        "API_THROTTLE_USER": "100000000/hour",  # measure the endpoints, not the throttle
        "CXR_VAR_DIR": str(workdir / "var"),
        "MODEL_ROOT": str(workdir / "models"),
        "LOG_LEVEL": "WARNING",
    })
    sys.path.insert(0, str(ROOT))
    load_before = os.getloadavg()[0]
    # `timeout` and Ctrl-C still tear down the server and the database (the finally below).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    _admin(server, f'CREATE DATABASE "{name}"')
    gunicorn = None
    try:
        import django

        django.setup()
        from django.core.management import call_command

        call_command("migrate", verbosity=0)
        token, researcher, version = _researcher()
        cohorts = _add_cohorts(researcher, version, SMALL, args.images)
        running = next(c for c in cohorts if c.status == "running")  # its status reads the most
        small = _query_counts(token, running.pk)
        cohorts += _add_cohorts(researcher, version, args.cohorts - SMALL, args.images, first=SMALL)
        _analyze()  # statistics, as a database in use has them (autovacuum would gather them later)
        large = _query_counts(token, running.pk)
        _close_connections()

        port = _free_port()
        gunicorn = _start_gunicorn(port, args.workers, workdir)
        results = {}
        for label, paths in (
            ("list", ["/api/v1/cohorts"]),
            ("status", [f"/api/v1/cohorts/{c.pk}" for c in cohorts]),
        ):
            alone = _one_at_a_time(port, paths, token, count=40)  # also warms the workers' connections
            before = _cpu_snapshot(gunicorn)
            driven = _drive(port, paths, token, rate=args.rate, seconds=args.seconds)
            results[label] = {**driven, **_cpu_per_request(before, _cpu_snapshot(gunicorn), driven["requests"]),
                              "alone": alone}
        _report(args, small, large, results, load_before)
        return 0 if all(r["errors"] == 0 for r in results.values()) else 1
    finally:
        if gunicorn is not None:
            _stop(gunicorn)
        _close_connections()
        _admin(server, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        shutil.rmtree(workdir, ignore_errors=True)


# --- Setting up ---------------------------------------------------------------------------------------


def _url(server: dict, name: str) -> str:
    auth = server["USER"] + (f":{server['PASSWORD']}" if server.get("PASSWORD") else "")
    return f"postgres://{auth}@{server['HOST'] or '127.0.0.1'}:{server['PORT'] or 5432}/{name}"


def _admin(server: dict, statement: str) -> None:
    import psycopg

    with psycopg.connect(_url(server, server["NAME"] or "postgres"), autocommit=True) as connection:
        connection.execute(statement)


def _analyze() -> None:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")


def _close_connections() -> None:
    if "django" in sys.modules:
        from django.db import connections

        connections.close_all()


def _researcher():
    from cxr_platform.api.services import create_api_token
    from registry.demo import demo_generation_defaults
    from registry.models import ModelVersion
    from tests.access.factories import grant_tier
    from tests.factories import UserFactory

    version = ModelVersion.objects.create(name="bench", version="1", directory="/nonexistent",
                                          defaults=demo_generation_defaults())
    user = UserFactory(username="bench-researcher")
    grant_tier(user, "export")  # generation, DICOM export and the REST API, with current credentials
    _, secret = create_api_token(user=user, name="bench")
    return secret, user, version


def _add_cohorts(owner, version, count: int, images: int, *, first: int = 0) -> list:
    from django.utils import timezone

    from generation.models import Cohort, GenerationBatch, SyntheticImage

    states = [  # (cohort, its batches; None: queued but never sent)
        (Cohort.Status.RUNNING, GenerationBatch.Status.RUNNING),
        (Cohort.Status.QUEUED, GenerationBatch.Status.QUEUED),
        (Cohort.Status.QUEUED, None),
        (Cohort.Status.COMPLETED, GenerationBatch.Status.COMPLETED),
        (Cohort.Status.CANCELLED, GenerationBatch.Status.CANCELLED),
    ]
    now = timezone.now()
    made = []
    for n in range(first, first + count):
        status, batch_status = states[n % len(states)]
        cohort = Cohort.objects.create(
            owner=owner, name=f"bench {n}", model_version=version, seed=n, size=max(images, 1), status=status,
            submitted_at=now, started_at=now if status == Cohort.Status.RUNNING else None,
            specification={"size": max(images, 1), "sex": {"F": 0.5, "M": 0.5}},
        )
        per_batch = 8
        GenerationBatch.objects.bulk_create(
            GenerationBatch(cohort=cohort, first_index=start, stop_index=min(start + per_batch, max(images, 1)),
                            status=batch_status or GenerationBatch.Status.QUEUED,
                            enqueued_at=now if batch_status else None)
            for start in range(0, max(images, 1), per_batch)
        )
        SyntheticImage.objects.bulk_create(
            SyntheticImage(cohort=cohort, index=i, seed=i, prompt="Chest X-ray, PA view.",
                           demographics={"age": 50, "sex": "F", "race": "ASIAN", "view": "PA"},
                           status=SyntheticImage.Status.PASSED if i % 4 else SyntheticImage.Status.GENERATING)
            for i in range(images)
        )
        made.append(cohort)
    return sorted(made, key=lambda c: -c.pk)


def _query_counts(token: str, cohort_pk: int) -> dict:
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    client = Client(HTTP_AUTHORIZATION=f"Bearer {token}")
    counts = {}
    for label, path in (("list", "/api/v1/cohorts"), ("status", f"/api/v1/cohorts/{cohort_pk}")):
        client.get(path)  # the first request fills per-process caches a running server already has
        with CaptureQueriesContext(connection) as captured:
            response = client.get(path)
        if response.status_code != 200:
            raise SystemExit(f"{path} answered {response.status_code}: {response.content[:300]!r}")
        counts[label] = len(captured)
    return counts


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _start_gunicorn(port: int, workers: int, workdir: Path) -> subprocess.Popen:
    log = (workdir / "gunicorn.log").open("w")
    process = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "cxr_platform.wsgi", "--bind", f"127.0.0.1:{port}",
         "--workers", str(workers), "--timeout", "60", "--log-level", "warning"],
        cwd=ROOT, env=os.environ.copy(), stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"gunicorn exited ({process.returncode}):\n{(workdir / 'gunicorn.log').read_text()[-2000:]}")
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            connection.request("GET", "/api/v1/whoami")  # any answer (401) means it is up
            connection.getresponse().read()
            connection.close()
            return process
        except OSError:
            time.sleep(0.2)
    _stop(process)
    raise SystemExit("gunicorn did not answer within 60 s")


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)  # its own session: the master and its workers
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def _cpu_snapshot(gunicorn: subprocess.Popen) -> dict:
    """CPU seconds so far of the server (gunicorn's master and workers), of PostgreSQL's processes,
    and of the whole machine (busy, all cores), to say where the 2 cores went."""
    import psutil

    def used(process) -> float | None:
        try:
            times = process.cpu_times()
            return times.user + times.system
        except psutil.Error:
            return None

    master = psutil.Process(gunicorn.pid)
    server = {p.pid: used(p) for p in [master, *master.children(recursive=True)]}
    database = {p.pid: used(p) for p in psutil.process_iter(["name"]) if (p.info["name"] or "").startswith("postgres")}
    machine = psutil.cpu_times()
    return {"server": server, "database": database, "busy": sum(machine) - machine.idle - machine.iowait}


def _cpu_per_request(before: dict, after: dict, requests: int) -> dict:
    def delta(kind):  # over the processes alive at both ends (connections are kept, so backends are)
        return sum(after[kind][pid] - before[kind][pid] for pid in after[kind]
                   if after[kind][pid] is not None and before[kind].get(pid) is not None)

    per = 1000 / max(requests, 1)
    return {"server_cpu_ms": delta("server") * per, "database_cpu_ms": delta("database") * per,
            "machine_cpu_ms": (after["busy"] - before["busy"]) * per}


# --- Driving the load ---------------------------------------------------------------------------------


def _one_at_a_time(port: int, paths: list[str], token: str, *, count: int) -> float:
    """The median time of one request when it is the only one: the server's service time."""
    headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
    times = []
    for i in range(count):
        started = time.perf_counter()
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=TIMEOUT_S)
        connection.request("GET", paths[i % len(paths)], headers=headers)
        response = connection.getresponse()
        response.read()
        connection.close()
        if response.status != 200:
            raise SystemExit(f"{paths[i % len(paths)]} answered {response.status}")
        times.append(time.perf_counter() - started)
    return sorted(times)[len(times) // 2]


def _drive(port: int, paths: list[str], token: str, *, rate: float, seconds: float) -> dict:
    """Send ``rate * seconds`` GETs on a fixed schedule, cycling through ``paths``.

    One thread and non-blocking sockets (as wrk does): a request is a few system calls here, so the
    load generator takes little of the 2 cores it shares with the server (it reports what it took).
    At most MAX_IN_FLIGHT connections are open; a request that waits for one still counts from its
    scheduled time."""
    total = int(rate * seconds)
    requests = [_request_bytes(port, path, token) for path in paths]
    selector = selectors.DefaultSelector()
    latencies: list[float] = []
    errors: list[str] = []
    in_flight: dict = {}  # socket -> [due, unsent bytes, received chunks]
    sent = 0
    cpu_before = time.process_time()
    start = time.perf_counter() + 0.05

    def finish(sock, outcome: str | None) -> None:
        due, _, chunks = in_flight.pop(sock)
        selector.unregister(sock)
        sock.close()
        latencies.append(time.perf_counter() - due)
        if outcome is None:
            outcome = _check_response(b"".join(chunks))
        if outcome != "200":
            errors.append(outcome)

    while sent < total or in_flight:
        now = time.perf_counter()
        while sent < total and len(in_flight) < MAX_IN_FLIGHT and start + sent / rate <= now:
            due = start + sent / rate
            data = requests[sent % len(requests)]
            sent += 1
            if now - due > TIMEOUT_S:  # waited too long for a connection: failed, not sent
                latencies.append(now - due)
                errors.append("late")
                continue
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setblocking(False)
            sock.connect_ex(("127.0.0.1", port))
            in_flight[sock] = [due, data, []]
            selector.register(sock, selectors.EVENT_WRITE)
        for sock in [s for s, (due, _, _) in in_flight.items() if now - due > TIMEOUT_S]:
            finish(sock, "timeout")
        wait = 0.05
        if sent < total and len(in_flight) < MAX_IN_FLIGHT:
            wait = min(wait, max(0.0, start + sent / rate - time.perf_counter()))
        for key, _ in selector.select(timeout=wait):
            sock = key.fileobj
            state = in_flight[sock]
            try:
                if state[1]:
                    state[1] = state[1][sock.send(state[1]):]
                    if not state[1]:
                        selector.modify(sock, selectors.EVENT_READ)
                    continue
                chunk = sock.recv(262144)
            except OSError as exc:
                finish(sock, type(exc).__name__)
                continue
            if chunk:
                state[2].append(chunk)
            else:  # gunicorn's sync workers close the connection after each response
                finish(sock, None)
    wall = time.perf_counter() - start
    cpu = time.process_time() - cpu_before
    selector.close()
    ordered = sorted(latencies)
    return {
        "requests": total, "wall": wall, "errors": len(errors), "error_kinds": sorted(set(errors))[:5],
        "served_per_s": (total - len(errors)) / wall, "generator_cpu_ms": 1000 * cpu / max(total, 1),
        "p50": _percentile(ordered, 50), "p95": _percentile(ordered, 95), "p99": _percentile(ordered, 99),
        "max": ordered[-1],
    }


def _request_bytes(port: int, path: str, token: str) -> bytes:
    return (f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: Bearer {token}\r\n"
            "Accept: application/json\r\nConnection: close\r\n\r\n").encode()


def _check_response(raw: bytes) -> str:
    """"200" for a complete 200 response (its body as long as Content-Length says), else what was wrong."""
    head, separator, body = raw.partition(b"\r\n\r\n")
    if not separator:
        return "incomplete"
    lines = head.split(b"\r\n")
    status = lines[0].split(b" ", 2)[1].decode() if len(lines[0].split(b" ")) > 1 else "malformed"
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length" and int(value) != len(body):
            return "truncated"
    return status


def _percentile(ordered: list[float], p: float) -> float:
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered), max(1, math.ceil(p / 100 * len(ordered)))) - 1]  # nearest rank


def _report(args, small: dict, large: dict, results: dict, load_before: float) -> None:
    load_after = os.getloadavg()[0]
    SAY(f"\n{args.cohorts} cohorts x {args.images} images, gunicorn {args.workers} sync workers, PostgreSQL, "
        f"{args.rate:.0f} requests/s for {args.seconds:.0f} s per endpoint, {os.cpu_count()} CPUs, "
        f"1-min load average {load_before:.1f} before, {load_after:.1f} after")
    SAY(f"{'endpoint':<8} {'alone ms':>8} {'requests':>8} {'served/s':>8} {'errors':>6} {'p50 ms':>7} {'p95 ms':>7} "
        f"{'p99 ms':>7} {'max ms':>7}  queries/request ({SMALL} -> {args.cohorts} cohorts)")
    for label, r in results.items():
        SAY(f"{label:<8} {r['alone'] * 1000:>8.1f} {r['requests']:>8} {r['served_per_s']:>8.1f} {r['errors']:>6} "
            f"{r['p50'] * 1000:>7.1f} {r['p95'] * 1000:>7.1f} {r['p99'] * 1000:>7.1f} {r['max'] * 1000:>7.1f}  "
            f"{small[label]} -> {large[label]}" + (f"  errors: {', '.join(r['error_kinds'])}" if r["errors"] else ""))
    SAY(f"\nCPU per request at {args.rate:.0f} requests/s (ms; all processes of each kind; {os.cpu_count()} cores give "
        f"{os.cpu_count() * 1000 / args.rate:.1f} ms per request at this rate):")
    SAY(f"{'endpoint':<8} {'server':>7} {'database':>8} {'load gen':>8} {'machine':>8}")
    for label, r in results.items():
        SAY(f"{label:<8} {r['server_cpu_ms']:>7.2f} {r['database_cpu_ms']:>8.2f} {r['generator_cpu_ms']:>8.2f} "
            f"{r['machine_cpu_ms']:>8.2f}")
    for label in results:
        verdict = "constant (no N+1)" if small[label] == large[label] else "GROWS WITH THE COHORTS (N+1)"
        SAY(f"{label}: {verdict}; p99 {'<' if results[label]['p99'] < 0.1 else '>='} 100 ms target")


if __name__ == "__main__":
    sys.exit(main())
