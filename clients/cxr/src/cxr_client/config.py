"""Where the client keeps its server URL and token: ``~/.config/cxr/config.json`` (mode 0600).

The environment wins over the file, so a batch job can run without a config file:
CXR_CONFIG (another file), CXR_URL (the server), CXR_TOKEN (the API token).
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

DEFAULT_URL = "http://127.0.0.1:8000"


def config_path() -> Path:
    if os.environ.get("CXR_CONFIG"):
        return Path(os.environ["CXR_CONFIG"]).expanduser()
    base = os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config"
    return Path(base) / "cxr" / "config.json"


def load() -> dict:
    path = config_path()
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as error:
        raise ConfigError(f"Cannot read {path}: {error}. Fix or delete it, then run `cxr login`.") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path} is not a cxr config file. Delete it, then run `cxr login`.")
    return data


def save(data: dict) -> Path:
    """Write atomically and owner-only: the file holds a secret, and a half-written one must never be read."""
    path = config_path()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=".config-", suffix=".tmp")
    try:
        os.fchmod(handle, 0o600)
        with os.fdopen(handle, "w") as stream:
            json.dump(data, stream, indent=2, sort_keys=True)
            stream.write("\n")
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    os.chmod(path, 0o600)  # an older file written by hand keeps its mode through os.replace otherwise
    return path


def forget() -> bool:
    path = config_path()
    if path.exists():
        path.unlink()
        return True
    return False


class ConfigError(Exception):
    pass


@dataclass
class Settings:
    url: str
    token: str | None
    source: dict

    @property
    def api(self) -> str:
        return self.url.rstrip("/") + "/api/v1/"


def settings(url_option: str | None = None) -> Settings:
    data = load()
    url = url_option or os.environ.get("CXR_URL") or data.get("url") or DEFAULT_URL
    token = os.environ.get("CXR_TOKEN") or data.get("token")
    return Settings(url=url.rstrip("/"), token=token, source=data)
