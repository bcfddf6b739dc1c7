"""Resumable, checksum-verified downloads.

A file is fetched into ``NAME.part`` beside its target and renamed only once its SHA-256 is the one
the API published, so a file under its final name is always complete and correct. An interrupted
run leaves the ``.part``; the next run asks for the rest with ``Range: bytes=N-`` and ``If-Range``
(the server's ETag is the file's SHA-256), so a file that changed meanwhile is sent whole instead of
spliced. A resumed file whose checksum is wrong anyway (a corrupted ``.part``) is fetched once more
from the start.
"""

from __future__ import annotations

import hashlib
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from .api import FAILED, RETRIES, UNAVAILABLE, CliError, error_from
from .progress import Progress

CHUNK = 1024 * 1024
_CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+|\*)")


@dataclass
class Downloaded:
    path: Path
    size: int
    sha256: str
    resumed_from: int  # bytes already on disk when this run started (0: a fresh download)
    fetched: int  # bytes this run received
    skipped: bool = False  # already complete under its final name

    def as_json(self) -> dict:
        return {"path": str(self.path), "size": self.size, "sha256": self.sha256, "resumed_from": self.resumed_from,
                "bytes_fetched": self.fetched, "already_complete": self.skipped, "checksum_ok": True}


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def safe_target(directory: Path, relative: str) -> Path:
    """``relative`` (a name the server sent) inside ``directory``, never outside it."""
    parts = [part for part in relative.replace("\\", "/").split("/") if part not in ("", ".")]
    if not parts or ".." in parts or relative.startswith("/"):
        raise CliError(f"Refusing a file name that points outside the download folder: {relative!r}", FAILED)
    return directory.joinpath(*parts)


def download(http: httpx.Client, url: str, target: Path, *, size: int, sha256: str,
             progress: Progress | None = None) -> Downloaded:
    sha256 = sha256.lower()
    if target.exists() and target.stat().st_size == size and file_sha256(target) == sha256:
        return Downloaded(target, size, sha256, resumed_from=size, fetched=0, skipped=True)
    target.parent.mkdir(parents=True, exist_ok=True)
    part = target.with_name(target.name + ".part")
    started_with = part.stat().st_size if part.exists() else 0
    if started_with > size:
        part.unlink()
        started_with = 0
    fetched = _fetch(http, url, part, size=size, etag=f'"{sha256}"', progress=progress)
    if file_sha256(part) != sha256:
        part.unlink()
        if started_with == 0:
            raise CliError(f"{target.name}: the downloaded bytes do not match the published SHA-256 {sha256}; "
                           "the partial file was removed, try again.", FAILED)
        # The bytes kept from before were not what the server holds now: start over once.
        fetched += _fetch(http, url, part, size=size, etag=f'"{sha256}"', progress=progress)
        if file_sha256(part) != sha256:
            part.unlink()
            raise CliError(f"{target.name}: the downloaded bytes do not match the published SHA-256 {sha256}.", FAILED)
        started_with = 0
    os.replace(part, target)
    return Downloaded(target, size, sha256, resumed_from=started_with, fetched=fetched)


def _fetch(http: httpx.Client, url: str, part: Path, *, size: int, etag: str, progress: Progress | None) -> int:
    """Bring ``part`` up to ``size`` bytes, resuming after a dropped connection. Returns bytes received."""
    received = 0
    for attempt in range(RETRIES):
        offset = part.stat().st_size if part.exists() else 0
        if offset >= size:
            return received
        headers = {"Range": f"bytes={offset}-", "If-Range": etag} if offset else {}
        if progress is not None:
            progress.update(offset, total=size)
        try:
            with http.stream("GET", url, headers=headers) as response:
                if response.status_code == 206:
                    match = _CONTENT_RANGE.fullmatch(response.headers.get("Content-Range", ""))
                    if not match or int(match.group(1)) != offset:
                        raise CliError(f"The server answered a different range than asked for "
                                       f"({response.headers.get('Content-Range')!r}).", UNAVAILABLE)
                    mode = "ab"
                elif response.status_code == 200:
                    offset, mode = 0, "wb"  # no range served (or the file changed): take it whole
                elif response.status_code == 416:
                    part.unlink(missing_ok=True)
                    continue
                else:
                    response.read()
                    raise error_from(response)
                with open(part, mode) as handle:
                    done = offset
                    for chunk in response.iter_bytes(CHUNK):
                        handle.write(chunk)
                        done += len(chunk)
                        received += len(chunk)
                        if progress is not None:
                            progress.update(done)
            if part.stat().st_size >= size:
                return received
        except httpx.TransportError as error:
            if attempt + 1 == RETRIES:
                raise CliError(f"Download interrupted ({error}); run the same command again to resume.",
                               UNAVAILABLE) from None
            time.sleep(0.5 * 2**attempt)
    raise CliError(f"Download of {part.name[:-5]} did not complete; run the same command again to resume.", UNAVAILABLE)
