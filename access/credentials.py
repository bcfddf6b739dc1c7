"""Which credentials a user holds now. Each check is a small function so that the
access policy, the dashboard ("what is missing") and reviewers see the same answer."""

from __future__ import annotations

from datetime import date

from django.contrib.auth import get_user_model
from django.db.models import Exists, OuterRef, Subquery
from django.utils import timezone

from cxr_platform.prepared import PreparedQuery

from . import capabilities as caps
from .models import AgreementSignature, AgreementVersion, PhysioNetAttestation, Profile, TrainingCertificate

MIN_RESEARCH_PLAN_CHARS = 200


def profile_of(user) -> Profile | None:
    return Profile.objects.filter(user=user).first()


def latest_attestation(user) -> PhysioNetAttestation | None:
    return PhysioNetAttestation.objects.filter(user=user).select_related("checked_by").order_by("-attested_at", "-pk").first()


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


def _unsigned_current_versions(user):
    """Current (newest published) versions of active agreements that ``user`` has not signed: a new
    version needs a new signature. ``user`` may be an ``OuterRef`` to the user's primary key, when
    this is itself a subquery of a query over users."""
    newer = AgreementVersion.objects.filter(agreement=OuterRef("agreement"), published_at__isnull=False,
                                            number__gt=OuterRef("number"))
    # One level deeper than this queryset, an outer reference must reach out twice.
    signer = OuterRef(user) if isinstance(user, OuterRef) else user
    signed = AgreementSignature.objects.filter(user=signer, version=OuterRef("pk"))
    return AgreementVersion.objects.filter(agreement__is_active=True, published_at__isnull=False).exclude(
        Exists(newer)).exclude(Exists(signed))


def agreements_to_sign(user) -> list:
    """Current versions of active agreements this user has not signed, in agreement title order."""
    return list(_unsigned_current_versions(user).select_related("agreement").order_by("agreement__title", "agreement_id"))


def has_research_plan(profile) -> bool:
    return bool(profile and len(profile.research_plan.strip()) >= MIN_RESEARCH_PLAN_CHARS)


# The columns credentials_from_row reads.
CREDENTIAL_COLUMNS = ("email_verified", "profile__pk", "profile__research_plan",
                      *(f"profile__{name}" for name in Profile.REQUIRED_FIELDS),
                      "attested_as", "attestation_checked", "certified", "agreements_unsigned")


def with_credentials(users, today):
    """``users`` (a queryset) annotated with what :func:`credentials_from_row` needs, each credential
    a subquery, so that one query answers all five (the access policy adds the grants to it)."""
    latest_attestation = PhysioNetAttestation.objects.filter(user=OuterRef("pk")).order_by("-attested_at", "-pk")
    return users.annotate(
        attested_as=Subquery(latest_attestation.values("physionet_username")[:1]),
        attestation_checked=Subquery(latest_attestation.values("checked_at")[:1]),
        certified=Exists(TrainingCertificate.objects.filter(
            user=OuterRef("pk"), completed_on__lte=today, expires_on__gt=today, verified_at__isnull=False,
            rejected_at__isnull=True)),
        agreements_unsigned=Exists(_unsigned_current_versions(OuterRef("pk"))),
    )


def credentials_from_row(row: dict) -> dict[str, bool]:
    if row["profile__pk"] is None:  # no profile yet: the credentials that do not hang on it still count
        held = dict.fromkeys(caps.CREDENTIALS, False)
        held[caps.TRAINING] = bool(row["certified"])
        held[caps.AGREEMENTS] = not row["agreements_unsigned"]
        return held
    complete = all((row[f"profile__{name}"] or "").strip() for name in Profile.REQUIRED_FIELDS)
    return {
        caps.PROFILE: bool(complete and row["email_verified"]),
        caps.PHYSIONET: bool(row["attested_as"] and row["attested_as"] == row["profile__physionet_username"]
                             and row["attestation_checked"] is not None),
        caps.TRAINING: bool(row["certified"]),
        caps.AGREEMENTS: not row["agreements_unsigned"],
        caps.RESEARCH_PLAN: len((row["profile__research_plan"] or "").strip()) >= MIN_RESEARCH_PLAN_CHARS,
    }


# One query, compiled once per process (the dashboard, reviewers and request submission ask this).
_CREDENTIALS = PreparedQuery(
    lambda user_pk, today: with_credentials(get_user_model().objects.filter(pk=user_pk), today).values(*CREDENTIAL_COLUMNS),
    user_pk=int, today=date,
)


def current_credentials(user, *, now=None) -> dict[str, bool]:
    today = timezone.localdate(now) if now else timezone.localdate()
    rows = _CREDENTIALS.rows(user_pk=user.pk, today=today)
    return credentials_from_row(rows[0]) if rows else dict.fromkeys(caps.CREDENTIALS, False)


def ready_to_submit(user, tier) -> list[str]:
    """What the requester must still provide before a request for ``tier`` can be submitted.

    Everything the tier requires, except that PhysioNet credentialing only has to be
    attested: checking it is the reviewer's part of the review."""
    held = current_credentials(user)
    held[caps.PHYSIONET] = physionet_attested(user)
    return [caps.CREDENTIALS[name] for name in tier.credentials_needed if not held.get(name)]
