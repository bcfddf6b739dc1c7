"""Demo accounts for `make run`: a researcher holding Generate and Export (with every credential,
approved through the real workflow), a reviewer and an admin. Idempotent."""

from __future__ import annotations

import io
import secrets
from datetime import timedelta

from django.contrib.auth import get_user_model
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import transaction
from django.utils import timezone

from . import services
from .credentials import agreements_to_sign, current_credentials, physionet_attested
from .defaults import seed_defaults
from .models import OPEN_STATUSES, AccessGrant, AccessRequest, Agreement, AgreementVersion, Tier

DEMO_ACCOUNTS = [
    # username, e-mail, staff, superuser
    ("researcher", "researcher@example.org", False, False),
    ("reviewer", "reviewer@example.org", True, False),
    ("admin", "admin@example.org", True, True),
]

DEMO_PROFILE = {
    "full_name": "Ada Demo",
    "institution": "Example University Hospital",
    "position": "Research fellow",
    "institutional_email": "ada.demo@hospital.example.org",
    "physionet_username": "ada_demo",
    "research_plan": (
        "Evaluate whether synthetic chest radiographs of under-represented patient groups reduce the performance "
        "gap of a pneumothorax classifier trained on MIMIC-CXR. Synthetic images stay inside the project; code and "
        "aggregate results are published."
    ),
}


def sample_certificate_pdf() -> bytes:
    """A one-page PDF standing in for a CITI completion report."""
    from pypdf import PdfWriter

    writer = PdfWriter()
    writer.add_blank_page(width=612, height=792)
    writer.add_metadata({"/Title": "CITI Program - Data or Specimens Only Research (demo)"})
    buffer = io.BytesIO()
    writer.write(buffer)
    return buffer.getvalue()


def _ensure_tiers() -> None:
    seed_defaults(Tier, Agreement, AgreementVersion)


def _ensure_credentials(user, reviewer) -> None:
    services.update_profile(user=user, actor=user, **DEMO_PROFILE)
    if not user.email_verified:
        user.email_verified = True
        user.save(update_fields=["email_verified"])
    if not physionet_attested(user):
        services.attest_physionet(user=user, physionet_username=DEMO_PROFILE["physionet_username"], actor=user)
    attestation = user.physionet_attestations.first()
    if attestation.checked_at is None:
        services.verify_physionet(attestation=attestation, reviewer=reviewer)
    if not current_credentials(user)["training"]:
        today = timezone.localdate()
        certificate = services.upload_certificate(
            user=user,
            uploaded_file=SimpleUploadedFile("citi-demo.pdf", sample_certificate_pdf(), "application/pdf"),
            completed_on=today - timedelta(days=30),
            expires_on=today + timedelta(days=3 * 365),
            actor=user,
        )
        services.verify_certificate(certificate=certificate, reviewer=reviewer)
    for version in agreements_to_sign(user):
        services.sign_agreement(
            user=user, version=version, typed_name=DEMO_PROFILE["full_name"], shown_sha256=version.sha256,
            ip_address="127.0.0.1",
        )


def _ensure_grant(user, reviewer, slug: str) -> None:
    tier = Tier.objects.get(slug=slug)
    if AccessGrant.objects.filter(user=user, tier=tier, status=AccessGrant.Status.ACTIVE).exists():
        return
    request_obj = (
        AccessRequest.objects.filter(user=user, tier=tier, status__in=OPEN_STATUSES).first()
        or services.create_request(user=user, tier=tier, justification="Demo account: evaluating synthetic cohorts.")
    )
    if request_obj.status in (AccessRequest.Status.DRAFT, AccessRequest.Status.CHANGES_REQUESTED):
        request_obj = services.submit_request(request_obj=request_obj, actor=user)
    services.approve_request(request_obj=request_obj, reviewer=reviewer, message="Demo approval.")


@transaction.atomic
def seed_demo(stdout) -> None:
    User = get_user_model()
    _ensure_tiers()
    accounts = {}
    for username, email, staff, superuser in DEMO_ACCOUNTS:
        user = User.objects.filter(username=username).first()
        if user is not None:
            stdout.write(f"Demo account '{username}' exists (password unchanged).")
        else:
            password = secrets.token_urlsafe(9)
            user = User(username=username, email=email, is_staff=staff, is_superuser=superuser, email_verified=True)
            user.set_password(password)
            user.save()
            stdout.write(f"Demo account '{username}' created with password: {password}")
        accounts[username] = user
    researcher, reviewer = accounts["researcher"], accounts["reviewer"]
    with services.no_notifications():
        services.expire_lapsed_grants()
        _ensure_credentials(researcher, reviewer)
        for slug in ("generate", "export"):
            _ensure_grant(researcher, reviewer, slug)
    stdout.write(
        "Demo researcher holds the Generate and Export tiers. Reviewer and admin set up two-factor "
        "authentication (any TOTP app) at their first visit to a review or admin page."
    )
