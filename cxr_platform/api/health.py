"""Liveness of the pieces the platform depends on: database, broker, storage, and the workers.

Every check answers within a few seconds and never raises: a probe must not hang or fail itself."""

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


def platform_health() -> dict:
    checks = {
        "database": check_database(),
        "broker": check_broker(),
        "storage": check_storage(),
        "workers": check_workers(),
    }
    return {"status": "ok" if all(c["ok"] for c in checks.values()) else "degraded", "checks": checks}
