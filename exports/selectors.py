"""Queries for exports. Users only ever see their own exports."""

from __future__ import annotations

import logging

from django.db.models import Count, Q
from django.shortcuts import get_object_or_404

from access import capabilities as caps
from access.policy import access_policy

from generation.models import Cohort, SyntheticImage
from screening.models import ScreeningRecord
from screening.selectors import privacy_summary

from .models import Delivery, DeliveryInstance, Destination, Export

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


# --- PACS destinations and deliveries ------------------------------------------------------------------


def destinations_for(user):
    """The active destinations ``user`` may send to: open to every exporter, or listing the user.
    Empty without the Export capability (for some model version; the export's own version is
    checked when sending)."""
    if not access_policy(user).can(caps.EXPORT_DICOM):
        return Destination.objects.none()
    return (Destination.objects.filter(is_active=True)
            .filter(Q(open_to_all_exporters=True) | Q(allowed_users=user)).distinct().order_by("name"))


def may_use_destination(user, destination: Destination) -> bool:
    return destinations_for(user).filter(pk=destination.pk).exists()


def deliveries_of(user):
    """Deliveries are only ever shown to the user who requested them (the export's owner)."""
    return Delivery.objects.filter(requested_by=user, export__owner=user).select_related("destination", "export")


def delivery_of(user, pk) -> Delivery:
    """The user's delivery, or 404 (also for other people's ids)."""
    return get_object_or_404(deliveries_of(user).select_related("export__cohort__model_version"), pk=pk)


def deliveries_of_export(user, export: Export):
    return deliveries_of(user).filter(export=export)


def deliveries_of_cohort(user, cohort: Cohort):
    return deliveries_of(user).filter(export__cohort=cohort)


def active_deliveries(user):
    return Delivery.objects.filter(requested_by=user, status__in=[Delivery.Status.QUEUED, Delivery.Status.SENDING])


def instance_counts(delivery: Delivery) -> dict[str, int]:
    rows = delivery.instances.values("status").annotate(n=Count("pk"))
    counts = {status: 0 for status in DeliveryInstance.Status.values}
    counts.update({row["status"]: row["n"] for row in rows})
    return counts


def failed_instances(delivery: Delivery, limit: int | None = None):
    rows = delivery.instances.filter(status=DeliveryInstance.Status.FAILED).order_by("path")
    return rows[:limit] if limit else rows


def failure_reasons(delivery: Delivery) -> list[dict]:
    """The failed instances grouped by reason, most frequent first: [{reason, count}]."""
    rows = (delivery.instances.filter(status=DeliveryInstance.Status.FAILED)
            .values("error").annotate(count=Count("pk")).order_by("-count", "error"))
    return [{"reason": row["error"], "count": row["count"]} for row in rows]
