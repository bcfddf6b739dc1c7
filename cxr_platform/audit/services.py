"""Writing to the audit log.

Every security-relevant action calls :func:`record_event` inside the same
database transaction as the change it describes, so an event exists exactly
when the change does.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from .context import client_ip, current_request, user_agent
from .models import AuditEvent

GENESIS_MAC = "0" * 64
# Any constant works; it names the lock that serialises appends to the chain on PostgreSQL.
_CHAIN_LOCK_ID = 0x43585241  # "CXRA"


def canonical_content(event: AuditEvent) -> bytes:
    content = {
        "sequence": event.sequence,
        "occurred_at": event.occurred_at.isoformat(),
        "actor_id": event.actor_id,
        "actor_username": event.actor_username,
        "action": event.action,
        "target_type": event.target_type,
        "target_id": event.target_id,
        "ip_address": event.ip_address,
        "user_agent": event.user_agent,
        "details": event.details,
    }
    return json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def compute_mac(event: AuditEvent, previous_mac: str, key: str | None = None) -> str:
    key_bytes = (key or settings.AUDIT_HMAC_KEY).encode()
    return hmac.new(key_bytes, previous_mac.encode() + b"\n" + canonical_content(event), hashlib.sha256).hexdigest()


def _target_of(target: Any) -> tuple[str, str]:
    if target is None:
        return "", ""
    if isinstance(target, tuple):
        target_type, target_id = target
        return str(target_type), str(target_id)
    meta = getattr(target, "_meta", None)
    if meta is not None:
        return meta.label_lower, str(target.pk)
    return type(target).__name__, str(target)


def record_event(
    action: str,
    *,
    actor=None,
    target: Any = None,
    details: dict | None = None,
    request=None,
    actor_username: str | None = None,
) -> AuditEvent:
    """Append one event to the chain.

    ``target`` is a model instance or a ``(type, id)`` pair. ``request`` is
    optional: the request being served is picked up automatically.
    """
    request = request if request is not None else current_request.get()
    if actor is not None and not getattr(actor, "is_authenticated", False):
        actor = None
    target_type, target_id = _target_of(target)
    # Round-trip through JSON so the MAC covers exactly what the database will return.
    clean_details = json.loads(json.dumps(details or {}, default=str, sort_keys=True))
    with transaction.atomic():
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_xact_lock(%s)", [_CHAIN_LOCK_ID])
        last = AuditEvent.objects.order_by("-sequence").only("sequence", "mac").first()
        event = AuditEvent(
            sequence=(last.sequence + 1) if last else 1,
            occurred_at=timezone.now(),
            actor=actor,
            actor_username=actor_username if actor_username is not None else (actor.get_username() if actor else ""),
            action=action,
            target_type=target_type,
            target_id=target_id,
            ip_address=client_ip(request),
            user_agent=user_agent(request),
            details=clean_details,
            previous_mac=last.mac if last else GENESIS_MAC,
        )
        event.mac = compute_mac(event, event.previous_mac)
        event.save(force_insert=True)
    return event
