"""Actions that change access state. Each writes its audit event in the same transaction
and takes the acting user as an argument. Request status changes go through
:func:`_transition`, which consults the one table in ``access.workflow``."""

from __future__ import annotations

import hashlib
import logging
import re
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import date, datetime, time, timedelta

from django.conf import settings
from django.core import signing
from django.core.exceptions import ValidationError
from django.core.files.base import ContentFile
from django.core.mail import EmailMessage, send_mail
from django.db import IntegrityError, transaction
from django.urls import reverse
from django.utils import timezone

from cxr_platform.audit.context import client_ip, current_request
from cxr_platform.audit.services import record_event

from . import capabilities as caps
from . import certificates, encryption, workflow
from .credentials import current_credentials, ready_to_submit
from .models import (
    OPEN_STATUSES,
    AccessGrant,
    AccessRequest,
    Agreement,
    AgreementSignature,
    AgreementVersion,
    Approval,
    PhysioNetAttestation,
    Profile,
    RequestEvent,
    ReviewNote,
    Tier,
    TrainingCertificate,
    User,
)

logger = logging.getLogger(__name__)
S = AccessRequest.Status
EMAIL_VERIFICATION_SALT = "access.email-verification"
EMAIL_VERIFICATION_MAX_AGE = 3 * 24 * 3600


def _is_reviewer(user) -> bool:
    return bool(user is not None and user.is_authenticated and user.is_active and user.is_staff)


_mail_enabled: ContextVar[bool] = ContextVar("access_mail_enabled", default=True)


@contextmanager
def no_notifications():
    """Seeding demo data: do not e-mail the demo accounts about what the seeder does."""
    token = _mail_enabled.set(False)
    try:
        yield
    finally:
        _mail_enabled.reset(token)


def _notify(user, subject: str, body: str) -> None:
    """E-mail ``user`` once the current transaction has committed (never for a rolled-back change)."""
    address = user.email
    if not address or not _mail_enabled.get():
        return

    def send():
        try:
            send_mail(f"[cxr-platform] {subject}", body, settings.DEFAULT_FROM_EMAIL, [address])
        except Exception:  # an unreachable mail server must not undo a decision
            logger.exception("Could not e-mail %s about: %s", address, subject)

    transaction.on_commit(send)


def _site_url(path: str) -> str:
    return getattr(settings, "SITE_URL", "").rstrip("/") + path


# --- Accounts ---------------------------------------------------------------------------


def email_verification_token(user) -> str:
    return signing.dumps({"u": user.pk, "e": user.email}, salt=EMAIL_VERIFICATION_SALT)


def send_email_verification(user) -> None:
    link = _site_url(reverse("verify-email", args=[email_verification_token(user)]))
    _notify(
        user,
        "Confirm your e-mail address",
        f"Hello {user.get_username()},\n\nconfirm your e-mail address by opening this link within three days:\n\n"
        f"{link}\n\nIf you did not create an account, ignore this message.\n",
    )


@transaction.atomic
def register_user(*, username: str, email: str, password: str) -> User:
    user = User(username=username, email=email.strip().lower() or None, email_verified=False)
    user.set_password(password)
    user._password_changed = False
    user.save()
    Profile.objects.create(user=user)
    record_event("auth.registered", actor=user, target=user)
    send_email_verification(user)
    return user


@transaction.atomic
def verify_email(token: str) -> User:
    """Mark the address in ``token`` verified; ValidationError if the link is bad, old or stale."""
    try:
        data = signing.loads(token, salt=EMAIL_VERIFICATION_SALT, max_age=EMAIL_VERIFICATION_MAX_AGE)
    except signing.SignatureExpired as exc:
        raise ValidationError("This confirmation link has expired. Log in and ask for a new one.") from exc
    except signing.BadSignature as exc:
        raise ValidationError("This confirmation link is not valid.") from exc
    user = User.objects.select_for_update().filter(pk=data.get("u")).first()
    if user is None or user.email != data.get("e"):
        raise ValidationError("This confirmation link is for an address that is no longer on the account.")
    if not user.email_verified:
        user.email_verified = True
        user.save(update_fields=["email_verified"])
        record_event("auth.email_verified", actor=user, target=user, details={"email": user.email})
    return user


# --- Credentials --------------------------------------------------------------------------


def profile_for(user) -> Profile:
    profile, _ = Profile.objects.get_or_create(user=user)
    return profile


PROFILE_FIELDS = ("full_name", "institution", "position", "institutional_email", "orcid", "physionet_username", "research_plan")


@transaction.atomic
def update_profile(*, user, actor, **fields) -> Profile:
    profile = profile_for(user)
    changed = []
    for name, value in fields.items():
        if name not in PROFILE_FIELDS:
            raise ValueError(f"Not a profile field: {name}")
        value = (value or "").strip()
        if getattr(profile, name) != value:
            setattr(profile, name, value)
            changed.append(name)
    if changed:
        profile.full_clean()
        profile.save()
        record_event("profile.updated", actor=actor, target=profile, details={"fields": sorted(changed)})
    return profile


@transaction.atomic
def attest_physionet(*, user, physionet_username: str, actor) -> PhysioNetAttestation:
    username = (physionet_username or "").strip()
    if not username:
        raise ValidationError("Enter your PhysioNet username.")
    profile = profile_for(user)
    if profile.physionet_username != username:
        profile.physionet_username = username
        profile.save(update_fields=["physionet_username", "updated_at"])
    request = current_request.get()
    attestation = PhysioNetAttestation.objects.create(
        user=user, physionet_username=username, attested_at=timezone.now(), attested_ip=client_ip(request)
    )
    record_event("physionet.attested", actor=actor, target=attestation, details={"physionet_username": username})
    return attestation


@transaction.atomic
def verify_physionet(*, attestation: PhysioNetAttestation, reviewer) -> PhysioNetAttestation:
    if not _is_reviewer(reviewer):
        raise ValidationError("Only reviewers can record a PhysioNet check.")
    if attestation.user_id == reviewer.pk:
        raise ValidationError("You cannot check your own PhysioNet credentialing.")
    attestation = PhysioNetAttestation.objects.select_for_update().get(pk=attestation.pk)
    if attestation.checked_at is None:
        attestation.checked_by = reviewer
        attestation.checked_at = timezone.now()
        attestation.save(update_fields=["checked_by", "checked_at"])
        record_event(
            "physionet.verified",
            actor=reviewer,
            target=attestation,
            details={"user": attestation.user_id, "physionet_username": attestation.physionet_username},
        )
    return attestation


# CITI refresher courses are due every 3 to 5 years; dates outside that are a typo or a made-up report.
CERTIFICATE_MAX_VALIDITY_YEARS = 5


def _check_certificate_dates(completed_on: date, expires_on: date) -> None:
    today = timezone.localdate()
    if completed_on > today:
        raise ValidationError("The completion date is in the future.")
    if expires_on <= completed_on:
        raise ValidationError("The expiry date must be after the completion date.")
    if expires_on <= today:
        raise ValidationError(f"This certificate expired on {expires_on:%Y-%m-%d}. Complete the CITI refresher course "
                              "and upload the new report.")
    if (expires_on - completed_on).days > CERTIFICATE_MAX_VALIDITY_YEARS * 366:
        raise ValidationError(f"A CITI certificate is valid for at most {CERTIFICATE_MAX_VALIDITY_YEARS} years; "
                              f"{completed_on:%Y-%m-%d} to {expires_on:%Y-%m-%d} is not plausible. Check the dates "
                              "on the report.")


@transaction.atomic
def verify_certificate(*, certificate: TrainingCertificate, reviewer) -> TrainingCertificate:
    """A reviewer has read the report and its dates and course are right: from now on it counts."""
    certificate = _certificate_to_decide(certificate, reviewer)
    certificate.verified_at, certificate.verified_by = timezone.now(), reviewer
    certificate.save(update_fields=["verified_at", "verified_by"])
    record_event("certificate.verified", actor=reviewer, target=certificate,
                 details={"user": certificate.user_id, "expires_on": certificate.expires_on.isoformat()})
    return certificate


@transaction.atomic
def reject_certificate(*, certificate: TrainingCertificate, reviewer, reason: str) -> TrainingCertificate:
    """The report is not what it claims (wrong course, wrong dates, someone else's): it never counts."""
    if not (reason or "").strip():
        raise ValidationError("Say why the certificate is rejected: the researcher reads it.")
    certificate = _certificate_to_decide(certificate, reviewer)
    certificate.rejected_at, certificate.rejection_reason = timezone.now(), reason.strip()
    certificate.save(update_fields=["rejected_at", "rejection_reason"])
    record_event("certificate.rejected", actor=reviewer, target=certificate,
                 details={"user": certificate.user_id, "reason": certificate.rejection_reason})
    return certificate


def _certificate_to_decide(certificate: TrainingCertificate, reviewer) -> TrainingCertificate:
    if not _is_reviewer(reviewer):
        raise ValidationError("Only reviewers can verify training certificates.")
    if certificate.user_id == reviewer.pk:
        raise ValidationError("You cannot verify your own training certificate.")
    certificate = TrainingCertificate.objects.select_for_update().get(pk=certificate.pk)
    if certificate.verified_at or certificate.rejected_at:
        raise ValidationError(f"This certificate was already {certificate.review_status}.")
    return certificate


@transaction.atomic
def upload_certificate(*, user, uploaded_file, completed_on: date, expires_on: date, actor) -> TrainingCertificate:
    """Check the upload is a real PDF (by content), encrypt it and store it under a random name."""
    _check_certificate_dates(completed_on, expires_on)
    data = certificates.read_upload(uploaded_file)
    certificates.check_pdf(data)
    certificate = TrainingCertificate(
        user=user,
        original_name=(getattr(uploaded_file, "name", "") or "certificate.pdf")[-255:],
        size=len(data),
        sha256=hashlib.sha256(data).hexdigest(),
        completed_on=completed_on,
        expires_on=expires_on,
        uploaded_at=timezone.now(),
    )
    certificate.file.save("certificate.pdf.enc", ContentFile(encryption.encrypt(data)), save=False)
    certificate.save()
    record_event(
        "certificate.uploaded",
        actor=actor,
        target=certificate,
        details={"sha256": certificate.sha256, "size": certificate.size, "expires_on": expires_on.isoformat()},
    )
    return certificate


def rotate_certificate_keys() -> int:
    """Re-encrypt every stored certificate with the newest key; returns how many changed."""
    changed = 0
    for certificate in TrainingCertificate.objects.all().iterator():
        with certificate.file.open("rb") as handle:
            token = handle.read()
        if encryption.is_current(token):
            continue
        name = certificate.file.name
        storage = certificate.file.storage
        rotated = encryption.rotate(token)
        storage.delete(name)
        storage.save(name, ContentFile(rotated))
        changed += 1
    return changed


@transaction.atomic
def publish_agreement_version(*, agreement: Agreement, text: str, actor) -> AgreementVersion:
    """A new current version: every user must sign it again before using what depends on it."""
    if not text.strip():
        raise ValidationError("The agreement text is empty.")
    agreement = Agreement.objects.select_for_update().get(pk=agreement.pk)
    last = agreement.versions.order_by("-number").first()
    version = AgreementVersion.objects.create(
        agreement=agreement,
        number=(last.number + 1) if last else 1,
        text=text,
        published_at=timezone.now(),
        published_by=actor,
    )
    record_event(
        "agreement.published",
        actor=actor,
        target=version,
        details={"agreement": agreement.slug, "number": version.number, "sha256": version.sha256},
    )
    return version


def _normalise_name(name: str) -> str:
    return re.sub(r"\s+", " ", name or "").strip().casefold()


@transaction.atomic
def sign_agreement(*, user, version: AgreementVersion, typed_name: str, shown_sha256: str, ip_address=None) -> AgreementSignature:
    """Sign ``version`` by typing one's full name. ``shown_sha256`` is the hash of the text the user saw."""
    if version.published_at is None:
        raise ValidationError("This agreement version is not published.")
    current = version.agreement.current_version
    if current is None or current.pk != version.pk:
        raise ValidationError("A newer version of this agreement has been published. Read and sign that one.")
    if shown_sha256 != version.sha256 or AgreementVersion.hash_text(version.text) != version.sha256:
        raise ValidationError("The agreement text changed while you were reading it. Read it again and sign.")
    profile = profile_for(user)
    if not profile.full_name.strip():
        raise ValidationError("Enter your full name in your profile before signing.")
    if _normalise_name(typed_name) != _normalise_name(profile.full_name):
        raise ValidationError(f"Type your full name exactly as in your profile ({profile.full_name}) to sign.")
    try:
        with transaction.atomic():
            signature = AgreementSignature.objects.create(
                user=user,
                version=version,
                typed_name=typed_name.strip(),
                text_sha256=version.sha256,
                signed_at=timezone.now(),
                ip_address=ip_address,
            )
    except IntegrityError as exc:
        raise ValidationError("You have already signed this version.") from exc
    record_event(
        "agreement.signed",
        actor=user,
        target=signature,
        details={"agreement": version.agreement.slug, "version": version.number, "sha256": version.sha256},
    )
    return signature


# --- Access requests ---------------------------------------------------------------------------


def _transition(request_obj: AccessRequest, action: str, *, actor, message: str = "", details: dict | None = None):
    """Move ``request_obj`` along the one transition table; audit, history and e-mail included.

    Callers hold a row lock on ``request_obj`` inside a transaction."""
    transition = workflow.transition_for(request_obj.status, action)
    if transition.by == workflow.REQUESTER and (actor is None or actor.pk != request_obj.user_id):
        raise workflow.TransitionRefused("Only the requester can do this.")
    if transition.by == workflow.REVIEWER:
        if not _is_reviewer(actor):
            raise workflow.TransitionRefused("Only reviewers can do this.")
        if actor.pk == request_obj.user_id:
            raise workflow.TransitionRefused("You cannot review your own request.")
    if transition.needs_reason and not message.strip():
        raise workflow.TransitionRefused("Give a reason; the requester will read it.")
    source = request_obj.status
    request_obj.status = transition.target
    request_obj.save()
    RequestEvent.objects.create(
        request=request_obj, actor=actor, action=action, from_status=source, to_status=transition.target, message=message
    )
    record_event(
        f"access_request.{transition.target}",
        actor=actor,
        target=request_obj,
        details={"from": source, "to": transition.target, "tier": request_obj.tier.slug, "user": request_obj.user_id,
                 **({"reason": message} if message else {}), **(details or {})},
    )
    link = _site_url(reverse("access-request-detail", args=[request_obj.pk]))
    body = (
        f"Hello {request_obj.user.get_username()},\n\nyour request for the {request_obj.tier.name} tier is now "
        f"{S(transition.target).label.lower()}.\n"
        + (f"\n{message}\n" if message else "")
        + f"\nSee {link}\n"
    )
    _notify(request_obj.user, f"Your {request_obj.tier.name} access request: {S(transition.target).label.lower()}", body)
    if transition.target in (S.SUBMITTED, S.RESUBMITTED):
        _notify_reviewers(request_obj)
    return request_obj


def _notify_reviewers(request_obj: AccessRequest) -> None:
    """Tell reviewers (active staff with an address; ``ACCESS_REVIEWER_EMAILS`` overrides) a request waits."""
    addresses = list(getattr(settings, "ACCESS_REVIEWER_EMAILS", []) or User.objects.filter(
        is_staff=True, is_active=True, email__isnull=False).exclude(email="").exclude(pk=request_obj.user_id)
        .values_list("email", flat=True))
    if not addresses or not _mail_enabled.get():
        return
    link = _site_url(reverse("review-request", args=[request_obj.pk]))
    subject = f"[cxr-platform] {request_obj.tier.name} request #{request_obj.pk} awaits review"
    body = f"{request_obj.user.get_username()} {request_obj.status} a request for the {request_obj.tier.name} tier.\n\n{link}\n"

    def send():
        try:
            EmailMessage(subject, body, settings.DEFAULT_FROM_EMAIL, to=[], bcc=addresses).send()
        except Exception:
            logger.exception("Could not e-mail reviewers about request %s", request_obj.pk)

    transaction.on_commit(send)


def _locked(request_obj: AccessRequest) -> AccessRequest:
    return AccessRequest.objects.select_for_update().select_related("tier", "user").get(pk=request_obj.pk)


@transaction.atomic
def create_request(*, user, tier: Tier, justification: str) -> AccessRequest:
    if not tier.is_active:
        raise ValidationError("This tier is not open for requests.")
    if not (justification or "").strip():
        raise ValidationError("Say why you need this tier, and for which project.")
    User.objects.select_for_update().get(pk=user.pk)  # one open request per tier, even under double clicks
    if AccessRequest.objects.filter(user=user, tier=tier, status__in=[*OPEN_STATUSES, S.APPROVED]).exists():
        raise ValidationError(f"You already have an open or approved request for the {tier.name} tier.")
    request_obj = AccessRequest.objects.create(user=user, tier=tier, justification=justification.strip())
    RequestEvent.objects.create(request=request_obj, actor=user, action="create", from_status="", to_status=S.DRAFT)
    record_event("access_request.created", actor=user, target=request_obj, details={"tier": tier.slug})
    return request_obj


@transaction.atomic
def update_request(*, request_obj: AccessRequest, actor, justification: str) -> AccessRequest:
    request_obj = _locked(request_obj)
    if actor.pk != request_obj.user_id:
        raise workflow.TransitionRefused("Only the requester can edit this request.")
    if request_obj.status not in (S.DRAFT, S.CHANGES_REQUESTED):
        raise workflow.TransitionRefused("Only drafts and requests sent back for changes can be edited.")
    if not (justification or "").strip():
        raise ValidationError("Say why you need this tier, and for which project.")
    request_obj.justification = justification.strip()
    request_obj.save(update_fields=["justification"])
    return request_obj


def _check_ready(request_obj: AccessRequest) -> None:
    missing = ready_to_submit(request_obj.user, request_obj.tier)
    if missing:
        raise workflow.TransitionRefused("Before submitting, provide: " + "; ".join(missing) + ".")


@transaction.atomic
def submit_request(*, request_obj: AccessRequest, actor) -> AccessRequest:
    request_obj = _locked(request_obj)
    action = workflow.RESUBMIT if request_obj.status == S.CHANGES_REQUESTED else workflow.SUBMIT
    workflow.transition_for(request_obj.status, action)
    if actor is not None and actor.pk == request_obj.user_id:
        _check_ready(request_obj)
    request_obj.round += 1
    request_obj.submitted_at = timezone.now()
    return _transition(request_obj, action, actor=actor)


@transaction.atomic
def request_changes(*, request_obj: AccessRequest, reviewer, message: str) -> AccessRequest:
    request_obj = _locked(request_obj)
    return _transition(request_obj, workflow.REQUEST_CHANGES, actor=reviewer, message=message)


@transaction.atomic
def reject_request(*, request_obj: AccessRequest, reviewer, reason: str) -> AccessRequest:
    request_obj = _locked(request_obj)
    request_obj.decided_at = timezone.now()
    request_obj.decision_reason = reason.strip()
    return _transition(request_obj, workflow.REJECT, actor=reviewer, message=reason)


def _end_of_day(day: date) -> datetime:
    return timezone.make_aware(datetime.combine(day, time(23, 59, 59)), timezone.get_current_timezone())


@transaction.atomic
def approve_request(*, request_obj: AccessRequest, reviewer, expires_on: date | None = None, message: str = ""):
    """Record ``reviewer``'s approval. The request is approved, and a grant created, once the
    tier's number of approvals from *different* reviewers is reached in the current round."""
    request_obj = _locked(request_obj)
    transition = workflow.transition_for(request_obj.status, workflow.APPROVE)
    if not _is_reviewer(reviewer):
        raise workflow.TransitionRefused("Only reviewers can do this.")
    if reviewer.pk == request_obj.user_id:
        raise workflow.TransitionRefused("You cannot review your own request.")
    tier = request_obj.tier
    held = current_credentials(request_obj.user)
    missing = [caps.CREDENTIALS[name] for name in tier.credentials_needed if not held.get(name)]
    if missing:
        raise workflow.TransitionRefused("The requester does not hold every credential yet: " + "; ".join(missing) + ".")
    now = timezone.now()
    if expires_on is not None and _end_of_day(expires_on) <= now:
        raise ValidationError("The expiry date must be in the future.")
    approvals = request_obj.approvals.filter(round=request_obj.round)
    if approvals.filter(reviewer=reviewer).exists():
        raise workflow.TransitionRefused(
            "You have already approved this request; another reviewer must give the second approval."
        )
    try:
        with transaction.atomic():
            Approval.objects.create(request=request_obj, reviewer=reviewer, round=request_obj.round)
    except IntegrityError as exc:
        raise workflow.TransitionRefused("You have already approved this request.") from exc
    count = approvals.count()
    needed = max(1, tier.approvals_required)
    if count < needed:
        RequestEvent.objects.create(
            request=request_obj, actor=reviewer, action="approval", from_status=request_obj.status,
            to_status=request_obj.status, message=message or f"Approval {count} of {needed} recorded.",
        )
        record_event(
            "access_request.approval_recorded",
            actor=reviewer,
            target=request_obj,
            details={"tier": tier.slug, "round": request_obj.round, "approvals": count, "needed": needed},
        )
        return request_obj
    expires_at = _end_of_day(expires_on) if expires_on else now + timedelta(days=tier.grant_duration_days)
    request_obj.decided_at = now
    request_obj.decision_reason = message.strip()
    _transition(request_obj, transition.action, actor=reviewer, message=message,
                details={"expires_at": expires_at.isoformat(), "approvals": count})
    grant = AccessGrant.objects.create(user=request_obj.user, tier=tier, request=request_obj, granted_at=now, expires_at=expires_at)
    record_event("grant.created", actor=reviewer, target=grant,
                 details={"tier": tier.slug, "user": grant.user_id, "expires_at": expires_at.isoformat()})
    return request_obj


@transaction.atomic
def revoke_request(*, request_obj: AccessRequest, reviewer, reason: str) -> AccessRequest:
    request_obj = _locked(request_obj)
    _transition(request_obj, workflow.REVOKE, actor=reviewer, message=reason)
    grant = AccessGrant.objects.select_for_update().filter(request=request_obj).first()
    if grant is not None and grant.status == AccessGrant.Status.ACTIVE:
        _mark_revoked(grant, reviewer=reviewer, reason=reason)
    return request_obj


def _mark_revoked(grant: AccessGrant, *, reviewer, reason: str) -> None:
    grant.status = AccessGrant.Status.REVOKED
    grant.revoked_at = timezone.now()
    grant.revocation_reason = reason.strip()
    grant.save(update_fields=["status", "revoked_at", "revocation_reason"])
    record_event("grant.revoked", actor=reviewer, target=grant, details={"tier": grant.tier.slug, "user": grant.user_id, "reason": reason})


@transaction.atomic
def revoke_grant(*, grant: AccessGrant, reviewer, reason: str) -> AccessGrant:
    """Revoke a grant (through its request when it has one, so the request says revoked too)."""
    if grant.request_id:
        revoke_request(request_obj=grant.request, reviewer=reviewer, reason=reason)
        grant.refresh_from_db()
        return grant
    if not _is_reviewer(reviewer):
        raise workflow.TransitionRefused("Only reviewers can do this.")
    if not reason.strip():
        raise workflow.TransitionRefused("Give a reason; the holder will read it.")
    grant = AccessGrant.objects.select_for_update().get(pk=grant.pk)
    if grant.status != AccessGrant.Status.ACTIVE:
        raise workflow.TransitionRefused("This grant is not active.")
    _mark_revoked(grant, reviewer=reviewer, reason=reason)
    return grant


@transaction.atomic
def expire_grant(*, grant: AccessGrant, actor=None) -> AccessGrant:
    """Mark a lapsed grant expired (and its request). Does nothing to a grant still current."""
    grant = AccessGrant.objects.select_for_update().select_related("tier").get(pk=grant.pk)
    if grant.status == AccessGrant.Status.ACTIVE and grant.expires_at <= timezone.now():
        grant.status = AccessGrant.Status.EXPIRED
        grant.save(update_fields=["status"])
        record_event("grant.expired", actor=actor, target=grant, details={"tier": grant.tier.slug, "user": grant.user_id})
        if grant.request_id:
            request_obj = _locked(grant.request)
            if request_obj.status == S.APPROVED:
                _transition(request_obj, workflow.EXPIRE, actor=actor)
    return grant


def expire_lapsed_grants(*, now=None) -> int:
    """Expire every active grant past its date (the periodic task and ``manage.py expire_grants``)."""
    now = now or timezone.now()
    count = 0
    for grant in AccessGrant.objects.filter(status=AccessGrant.Status.ACTIVE, expires_at__lte=now).only("pk"):
        if expire_grant(grant=grant, actor=None).status == AccessGrant.Status.EXPIRED:
            count += 1
    return count


@transaction.atomic
def add_note(*, request_obj: AccessRequest, reviewer, text: str) -> ReviewNote:
    if not _is_reviewer(reviewer):
        raise ValidationError("Only reviewers can add notes.")
    if not (text or "").strip():
        raise ValidationError("The note is empty.")
    note = ReviewNote.objects.create(request=request_obj, author=reviewer, text=text.strip())
    record_event("access_request.note_added", actor=reviewer, target=request_obj, details={"note": note.pk})
    return note
