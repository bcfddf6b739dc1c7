"""Privacy reviewers' pages: the quarantine, one flagged image beside its training match (where a
reviewer confirms or releases it), the indexes.

Only staff (with two-factor authentication, as every staff page) see them; any other signed-in
user gets the "not allowed" page (403, the same answer for every record, so it tells nothing).
Every look at a quarantined image or a training image is written to the audit log, and so is
every confirm and release (by screening.services, the same functions the API calls).
"""

from __future__ import annotations

from functools import wraps

from django.contrib import messages
from django.core.paginator import Paginator
from django.http import Http404, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_POST

from access.decorators import staff_2fa_redirect

from . import imaging, selectors, services
from .models import ScreeningIndex, ScreeningRecord


def privacy_reviewer_required(view):
    @wraps(view)
    def wrapped(request, *args, **kwargs):
        response = staff_2fa_redirect(request)  # a signed-in non-staff user gets the 403 page
        if response is not None:
            return response
        return view(request, *args, **kwargs)

    return wrapped


def _quarantined(pk):
    return selectors.quarantined_record(pk)


REVIEW_FILTERS = [("", "All"), *[(s.value, s.label) for s in ScreeningRecord.Review if s.value]]


@require_GET
@privacy_reviewer_required
def quarantine(request):
    review = request.GET.get("review", "")
    if review not in dict(REVIEW_FILTERS):
        review = ""
    page = Paginator(selectors.quarantined_records(review or None), 50).get_page(request.GET.get("page"))
    return render(request, "screening/quarantine.html",
                  {"page": page, "review": review, "review_filters": REVIEW_FILTERS})


@require_GET
@privacy_reviewer_required
def record_detail(request, pk: int):
    record = _quarantined(pk)
    services.record_quarantine_view(user=request.user, record=record, what="quarantine", request=request)
    transitions = ScreeningRecord.REVIEW_TRANSITIONS.get(record.review_status or ScreeningRecord.Review.PENDING, set())
    return render(request, "screening/record_detail.html", {
        "record": record,
        "sealed": selectors.sealed_ok(record),
        "can_confirm": ScreeningRecord.Review.CONFIRMED in transitions,
        "can_release": (ScreeningRecord.Review.RELEASED in transitions and not record.exact_match
                        and record.cohort.owner_id != request.user.pk),
        "max_reason": services.MAX_REVIEW_REASON,
    })


def _review(request, pk: int, action, done: str):
    record = _quarantined(pk)
    try:
        action(record, actor=request.user, reason=request.POST.get("reason", ""), request=request)
    except services.ReviewRefused as refusal:
        messages.error(request, refusal.message)
    else:
        messages.success(request, f"Quarantined image {record.pk} {done}.")
    return redirect("screening-record", pk=record.pk)


@require_POST
@privacy_reviewer_required
def confirm(request, pk: int):
    """Same rules as POST /api/v1/screening/<id>/confirm (screening.services.confirm_quarantined)."""
    return _review(request, pk, services.confirm_quarantined, "confirmed: it stays quarantined")


@require_POST
@privacy_reviewer_required
def release(request, pk: int):
    """Same rules as POST /api/v1/screening/<id>/release (screening.services.release_quarantined)."""
    return _review(request, pk, services.release_quarantined, "released as a false positive")


def _png(data: bytes) -> HttpResponse:
    response = HttpResponse(data, content_type="image/png")
    response["Cache-Control"] = "private, no-store"
    response["Content-Disposition"] = "inline"
    return response


@require_GET
@privacy_reviewer_required
def synthetic_image(request, pk: int):
    record = _quarantined(pk)
    if not record.image.image:
        raise Http404("The image file is missing.")
    services.record_quarantine_view(user=request.user, record=record, what="synthetic_image", request=request)
    with record.image.image.open("rb") as handle:
        return _png(handle.read())


@require_GET
@privacy_reviewer_required
def training_match(request, pk: int):
    """The training radiograph the flagged image matched: the original file when it is still at the
    path it was indexed from, else the index's 64-pixel thumbnail of it."""
    record = _quarantined(pk)
    if record.best_match is None:
        raise Http404("This image has no training match (it was flagged as a duplicate within its cohort).")
    try:
        screener = services.get_screener(record.index)
    except services.ScreeningIndexMissing:
        raise Http404("The screening index files are not available.") from None
    services.record_quarantine_view(user=request.user, record=record, what="training_match", request=request)
    path = screener.train_path(record.best_match)
    try:
        array = imaging.load_gray(path)
        picture_bytes = imaging.to_png_bytes(imaging.resize(array, 512) if max(array.shape) > 512 else array)
    except (OSError, imaging.UnreadableImage):
        picture_bytes = imaging.to_png_bytes(screener.train_thumbnail(record.best_match))
    return _png(picture_bytes)


@require_GET
@privacy_reviewer_required
def index_list(request):
    indexes = ScreeningIndex.objects.select_related("model_version", "built_by").order_by("model_version__name")
    return render(request, "screening/index_list.html", {"indexes": indexes})
