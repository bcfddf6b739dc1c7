"""Seals: an HMAC over every stored field of a row whose content access decisions rest on.

The audit chain proves what happened; the current state (a grant's expiry, a certificate's
verification, a signed agreement, a checked PhysioNet attestation) lives in ordinary rows that
someone with database access could edit without writing an event. A sealed model stores
``seal = HMAC(AUDIT_HMAC_KEY, model label, primary key, every other concrete field)``, recomputed
on every ``save()`` by the platform; an edit made around it (SQL, a queryset ``update()``) leaves
a seal that no longer matches, which ``manage.py verify_access_seals`` reports.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Iterable

from django.conf import settings
from django.db import models


def _value(value):
    if hasattr(value, "isoformat"):
        return value.isoformat()
    if isinstance(value, (bytes, memoryview)):
        return bytes(value).hex()
    return value if isinstance(value, (int, float, bool, str, list, dict, type(None))) else str(value)


def seal_for(instance, key: str | None = None) -> str:
    """The seal ``instance`` should carry (works on historical models in migrations too)."""
    meta = instance._meta
    content = {field.attname: _value(getattr(instance, field.attname))
               for field in meta.concrete_fields if field.name != "seal"}
    payload = json.dumps([meta.label_lower, content], sort_keys=True, separators=(",", ":"),
                         ensure_ascii=False, default=str).encode()
    return hmac.new((key or settings.AUDIT_HMAC_KEY).encode(), payload, hashlib.sha256).hexdigest()


class Sealed(models.Model):
    """Abstract base of the sealed models."""

    seal = models.CharField(max_length=64, blank=True, editable=False)

    class Meta:
        abstract = True

    def save(self, *args, **kwargs):
        super().save(*args, **kwargs)
        expected = seal_for(self)
        if self.seal != expected:  # the primary key is part of it: known only after an insert
            self.seal = expected
            type(self)._base_manager.filter(pk=self.pk).update(seal=expected)

    @property
    def seal_intact(self) -> bool:
        return hmac.compare_digest(self.seal or "", seal_for(self))


def sealed_models() -> list[type[models.Model]]:
    from django.apps import apps

    return [model for model in apps.get_models() if issubclass(model, Sealed)]


def broken_seals(models_: Iterable[type[models.Model]] | None = None) -> Iterable[tuple[str, object]]:
    """(model label, primary key) of every row whose seal does not match its content."""
    for model in models_ or sealed_models():
        for row in model._base_manager.order_by("pk").iterator(chunk_size=2000):
            if not row.seal_intact:
                yield model._meta.label, row.pk


def reseal_all(apps, schema_editor, labels: Iterable[str]) -> None:
    """Data migration helper: seal the rows that existed before their model was sealed."""
    for label in labels:
        model = apps.get_model(label)
        for row in model._base_manager.all().iterator(chunk_size=2000):
            model._base_manager.filter(pk=row.pk).update(seal=seal_for(row))
