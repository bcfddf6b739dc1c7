"""/api/v1/review/…: the reviewer's queue and decisions, for scripts and tools.

Every decision calls the same ``access.services`` function as the review pages, so the rules
(the transition table, two different reviewers for tiers that need them, nobody reviews their
own request or certificate, a reason where the requester must read one) are the browser's.
What this module adds is who may call it (:mod:`.review_permissions`) and, for calls made
with a token, an ``api_token.used_for_review`` audit event in the decision's transaction.
"""

from __future__ import annotations

from django.db import transaction
from django.db.models import Count, F, Q
from django.shortcuts import get_object_or_404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema, inline_serializer
from rest_framework import exceptions, generics, serializers, status
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response
from rest_framework.views import APIView

from access import certificates, selectors, services
from access.decorators import is_verified
from access.models import AccessGrant, PhysioNetAttestation
from cxr_platform.api.services import issue_review_token, record_review_use
from cxr_platform.audit.services import record_event

from .review_permissions import IsVerifiedReviewer, review_token
from .review_serializers import (
    ApproveSerializer,
    AttestationSerializer,
    ChangesSerializer,
    ReasonSerializer,
    ReviewCertificateSerializer,
    ReviewQueueFilterSerializer,
    ReviewRequestDetailSerializer,
    ReviewRequestSerializer,
    ReviewTokenCreateSerializer,
    ReviewTokenSerializer,
)
from .serializers import GrantSerializer

TAGS = ["review"]
# The access.services refusals (wrong state, own request, second approval by the same reviewer) are
# Django ValidationErrors, which the API's one error handler answers as 400 {"detail": [...]}.
REFUSAL = inline_serializer("ReviewRefusal", fields={"detail": serializers.CharField()})


def _decided(request, action: str, target, decide):
    """Run ``decide()`` and, for a token, audit the token's use in the same transaction: a refused
    decision leaves neither."""
    with transaction.atomic():
        result = decide()
        token = review_token(request)
        if token is not None:
            record_review_use(token=token, action=action, target=target)
    return result


def _body(serializer_class, request):
    incoming = serializer_class(data=request.data)
    incoming.is_valid(raise_exception=True)
    return incoming.validated_data


def _request_detail(pk) -> Response:
    return Response(ReviewRequestDetailSerializer(selectors.request_for_review(pk)).data)


class ReviewerView(APIView):
    permission_classes = [IsVerifiedReviewer]


# --- Access requests ---------------------------------------------------------------------------


class ReviewQueueView(generics.ListAPIView):
    permission_classes = [IsVerifiedReviewer]
    serializer_class = ReviewRequestSerializer

    def get_queryset(self):
        filters = ReviewQueueFilterSerializer(data=self.request.query_params)
        filters.is_valid(raise_exception=True)
        return selectors.review_queue(**filters.validated_data).annotate(
            approvals_this_round=Count("approvals", filter=Q(approvals__round=F("round")))
        )

    @extend_schema(tags=TAGS, summary="Access requests awaiting review, oldest submission first",
                   parameters=[ReviewQueueFilterSerializer])
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)


class ReviewRequestView(ReviewerView):
    @extend_schema(tags=TAGS, summary="One access request with the requester's credentials, approvals and history",
                   responses={200: ReviewRequestDetailSerializer})
    def get(self, request, pk):
        return _request_detail(pk)


class ApproveView(ReviewerView):
    @extend_schema(
        tags=TAGS, request=ApproveSerializer,
        summary="Approve (a tier needing two approvals stays pending until a different reviewer approves too)",
        responses={200: ReviewRequestDetailSerializer},
    )
    def post(self, request, pk):
        request_obj = selectors.request_for_review(pk)
        data = _body(ApproveSerializer, request)
        _decided(request, "approve", request_obj, lambda: services.approve_request(
            request_obj=request_obj, reviewer=request.user, expires_on=data.get("expires_on"),
            message=data.get("message") or ""))
        return _request_detail(pk)


class DenyView(ReviewerView):
    @extend_schema(tags=TAGS, request=ReasonSerializer, summary="Deny (reject) a request, with the reason",
                   responses={200: ReviewRequestDetailSerializer})
    def post(self, request, pk):
        request_obj = selectors.request_for_review(pk)
        reason = _body(ReasonSerializer, request)["reason"]
        _decided(request, "deny", request_obj, lambda: services.reject_request(
            request_obj=request_obj, reviewer=request.user, reason=reason))
        return _request_detail(pk)


class RequestChangesView(ReviewerView):
    @extend_schema(tags=TAGS, request=ChangesSerializer, summary="Send a request back to the requester for changes",
                   responses={200: ReviewRequestDetailSerializer})
    def post(self, request, pk):
        request_obj = selectors.request_for_review(pk)
        message = _body(ChangesSerializer, request)["message"]
        _decided(request, "request_changes", request_obj, lambda: services.request_changes(
            request_obj=request_obj, reviewer=request.user, message=message))
        return _request_detail(pk)


class RevokeRequestView(ReviewerView):
    @extend_schema(tags=TAGS, request=ReasonSerializer, summary="Revoke an approved request and its grant",
                   responses={200: ReviewRequestDetailSerializer})
    def post(self, request, pk):
        request_obj = selectors.request_for_review(pk)
        reason = _body(ReasonSerializer, request)["reason"]
        _decided(request, "revoke", request_obj, lambda: services.revoke_request(
            request_obj=request_obj, reviewer=request.user, reason=reason))
        return _request_detail(pk)


class RevokeGrantView(ReviewerView):
    @extend_schema(tags=TAGS, request=ReasonSerializer, summary="Revoke a grant (and its request, if it has one)",
                   responses={200: GrantSerializer})
    def post(self, request, pk):
        grant = get_object_or_404(AccessGrant.objects.select_related("tier"), pk=pk)
        reason = _body(ReasonSerializer, request)["reason"]
        grant = _decided(request, "revoke_grant", grant, lambda: services.revoke_grant(
            grant=grant, reviewer=request.user, reason=reason))
        return Response(GrantSerializer(grant).data)


# --- Credentials ------------------------------------------------------------------------------


class CertificateQueueView(generics.ListAPIView):
    permission_classes = [IsVerifiedReviewer]
    serializer_class = ReviewCertificateSerializer

    def get_queryset(self):
        return selectors.certificates_to_verify().select_related("user__profile")

    @extend_schema(tags=TAGS, summary="Training certificates awaiting verification, oldest upload first")
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)


class CertificateFileView(ReviewerView):
    def perform_content_negotiation(self, request, force=False):
        # The PDF is sent as a plain HttpResponse whatever Accept says; errors are JSON like everywhere.
        return JSONRenderer(), JSONRenderer.media_type

    @extend_schema(
        tags=TAGS, summary="The certificate's PDF, to read before deciding (each read is audited)",
        responses={(200, "application/pdf"): OpenApiResponse(OpenApiTypes.BINARY, description="The PDF report."),
                   409: OpenApiResponse(REFUSAL, description="The stored file cannot be decrypted.")},
    )
    def get(self, request, pk):
        certificate = selectors.certificate_to_decide(pk)
        try:
            data = certificates.read_certificate(certificate)
        except Exception:  # a lost key or a damaged file: the reviewer must hear of it, not see a 500
            return Response({"detail": "This certificate cannot be decrypted; ask an administrator."},
                            status=status.HTTP_409_CONFLICT)
        with transaction.atomic():
            record_event("certificate.viewed", actor=request.user, target=certificate,
                         details={"owner": certificate.user_id, "via": "api"})
            token = review_token(request)
            if token is not None:
                record_review_use(token=token, action="read_certificate", target=certificate)
        return certificates.download_response(certificate, data)


class CertificateVerifyView(ReviewerView):
    @extend_schema(tags=TAGS, request=None, summary="Verify a training certificate: from now on it counts",
                   responses={200: ReviewCertificateSerializer})
    def post(self, request, pk):
        certificate = selectors.certificate_to_decide(pk)
        certificate = _decided(request, "verify_certificate", certificate, lambda: services.verify_certificate(
            certificate=certificate, reviewer=request.user))
        return Response(ReviewCertificateSerializer(certificate).data)


class CertificateRejectView(ReviewerView):
    @extend_schema(tags=TAGS, request=ReasonSerializer, summary="Reject a training certificate, with the reason",
                   responses={200: ReviewCertificateSerializer})
    def post(self, request, pk):
        certificate = selectors.certificate_to_decide(pk)
        reason = _body(ReasonSerializer, request)["reason"]
        certificate = _decided(request, "reject_certificate", certificate, lambda: services.reject_certificate(
            certificate=certificate, reviewer=request.user, reason=reason))
        return Response(ReviewCertificateSerializer(certificate).data)


class PhysioNetVerifyView(ReviewerView):
    @extend_schema(tags=TAGS, request=None,
                   summary="Record that you checked a PhysioNet attestation (the id is in the request's credentials)",
                   responses={200: AttestationSerializer})
    def post(self, request, pk):
        attestation = get_object_or_404(PhysioNetAttestation, pk=pk)
        attestation = _decided(request, "verify_physionet", attestation, lambda: services.verify_physionet(
            attestation=attestation, reviewer=request.user))
        return Response(AttestationSerializer(attestation).data)


# --- Reviewer tokens ----------------------------------------------------------------------------


class ReviewTokenView(APIView):
    @extend_schema(
        tags=TAGS, request=ReviewTokenCreateSerializer,
        summary="Create a short-lived reviewer token (staff, from a browser session that passed 2FA only)",
        description="Refused (403) for anyone not staff, a session that has not passed two-factor authentication, "
                    "and any call made with a token. The secret is in the response only.",
        responses={201: ReviewTokenSerializer},
    )
    def post(self, request):
        if request.auth is not None:
            raise exceptions.PermissionDenied(
                "A token cannot create reviewer tokens: create one from a browser session that passed "
                "two-factor authentication.")
        name = _body(ReviewTokenCreateSerializer, request)["name"]
        token, secret = issue_review_token(user=request.user, name=name, two_factor_verified=is_verified(request))
        data = ReviewTokenSerializer(token).data
        data["token"] = secret
        return Response(data, status=status.HTTP_201_CREATED)
