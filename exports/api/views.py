from django.http import Http404
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema, inline_serializer
from rest_framework import generics, serializers, status
from rest_framework.exceptions import APIException, PermissionDenied
from rest_framework.permissions import AllowAny, BasePermission, IsAuthenticated
from rest_framework.response import Response
from rest_framework.views import APIView

from access import capabilities as caps
from access.policy import access_policy, require_capability
from exports import selectors, services, signing
from exports.views import download_url
from generation import selectors as generation_selectors

from .serializers import ExportDetailSerializer, ExportRequestSerializer, ExportSerializer


class CanExportWithApi(BasePermission):
    def has_permission(self, request, view):
        policy = access_policy(request.user)
        if not (policy.can(caps.API) and policy.can(caps.EXPORT_DICOM)):
            self.message = "API access to DICOM export needs a grant that allows both the REST API and DICOM export."
            return False
        return True


class Refused(APIException):
    def __init__(self, refusal: services.ExportRefused):
        super().__init__(detail=refusal.message)
        self.status_code = refusal.status


REFUSAL = inline_serializer("ExportRefusal", fields={"detail": serializers.CharField()})
IDEMPOTENCY_KEY = OpenApiParameter(
    "Idempotency-Key", {"type": "string", "minLength": 1, "maxLength": 255, "pattern": "^[!-~]+$"},
    OpenApiParameter.HEADER, required=False,
    description="A unique string (a UUID). Repeating the request with the same key returns the export the first one "
                "created (header `Idempotent-Replayed: true`) instead of building a second; the same key with another "
                "body is refused (422).")


class CohortExportsView(generics.ListAPIView):
    """Exports of one of your cohorts (GET) and a new export (POST)."""

    permission_classes = [IsAuthenticated, CanExportWithApi]
    serializer_class = ExportSerializer

    def get_cohort(self):
        cohort = generation_selectors.cohort_of(self.request.user, self.kwargs["cohort_id"])
        require_capability(self.request.user, caps.EXPORT_DICOM, cohort.model_version)
        return cohort

    def get_queryset(self):
        return selectors.exports_of_cohort(self.request.user, self.get_cohort())

    @extend_schema(request=ExportRequestSerializer, parameters=[IDEMPOTENCY_KEY], responses={
        202: ExportSerializer,
        409: OpenApiResponse(REFUSAL, description="The cohort is still being generated, or has no screened images."),
        422: OpenApiResponse(REFUSAL, description="The Idempotency-Key was already used for a different request."),
    })
    def post(self, request, cohort_id):
        cohort = self.get_cohort()
        data = ExportRequestSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        key = request.headers.get("Idempotency-Key")
        try:
            if key is None:
                export, created = services.request_export(user=request.user, cohort=cohort, **data.validated_data), True
            else:
                export, created = services.request_export_once(user=request.user, cohort=cohort, idempotency_key=key,
                                                               **data.validated_data)
        except services.ExportRefused as refusal:
            raise Refused(refusal) from None
        response = Response(ExportSerializer(export, context={"request": request}).data, status=status.HTTP_202_ACCEPTED)
        if not created:
            response["Idempotent-Replayed"] = "true"
        return response


class ExportDetailView(APIView):
    """Status of one of your exports; when ready, a fresh per-user download link (supports Range)."""

    permission_classes = [IsAuthenticated, CanExportWithApi]

    @extend_schema(responses={200: ExportDetailSerializer})
    def get(self, request, pk):
        export = selectors.export_of(request.user, pk)
        require_capability(request.user, caps.EXPORT_DICOM, export.cohort.model_version)
        download = None
        if export.status == export.Status.READY:
            try:
                link = services.issue_download_link(user=request.user, export=export)
                download = {"url": request.build_absolute_uri(download_url(export, link.token)),
                            "expires_at": link.expires_at, "size": export.size, "sha256": export.sha256}
            except services.ExportRefused as refusal:
                if refusal.status == 404:
                    raise Http404 from None
                if refusal.status == 403:
                    raise PermissionDenied(refusal.message) from None
        context = {"request": request, "download": download}
        return Response(ExportDetailSerializer(export, context=context).data)


class SigningKeyView(APIView):
    """The Ed25519 public key export manifests are signed with (PEM), and its SHA-256."""

    permission_classes = [AllowAny]
    authentication_classes: list = []

    @extend_schema(responses={200: dict})
    def get(self, request):
        return Response({"algorithm": "Ed25519", "public_key_pem": signing.public_key_pem(),
                         "sha256": signing.key_fingerprint()})
