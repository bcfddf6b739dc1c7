"""Cohort generation: planning, submission (quota, idempotency), cancellation.

State changes live in this package's services; Celery tasks, views, the API and the
``generate_cohort`` command only call them. This module is the entry point: what runs batches
(``generation.batches``), what hands them to the broker (``generation.queueing``), the transition
tables (``generation.transitions``) and the quota (``generation.quota``) are re-exported here.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import secrets
from dataclasses import dataclass

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from access import capabilities as caps
from access.policy import access_policy, require_capability
from registry.models import ModelVersion

from .batches import (  # noqa: F401  (the package's public API)
    CANCELLED, COMPLETED, FAILED, RETRY, SKIPPED, finish_cohort_if_done, reconcile_batches, retry_batch,
    run_batch, run_cohort_inline,
)
from .models import Cohort, GenerationBatch, SyntheticImage
from .pipeline import ScreeningUnavailable  # noqa: F401
from . import queueing
from .quota import QUOTA_WINDOW, QuotaExceeded, images_reserved, lock_submissions_of, release_unused_quota, reserve_quota  # noqa: F401
from .sampling import Patient, check_template, distribution, image_seed, sample_patients
from .specification import CohortSpec, parse_specification
from .transitions import InvalidTransition, transition_batches, transition_cohort  # noqa: F401
from quality.services import parse_policy

logger = logging.getLogger(__name__)

MAX_SEED = 2**63 - 1
MAX_COHORT_SIZE = 1_000_000
PREVIEW_PROMPTS = 10
MAX_IDEMPOTENCY_KEY_LENGTH = 255
_IDEMPOTENCY_KEY = re.compile(r"^[\x21-\x7e]{1,%d}$" % MAX_IDEMPOTENCY_KEY_LENGTH)  # visible ASCII

Status = Cohort.Status
BatchStatus = GenerationBatch.Status


class IdempotencyKeyReused(ValidationError):
    """The key was used before for a different request."""


# --- Planning ------------------------------------------------------------------------------


@dataclass(frozen=True)
class CohortPlan:
    """Everything a submission will create, checked; what the preview shows."""

    user: object
    name: str
    model_version: ModelVersion
    size: int
    seed: int
    spec: CohortSpec
    sampling: dict
    patients: list[Patient]
    quota: int
    quota_used: int
    quality_policy: str = Cohort.QualityPolicy.DELIVER  # after the last quality-control attempt

    @property
    def quota_left(self) -> int:
        return max(self.quota - self.quota_used, 0)

    def preview(self) -> dict:
        cells: dict[str, dict[str, int]] = {}
        for p in self.patients:
            row = cells.setdefault(p.demographics["sex"], {})
            row[p.demographics["race"]] = row.get(p.demographics["race"], 0) + 1
        return {
            "name": self.name,
            "model_version": {"id": self.model_version.pk, "name": str(self.model_version)},
            "size": self.size,
            "seed": self.seed,
            "cells": cells,
            "counts": distribution(self.patients),
            "first_prompts": [p.prompt for p in self.patients[:PREVIEW_PROMPTS]],
            "sampling": self.sampling,
            "quality_policy": self.quality_policy,
            "quota": {"daily": self.quota, "used": self.quota_used, "this_cohort": self.size,
                      "left_after": self.quota_left - self.size},
        }


def default_model_version(user) -> ModelVersion | None:
    """The newest active model version this user may generate with."""
    return (
        access_policy(user)
        .model_version_filter(caps.GENERATE)
        .filter(status=ModelVersion.Status.ACTIVE)
        .order_by("-registered_at")
        .first()
    )


def _resolve_model_version(user, value) -> ModelVersion:
    if value in (None, ""):
        model_version = default_model_version(user)
        if model_version is None:
            raise ValidationError({"model_version": ["No active model version is available to you."]})
        return model_version
    try:
        model_version = ModelVersion.objects.get(pk=int(value))
    except (ValueError, TypeError, ModelVersion.DoesNotExist):
        raise ValidationError({"model_version": [f"There is no model version {value!r}."]}) from None
    if model_version.status == ModelVersion.Status.WITHDRAWN:
        raise ValidationError({"model_version": [f"{model_version} has been withdrawn."]})
    return model_version


def _int_field(data: dict, name: str, *, minimum: int, maximum: int, default=None) -> int:
    value = data.get(name, default)
    if value in (None, ""):
        raise ValidationError({name: ["This field is required."]})
    try:
        number = int(value)
        if isinstance(value, float) and number != value:
            raise ValueError
    except (TypeError, ValueError):
        raise ValidationError({name: ["Must be a whole number."]}) from None
    if not minimum <= number <= maximum:
        raise ValidationError({name: [f"Must be between {minimum:,} and {maximum:,}."]})
    return number


def check_prompt_lengths(model_version: ModelVersion, prompts) -> None:
    """Refuse prompts the text encoder would truncate (never truncate silently)."""
    from .inference import get_engine

    engine = get_engine(model_version)
    limit = engine.max_prompt_tokens
    unique = sorted(set(prompts))
    for prompt, tokens in zip(unique, engine.count_tokens_many(unique), strict=True):
        if tokens > limit:
            raise ValidationError(
                {
                    "specification": [
                        f"This prompt has {tokens} tokens, more than the text encoder's limit of {limit}; "
                        f"shorten the impression: {prompt!r}"
                    ]
                }
            )


def plan_cohort(*, user, data: dict) -> CohortPlan:
    """Check a request (the JSON of the API's create call) and sample its patients. Writes nothing."""
    from .inference import SamplingParams

    if not isinstance(data, dict):
        raise ValidationError({"specification": ["The request must be a JSON object."]})
    require_capability(user, caps.GENERATE)
    model_version = _resolve_model_version(user, data.get("model_version"))
    policy = require_capability(user, caps.GENERATE, model_version)
    name = str(data.get("name") or "").strip()
    if not name:
        raise ValidationError({"name": ["Give the cohort a name."]})
    if len(name) > 200:
        raise ValidationError({"name": ["At most 200 characters."]})
    quota, used = policy.daily_image_quota, images_reserved(user)
    left = max(quota - used, 0)
    if left < 1:
        raise QuotaExceeded({"size": [f"You have used all {quota:,} images of your daily quota."]})
    size = _int_field(data, "size", minimum=1, maximum=MAX_COHORT_SIZE)
    if size > left:
        raise QuotaExceeded(
            {"size": [f"{size:,} images is more than the {left:,} left of your daily quota of {quota:,}."]}
        )
    seed = data.get("seed")
    seed = secrets.randbelow(2**31) if seed in (None, "") else _int_field(data, "seed", minimum=0, maximum=MAX_SEED)
    defaults = model_version.defaults
    try:
        check_template(defaults["prompt_template"])
    except ValueError as exc:
        raise ValidationError({"model_version": [str(exc)]}) from None
    spec = parse_specification(data, defaults)
    quality_policy = parse_policy(data)
    patients = sample_patients(spec, defaults, size, seed)
    check_prompt_lengths(model_version, [p.prompt for p in patients])
    sampling = SamplingParams.from_defaults(defaults, spec.sampling).as_dict()
    return CohortPlan(
        user=user, name=name, model_version=model_version, size=size, seed=seed, spec=spec,
        sampling=sampling, patients=patients, quota=quota, quota_used=used, quality_policy=quality_policy,
    )


# --- Submission --------------------------------------------------------------------------


@dataclass(frozen=True)
class Submission:
    cohort: Cohort
    created: bool  # False: a repeat of an earlier request (same idempotency key) returned its cohort


def request_fingerprint(data) -> str:
    """SHA-256 of a create request's JSON, keys sorted: two requests are "the same" when it is equal."""
    canonical = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def check_idempotency_key(key: str) -> str:
    if not _IDEMPOTENCY_KEY.match(key or ""):
        raise ValidationError({"idempotency_key": [
            f"An idempotency key is 1 to {MAX_IDEMPOTENCY_KEY_LENGTH} visible ASCII characters (a UUID is a good one)."
        ]})
    return key


def cohort_for_key(user, key: str, *, fingerprint: str | None = None) -> Cohort | None:
    """The cohort an earlier request with this key created, if any. With ``fingerprint``, a
    different earlier request under the same key is refused (IdempotencyKeyReused)."""
    cohort = Cohort.objects.filter(owner=user, idempotency_key=key).first()
    if cohort is not None and fingerprint is not None and cohort.request_fingerprint != fingerprint:
        raise IdempotencyKeyReused({"idempotency_key": [
            f"This idempotency key was already used for a different request, which created cohort {cohort.pk} "
            f"(“{cohort.name}”). Send a new key to create another cohort, or repeat the first request exactly "
            f"to get that cohort back."
        ]})
    return cohort


def submit(
    plan: CohortPlan, *, enqueue: bool = True, idempotency_key: str | None = None, fingerprint: str | None = None
) -> Submission:
    """Create the cohort, its images and batches, reserve quota and queue the work, atomically.

    With an idempotency key, a cohort the same user already created under that key is returned
    instead (checked with the user's row locked, so two concurrent requests cannot both create;
    the unique constraint on (owner, idempotency_key) backs this up)."""
    user = plan.user
    try:
        with transaction.atomic():
            lock_submissions_of(user)
            if idempotency_key:
                earlier = cohort_for_key(user, idempotency_key, fingerprint=fingerprint)
                if earlier is not None:
                    return Submission(earlier, created=False)
            reserve_quota(user, plan.size)
            cohort = _create(plan, idempotency_key=idempotency_key, fingerprint=fingerprint or "", enqueue=enqueue)
    except IntegrityError:
        earlier = cohort_for_key(user, idempotency_key, fingerprint=fingerprint) if idempotency_key else None
        if earlier is None:
            raise
        return Submission(earlier, created=False)
    return Submission(cohort, created=True)


def _create(plan: CohortPlan, *, idempotency_key, fingerprint: str, enqueue: bool) -> Cohort:
    cohort = Cohort.objects.create(
        owner=plan.user,
        name=plan.name,
        model_version=plan.model_version,
        specification=plan.spec.as_dict(),
        seed=plan.seed,
        size=plan.size,
        reserved_images=plan.size,
        idempotency_key=idempotency_key or None,
        request_fingerprint=fingerprint,
        quality_policy=plan.quality_policy,
    )
    _insert_images(cohort, plan)
    batch_size = max(1, int(settings.GENERATION_BATCH_SIZE))
    batches = [
        GenerationBatch(cohort=cohort, first_index=start, stop_index=min(start + batch_size, plan.size))
        for start in range(0, plan.size, batch_size)
    ]
    if enqueue:
        queueing.create_queued(batches)  # inserted queued; the messages go after commit
    else:
        GenerationBatch.objects.bulk_create(batches, batch_size=1000)
    transition_cohort(
        cohort, Status.QUEUED, actor=plan.user,
        details={"model_version": str(plan.model_version), "seed": plan.seed, "batches": len(batches)},
    )
    return cohort


# The image row of a new patient, in the order COPY writes it (checked against the model: a new field
# must be added here too).
_IMAGE_COLUMNS = ("cohort_id", "index", "attempt", "seed", "prompt", "demographics", "findings", "impression",
                  "sampling", "image", "status", "error", "created_at", "updated_at")


def _insert_images(cohort: Cohort, plan: CohortPlan) -> None:
    """One row per patient. On PostgreSQL with COPY: about four times faster than bulk_create for the
    20,000 rows of a large cohort, which otherwise take seconds of the request."""
    if connection.vendor != "postgresql":
        SyntheticImage.objects.bulk_create(
            [
                SyntheticImage(cohort=cohort, index=p.index, seed=image_seed(plan.seed, p.index), prompt=p.prompt,
                               demographics=p.demographics, findings=p.findings, impression=p.impression,
                               sampling=plan.sampling)
                for p in plan.patients
            ],
            batch_size=1000,
        )
        return
    fields = {f.column for f in SyntheticImage._meta.concrete_fields if not f.primary_key}
    if fields != set(_IMAGE_COLUMNS):
        raise RuntimeError(f"_IMAGE_COLUMNS is out of date: the model has {sorted(fields)}")
    quote, now, sampling = connection.ops.quote_name, timezone.now(), json.dumps(plan.sampling)
    pending = SyntheticImage.Status.PENDING
    sql = (f"COPY {quote(SyntheticImage._meta.db_table)} ({', '.join(quote(c) for c in _IMAGE_COLUMNS)}) "
           f"FROM STDIN")
    with connection.cursor() as cursor, cursor.cursor.copy(sql) as copy:
        for p in plan.patients:
            copy.write_row((
                cohort.pk, p.index, 0, image_seed(plan.seed, p.index), p.prompt, json.dumps(p.demographics),
                json.dumps(p.findings), p.impression, sampling, "", pending, "", now, now,
            ))


def submit_plan(plan: CohortPlan, *, enqueue: bool = True) -> Cohort:
    return submit(plan, enqueue=enqueue).cohort


def request_cohort(*, user, data: dict, enqueue: bool = True) -> Cohort:
    """Plan and submit in one call: what the API, the form and the command use."""
    return submit_plan(plan_cohort(user=user, data=data), enqueue=enqueue)


def request_cohort_once(*, user, data: dict, idempotency_key: str, enqueue: bool = True) -> Submission:
    """``request_cohort`` under an idempotency key: a repeat of the same request returns the first
    cohort (without planning again or spending quota); a different request under the same key is
    refused with IdempotencyKeyReused."""
    check_idempotency_key(idempotency_key)
    fingerprint = request_fingerprint(data)
    earlier = cohort_for_key(user, idempotency_key, fingerprint=fingerprint)
    if earlier is not None:
        return Submission(earlier, created=False)
    return submit(plan_cohort(user=user, data=data), enqueue=enqueue, idempotency_key=idempotency_key,
                  fingerprint=fingerprint)


# --- Cancellation --------------------------------------------------------------------------


def cancel_cohort(*, cohort: Cohort, actor) -> Cohort:
    """Stop a cohort: pending batches are dropped, the running one stops at its next checkpoint."""
    with transaction.atomic():
        cohort = Cohort.objects.select_for_update().get(pk=cohort.pk)
        if cohort.is_terminal:
            raise InvalidTransition(f"This cohort is already {cohort.get_status_display().lower()}.")
        waiting = list(cohort.batches.filter(status__in=[BatchStatus.PENDING, BatchStatus.QUEUED]))
        transition_batches(waiting, BatchStatus.CANCELLED)
        release_unused_quota(cohort)
        transition_cohort(cohort, Status.CANCELLED, actor=actor, details={"batches_dropped": len(waiting)})
    return cohort


__all__ = [
    "CANCELLED", "COMPLETED", "FAILED", "RETRY", "SKIPPED", "QUOTA_WINDOW", "CohortPlan", "IdempotencyKeyReused",
    "InvalidTransition", "QuotaExceeded", "ScreeningUnavailable", "Submission", "cancel_cohort",
    "check_idempotency_key", "check_prompt_lengths", "cohort_for_key", "default_model_version",
    "finish_cohort_if_done", "images_reserved", "plan_cohort", "reconcile_batches", "request_cohort",
    "request_cohort_once", "request_fingerprint", "retry_batch", "run_batch", "run_cohort_inline", "submit",
    "submit_plan",
]
