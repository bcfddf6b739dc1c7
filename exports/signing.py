"""Ed25519 signatures over export manifests, and checking a package against its manifest.

The platform signs the exact bytes of ``manifest.json`` with ``settings.EXPORT_SIGNING_KEY``
(PEM, or base64 of the 32-byte private seed) and stores the base64 signature next to it as
``manifest.json.sig``. The manifest lists the SHA-256 of every other file of the package, so a
valid signature plus matching checksums means nothing was altered, added or removed.

:func:`verify_package` works on a package folder or its zip (files read in chunks, never
whole) and names every file that differs. It is the same code as the ``verify.py`` every package
carries for recipients, who need only ``cryptography`` (exports.recipient_verify).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from django.conf import settings

from cxr_platform.hashing import sha256_stream as sha256_file  # noqa: F401 - part of this module's API

from . import recipient_verify

MANIFEST = recipient_verify.MANIFEST
SIGNATURE = recipient_verify.SIGNATURE


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


# --- Checking a package -----------------------------------------------------------------------------


VerifyResult = recipient_verify.Report


def verify_package(path, *, public_key_pem_text: str | None = None) -> VerifyResult:
    """Check the signature of ``manifest.json`` (with this platform's key, or the PEM given) and
    every file's SHA-256 against it. ``path``: the package folder or its zip. The checking is the
    recipients' own ``verify.py`` (exports.recipient_verify), so both always agree."""
    public = load_public_key(public_key_pem_text) if public_key_pem_text else private_key().public_key()
    return recipient_verify.check(Path(path), public)
