"""Queries for cohorts and their images. Users only ever see their own cohorts."""

from __future__ import annotations

from django.db.models import Count, Q
from django.http import Http404
from django.shortcuts import get_object_or_404
from django.utils import timezone

from .models import Cohort, SyntheticImage
from .sampling import age_band, distribution
from .specification import CohortSpec
from .workers import cohort_notice

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


def with_progress_counts(cohorts):
    """Cohorts annotated with their image counts (``passed_count``, …): a list of cohorts with their
    progress in one query instead of one per cohort. Newest first."""
    return cohorts.annotate(**{
        f"{name}_count": Count("images", filter=Q(images__status=status))
        for name, status in _PROGRESS_STATUSES.items()
    }).order_by("-created_at", "-pk")  # Meta.ordering does not apply to aggregate queries


def cohort_list_of(user):
    """The user's cohorts with their image counts, newest first (the cohort list)."""
    return with_progress_counts(cohorts_of(user))


def _image_counts(cohort: Cohort) -> dict:
    if all(hasattr(cohort, f"{name}_count") for name in _PROGRESS_STATUSES):
        return {name: getattr(cohort, f"{name}_count") for name in _PROGRESS_STATUSES}
    return cohort.images.aggregate(**{
        name: Count("pk", filter=Q(status=status)) for name, status in _PROGRESS_STATUSES.items()
    })


def cohort_of(user, pk) -> Cohort:
    """The user's cohort, or 404 (also for other people's ids)."""
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
        "notice": cohort_notice(cohort),
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
    return summary

