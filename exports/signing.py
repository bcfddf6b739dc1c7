"""Ed25519 signatures over export manifests, and checking a package against its manifest.

The platform signs the exact bytes of ``manifest.json`` with ``settings.EXPORT_SIGNING_KEY``
(PEM, or base64 of the 32-byte private seed) and stores the base64 signature next to it as
``manifest.json.sig``. The manifest lists the SHA-256 of every other file of the package, so a
valid signature plus matching checksums means nothing was altered, added or removed.

:func:`verify_package` works on a package folder or its zip (files read in chunks, never
whole) and names every file that differs. Recipients without the platform can do the same
with only ``cryptography`` (see docs/exports.md).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import zipfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from django.conf import settings

from cxr_platform.hashing import sha256_stream as sha256_file  # noqa: F401 - part of this module's API

MANIFEST = "manifest.json"
SIGNATURE = "manifest.json.sig"


class SigningKeyError(Exception):
    pass


def private_key(value: str | None = None) -> Ed25519PrivateKey:
    """The platform's signing key from ``settings.EXPORT_SIGNING_KEY`` (PEM or base64 seed)."""
    raw = (value if value is not None else getattr(settings, "EXPORT_SIGNING_KEY", "")).strip()
    if not raw:
        raise SigningKeyError("EXPORT_SIGNING_KEY is not set.")
    if raw.startswith("-----BEGIN"):
        key = serialization.load_pem_private_key(raw.encode(), password=None)
        if not isinstance(key, Ed25519PrivateKey):
            raise SigningKeyError("EXPORT_SIGNING_KEY is not an Ed25519 private key.")
        return key
    try:
        seed = base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError):
        raise SigningKeyError("EXPORT_SIGNING_KEY is neither PEM nor base64.") from None
    if len(seed) != 32:
        raise SigningKeyError("EXPORT_SIGNING_KEY must be 32 bytes (base64) or a PEM Ed25519 key.")
    return Ed25519PrivateKey.from_private_bytes(seed)


def public_key_pem(key: Ed25519PrivateKey | None = None) -> str:
    key = key or private_key()
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()


def load_public_key(pem: str | bytes) -> Ed25519PublicKey:
    key = serialization.load_pem_public_key(pem.encode() if isinstance(pem, str) else pem)
    if not isinstance(key, Ed25519PublicKey):
        raise SigningKeyError("Not an Ed25519 public key.")
    return key


def key_fingerprint(pem: str | None = None) -> str:
    """SHA-256 of the raw public key, hex: what a recipient compares out of band."""
    public = load_public_key(pem) if pem else private_key().public_key()
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()


def sign(data: bytes, key: Ed25519PrivateKey | None = None) -> bytes:
    """Base64 of the Ed25519 signature of ``data`` (with a trailing newline)."""
    return base64.b64encode((key or private_key()).sign(data)) + b"\n"


# --- Reading a package, folder or zip ----------------------------------------------------------------


class _Folder:
    def __init__(self, root: Path):
        self.root = root

    def names(self) -> list[str]:
        out = []
        for dirpath, _dirs, files in os.walk(self.root):
            for name in files:
                out.append((Path(dirpath) / name).relative_to(self.root).as_posix())
        return out

    def open(self, name: str):
        return open(self.root / name, "rb")


class _Zip:
    """A zip holding one package; its files may sit under one top folder."""

    def __init__(self, path: Path):
        self.zip = zipfile.ZipFile(path)
        names = [i.filename for i in self.zip.infolist() if not i.is_dir()]
        manifests = [n for n in names if PurePosixPath(n).name == MANIFEST]
        top = min(manifests, key=len) if manifests else MANIFEST
        self.prefix = top[: -len(MANIFEST)]
        self._names = [n[len(self.prefix):] for n in names if n.startswith(self.prefix)]
        self._outside = [n for n in names if not n.startswith(self.prefix)]

    def names(self) -> list[str]:
        return self._names + [f"../{n}" for n in self._outside]

    def open(self, name: str):
        return self.zip.open(self.prefix + name)


@dataclass
class VerifyResult:
    signature_ok: bool = False
    checked: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.signature_ok and not self.problems


def verify_package(path, *, public_key_pem_text: str | None = None) -> VerifyResult:
    """Check the signature of ``manifest.json`` and every file's SHA-256 against it.
    ``path``: the package folder or its zip. Each problem names the file concerned."""
    path = Path(path)
    result = VerifyResult()
    if path.is_dir():
        package = _Folder(path)
    elif zipfile.is_zipfile(path):
        package = _Zip(path)
    else:
        result.problems.append(f"{path}: not a package folder or zip.")
        return result
    names = set(package.names())
    if MANIFEST not in names:
        result.problems.append(f"{MANIFEST}: missing.")
        return result
    with package.open(MANIFEST) as handle:
        manifest_bytes = handle.read()
    public = load_public_key(public_key_pem_text) if public_key_pem_text else private_key().public_key()
    if SIGNATURE not in names:
        result.problems.append(f"{SIGNATURE}: missing, the manifest is unsigned.")
    else:
        with package.open(SIGNATURE) as handle:
            try:
                public.verify(base64.b64decode(handle.read().strip(), validate=True), manifest_bytes)
                result.signature_ok = True
            except (InvalidSignature, binascii.Error, ValueError):
                result.problems.append(
                    f"{MANIFEST}: signature does not match (the manifest or its signature was altered, "
                    "or it was signed with another key)."
                )
    try:
        manifest = json.loads(manifest_bytes)
        listed = dict(manifest["files"])
    except (ValueError, KeyError, TypeError):
        result.problems.append(f"{MANIFEST}: not a readable export manifest.")
        return result
    for name, expected in sorted(listed.items()):
        if name not in names:
            result.problems.append(f"{name}: missing.")
            continue
        try:
            with package.open(name) as handle:
                actual = sha256_file(handle)
        except zipfile.BadZipFile as error:  # a stored member changed in place fails its CRC-32
            result.checked += 1
            result.problems.append(f"{name}: contents differ from the manifest ({error}).")
            continue
        result.checked += 1
        if actual != expected:
            result.problems.append(f"{name}: contents differ from the manifest (SHA-256 {actual}, expected {expected}).")
    for name in sorted(names - set(listed) - {MANIFEST, SIGNATURE}):
        result.problems.append(f"{name}: not listed in the manifest (added after signing).")
    return result
