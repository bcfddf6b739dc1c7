"""Export pages and the signed-link download. Thin: decisions live in exports.services."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from access import capabilities as caps
from access.policy import require_capability
from cxr_platform import downloads
from generation import selectors as generation_selectors

from . import delivery as deliveries
from . import selectors, services, signing
from .models import Destination


def download_url(export, token: str) -> str:
    return reverse("export-download", args=[token, export.download_name])


def progress_of(export) -> dict:
    data = {
        "id": export.pk,
        "status": export.status,
        "status_display": export.get_status_display(),
        "done": export.progress_done,
        "total": export.progress_total,
        "percent": export.percent,
        "images": export.image_count,
        "size": export.size,
        "error": export.error,
        "expires_at": export.expires_at.isoformat() if export.expires_at else None,
        "link_url": reverse("export-link", args=[export.pk]) if export.status == export.Status.READY else None,
    }
    return data


def _refusal(request, refusal: services.ExportRefused):
    return render(request, "errors/error.html", {"title": "Export", "message": refusal.message},
                  status=refusal.status)


def _own_cohort(request, cohort_id):
    cohort = generation_selectors.cohort_of(request.user, cohort_id)
    require_capability(request.user, caps.EXPORT_DICOM, cohort.model_version)
    return cohort


@login_required
def cohort_exports(request, cohort_id):
    """The cohort's exports (GET) and a new export (POST)."""
    cohort = _own_cohort(request, cohort_id)
    if request.method == "POST":
        options = {"include_png": bool(request.POST.get("include_png")),
                   "transfer_syntax": request.POST.get("transfer_syntax") or None}
        token = request.POST.get("form_token")
        try:
            if token:  # the form's one-time token: a double click or a resent POST is the same request
                _, created = services.request_export_once(user=request.user, cohort=cohort,
                                                          idempotency_key=f"form-{token}", **options)
            else:
                services.request_export(user=request.user, cohort=cohort, **options)
                created = True
            messages.success(request, "Export queued. It is built in the background; this page shows its progress."
                             if created else "This export was already requested; here is its progress.")
        except services.ExportRefused as refusal:
            messages.error(request, refusal.message)
        return redirect("export-cohort", cohort_id=cohort.pk)
    return render(request, "exports/cohort_exports.html", {"cohort": cohort})


@login_required
@require_GET
def export_progress(request, pk):
    export = selectors.export_of(request.user, pk)
    require_capability(request.user, caps.EXPORT_DICOM, export.cohort.model_version)
    return JsonResponse(progress_of(export))


@login_required
@require_POST
def issue_link(request, pk):
    """A fresh per-user link for a ready export; the browser goes straight to it."""
    export = selectors.export_of(request.user, pk)
    try:
        link = services.issue_download_link(user=request.user, export=export)
    except services.ExportRefused as refusal:
        return _refusal(request, refusal)
    return redirect(download_url(export, link.token), permanent=False)


@require_http_methods(["GET", "HEAD"])
def download(request, token, file_name):
    user, answer = downloads.link_holder(request)
    if user is None:
        return answer
    try:
        export = services.authorize_download(user=user, token=token, path=file_name)
    except services.ExportRefused as refusal:
        return _refusal(request, refusal)
    except PermissionDenied as denied:
        return _refusal(request, services.ExportRefused(str(denied), status=403))

    def started(first, last):
        services.record_download_started(user=user, export=export, first=first, last=last)

    return downloads.file_response(
        request,
        storage=services.default_storage,
        name=export.file_name,
        filename=export.download_name,
        size=export.size,
        etag=f'"{export.sha256}"',
        content_type="application/zip",
        on_start=started,
    )


# --- Push to a PACS ---------------------------------------------------------------------------------


def delivery_progress_of(delivery, *, failures: int = 50) -> dict:
    return {
        "id": delivery.pk,
        "export": delivery.export_id,
        "destination": delivery.destination.name,
        "status": delivery.status,
        "status_display": delivery.get_status_display(),
        "instances": delivery.instance_count,
        "sent": delivery.sent_count,
        "failed": delivery.failed_count,
        "percent": delivery.percent,
        "error": delivery.error,
        "reasons": selectors.failure_reasons(delivery) if delivery.failed_count else [],
        "failures": [{"sop_instance_uid": row.sop_instance_uid, "path": row.path, "reason": row.error,
                      "attempts": row.attempts} for row in selectors.failed_instances(delivery, failures)],
        "retry_url": reverse("delivery-retry", args=[delivery.pk]) if delivery.can_retry else None,
    }


@login_required
@require_POST
def deliver_export(request, pk):
    """Send one of the user's ready exports to a destination they may use."""
    export = selectors.export_of(request.user, pk)
    destination_id = request.POST.get("destination", "")
    destination = Destination.objects.filter(pk=destination_id).first() if destination_id.isdigit() else None
    try:
        deliveries.request_delivery(user=request.user, export=export, destination=destination)
        messages.success(request, f"Sending export #{export.pk} to {destination}. This page shows its progress.")
    except deliveries.DeliveryRefused as refusal:
        if refusal.status == 404:
            raise Http404 from None
        messages.error(request, refusal.message)
    return redirect("export-cohort", cohort_id=export.cohort_id)


@login_required
@require_GET
def delivery_progress(request, pk):
    delivery = selectors.delivery_of(request.user, pk)
    require_capability(request.user, caps.EXPORT_DICOM, delivery.export.cohort.model_version)
    return JsonResponse(delivery_progress_of(delivery))


@login_required
@require_POST
def retry_delivery(request, pk):
    delivery = selectors.delivery_of(request.user, pk)
    try:
        deliveries.retry_delivery(user=request.user, delivery=delivery)
        messages.success(request, f"Sending the unsent instances of delivery #{delivery.pk} again.")
    except deliveries.DeliveryRefused as refusal:
        messages.error(request, refusal.message)
    return redirect("export-cohort", cohort_id=delivery.export.cohort_id)


@require_GET
def signing_key(request):
    """The public Ed25519 key that export manifests are signed with (PEM), for anyone."""
    response = HttpResponse(signing.public_key_pem(), content_type="application/x-pem-file")
    response["Content-Disposition"] = 'inline; filename="cxr-platform-export-key.pem"'
    response["X-Key-SHA256"] = signing.key_fingerprint()
    return response
