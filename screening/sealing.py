"""Seals over screening verdicts: an out-of-band edit of a ScreeningRecord is detectable.

Every ScreeningRecord carries ``seal``: HMAC-SHA-256 over the record's verdict (decision,
flagged, scores, threshold, index, best match, exact match, duplicate, reason) and its review state
(status, reason, time), keyed with a key derived from ``AUDIT_HMAC_KEY`` (the audit log's key,
separated from the audit chain's own use of it by a fixed label). The seal is written in the same
transaction as the fields it covers, by screening.services only: when an image is screened and when
a privacy reviewer confirms or releases it. Someone who can write to the database but does not hold
the key cannot change a verdict (``UPDATE … SET flagged = false``, a lower score, another decision)
without the seal failing: ``python manage.py verify_screening_seals`` reports each such record, and
``screening.selectors.sealed_ok`` lets a caller refuse to show or export its image.

Not covered: the within-cohort fingerprint (it only decides later duplicates), the time the
screening took and the creation time. The reviewer's identity is in the audit chain, which
``verify_screening_seals`` cross-checks.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import UTC, datetime, timedelta

from django.conf import settings

VERSION = "v1"
_LABEL = b"cxr-platform screening-record seal v1"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _key(key: str | None = None) -> bytes:
    return hmac.new((key or settings.AUDIT_HMAC_KEY).encode(), _LABEL, hashlib.sha256).digest()


def _float(value):
    return None if value is None else float(value) + 0.0  # + 0.0: -0.0 and 0.0 seal alike


def _json(value):
    """JSON as any database returns it: every number a float (PostgreSQL's jsonb writes 1e+20 as an
    integer and has no -0), keys as strings, tuples as lists."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, (int, float)):
        return _float(value)
    if isinstance(value, dict):
        return {str(k): _json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json(v) for v in value]
    return _json(json.loads(json.dumps(value)))


def _int(value):
    return None if value is None else int(value)


def _microseconds(value):
    if value is None:
        return None
    if value.tzinfo is None:  # USE_TZ is on; a naive time would be a bug, not an input
        raise ValueError("reviewed_at must be timezone-aware")
    return (value - _EPOCH) // timedelta(microseconds=1)


def sealed_fields(record) -> dict:
    """The values the seal covers, normalised so that they are the same before and after a trip
    through the database (floats as floats, JSON as the database returns it, times in µs)."""
    return {
        "record": _int(record.pk),
        "image": _int(record.image_id),
        "cohort": _int(record.cohort_id),
        "index": _int(record.index_id),
        "decision": str(record.decision),
        "flagged": bool(record.flagged),
        "score": _float(record.score),
        "threshold": _float(record.threshold),
        "holdout_score": _float(record.holdout_score),
        "best_match": _int(record.best_match),
        "best_match_path": str(record.best_match_path or ""),
        "exact_match": bool(record.exact_match),
        "stage_scores": _json(json.loads(json.dumps(record.stage_scores or {}))),
        "duplicate_of": _int(record.duplicate_of_id),
        "duplicate_similarity": _float(record.duplicate_similarity),
        "reason": str(record.reason or ""),
        "review_status": str(record.review_status or ""),
        "review_reason": str(record.review_reason or ""),
        "reviewed_at": _microseconds(record.reviewed_at),
    }


def canonical_content(record) -> bytes:
    return json.dumps(sealed_fields(record), sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def compute_seal(record, key: str | None = None) -> str:
    if record.pk is None:
        raise ValueError("a screening record is sealed once it has been saved (the seal covers its id)")
    return f"{VERSION}:" + hmac.new(_key(key), canonical_content(record), hashlib.sha256).hexdigest()


def seal_matches(record, key: str | None = None) -> bool:
    """Whether the record's stored seal is the one its current fields give."""
    stored = record.seal or ""
    if not stored or record.pk is None:
        return False
    return hmac.compare_digest(stored, compute_seal(record, key))


def seal(record) -> None:
    """Compute and store the record's seal (call inside the transaction that wrote the fields)."""
    record.seal = compute_seal(record)
    type(record).objects.filter(pk=record.pk).update(seal=record.seal)
