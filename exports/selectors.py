"""Queries for exports. Users only ever see their own exports."""

from __future__ import annotations

import logging

from django.shortcuts import get_object_or_404

from generation.models import Cohort, SyntheticImage
from screening.models import ScreeningRecord
from screening.selectors import privacy_summary

from .models import Export

logger = logging.getLogger(__name__)


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
    summary = privacy_summary(cohort)
    return "\n".join(f"- {key.replace('_', ' ').capitalize()}: {value}" for key, value in summary.items())


def screening_scores(cohort: Cohort) -> dict[int, float]:
    """Stage A screening score per passed image id, where screening recorded one."""
    rows = ScreeningRecord.objects.filter(image__cohort=cohort, image__status=SyntheticImage.Status.PASSED)
    return {image_id: float(score) for image_id, score in rows.values_list("image_id", "score") if score is not None}
