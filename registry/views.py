"""Model version pages and the signed-link download endpoint. Thin: decisions live in
registry.services and registry.selectors."""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.http import HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from cxr_platform import downloads

from . import selectors, services


def download_url(token: str, path: str) -> str:
    return reverse("model-download", args=[token, path])


def _refusal(request, refusal: services.DownloadRefused):
    return render(
        request, "errors/error.html", {"title": "Download refused", "message": refusal.message}, status=refusal.status
    )


@login_required
@require_GET
def model_list(request):
    versions = list(selectors.usable_versions(request.user))
    downloadable = set(selectors.downloadable_versions(request.user).values_list("pk", flat=True))
    return render(request, "registry/model_list.html", {"versions": versions, "downloadable": downloadable})


@login_required
@require_GET
def model_detail(request, pk):
    version = selectors.usable_version(request.user, pk)
    can_download = services.can_download(request.user, version)
    context = {
        "version": version,
        "can_download": can_download,
        "files": list(version.files.all()) if can_download else [],
        "findings": version.defaults.get("findings", {}),
        "ttl_minutes": settings.DOWNLOAD_LINK_TTL_SECONDS // 60,
    }
    return render(request, "registry/model_detail.html", context)


@login_required
@require_GET
def model_sha256sums(request, pk):
    version = selectors.usable_version(request.user, pk)
    if not services.can_download(request.user, version):
        return _refusal(request, services.DownloadRefused("Your access does not include downloading these weights."))
    response = HttpResponse(services.sha256sums(version.files.all()), content_type="text/plain; charset=utf-8")
    response["Content-Disposition"] = 'attachment; filename="sha256sums"'
    return response


@login_required
@require_POST
def issue_link(request, pk, file_pk):
    """Issue a fresh link for one file and send the browser straight to it."""
    version = selectors.usable_version(request.user, pk)
    model_file = selectors.model_file_of(version, file_pk)
    try:
        link = services.issue_download_link(user=request.user, model_file=model_file)
    except services.DownloadRefused as refusal:
        return _refusal(request, refusal)
    return redirect(download_url(link.token, model_file.path), permanent=False)


@require_http_methods(["GET", "HEAD"])
def download(request, token, file_path):
    user, answer = downloads.link_holder(request)
    if user is None:
        return answer
    try:
        model_file = services.authorize_download(user=user, token=token, path=file_path)
        stored = services.open_download(model_file=model_file)
    except services.DownloadRefused as refusal:
        return _refusal(request, refusal)

    def started(first, last):
        services.record_download_started(user=user, model_file=model_file, first=first, last=last)

    return downloads.file_response(
        request,
        storage=stored.storage,
        name=stored.name,
        size=model_file.size,
        etag=f'"{model_file.sha256}"',
        content_type="application/octet-stream",
        offload=stored.offload_prefix is not None,
        offload_prefix=stored.offload_prefix,
        on_start=started,
    )
