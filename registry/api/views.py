from drf_spectacular.utils import extend_schema
from rest_framework import generics
from rest_framework.exceptions import PermissionDenied
from rest_framework.response import Response
from rest_framework.views import APIView

from registry import selectors, services
from registry.views import download_url

from .serializers import ModelFilesSerializer, ModelVersionSerializer


class ModelVersionListView(generics.ListAPIView):
    """Model versions your grants let you use, with their generation defaults."""

    serializer_class = ModelVersionSerializer

    def get_queryset(self):
        return selectors.usable_versions(self.request.user)

    def get_serializer_context(self):
        context = super().get_serializer_context()
        context["downloadable"] = set(selectors.downloadable_versions(self.request.user).values_list("pk", flat=True))
        return context


class ModelFilesView(APIView):
    """Every file of a version with its size, SHA-256 and a fresh signed download link
    (valid for DOWNLOAD_LINK_TTL_SECONDS, for your account only). Needs the Weights tier."""

    @extend_schema(responses={200: ModelFilesSerializer})
    def get(self, request, pk):
        version = selectors.usable_version(request.user, pk)
        if not services.can_download(request.user, version):
            raise PermissionDenied("Your access does not include downloading the weights of this model version.")
        model_files = list(version.files.all())
        try:
            links = services.issue_download_links(user=request.user, model_version=version, files=model_files)
        except services.DownloadRefused as refusal:
            raise PermissionDenied(refusal.message) from None
        files = []
        for model_file, link in zip(model_files, links, strict=True):
            files.append(
                {
                    "path": model_file.path,
                    "size": model_file.size,
                    "sha256": model_file.sha256,
                    "url": request.build_absolute_uri(download_url(link.token, model_file.path)),
                    "expires_at": link.expires_at,
                }
            )
        data = {
            "id": version.pk,
            "name": version.name,
            "version": version.version,
            "status": version.status,
            "total_size": version.total_size,
            "sha256sums": services.sha256sums(model_files),
            "files": files,
        }
        return Response(ModelFilesSerializer(data).data)
