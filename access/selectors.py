"""Queries for access pages and the API. Objects of other users are 404, never 403,
so guessing ids tells nothing."""

from __future__ import annotations

from datetime import timedelta

from django.db.models import QuerySet
from django.http import Http404
from django.utils import timezone

from . import capabilities as caps
from .credentials import (
    agreements_to_sign,
    awaiting_certificate,
    current_credentials,
    latest_attestation,
    physionet_attested,
    valid_certificate,
)
from .models import OPEN_STATUSES, AccessGrant, AccessRequest, AgreementSignature, AgreementVersion, Tier, TrainingCertificate
from .policy import access_policy

S = AccessRequest.Status
REVIEW_STATUSES = (S.SUBMITTED, S.RESUBMITTED)


def requests_of(user) -> QuerySet[AccessRequest]:
    return AccessRequest.objects.filter(user=user).select_related("tier").order_by("-created_at")


def request_of(user, pk) -> AccessRequest:
    request_obj = requests_of(user).filter(pk=_int(pk)).first()
    if request_obj is None:
        raise Http404("No such access request.")
    return request_obj


def grants_of(user) -> QuerySet[AccessGrant]:
    return AccessGrant.objects.filter(user=user).select_related("tier").order_by("-granted_at")


def active_tiers() -> QuerySet[Tier]:
    return Tier.objects.filter(is_active=True).order_by("ordering", "name")


def tier_overview(user) -> list[dict]:
    """For each active tier: whether the user holds it, their open request, and what they still lack."""
    policy = access_policy(user)
    held = {g.tier_id for g in policy.grants}
    open_requests = {
        r.tier_id: r for r in requests_of(user).filter(status__in=OPEN_STATUSES)
    }
    return [
        {
            "tier": tier,
            "held": tier.pk in held,
            "open_request": open_requests.get(tier.pk),
            "missing": policy.missing_for(tier),
            "capabilities": [caps.CAPABILITIES.get(c, c) for c in tier.capabilities],
        }
        for tier in active_tiers()
    ]


def credential_summary(user) -> dict:
    """What a dashboard or a reviewer shows about one user's credentials."""
    from .credentials import MIN_RESEARCH_PLAN_CHARS, profile_of

    profile = profile_of(user)
    return {
        "status": current_credentials(user),
        "labels": caps.CREDENTIALS,
        "profile": profile,
        # Characters of the research plan (as counted for the credential) and the minimum, so a short plan
        # reads "too short (125/200 characters)" rather than "none".
        "research_plan_chars": len(profile.research_plan.strip()) if profile else 0,
        "research_plan_min_chars": MIN_RESEARCH_PLAN_CHARS,
        "attestation": latest_attestation(user),
        "physionet_attested": physionet_attested(user),
        "certificate": valid_certificate(user),
        "awaiting_certificate": awaiting_certificate(user),
        "rejected_certificate": TrainingCertificate.objects.filter(user=user, rejected_at__isnull=False)
        .order_by("-rejected_at").first(),
        "certificates": TrainingCertificate.objects.filter(user=user).order_by("-uploaded_at"),
        "to_sign": agreements_to_sign(user),
        "signatures": AgreementSignature.objects.filter(user=user).select_related("version__agreement"),
    }


def certificate_for(viewer, pk, *, reviewer: bool) -> TrainingCertificate:
    """A certificate its owner may read, or a verified reviewer may; 404 for everyone else."""
    certificate = TrainingCertificate.objects.filter(pk=_int(pk)).select_related("user").first()
    if certificate is None or not (certificate.user_id == viewer.pk or reviewer):
        raise Http404("No such certificate.")
    return certificate


def current_version(slug) -> AgreementVersion:
    version = (
        AgreementVersion.objects.filter(agreement__slug=str(slug), agreement__is_active=True, published_at__isnull=False)
        .select_related("agreement")
        .order_by("-number")
        .first()
    )
    if version is None:
        raise Http404("No such agreement.")
    return version


def review_queue(*, tier: str | None = None, status: str | None = None, waiting_days: int | None = None):
    """Requests for reviewers, oldest submission first. Default: those awaiting a decision."""
    queryset = AccessRequest.objects.select_related("tier", "user", "user__profile")
    if status:
        queryset = queryset.filter(status=status)
    else:
        queryset = queryset.filter(status__in=REVIEW_STATUSES)
    if tier:
        queryset = queryset.filter(tier__slug=tier)
    if waiting_days:
        queryset = queryset.filter(submitted_at__lte=timezone.now() - timedelta(days=waiting_days))
    return queryset.order_by("submitted_at", "created_at")


RENEWAL_NOTICE_DAYS = 30


def certificates_to_verify():
    """Uploads awaiting a reviewer's verification, oldest first."""
    return (TrainingCertificate.objects.filter(verified_at__isnull=True, rejected_at__isnull=True,
                                               expires_on__gt=timezone.localdate())
            .select_related("user").order_by("uploaded_at"))


def certificates_due_for_renewal(*, days: int = RENEWAL_NOTICE_DAYS):
    """Holders of an active grant whose verified certificate expires within ``days`` (or has
    expired) and who have no later verified one: their access stops when it does."""
    today = timezone.localdate()
    holders = AccessGrant.objects.filter(status=AccessGrant.Status.ACTIVE, expires_at__gt=timezone.now()).values("user_id")
    latest = {}
    for certificate in (TrainingCertificate.objects.filter(user_id__in=holders, verified_at__isnull=False,
                                                           rejected_at__isnull=True)
                        .select_related("user").order_by("user_id", "expires_on")):
        latest[certificate.user_id] = certificate  # the one that expires last
    return sorted((c for c in latest.values() if c.expires_on <= today + timedelta(days=days)),
                  key=lambda c: c.expires_on)


def certificate_to_decide(pk) -> TrainingCertificate:
    certificate = TrainingCertificate.objects.select_related("user").filter(pk=_int(pk)).first()
    if certificate is None:
        raise Http404("No such certificate.")
    return certificate


def request_for_review(pk) -> AccessRequest:
    request_obj = (
        AccessRequest.objects.select_related("tier", "user").filter(pk=_int(pk)).first()
    )
    if request_obj is None:
        raise Http404("No such access request.")
    return request_obj


def _int(value) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        raise Http404("No such object.") from None
