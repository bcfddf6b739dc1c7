from django.http import FileResponse
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema, inline_serializer
from rest_framework import generics, serializers, status
from rest_framework.exceptions import APIException
from rest_framework.permissions import BasePermission, IsAuthenticated
from rest_framework.response import Response
from rest_framework.views import APIView

from access import capabilities as caps
from access.policy import AccessDenied, access_policy, require_capability
from generation import selectors, services
from generation.specification import with_default_preset

from .serializers import CohortRequestSerializer, CohortSerializer, SyntheticImageSerializer


class CanGenerateWithApi(BasePermission):
    def has_permission(self, request, view):
        policy = access_policy(request.user)
        # Kept for this request only: the view's object check reads the same policy instead of
        # computing it again (ten queries).
        request.access_policy = policy
        if not (policy.can(caps.API) and policy.can(caps.GENERATE)):
            self.message = "API access to cohort generation needs a grant that allows both the REST API and generation."
            return False
        return True


class IdempotencyKeyReused(APIException):
    status_code = status.HTTP_422_UNPROCESSABLE_ENTITY
    default_code = "idempotency_key_reused"
    default_detail = "This idempotency key was already used for a different request."


IDEMPOTENCY_KEY_HEADER = OpenApiParameter(
    "Idempotency-Key", {"type": "string", "minLength": 1, "maxLength": 255, "pattern": "^[!-~]+$"},
    OpenApiParameter.HEADER, required=False,
    description=(
        "Any unique string (a UUID is a good one), at most 255 visible ASCII characters. Repeating a request "
        "with the same key returns the cohort the first one created, with the same status code and the header "
        "`Idempotent-Replayed: true`, and spends no quota; the same key with a different body is refused "
        "(422). Keys are per user and do not expire."
    ),
)


class CohortApiMixin:
    permission_classes = [IsAuthenticated, CanGenerateWithApi]

    def get_cohort(self, *, with_progress: bool = False):
        cohort = selectors.cohort_of(self.request.user, self.kwargs["pk"], with_progress=with_progress)
        policy = getattr(self.request, "access_policy", None)
        if policy is None or policy.user is not self.request.user:
            require_capability(self.request.user, caps.GENERATE, cohort.model_version)
        elif not policy.can(caps.GENERATE, cohort.model_version):
            raise AccessDenied(policy.explain_denial(caps.GENERATE))
        return cohort


class CohortListCreateView(CohortApiMixin, generics.ListAPIView):
    serializer_class = CohortSerializer

    def get_queryset(self):
        return selectors.CohortListing(self.request.user)

    @extend_schema(
        request=CohortRequestSerializer,
        parameters=[IDEMPOTENCY_KEY_HEADER],
        responses={
            201: OpenApiResponse(CohortSerializer, description=(
                "Created (or, with a repeated Idempotency-Key, the cohort the first request created). If the job "
                "queue cannot be reached the cohort is still stored, and `notice` says it will start once the "
                "queue is back."
            )),
            422: OpenApiResponse(
                inline_serializer("IdempotencyKeyReused", {"detail": serializers.CharField()}),
                description="The Idempotency-Key was already used for a different request (the message names its cohort).",
            ),
        },
    )
    def post(self, request):
        key = request.headers.get("Idempotency-Key")
        if key is None:
            cohort, replayed = services.request_cohort(user=request.user, data=with_default_preset(request.data)), False
        else:
            try:
                submission = services.request_cohort_once(user=request.user, data=with_default_preset(request.data),
                                                          idempotency_key=key)
            except services.IdempotencyKeyReused as exc:
                raise IdempotencyKeyReused(" ".join(exc.messages)) from None
            cohort, replayed = submission.cohort, not submission.created
        response = Response(CohortSerializer(cohort).data, status=status.HTTP_201_CREATED)
        if replayed:
            response["Idempotent-Replayed"] = "true"
        return response


class CohortPreviewView(CohortApiMixin, APIView):
    @extend_schema(request=CohortRequestSerializer, responses={200: dict})
    def post(self, request):
        return Response(services.plan_cohort(user=request.user, data=with_default_preset(request.data)).preview())


class CohortDetailView(CohortApiMixin, generics.RetrieveAPIView):
    serializer_class = CohortSerializer

    def get_object(self):
        return self.get_cohort(with_progress=True)


class CohortCancelView(CohortApiMixin, APIView):
    @extend_schema(request=None, responses={200: CohortSerializer})
    def post(self, request, pk):
        cohort = services.cancel_cohort(cohort=self.get_cohort(), actor=request.user)
        return Response(CohortSerializer(cohort).data)


class CohortImageListView(CohortApiMixin, generics.ListAPIView):
    """The cohort's screened (passed) images with their metadata."""

    serializer_class = SyntheticImageSerializer

    def get_queryset(self):
        return selectors.passed_images(self.get_cohort())


class CohortImageFileView(CohortApiMixin, APIView):
    @extend_schema(responses={(200, "image/png"): bytes})
    def get(self, request, pk, image_pk):
        cohort = self.get_cohort()
        image = selectors.passed_image_of(request.user, cohort.pk, image_pk)
        return FileResponse(
            selectors.open_image_file(image), content_type="image/png", filename=f"{cohort.pk}-{image.index:06d}.png"
        )
