#!/usr/bin/env python3
"""Check a cxr-platform export package: needs only Python 3.9+ and the `cryptography` package.

    python verify.py PACKAGE --public-key KEY.pem      # the key your provider published
    python verify.py PACKAGE --fingerprint HEX         # or the fingerprint they published

PACKAGE is the unzipped folder or the zip itself. The signature of manifest.json must be valid
under the published key, and every file in the package must be listed in the manifest with the
same SHA-256: a changed, missing or unlisted file fails. Exit status 0 only when all holds.

This file is copied into every package by the platform (exports/recipient_verify.py); it uses
nothing from the platform, so it runs anywhere.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import hashlib
import json
import sys
import zipfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

MANIFEST, SIGNATURE, BUNDLED_KEY = "manifest.json", "manifest.json.sig", "signing-key.pem"
CHUNK = 1024 * 1024


class Package:
    """The files of a package folder or zip, by their path inside the package. In a zip the
    package is the folder holding manifest.json; anything outside it is named ``../name``."""

    def __init__(self, path: Path):
        self.zip = None
        if path.is_dir():
            self.root = path
            self.names = sorted(p.relative_to(path).as_posix() for p in path.rglob("*") if p.is_file())
        elif zipfile.is_zipfile(path):
            self.zip = zipfile.ZipFile(path)
            entries = [i.filename for i in self.zip.infolist() if not i.is_dir()]
            manifests = [n for n in entries if PurePosixPath(n).name == MANIFEST]
            top = min(manifests, key=len) if manifests else MANIFEST
            self.prefix = top[: -len(MANIFEST)]
            self.names = sorted([n[len(self.prefix):] for n in entries if n.startswith(self.prefix)]
                                + [f"../{n}" for n in entries if not n.startswith(self.prefix)])
        else:
            raise ValueError(f"{path} is not a package folder or zip")

    def read(self, name: str) -> bytes:
        if self.zip is not None:
            return self.zip.read(self.prefix + name)
        return (self.root / name).read_bytes()

    def sha256(self, name: str) -> str:
        digest = hashlib.sha256()
        handle = self.zip.open(self.prefix + name) if self.zip is not None else open(self.root / name, "rb")
        with handle:
            for chunk in iter(lambda: handle.read(CHUNK), b""):
                digest.update(chunk)
        return digest.hexdigest()


@dataclass
class Report:
    signature_ok: bool = False
    checked: int = 0
    problems: list = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.signature_ok and not self.problems


def fingerprint(key) -> str:
    """SHA-256 (hex) of the raw Ed25519 public key: what a provider publishes."""
    from cryptography.hazmat.primitives import serialization

    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()


def load_key(pem: bytes):
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
    from cryptography.hazmat.primitives.serialization import load_pem_public_key

    key = load_pem_public_key(pem)
    if not isinstance(key, Ed25519PublicKey):
        raise ValueError("not an Ed25519 public key")
    return key


def check(package_path: Path, key) -> Report:
    """The signature of manifest.json under ``key`` and every file against the manifest. Each
    problem names its file: CHANGED, MISSING, UNLISTED (added after signing) or BAD SIGNATURE."""
    from cryptography.exceptions import InvalidSignature

    report = Report()
    try:
        package = Package(Path(package_path))
    except ValueError as error:
        report.problems.append(f"NOT A PACKAGE: {error}")
        return report
    if MANIFEST not in package.names:
        report.problems.append(f"MISSING {MANIFEST}: this is not a signed package")
        return report
    manifest = package.read(MANIFEST)
    if SIGNATURE not in package.names:
        report.problems.append(f"MISSING {SIGNATURE}: the manifest is unsigned")
    else:
        try:
            key.verify(base64.b64decode(package.read(SIGNATURE).strip(), validate=True), manifest)
            report.signature_ok = True
        except (InvalidSignature, binascii.Error, ValueError):
            report.problems.append(f"BAD SIGNATURE {MANIFEST}: the manifest or its signature was altered, "
                                   "or it was signed with another key")
    try:
        listed = dict(json.loads(manifest)["files"])
    except (ValueError, KeyError, TypeError):
        report.problems.append(f"UNREADABLE {MANIFEST}: not an export manifest")
        return report
    present = set(package.names)
    for name, expected in sorted(listed.items()):
        if name not in present:
            report.problems.append(f"MISSING {name}")
            continue
        report.checked += 1
        try:
            actual = package.sha256(name)
        except zipfile.BadZipFile as error:  # a stored member changed in place fails its CRC-32
            report.problems.append(f"CHANGED {name}: contents differ from the manifest ({error})")
            continue
        if actual != expected:
            report.problems.append(f"CHANGED {name}: contents differ from the manifest "
                                   f"(SHA-256 {actual}, expected {expected})")
    for name in sorted(present - set(listed) - {MANIFEST, SIGNATURE}):
        report.problems.append(f"UNLISTED {name}: not in the manifest (added after signing)")
    return report


def verify(package_path: Path, *, public_key_pem: bytes | None = None, expected_fingerprint: str | None = None) -> Report:
    """:func:`check` with the published key, or with the bundled key if its fingerprint is the
    published one."""
    try:
        pem = public_key_pem if public_key_pem is not None else Package(Path(package_path)).read(BUNDLED_KEY)
        key = load_key(pem)
    except (KeyError, FileNotFoundError):
        return Report(problems=[f"MISSING {BUNDLED_KEY}: give the published key with --public-key"])
    except ValueError as error:
        return Report(problems=[f"BAD KEY: {error}"])
    if expected_fingerprint is not None and fingerprint(key) != expected_fingerprint.strip().lower():
        return Report(problems=[f"WRONG KEY: the key's fingerprint is {fingerprint(key)}, "
                                f"not the published {expected_fingerprint}"])
    return check(package_path, key)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("package", type=Path, help="the package folder or its zip")
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--public-key", type=Path, help="the PEM public key your provider published")
    group.add_argument("--fingerprint", help="the SHA-256 fingerprint (hex) your provider published")
    args = parser.parse_args(argv)
    if args.public_key is None and args.fingerprint is None:
        print("Give the published key (--public-key KEY.pem) or its fingerprint (--fingerprint HEX): the key "
              "inside the package proves nothing by itself.", file=sys.stderr)
        return 2
    if not args.package.exists():
        print(f"No such package: {args.package}", file=sys.stderr)
        return 2
    pem = args.public_key.read_bytes() if args.public_key else None
    report = verify(args.package, public_key_pem=pem, expected_fingerprint=args.fingerprint)
    for problem in report.problems:
        print(problem)
    if not report.ok:
        print(f"FAILED: {len(report.problems)} problem(s), {report.checked} file(s) checked")
        return 1
    print(f"OK: signature valid, {report.checked} files match the manifest, no file added")
    return 0


if __name__ == "__main__":
    sys.exit(main())
