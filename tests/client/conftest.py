"""The ``cxr`` client's tests run the installed console script (``.venv/bin/cxr``, put there by
``make setup``) as a researcher would, against pytest-django's live server on the test database.
Each test has its own config file (CXR_CONFIG) and HOME; CXR_URL points at the live server."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from cxr_platform.api.services import create_api_token
from tests.access.factories import grant_tier
from tests.factories import UserFactory

CXR = Path(sys.executable).with_name("cxr")
OFFLINE_URL = "http://127.0.0.1:9"


@dataclass
class Run:
    code: int
    stdout: str
    stderr: str

    def json(self):
        return json.loads(self.stdout)


class Cxr:
    def __init__(self, url: str, home: Path):
        self.url, self.home = url, home
        self.config = home / ".config" / "cxr" / "config.json"

    def __call__(self, *args, token: str | None = None, url: str | None = None, stdin: str = "",
                 timeout: float = 120) -> Run:
        env = {key: value for key, value in os.environ.items() if not key.startswith(("CXR_", "XDG_CONFIG"))}
        env.update(HOME=str(self.home), CXR_URL=url or self.url, PYTHONUNBUFFERED="1")
        if token:
            env["CXR_TOKEN"] = token
        done = subprocess.run([str(CXR), *map(str, args)], input=stdin, capture_output=True, text=True, env=env,
                              timeout=timeout, cwd=self.home)
        return Run(done.returncode, done.stdout, done.stderr)

    def login(self, token: str) -> Run:
        result = self("login", "--token", token)
        assert result.code == 0, result.stderr
        return result


@pytest.fixture
def cxr(live_server, tmp_path) -> Cxr:
    if not CXR.exists():
        pytest.fail(f"{CXR} is missing: `make setup` installs the client (pip install -e clients/cxr)", pytrace=False)
    home = tmp_path / "home"
    home.mkdir()
    return Cxr(live_server.url, home)


@pytest.fixture
def offline_cxr(tmp_path) -> Cxr:
    """No server at all (nothing listens on port 9): for what the client must do by itself."""
    if not CXR.exists():
        pytest.fail(f"{CXR} is missing: `make setup` installs the client (pip install -e clients/cxr)", pytrace=False)
    home = tmp_path / "home"
    home.mkdir()
    return Cxr(OFFLINE_URL, home)


def api_user(tier: str = "export", **fields):
    """A user with ``tier`` and a personal API token: (user, raw token)."""
    user = UserFactory(**fields)
    grant_tier(user, tier)
    _, raw = create_api_token(user=user, name="cxr tests")
    return user, raw


@pytest.fixture
def screened_demo_model_version(demo_model_version, demo_screening_index):
    """The demo model version with its calibrated screening index (generation needs one)."""
    return demo_model_version
