"""Screening under /api/v1/: a cohort's privacy summary and per-image verdicts (its owner, and privacy
reviewers), and privacy reviewers' confirm / release of quarantined images.

Who is who:

* the cohort's **owner** needs a grant allowing the REST API and generation (like every cohort call)
  and sees each verdict without the training match; anyone else's cohort is a 404;
* a **privacy reviewer** is what the reviewer pages (/screening/) require: active staff who passed
  two-factor authentication in this session (``access.decorators.reviewer_is_verified``). With
  ``REQUIRE_STAFF_2FA`` on, an API token therefore never acts as a privacy reviewer (a token can be
  created without a second factor): reviewers call these endpoints from their verified browser session
  (with its CSRF token). Reviewers see every cohort, with the matches; each such look is audited.
"""

from django.db.models import Count, Q
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiResponse, extend_schema, inline_serializer
from rest_framework import generics, serializers
from rest_framework.exceptions import APIException
from rest_framework.permissions import BasePermission, IsAuthenticated
from rest_framework.response import Response
from rest_framework.views import APIView

from access import capabilities as caps
from access.decorators import reviewer_is_verified
from access.policy import access_policy, require_capability
from cxr_platform.audit.services import record_event
from generation import selectors as generation_selectors
from generation.models import Cohort
from screening import selectors, services
from screening.models import ScreeningRecord

from .serializers import (
    ConfirmRequestSerializer,
    PrivacySummarySerializer,
    ReleaseRequestSerializer,
    ScreeningVerdictSerializer,
)

TAGS = ["screening"]
REFUSAL = inline_serializer("ScreeningReviewRefusal", fields={"detail": serializers.CharField()})


def is_privacy_reviewer(request) -> bool:
    return reviewer_is_verified(request) and services.may_review(request.user)


class CanSeeCohortScreening(BasePermission):
    """Privacy reviewers; or researchers whose grants allow the REST API and generation."""

    def has_permission(self, request, view):
        if is_privacy_reviewer(request):
            return True
        policy = access_policy(request.user)
        if not (policy.can(caps.API) and policy.can(caps.GENERATE)):
            self.message = ("API access to screening results needs a grant that allows both the REST API and "
                            "generation.")
            return False
        return True


class IsPrivacyReviewer(BasePermission):
    message = ("Only privacy reviewers confirm or release quarantined images: staff who passed two-factor "
               "authentication in this browser session (an API token does not count as a second factor).")

    def has_permission(self, request, view):
        return is_privacy_reviewer(request)


class CohortScreeningMixin:
    permission_classes = [IsAuthenticated, CanSeeCohortScreening]

    @property
    def reviewer(self) -> bool:
        return is_privacy_reviewer(self.request)

    def get_cohort(self) -> Cohort:
        pk = self.kwargs["pk"]
        if self.reviewer:
            return get_object_or_404(Cohort.objects.select_related("model_version", "owner"), pk=pk)
        cohort = generation_selectors.cohort_of(self.request.user, pk)  # 404 for anyone else's cohort
        require_capability(self.request.user, caps.GENERATE, cohort.model_version)
        return cohort


class CohortPrivacyView(CohortScreeningMixin, APIView):
    """What memorization screening found in one cohort (screening.selectors.privacy_summary)."""

    @extend_schema(tags=TAGS, summary="A cohort's privacy summary", responses={200: PrivacySummarySerializer})
    def get(self, request, pk):
        cohort = self.get_cohort()
        summary = selectors.privacy_summary(cohort)
        counts = ScreeningRecord.objects.filter(cohort=cohort, flagged=True).aggregate(**{
            state: Count("pk", filter=Q(review_status=state)) for state in ("pending", "confirmed", "released")
        })
        return Response(PrivacySummarySerializer({"cohort": cohort.pk, **summary, "review": counts}).data)


class CohortScreeningView(CohortScreeningMixin, generics.ListAPIView):
    """Every screened image of one cohort, flagged ones included, in cohort order. The owner sees the
    verdict (decision, score, threshold, reason, review state, whether the record's seal holds);
    privacy reviewers also see the training match and the review, and each page they read is audited."""

    serializer_class = ScreeningVerdictSerializer

    def get_queryset(self):
        self.cohort = self.get_cohort()
        return selectors.verdicts_of(self.cohort)

    def get_serializer_context(self):
        return {**super().get_serializer_context(), "reviewer": self.reviewer}

    @extend_schema(tags=TAGS, summary="Per-image screening verdicts of a cohort")
    def get(self, request, *args, **kwargs):
        response = self.list(request, *args, **kwargs)
        if self.reviewer:
            shown = [row["id"] for row in response.data.get("results", [])]
            record_event("screening.verdicts_viewed", actor=request.user, target=self.cohort, request=request,
                         details={"cohort": self.cohort.pk, "records": shown, "with_matches": True})
        return response


class ReviewRefused(APIException):
    def __init__(self, refusal: services.ReviewRefused):
        super().__init__(detail=refusal.message)
        self.status_code = refusal.status


class _ReviewView(APIView):
    permission_classes = [IsAuthenticated, IsPrivacyReviewer]
    request_serializer = None
    action_name = ""

    def post(self, request, record_id):
        record = get_object_or_404(ScreeningRecord.objects.defer("fingerprint"), pk=record_id)
        data = self.request_serializer(data=request.data)
        data.is_valid(raise_exception=True)
        action = (services.confirm_quarantined if self.action_name == "confirm" else services.release_quarantined)
        try:
            record = action(record, actor=request.user, reason=data.validated_data.get("reason", ""),
                            request=request)
        except services.ReviewRefused as refusal:
            raise ReviewRefused(refusal) from None
        record = selectors.verdicts_of(record.cohort).get(pk=record.pk)
        return Response(ScreeningVerdictSerializer(record, context={"request": request, "reviewer": True}).data)


_REVIEW_RESPONSES = {
    200: ScreeningVerdictSerializer,
    409: OpenApiResponse(REFUSAL, description="The image passed screening, was already reviewed this way, is an "
                                              "exact copy (release), or its record fails its seal."),
}


class ConfirmView(_ReviewView):
    """Confirm that a quarantined image is (or may be) a copy of a patient's image: it stays
    quarantined for good. Privacy reviewers only; audited with the reviewer."""

    request_serializer = ConfirmRequestSerializer
    action_name = "confirm"

    @extend_schema(tags=TAGS, summary="Confirm a quarantined image", request=ConfirmRequestSerializer,
                   responses=_REVIEW_RESPONSES)
    def post(self, request, record_id):
        return super().post(request, record_id)


class ReleaseView(_ReviewView):
    """Release a quarantined image as a false positive, with a required reason. It stays out of its
    cohort (already regenerated) but leaves the open quarantine. Never an exact copy, never by the
    cohort's owner. Privacy reviewers only; audited with the reviewer."""

    request_serializer = ReleaseRequestSerializer
    action_name = "release"

    @extend_schema(tags=TAGS, summary="Release a quarantined image (false positive)",
                   request=ReleaseRequestSerializer, responses=_REVIEW_RESPONSES)
    def post(self, request, record_id):
        return super().post(request, record_id)
