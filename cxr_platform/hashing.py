"""SHA-256 of files, read in chunks so multi-GB weights or export zips never sit in memory.

One implementation for the model manifest (registry), export packages and their verification
(exports) and the screening encoder's pinned weights (screening).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

CHUNK_SIZE = 8 * 1024 * 1024


def sha256_stream(fileobj, *, on_chunk: Callable[[int], None] | None = None) -> str:
    """Hex SHA-256 of what remains of an open binary file; ``on_chunk(n)`` after each chunk read."""
    digest = hashlib.sha256()
    while chunk := fileobj.read(CHUNK_SIZE):
        digest.update(chunk)
        if on_chunk is not None:
            on_chunk(len(chunk))
    return digest.hexdigest()


def sha256_path(path: str | Path) -> str:
    with open(path, "rb") as handle:
        return sha256_stream(handle)
