"""`make run` (scripts/run.sh) serves the home and login pages, and Ctrl-C stops everything it started."""

import os
import re
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
_RUN_SPECIFIC = {
    "DJANGO_ENV", "DJANGO_SETTINGS_MODULE", "DATABASE_URL", "DATABASE_TEST_NAME", "TEST_REDIS_DB",
    "TEST_USE_SQLITE", "CELERY_BROKER_URL", "STORAGE_BACKEND", "CXR_VAR_DIR", "DJANGO_DEBUG", "PORT",
}
STARTUP_SECONDS = 300


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def fetch(url: str) -> tuple[int, str]:
    with urllib.request.urlopen(url, timeout=5) as response:
        return response.status, response.read().decode()


def wait_for(predicate, what: str, process: subprocess.Popen, log: Path):
    deadline = time.monotonic() + STARTUP_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"scripts/run.sh exited ({process.returncode}) before {what}:\n{log.read_text()[-3000:]}")
        try:
            if predicate():
                return
        except OSError:
            pass
        time.sleep(0.5)
    pytest.fail(f"timed out waiting for {what}:\n{log.read_text()[-3000:]}")


def processes_in_group(pgid: int) -> list[str]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            # Fields after the parenthesised command name: state, ppid, pgrp, ...
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[2]) == pgid and fields[0] != "Z":
                command = (stat.parent / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                found.append(f"{stat.parent.name}: {command}")
        except OSError:  # the process ended while we looked
            continue
    return found


@pytest.mark.slow
def test_make_run_serves_pages_and_ctrl_c_stops_everything(tmp_path):
    port = free_port()
    var_dir = tmp_path / "var"
    log = tmp_path / "run.log"
    env = {k: v for k, v in os.environ.items() if k not in _RUN_SPECIFIC}
    env.update({"CXR_VAR_DIR": str(var_dir), "PORT": str(port), "PYTHONUNBUFFERED": "1"})
    with log.open("w") as output:
        # Its own process group, like a terminal's foreground job: Ctrl-C signals the whole group.
        process = subprocess.Popen(
            ["bash", "scripts/run.sh"], cwd=REPO_ROOT, env=env, stdout=output, stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    pgid = process.pid
    try:
        base = f"http://127.0.0.1:{port}"
        wait_for(lambda: fetch(base + "/")[0] == 200, "the home page", process, log)
        status, home = fetch(base + "/")
        assert "Synthetic chest X-rays" in home
        status, login = fetch(base + "/accounts/login/")
        assert status == 200
        assert 'name="password"' in login
        worker_log = var_dir / "worker.log"
        wait_for(lambda: "ready." in worker_log.read_text(), "the Celery worker", process, log)

        printed = log.read_text()
        setup = (var_dir / "setup.log").read_text()
        for account in ("researcher", "reviewer", "admin"):
            password = re.search(rf"Demo account '{account}' created with password: (\S+)", setup).group(1)
            assert re.search(rf"^\s+{account}\s+{re.escape(password)}\s", printed, re.M), printed
        assert f"running at http://127.0.0.1:{port}" in printed
        assert f"Links in e-mails point to http://127.0.0.1:{port}" in printed  # SITE_URL follows PORT
        assert "printed in this terminal" in printed and "Ctrl-C stops everything" in printed
        assert "Applying " not in printed and "swigfaiss" not in printed and "Traceback" not in printed
        assert len(printed.splitlines()) < 40, printed  # a summary, not a stream

        os.killpg(pgid, signal.SIGINT)
        process.wait(timeout=120)
        deadline = time.monotonic() + 30
        while processes_in_group(pgid) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert processes_in_group(pgid) == []
        with pytest.raises(OSError):
            fetch(base + "/")
    finally:
        try:
            os.killpg(pgid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        process.wait(timeout=10)
