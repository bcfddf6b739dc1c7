"""Encryption at rest for uploaded credentials (training certificates).

Keys come from ``settings.FILE_ENCRYPTION_KEYS``, newest first: new files are
encrypted with the first key, any listed key decrypts, and
:func:`rotate` re-encrypts a token with the newest key so an old key can be
retired once ``manage.py rotate_file_keys`` has run.
"""

from __future__ import annotations

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured


class UnreadableFile(Exception):
    """The stored bytes cannot be decrypted with any configured key."""


def _cipher() -> MultiFernet:
    keys = settings.FILE_ENCRYPTION_KEYS
    if not keys:
        raise ImproperlyConfigured("FILE_ENCRYPTION_KEYS is empty: uploaded files cannot be encrypted")
    return MultiFernet([Fernet(key) for key in keys])


def encrypt(data: bytes) -> bytes:
    return _cipher().encrypt(data)


def decrypt(token: bytes) -> bytes:
    try:
        return _cipher().decrypt(token)
    except InvalidToken as exc:
        raise UnreadableFile("No configured key decrypts this file (was its key removed before rotation?)") from exc


def is_current(token: bytes) -> bool:
    """Whether the newest key encrypted ``token``."""
    try:
        Fernet(settings.FILE_ENCRYPTION_KEYS[0]).decrypt(token)
    except InvalidToken:
        return False
    return True


def rotate(token: bytes) -> bytes:
    try:
        return _cipher().rotate(token)
    except InvalidToken as exc:
        raise UnreadableFile("No configured key decrypts this file") from exc
