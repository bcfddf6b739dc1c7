"""Which credentials a user holds now. Each check is a small function so that the
access policy, the dashboard ("what is missing") and reviewers see the same answer."""

from __future__ import annotations

from django.utils import timezone

from . import capabilities as caps
from .models import Agreement, AgreementSignature, PhysioNetAttestation, Profile, TrainingCertificate

MIN_RESEARCH_PLAN_CHARS = 200


def profile_of(user) -> Profile | None:
    return Profile.objects.filter(user=user).first()


def latest_attestation(user) -> PhysioNetAttestation | None:
    return PhysioNetAttestation.objects.filter(user=user).select_related("checked_by").first()


def physionet_attested(user, profile=None) -> bool:
    """Attested under the PhysioNet username the profile names now (not necessarily checked)."""
    profile = profile if profile is not None else profile_of(user)
    attestation = latest_attestation(user)
    return bool(profile and attestation and attestation.physionet_username == profile.physionet_username)


def physionet_checked(user, profile=None) -> bool:
    """Attested, and a reviewer has recorded checking that attestation."""
    attestation = latest_attestation(user)
    return physionet_attested(user, profile) and attestation.checked_at is not None


def valid_certificate(user, *, today=None) -> TrainingCertificate | None:
    """The user's current certificate that a reviewer has verified (an upload alone counts for nothing)."""
    today = today or timezone.localdate()
    return (
        TrainingCertificate.objects.filter(user=user, completed_on__lte=today, expires_on__gt=today,
                                           verified_at__isnull=False, rejected_at__isnull=True)
        .order_by("-expires_on")
        .first()
    )


def awaiting_certificate(user, *, today=None) -> TrainingCertificate | None:
    """A current upload no reviewer has decided on yet."""
    today = today or timezone.localdate()
    return (
        TrainingCertificate.objects.filter(user=user, expires_on__gt=today, verified_at__isnull=True,
                                           rejected_at__isnull=True)
        .order_by("-uploaded_at")
        .first()
    )


def agreements_to_sign(user) -> list:
    """Current versions of active agreements this user has not signed (a new version needs a new signature)."""
    signed = set(AgreementSignature.objects.filter(user=user).values_list("version_id", flat=True))
    missing = []
    for agreement in Agreement.objects.filter(is_active=True).prefetch_related("versions"):
        published = [v for v in agreement.versions.all() if v.published_at is not None]
        if not published:
            continue
        current = max(published, key=lambda v: v.number)
        if current.pk not in signed:
            missing.append(current)
    return missing


def has_research_plan(profile) -> bool:
    return bool(profile and len(profile.research_plan.strip()) >= MIN_RESEARCH_PLAN_CHARS)


def current_credentials(user, *, now=None) -> dict[str, bool]:
    today = timezone.localdate(now) if now else timezone.localdate()
    profile = profile_of(user)
    return {
        caps.PROFILE: bool(profile and profile.is_complete and user.email_verified),
        caps.PHYSIONET: physionet_checked(user, profile),
        caps.TRAINING: valid_certificate(user, today=today) is not None,
        caps.AGREEMENTS: not agreements_to_sign(user),
        caps.RESEARCH_PLAN: has_research_plan(profile),
    }


def ready_to_submit(user, tier) -> list[str]:
    """What the requester must still provide before a request for ``tier`` can be submitted.

    Everything the tier requires, except that PhysioNet credentialing only has to be
    attested: checking it is the reviewer's part of the review."""
    held = current_credentials(user)
    held[caps.PHYSIONET] = physionet_attested(user)
    return [caps.CREDENTIALS[name] for name in tier.credentials_needed if not held.get(name)]
