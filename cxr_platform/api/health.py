"""Liveness of the pieces the platform depends on: database, broker, storage, and the workers.

Every check answers within a few seconds and never raises: a probe must not hang or fail itself.

What a load balancer needs is one bit: can this web process serve requests? It can while the
database answers and the storage takes writes (every page reads the database; uploads, downloads and
exports need the storage, and a missing mount is usually one node's fault). The broker and the
workers are shared by every web node, and no request needs them to succeed: a cohort or export
submitted while the broker is down is stored and sent by reconciliation once it is back, and work
waiting for a GPU worker is reported to the user. Taking web nodes out of rotation would not bring
a worker back, only stop the site, so those are ``degraded``, not ``unavailable``:

- ``ok`` (200): everything answers;
- ``degraded`` (200): serving; a non-critical check failed (``problems`` says which);
- ``unavailable`` (503): a critical check failed; this web process cannot serve.
"""

from __future__ import annotations

import uuid

from django.core.files.base import ContentFile
from django.core.files.storage import storages
from django.db import connection


def check_database() -> dict:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
        return {"ok": True, "vendor": connection.vendor}
    except Exception as exc:  # report, never raise: this is a health probe
        return {"ok": False, "error": type(exc).__name__}


def check_broker() -> dict:
    from cxr_platform.celery import app

    try:
        with app.connection_for_write(connect_timeout=2) as conn:
            conn.ensure_connection(max_retries=1, interval_start=0, interval_step=0.2, timeout=2)
            transport = conn.transport_cls if isinstance(conn.transport_cls, str) else conn.transport.driver_type
        return {"ok": True, "transport": str(transport)}
    except Exception as exc:
        return {"ok": False, "error": type(exc).__name__}


def check_storage() -> dict:
    name = f"health/{uuid.uuid4().hex}"
    try:
        storage = storages["default"]
        saved = storage.save(name, ContentFile(b"ok"))
        storage.delete(saved)
        return {"ok": True, "backend": type(storage).__name__}
    except Exception as exc:
        return {"ok": False, "error": type(exc).__name__}


def check_workers() -> dict:
    """Each queue's live consumers and when a worker was last seen on it, from the heartbeats the
    workers write to the database (not the broker); not ok when generation batches wait and no
    worker consumes the generation queue."""
    from generation.workers import queue_report

    try:
        return queue_report()
    except Exception as exc:
        return {"ok": False, "error": type(exc).__name__}


# Without these this web process cannot serve; the others degrade what it serves.
CRITICAL_CHECKS = ("database", "storage")


def platform_health() -> dict:
    checks = {"database": check_database(), "storage": check_storage()}
    if checks["database"]["ok"]:
        checks["workers"] = check_workers()  # read from the database, so asked only when it answers
    else:
        checks["workers"] = {"ok": False, "error": "database unreachable"}
    checks["broker"] = check_broker()
    failed = [name for name, check in checks.items() if not check["ok"]]
    if any(name in CRITICAL_CHECKS for name in failed):
        status = "unavailable"
    else:
        status = "degraded" if failed else "ok"
    return {"status": status, "serving": status != "unavailable", "problems": failed, "checks": checks}
