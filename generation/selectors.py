"""Queries for cohorts and their images. Users only ever see their own cohorts."""

from __future__ import annotations

from datetime import datetime

from django.db.models import Count, Exists, JSONField, OuterRef, Q, Subquery
from django.http import Http404
from django.shortcuts import get_object_or_404
from django.utils import timezone

from cxr_platform.prepared import PreparedQuery, field_names, instance
from registry.models import ModelVersion

from .models import Cohort, GenerationBatch, SyntheticImage, WorkerHeartbeat
from .sampling import age_band, distribution
from .specification import CohortSpec
from .queueing import generation_queue
from .workers import BROKER_UNREACHABLE, NO_GPU_WORKER, cohort_notice, stale_after

ImageStatus = SyntheticImage.Status


def cohorts_of(user):
    return Cohort.objects.filter(owner=user).select_related("model_version")


# What progress counts, by image status.
_PROGRESS_STATUSES = {
    "passed": ImageStatus.PASSED,
    "failed": ImageStatus.FAILED,
    "flagged": ImageStatus.FLAGGED,
    "screening": ImageStatus.SCREENING,
    "generating": ImageStatus.GENERATING,
}


class _CountsByStatus(Subquery):
    """``{status: count}`` of the rows of a subquery that yields (status, n) per status, as one JSON
    object."""

    template = "(SELECT JSONB_OBJECT_AGG(counted.status, counted.n) FROM (%(subquery)s) counted)"

    def as_sqlite(self, compiler, connection, **extra):
        extra["template"] = "(SELECT JSON_GROUP_OBJECT(counted.status, counted.n) FROM (%(subquery)s) counted)"
        return self.as_sql(compiler, connection, **extra)


def _image_counts_by_status():
    """A cohort's images counted by status, as one JSON object from one correlated subquery: unlike a
    join with GROUP BY it is computed only for the rows returned (a page). Grouped by status, it reads
    only the (cohort, status) index: at 50 cohorts of 40 images the list page's database time went
    from 2.2 ms (one filtered count per status over the rows) to 1.1 ms (bench/api.py, pgbench)."""
    counted = (SyntheticImage.objects.filter(cohort=OuterRef("pk")).order_by().values("status")
               .annotate(n=Count("pk")).values("status", "n"))
    return _CountsByStatus(counted, output_field=JSONField())


def _with_counts(cohort: Cohort) -> Cohort:
    """``image_counts`` (None for a cohort without images) as ``passed_count``, ``failed_count``, …"""
    counts = cohort.image_counts or {}
    for name in _PROGRESS_STATUSES:
        setattr(cohort, f"{name}_count", int(counts.get(name) or 0))
    return cohort


def _progress_annotations(fresh_since) -> dict:
    unfinished = GenerationBatch.objects.filter(cohort=OuterRef("pk")).exclude(status__in=GenerationBatch.TERMINAL)
    # icontains on the JSON text, not ``contains``: JSON containment is PostgreSQL-only and
    # development runs on SQLite. The quotes keep "gpu" from matching "gpu2".
    fresh_gpu_worker = WorkerHeartbeat.objects.filter(
        last_seen_at__gte=fresh_since, queues__icontains=f'"{generation_queue()}"'
    )
    return {
        "image_counts": _image_counts_by_status(),
        "has_unsent_batch": Exists(unfinished.filter(status=GenerationBatch.Status.QUEUED, enqueued_at__isnull=True)),
        "has_unfinished_batch": Exists(unfinished),
        "gpu_worker_up": Exists(fresh_gpu_worker),
    }


def with_progress_counts(cohorts) -> list[Cohort]:
    """Cohorts with their image counts (``passed_count``, …) and what their notice needs
    (``has_unsent_batch``, ``has_unfinished_batch``, ``gpu_worker_up``): a list of cohorts with their
    progress in one query instead of several per cohort. Newest first."""
    annotated = cohorts.annotate(**_progress_annotations(timezone.now() - stale_after())).order_by("-created_at", "-pk")
    return [_with_counts(cohort) for cohort in annotated]


# What a cohort's listing and access check read of its model version (its name and whether it is
# withdrawn); its generation defaults, a large JSON document, load only if something asks.
_VERSION_FIELDS = ("id", "name", "version", "status")
# What the cohort's representation and its owner check read; the rest (idempotency key, request
# fingerprint, reserved images, updated_at) loads on first access, as with only().
_COHORT_FIELDS = ("id", "owner", "name", "model_version", "specification", "seed", "size", "status", "submitted_at",
                  "started_at", "finished_at", "error", "quality_policy", "created_at")
_PROGRESS_NAMES = ["image_counts", "has_unsent_batch", "has_unfinished_batch", "gpu_worker_up"]

def _own_cohorts_with_progress(owner_pk, fresh_since):
    """A user's cohorts, newest first, as rows of the cohort, what is read of its model version and its
    progress (see _cohort_from)."""
    return (Cohort.objects.filter(owner=owner_pk).annotate(**_progress_annotations(fresh_since))
            .order_by("-created_at", "-pk")
            .values(*field_names(Cohort, only=_COHORT_FIELDS),
                    *field_names(ModelVersion, "model_version__", _VERSION_FIELDS), *_PROGRESS_NAMES))


# Both compiled once per process: clients poll a cohort's status and the list, and building these
# subqueries cost more than running them.
_OWN_COHORT_WITH_PROGRESS = PreparedQuery(
    lambda owner_pk, cohort_pk, fresh_since: _own_cohorts_with_progress(owner_pk, fresh_since).filter(pk=cohort_pk),
    key=lambda: (generation_queue(),), owner_pk=int, cohort_pk=int, fresh_since=datetime,
)
_OWN_COHORTS_PAGE = PreparedQuery(
    lambda owner_pk, fresh_since, offset, limit: _own_cohorts_with_progress(owner_pk, fresh_since)[offset:offset + limit],
    key=lambda: (generation_queue(),), shape=("offset", "limit"), owner_pk=int, fresh_since=datetime,
)
_OWN_COHORT_COUNT = PreparedQuery(
    lambda owner_pk: Cohort.objects.filter(owner=owner_pk).order_by().values("owner").annotate(n=Count("pk")).values("n"),
    owner_pk=int,
)


def _cohort_from(row: dict, versions: dict | None = None) -> Cohort:
    """``versions``: model versions already built for this page, by id (a page shares a few)."""
    cohort = instance(Cohort, row, only=_COHORT_FIELDS)
    versions = {} if versions is None else versions
    if cohort.model_version_id not in versions:
        versions[cohort.model_version_id] = instance(ModelVersion, row, "model_version__", _VERSION_FIELDS)
    cohort.model_version = versions[cohort.model_version_id]
    for name in _PROGRESS_NAMES:
        setattr(cohort, name, row[name])
    return _with_counts(cohort)


def _cohort_with_progress_of(user, pk) -> Cohort:
    rows = _OWN_COHORT_WITH_PROGRESS.rows(owner_pk=user.pk, cohort_pk=int(pk),
                                          fresh_since=timezone.now() - stale_after())
    if not rows:
        raise Http404("No cohort matches the given query.")
    return _cohort_from(rows[0])


class CohortListing:
    """A user's cohorts with their progress, newest first, for the API's paginator: ``count()``
    and one slice, each a single query compiled once per process (clients poll this list)."""

    def __init__(self, user):
        self.user = user

    def count(self) -> int:
        rows = _OWN_COHORT_COUNT.rows(owner_pk=self.user.pk)
        return rows[0]["n"] if rows else 0

    def __getitem__(self, item: slice) -> list[Cohort]:
        if not isinstance(item, slice) or item.step is not None or item.stop is None:
            raise TypeError("CohortListing takes one slice with an end, as a paginator asks for a page.")
        start = item.start or 0
        if item.stop <= start:
            return []
        rows = _OWN_COHORTS_PAGE.rows(owner_pk=self.user.pk, fresh_since=timezone.now() - stale_after(),
                                      offset=start, limit=item.stop - start)
        versions: dict = {}
        return [_cohort_from(row, versions) for row in rows]


def cohort_list_of(user):
    """The user's cohorts with their image counts, newest first (the cohort list)."""
    return with_progress_counts(cohorts_of(user))


def _image_counts(cohort: Cohort) -> dict:
    if all(hasattr(cohort, f"{name}_count") for name in _PROGRESS_STATUSES):
        return {name: getattr(cohort, f"{name}_count") for name in _PROGRESS_STATUSES}
    return cohort.images.aggregate(**{
        name: Count("pk", filter=Q(status=status)) for name, status in _PROGRESS_STATUSES.items()
    })


def _notice(cohort: Cohort) -> str | None:
    """workers.cohort_notice, from the annotations of with_progress_counts when the cohort has them."""
    if not hasattr(cohort, "gpu_worker_up"):
        return cohort_notice(cohort)
    if cohort.is_terminal or cohort.status == Cohort.Status.DRAFT:
        return None
    verb = "continue" if cohort.status == Cohort.Status.RUNNING else "start"
    if cohort.has_unsent_batch:
        return BROKER_UNREACHABLE.format(verb=verb)
    if cohort.has_unfinished_batch and not cohort.gpu_worker_up:
        return NO_GPU_WORKER.format(verb=verb)
    return None


def cohort_of(user, pk, *, with_progress: bool = False) -> Cohort:
    """The user's cohort, or 404 (also for other people's ids); ``with_progress``: with its image
    counts and notice in the same query (the status endpoint clients poll)."""
    if with_progress:
        return _cohort_with_progress_of(user, pk)
    return get_object_or_404(cohorts_of(user), pk=pk)


def passed_images(cohort: Cohort):
    """The only images anyone but a privacy reviewer may see."""
    return cohort.images.filter(status=ImageStatus.PASSED).order_by("index")


def passed_image_of(user, cohort_pk, image_pk) -> SyntheticImage:
    return get_object_or_404(
        SyntheticImage.objects.select_related("cohort__model_version"),
        pk=image_pk,
        cohort_id=cohort_pk,
        cohort__owner=user,
        status=ImageStatus.PASSED,
    )


def open_image_file(image: SyntheticImage):
    """The stored PNG, opened for reading; 404 if storage has lost it."""
    try:
        return image.image.open("rb")
    except (FileNotFoundError, ValueError):
        raise Http404("This image's file is no longer in storage.") from None


def cohort_progress(cohort: Cohort, *, now=None) -> dict:
    counts = _image_counts(cohort)
    done = counts["passed"] + counts["failed"]
    eta = None
    if cohort.status == Cohort.Status.RUNNING and cohort.started_at and counts["passed"]:
        elapsed = ((now or timezone.now()) - cohort.started_at).total_seconds()
        eta = round(elapsed / counts["passed"] * (cohort.size - done))
    return {
        "status": cohort.status,
        "size": cohort.size,
        "passed": counts["passed"],
        "failed": counts["failed"],
        "screening": counts["screening"],
        "generating": counts["generating"],
        "flagged": counts["flagged"],
        "percent": round(100 * done / cohort.size, 1) if cohort.size else 100.0,
        "eta_seconds": eta,
        "error": cohort.error,
        "finished": cohort.is_terminal,
        # What an unfinished cohort waits for, in plain words ("No GPU worker is running — …"), or None.
        "notice": _notice(cohort),
    }


def failed_images(cohort: Cohort):
    return cohort.images.filter(status=ImageStatus.FAILED).order_by("index").only("index", "error", "prompt")


def requested_vs_generated(cohort: Cohort) -> list[dict]:
    """For each attribute, each category's requested share and its share among passed images."""
    spec = CohortSpec.from_dict(cohort.specification)
    generated = distribution(passed_images(cohort).only("demographics", "findings"))
    passed_count = sum(generated["sex"].values())
    requested = {"sex": spec.sex, "race": spec.race, "view": spec.view, "age": _age_shares(spec)}
    if spec.findings:
        requested["findings"] = spec.findings
    vocabulary = cohort.model_version.defaults.get("findings", {})
    charts = []
    for attribute, shares in requested.items():
        rows = []
        for category in sorted(set(shares) | set(generated[attribute])):
            got = generated[attribute].get(category, 0)
            # "No finding" is whatever the requested findings leave, unless asked for explicitly.
            implicit = attribute == "findings" and category not in shares
            rows.append(
                {
                    "category": category,
                    "label": vocabulary.get(category, {}).get("label", category) if attribute == "findings" else category,
                    "requested": None if implicit else round(100 * shares.get(category, 0.0), 1),
                    "generated": round(100 * got / passed_count, 1) if passed_count else 0.0,
                    "count": got,
                }
            )
        charts.append({"attribute": attribute, "rows": rows})
    return charts


def _age_shares(spec: CohortSpec) -> dict:
    """The age-band shares a specification asks for (bins spread uniformly over their ages)."""
    total = sum(b.weight for b in spec.age_bins)
    shares: dict[str, float] = {}
    for b in spec.age_bins:
        ages = range(b.min, b.max + 1)
        for age in ages:
            band = age_band(age)
            shares[band] = shares.get(band, 0.0) + b.weight / total / len(ages)
    return shares


def privacy_summary(cohort) -> dict:
    """Screening's summary of the cohort, with the histogram as bar heights for the page."""
    from screening.selectors import privacy_summary as screening_summary

    summary = screening_summary(cohort)
    counts = summary["histogram"]["counts"]
    edges = summary["histogram"]["edges"]
    tallest = max(counts) if counts and max(counts) else 1
    summary["bars"] = [
        {"low": edges[i], "high": edges[i + 1], "count": count, "height": round(100 * count / tallest)}
        for i, count in enumerate(counts)
    ]
    summary["chart"] = histogram_chart(summary["bars"], summary.get("threshold"), tallest)
    return summary


# The histogram's drawing area in SVG user units (the SVG scales to the page's width).
_CHART = {"width": 420, "height": 146, "left": 44, "right": 410, "top": 22, "bottom": 110}


def histogram_chart(bars: list[dict], threshold: float | None, tallest: int) -> dict:
    """Coordinates for the score histogram: bars, both axes with ticks, and the threshold marker."""
    left, right, top, bottom = _CHART["left"], _CHART["right"], _CHART["top"], _CHART["bottom"]

    def x(value: float) -> float:
        return round(left + (right - left) * min(max(value, 0.0), 1.0), 2)

    def y(count: float) -> float:
        return round(bottom - (bottom - top) * count / tallest, 2)

    y_ticks = sorted({0, tallest, tallest // 2} if tallest >= 4 else set(range(tallest + 1)))
    return {
        **_CHART,
        "bars": [{**bar, "x": x(bar["low"]) + 0.5, "width": max(x(bar["high"]) - x(bar["low"]) - 1, 0.5),
                  "y": y(bar["count"]), "bar_height": round(bottom - y(bar["count"]), 2),
                  "above": threshold is not None and bar["low"] >= threshold} for bar in bars],
        "x_ticks": [{"x": x(v), "label": f"{v:g}"} for v in (0.0, 0.25, 0.5, 0.75, 1.0)],
        "y_ticks": [{"y": y(v), "label": v} for v in y_ticks],
        "threshold": None if threshold is None else {"x": x(threshold), "label": f"{threshold:.3f}"},
        "x_title": (left + right) / 2,
        "y_title": (top + bottom) / 2,
    }



# --- The image viewer and the live gallery ---------------------------------------------------------

SEX_LABELS = {"F": "Female", "M": "Male"}
# How long a passed image may take to become visible after its timestamp: the transaction that marks
# a batch passed commits a moment after ``updated_at`` is taken, and two workers may commit out of
# order. The gallery's cursor never moves past ``now - GALLERY_SETTLE``; what is newer is sent again
# on the next poll and the page ignores images it already shows.
GALLERY_SETTLE_SECONDS = 5
GALLERY_PAGE = 60


def finding_labels(model_version) -> dict[str, str]:
    """Finding key → the label people read (``pleural_effusion`` → "Pleural effusion")."""
    vocabulary = (model_version.defaults or {}).get("findings", {})
    return {key: entry.get("label", key) for key, entry in vocabulary.items()}


def human_label(key: str, labels: dict[str, str]) -> str:
    return labels.get(key) or str(key).replace("_", " ").capitalize()


def image_caption(image: SyntheticImage) -> str:
    d = image.demographics or {}
    return " ".join(str(part) for part in (d.get("age", ""), d.get("sex", ""), d.get("race", ""), d.get("view", "")) if part)


def _verdict(image: SyntheticImage) -> dict | None:
    from screening.models import ScreeningRecord

    try:
        record = image.screening
    except ScreeningRecord.DoesNotExist:
        return None
    return {
        "decision": record.decision,
        "label": record.get_decision_display(),
        "score": round(record.score, 4) if record.score is not None else None,
        "threshold": round(record.threshold, 4) if record.threshold is not None else None,
        "review": record.get_review_status_display() if record.review_status else "",
    }


def _quality_control(image: SyntheticImage) -> dict:
    """The quality-control verdict (the quality app's ``image.quality``), as label → text; empty
    where the image has none (quality control off, or an image made before it existed)."""
    from django.core.exceptions import ObjectDoesNotExist

    try:
        verdict = image.quality
    except (ObjectDoesNotExist, AttributeError):
        return {}
    values = {"Verdict": verdict.get_decision_display()}
    if verdict.failed_checks:
        values["Failed checks"] = ", ".join(map(str, verdict.failed_checks))
    if verdict.unavailable_checks:
        values["Not run"] = ", ".join(map(str, verdict.unavailable_checks))
    if verdict.reason:
        values["Reason"] = verdict.reason
    return values


def image_details(image: SyntheticImage) -> dict:
    """Everything the viewer's side panel shows about one passed image."""
    labels = finding_labels(image.cohort.model_version)
    d = image.demographics or {}
    return {
        "id": image.pk,
        "index": image.index,
        "prompt": image.prompt,
        "impression": image.impression,
        "caption": image_caption(image),
        "demographics": {
            "Age": "90 or older" if d.get("age") == 91 else d.get("age"),
            "Sex": SEX_LABELS.get(d.get("sex"), d.get("sex")),
            "Race / ethnicity": str(d.get("race", "")).title(),
            "View": d.get("view"),
        },
        "labels": [human_label(key, labels) for key in image.findings or []],
        "seed": image.seed,
        "attempt": image.attempt,
        "sampling": image.sampling,
        "screening": _verdict(image),
        "quality_control": _quality_control(image),
    }


def _encode_cursor(moment, pk: int) -> str:
    return f"{int(moment.timestamp() * 1_000_000)}-{pk}"


def decode_gallery_cursor(value: str | None):
    """``(datetime, pk)`` from a cursor, None for none; ValueError for one that is not a cursor."""
    if not value:
        return None
    from datetime import datetime, timezone as dt_timezone

    micros, _, pk = value.partition("-")
    micros, pk = int(micros), int(pk)
    if not (0 <= micros < 10**17 and 0 <= pk < 2**63):  # before the year 5138, and a database id
        raise ValueError(value)
    return datetime.fromtimestamp(micros / 1_000_000, tz=dt_timezone.utc), pk


def gallery_start_cursor(*, now=None) -> str:
    """The cursor of a page rendered now: what passed before ``now - settle`` is on the page."""
    from datetime import timedelta

    return _encode_cursor((now or timezone.now()) - timedelta(seconds=GALLERY_SETTLE_SECONDS), 0)


def gallery_since(cohort: Cohort, cursor: str | None, *, limit: int = GALLERY_PAGE, now=None) -> dict:
    """Images that passed after ``cursor`` (oldest first, at most ``limit``) and the next cursor."""
    from datetime import timedelta

    images = passed_images(cohort).order_by("updated_at", "pk").only(
        "pk", "index", "prompt", "demographics", "sampling", "updated_at", "cohort_id")
    after = decode_gallery_cursor(cursor)
    if after is not None:
        moment, pk = after
        images = images.filter(Q(updated_at__gt=moment) | Q(updated_at=moment, pk__gt=pk))
    rows = list(images[:limit])
    settled = (now or timezone.now()) - timedelta(seconds=GALLERY_SETTLE_SECONDS)
    next_cursor = cursor or ""
    for image in rows:
        # A full page moves on regardless (paging); otherwise only past what has surely committed.
        if image.updated_at <= settled or len(rows) == limit:
            next_cursor = _encode_cursor(image.updated_at, image.pk)
    return {"images": rows, "cursor": next_cursor}
