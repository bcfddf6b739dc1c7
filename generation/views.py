"""Cohort pages. Every view asks access.policy for GENERATE; users only see their own cohorts."""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import FileResponse, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from access import capabilities as caps
from access.policy import require_capability

from . import selectors, services
from .forms import CohortForm, preview_for_display
from .workers import cohort_notice

GALLERY_LIMIT = 120


def _own_cohort_and_policy(request, pk):
    cohort = selectors.cohort_of(request.user, pk)
    return cohort, require_capability(request.user, caps.GENERATE, cohort.model_version)


def _own_cohort(request, pk):
    return _own_cohort_and_policy(request, pk)[0]


def _add_errors(form, error: ValidationError) -> None:
    fields = error.message_dict if hasattr(error, "error_dict") else {None: error.messages}
    for field, field_messages in fields.items():
        target = field if field in form.fields else None
        for message in field_messages:
            # Errors about parts of the JSON with no field of their own name that part.
            form.add_error(target, message if target or not field else f"{field.replace('_', ' ').capitalize()}: {message}")


@login_required
@require_GET
def cohort_list(request):
    require_capability(request.user, caps.GENERATE)
    return render(request, "generation/cohort_list.html", {"cohorts": selectors.cohort_list_of(request.user)})


def _submit(request, plan, token: str):
    """Submit once per form token: a repeat goes to the cohort the first submit created."""
    submission = services.submit(plan, idempotency_key=f"form:{token}" if token else None)
    cohort = submission.cohort
    if not submission.created:
        messages.info(request, f"This form was already submitted: here is the cohort “{cohort.name}” it created.")
        return redirect("cohort-detail", pk=cohort.pk)
    notice = cohort_notice(cohort)
    if notice:
        messages.warning(request, f"Cohort “{cohort.name}” submitted: {cohort.size} images. {notice}")
    else:
        messages.success(request, f"Cohort “{cohort.name}” submitted: {cohort.size} images queued.")
    return redirect("cohort-detail", pk=cohort.pk)


@login_required
def cohort_create(request):
    require_capability(request.user, caps.GENERATE)
    preview = None
    if request.method == "POST":
        form = CohortForm(request.POST, user=request.user)
        if form.is_valid():
            token = form.cleaned_data["submission_token"]
            submitting = request.POST.get("action") == "submit"
            earlier = services.cohort_for_key(request.user, f"form:{token}") if submitting and token else None
            if earlier is not None:
                messages.info(request, f"This form was already submitted: here is the cohort “{earlier.name}” it created.")
                return redirect("cohort-detail", pk=earlier.pk)
            data = form.specification()
            try:
                plan = services.plan_cohort(user=request.user, data=data)
                if submitting:
                    return _submit(request, plan, token)
                preview = preview_for_display(plan.preview(), plan.model_version)
                # Submitting after a preview makes exactly the patients previewed.
                form = CohortForm(
                    {**request.POST.dict(), "seed": plan.seed, "submission_token": token or CohortForm.new_submission_token()},
                    user=request.user,
                )
                form.is_valid()
            except ValidationError as error:
                _add_errors(form, error)
    else:
        form = CohortForm(user=request.user, initial={
            "preset": "balanced", "size": 8, "submission_token": CohortForm.new_submission_token(),
        })
    return render(request, "generation/cohort_form.html", {"form": form, "preview": preview})


@login_required
@require_GET
def cohort_detail(request, pk):
    cohort, policy = _own_cohort_and_policy(request, pk)
    images = selectors.passed_images(cohort)
    progress = selectors.cohort_progress(cohort)
    return render(
        request,
        "generation/cohort_detail.html",
        {
            "cohort": cohort,
            "progress": progress,
            "images": images[:GALLERY_LIMIT],
            "image_count": progress["passed"],
            "gallery_limit": GALLERY_LIMIT,
            "charts": selectors.requested_vs_generated(cohort),
            "failed": selectors.failed_images(cohort)[:200],
            "privacy": selectors.privacy_summary(cohort),
            "gallery_cursor": selectors.gallery_start_cursor(),
            "can_download_dicom": policy.can(caps.EXPORT_DICOM, cohort.model_version),
        },
    )


def _gallery_item(image) -> dict:
    return {
        "id": image.pk,
        "index": image.index,
        "caption": selectors.image_caption(image),
        "prompt": image.prompt,
        "width": (image.sampling or {}).get("width") or 1,
        "height": (image.sampling or {}).get("height") or 1,
        "png": reverse("cohort-image", args=[image.cohort_id, image.pk]),
        "details": reverse("cohort-image-details", args=[image.cohort_id, image.pk]),
    }


@login_required
@require_GET
def cohort_gallery(request, pk):
    """What the cohort page polls while the cohort runs: progress, and the images that passed
    screening since ``after`` (the cursor the previous answer gave)."""
    cohort = _own_cohort(request, pk)
    try:
        page = selectors.gallery_since(cohort, request.GET.get("after"))
    except (ValueError, OverflowError, OSError):
        return JsonResponse({"detail": "The after cursor is not one this page gave out."}, status=400)
    return JsonResponse({
        "progress": selectors.cohort_progress(cohort),
        "images": [_gallery_item(image) for image in page["images"]],
        "cursor": page["cursor"],
    })


@login_required
@require_GET
def image_details(request, pk, image_pk):
    """The viewer's side panel for one passed image (its owner only, like the PNG itself)."""
    cohort, policy = _own_cohort_and_policy(request, pk)
    image = selectors.passed_image_of(request.user, cohort.pk, image_pk)
    details = selectors.image_details(image)
    details["png"] = reverse("cohort-image", args=[cohort.pk, image.pk])
    details["png_download"] = details["png"] + "?download=1"
    if policy.can(caps.EXPORT_DICOM, cohort.model_version):
        details["dicom"], details["dicom_unavailable"] = reverse("cohort-image-dicom", args=[cohort.pk, image.pk]), ""
    else:
        details["dicom"], details["dicom_unavailable"] = None, "DICOM downloads need the Export tier."
    return JsonResponse(details)


@login_required
@require_GET
def image_dicom(request, pk, image_pk):
    """One passed image as a DICOM file: the instance an export of the cohort would contain."""
    from .image_dicom import NotReleasable, dicom_file_name, image_dicom_bytes

    cohort = _own_cohort(request, pk)
    require_capability(request.user, caps.EXPORT_DICOM, cohort.model_version)
    image = selectors.passed_image_of(request.user, cohort.pk, image_pk)
    try:
        data = image_dicom_bytes(image, actor=request.user)
    except NotReleasable as refusal:
        return HttpResponse(str(refusal), status=409, content_type="text/plain; charset=utf-8")
    response = HttpResponse(data, content_type="application/dicom")
    response["Content-Disposition"] = f'attachment; filename="{dicom_file_name(image)}"'
    response["Cache-Control"] = "private, no-store"
    return response


@login_required
@require_GET
def cohort_progress(request, pk):
    return JsonResponse(selectors.cohort_progress(_own_cohort(request, pk)))


@login_required
@require_POST
def cohort_cancel(request, pk):
    cohort = _own_cohort(request, pk)
    try:
        services.cancel_cohort(cohort=cohort, actor=request.user)
        messages.success(request, "Cohort cancelled. Images already screened stay available.")
    except ValidationError as error:
        messages.error(request, " ".join(error.messages))
    return redirect("cohort-detail", pk=cohort.pk)


@login_required
@require_GET
def image_file(request, pk, image_pk):
    """A passed image's PNG, only for its owner: media are never served by URL."""
    cohort = _own_cohort(request, pk)
    image = selectors.passed_image_of(request.user, cohort.pk, image_pk)
    response = FileResponse(selectors.open_image_file(image), content_type="image/png")
    response["Cache-Control"] = "private, max-age=3600"
    if request.GET.get("download"):
        response["Content-Disposition"] = f'attachment; filename="SYNTHETIC-C{cohort.pk}-{image.index:06d}.png"'
    return response
