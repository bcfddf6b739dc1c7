"""Access fixtures. ``grant_tier`` is what other apps' tests use to give a user a tier;
``give_credentials`` makes a user hold every credential as real records."""

import hashlib
import io
from datetime import timedelta
from functools import lru_cache

import factory
from django.core.files.base import ContentFile
from django.utils import timezone

from access import capabilities as caps
from access import encryption
from access.credentials import MIN_RESEARCH_PLAN_CHARS, agreements_to_sign, current_credentials
from access.models import (
    AccessGrant,
    AccessRequest,
    AgreementSignature,
    PhysioNetAttestation,
    Profile,
    Tier,
    TrainingCertificate,
)

DEFAULT_TIERS = {
    "generate": {"name": "Generate", "capabilities": [caps.GENERATE], "quotas": {caps.DAILY_IMAGES: 500}},
    "export": {
        "name": "Export",
        "capabilities": [caps.GENERATE, caps.EXPORT_DICOM, caps.API],
        "quotas": {caps.DAILY_IMAGES: 20000},
    },
    "weights": {"name": "Weights", "capabilities": [caps.DOWNLOAD_WEIGHTS], "quotas": {}},
}

RESEARCH_PLAN = (
    "We will train and evaluate a pneumothorax detector on a mix of real MIMIC-CXR studies and synthetic "
    "radiographs, measuring whether synthetic images of under-represented groups reduce the performance gap "
    "between groups. No synthetic image leaves the project; results are published with the code."
)
assert len(RESEARCH_PLAN) >= MIN_RESEARCH_PLAN_CHARS


@lru_cache(maxsize=1)
def tiny_pdf() -> bytes:
    """A small, valid one-page PDF (built once per test process)."""
    from pypdf import PdfWriter

    writer = PdfWriter()
    writer.add_blank_page(width=200, height=200)
    buffer = io.BytesIO()
    writer.write(buffer)
    return buffer.getvalue()


class TierFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Tier
        django_get_or_create = ("slug",)

    slug = factory.Sequence(lambda n: f"tier{n}")
    name = factory.LazyAttribute(lambda t: t.slug.title())
    capabilities = factory.LazyFunction(lambda: [caps.GENERATE])
    required_credentials = factory.LazyFunction(list)
    quotas = factory.LazyFunction(lambda: {caps.DAILY_IMAGES: 500})


def give_profile(user, **overrides) -> Profile:
    values = {
        "full_name": f"{user.first_name or 'Ada'} {user.last_name or user.get_username()}".strip(),
        "institution": "Example University Hospital",
        "position": "Research fellow",
        "institutional_email": f"{user.get_username()}@hospital.example.org",
        "physionet_username": f"pn_{user.get_username()}",
        "research_plan": RESEARCH_PLAN,
        **overrides,
    }
    profile, _ = Profile.objects.update_or_create(user=user, defaults=values)
    return profile


def give_certificate(user, *, completed_on=None, expires_on=None, verified=True) -> TrainingCertificate:
    """A stored, encrypted certificate record (a tiny real PDF), verified by a reviewer unless
    ``verified=False``."""
    today = timezone.localdate()
    data = tiny_pdf()


    certificate = TrainingCertificate(
        user=user,
        original_name="citi-report.pdf",
        size=len(data),
        sha256=hashlib.sha256(data).hexdigest(),
        completed_on=completed_on or today - timedelta(days=30),
        expires_on=expires_on or today + timedelta(days=3 * 365),
        uploaded_at=timezone.now(),
        verified_at=timezone.now() if verified else None,
    )
    certificate.file.save("certificate.pdf.enc", ContentFile(encryption.encrypt(data)), save=False)
    certificate.save()
    return certificate


def give_attestation(user, *, checked_by=None, checked=True) -> PhysioNetAttestation:
    profile = Profile.objects.filter(user=user).first()
    username = profile.physionet_username if profile and profile.physionet_username else f"pn_{user.get_username()}"
    now = timezone.now()
    return PhysioNetAttestation.objects.create(
        user=user,
        physionet_username=username,
        attested_at=now,
        checked_by=checked_by,
        checked_at=now if checked else None,
    )


def sign_current_agreements(user) -> None:
    for version in agreements_to_sign(user):
        AgreementSignature.objects.create(
            user=user, version=version, typed_name=user.profile.full_name, text_sha256=version.sha256,
            signed_at=timezone.now(), ip_address="127.0.0.1",
        )


def give_credentials(user) -> None:
    """Make ``user`` hold every credential a tier can require, as real records valid now:
    complete profile (with research plan), verified e-mail, checked PhysioNet attestation,
    a valid CITI certificate and signatures of the current agreement versions."""
    if not user.email_verified:
        user.email_verified = True
        user.save(update_fields=["email_verified"])
    profile = Profile.objects.filter(user=user).first()
    if profile is None or not profile.is_complete or len(profile.research_plan) < MIN_RESEARCH_PLAN_CHARS:
        give_profile(user)
    credentials = current_credentials(user)
    if not credentials[caps.PHYSIONET]:
        give_attestation(user)
    if not credentials[caps.TRAINING]:
        give_certificate(user)
    if not credentials[caps.AGREEMENTS]:
        sign_current_agreements(user)


def grant_tier(user, slug: str = "generate", *, model_versions=None, days: int = 365, quotas=None) -> AccessGrant:
    """Give ``user`` an approved, current grant of the named tier, with valid credentials."""
    spec = DEFAULT_TIERS.get(slug, {"name": slug.title(), "capabilities": [caps.GENERATE], "quotas": {}})
    tier = TierFactory(slug=slug, name=spec["name"], capabilities=spec["capabilities"], quotas=quotas or spec["quotas"])
    if quotas is not None:
        tier.quotas = quotas
        tier.save(update_fields=["quotas"])
    if model_versions:
        tier.model_versions.set(model_versions)
    give_credentials(user)
    now = timezone.now()
    return AccessGrant.objects.create(user=user, tier=tier, granted_at=now, expires_at=now + timedelta(days=days))


def make_request(user, slug: str = "generate", *, status=AccessRequest.Status.DRAFT, justification="A study.") -> AccessRequest:
    """An access request in ``status`` written directly (for tests of what follows)."""
    tier = Tier.objects.get(slug=slug) if Tier.objects.filter(slug=slug).exists() else TierFactory(slug=slug)
    now = timezone.now()
    submitted = status != AccessRequest.Status.DRAFT
    return AccessRequest.objects.create(
        user=user, tier=tier, status=status, justification=justification,
        submitted_at=now if submitted else None, round=1 if submitted else 0,
    )


def login_verified(client, user):
    """Log ``user`` in on ``client`` as having passed TOTP two-factor authentication."""
    from django_otp import DEVICE_ID_SESSION_KEY
    from django_otp.plugins.otp_totp.models import TOTPDevice

    device = TOTPDevice.objects.filter(user=user, confirmed=True).first() or TOTPDevice.objects.create(
        user=user, name="test", confirmed=True
    )
    client.force_login(user)
    session = client.session
    session[DEVICE_ID_SESSION_KEY] = device.persistent_id
    session.save()
    return client
