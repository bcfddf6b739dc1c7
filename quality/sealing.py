"""Seals over quality verdicts, as screening seals its records: HMAC-SHA-256 over what a verdict decided,
keyed from AUDIT_HMAC_KEY under a label of its own, written in the transaction that writes the verdict.
Someone who can write to the database without the key cannot turn a failed verdict into a passed one
unnoticed: ``sealed_ok`` is False and ``verify_quality_seals`` lists it."""

from __future__ import annotations

import hashlib
import hmac
import json

from django.conf import settings

_LABEL = b"cxr-platform quality-verdict seal v1"


def _key() -> bytes:
    return hmac.new(settings.AUDIT_HMAC_KEY.encode(), _LABEL, hashlib.sha256).digest()


def _payload(verdict) -> bytes:
    # Through JSON and back, so values read from the database (jsonb's numbers) seal as written.
    checks = json.loads(json.dumps(verdict.checks))
    fields = {
        "image": verdict.image_id, "cohort": verdict.cohort_id, "attempt": int(verdict.attempt),
        "passed": bool(verdict.passed), "decision": str(verdict.decision), "failed": list(verdict.failed_checks),
        "unavailable": list(verdict.unavailable_checks), "reason": verdict.reason,
        "checks": [[c.get("name"), c.get("status"), c.get("reason")] for c in checks],
    }
    return json.dumps(fields, sort_keys=True, separators=(",", ":")).encode()


def compute(verdict) -> str:
    return hmac.new(_key(), _payload(verdict), hashlib.sha256).hexdigest()


def sealed_ok(verdict) -> bool:
    return bool(verdict.seal) and hmac.compare_digest(verdict.seal, compute(verdict))
