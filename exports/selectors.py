"""Queries for exports. Users only ever see their own exports."""

from __future__ import annotations

import logging

from django.db import connection
from django.shortcuts import get_object_or_404

from generation.models import Cohort, SyntheticImage

from .models import Export

logger = logging.getLogger(__name__)
SCREENING_UNAVAILABLE = "screening summary unavailable"


def exportable_images(cohort: Cohort):
    """Only images that passed screening are exported."""
    return SyntheticImage.objects.filter(cohort=cohort, status=SyntheticImage.Status.PASSED).order_by("index", "pk")


def exports_of(user):
    return Export.objects.filter(owner=user).select_related("cohort")


def exports_of_cohort(user, cohort: Cohort):
    return exports_of(user).filter(cohort=cohort)


def export_of(user, pk) -> Export:
    """The user's export, or 404 (also for other people's ids)."""
    return get_object_or_404(exports_of(user).select_related("cohort__model_version"), pk=pk)


def active_exports(user):
    return Export.objects.filter(owner=user, status__in=[Export.Status.QUEUED, Export.Status.BUILDING])


def privacy_summary_text(cohort: Cohort) -> str:
    """The screening app's privacy summary of the cohort, as Markdown text."""
    try:
        from screening.selectors import privacy_summary
    except ImportError:
        return SCREENING_UNAVAILABLE
    summary = privacy_summary(cohort)
    if isinstance(summary, dict):
        return "\n".join(f"- {key.replace('_', ' ').capitalize()}: {value}" for key, value in summary.items())
    return str(summary)


def _screening_record_model():
    """``screening.models.ScreeningRecord`` (one per screened image: ``image``, ``score``) when the
    screening app has it and its table exists, else None."""
    try:
        from screening.models import ScreeningRecord
    except ImportError:
        return None
    fields = {f.name for f in ScreeningRecord._meta.get_fields()}
    if not {"image", "score"} <= fields:
        return None
    if ScreeningRecord._meta.db_table not in connection.introspection.table_names():
        return None  # not migrated yet
    return ScreeningRecord


def screening_scores(cohort: Cohort) -> dict[int, float]:
    """Stage A screening score per passed image id, where screening recorded one."""
    model = _screening_record_model()
    if model is None:
        return {}
    rows = model.objects.filter(image__cohort=cohort, image__status=SyntheticImage.Status.PASSED)
    return {image_id: float(score) for image_id, score in rows.values_list("image_id", "score") if score is not None}
