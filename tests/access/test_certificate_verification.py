"""A training certificate counts only once a reviewer has verified it: an upload with made-up dates
gives no access; expired or implausible dates are refused at upload; reviewers have a queue."""

from datetime import timedelta

import pytest
from django.core.exceptions import ValidationError
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse
from django.utils import timezone

from access import capabilities as caps
from access import services
from access.credentials import current_credentials
from access.models import TrainingCertificate
from access.policy import access_policy
from cxr_platform.audit.models import AuditEvent
from tests.access.factories import give_certificate, grant_tier, login_verified, tiny_pdf

pytestmark = pytest.mark.django_db


def _upload(user, *, completed_days_ago=10, valid_days=700):
    today = timezone.localdate()
    return services.upload_certificate(
        user=user, uploaded_file=SimpleUploadedFile("citi.pdf", tiny_pdf()),
        completed_on=today - timedelta(days=completed_days_ago),
        expires_on=today - timedelta(days=completed_days_ago) + timedelta(days=valid_days), actor=user)


def _expire_certificates(user):
    TrainingCertificate.objects.filter(user=user).update(completed_on=timezone.localdate() - timedelta(days=800),
                                                         expires_on=timezone.localdate() - timedelta(days=1))


def test_an_expired_researcher_regains_access_only_after_a_reviewer_verifies_the_new_upload(credentialed, reviewer):
    grant_tier(credentialed, "generate")
    assert access_policy(credentialed).can(caps.GENERATE)
    _expire_certificates(credentialed)
    assert not access_policy(credentialed).can(caps.GENERATE)

    fresh = _upload(credentialed)  # any PDF, dates of the researcher's choosing
    assert not access_policy(credentialed).can(caps.GENERATE)
    services.verify_certificate(certificate=fresh, reviewer=reviewer)
    assert access_policy(credentialed).can(caps.GENERATE)
    assert AuditEvent.objects.filter(action="certificate.verified", actor=reviewer).exists()


def test_a_rejected_certificate_never_counts_and_the_researcher_reads_why(client, credentialed, reviewer):
    _expire_certificates(credentialed)
    fake = _upload(credentialed)
    with pytest.raises(ValidationError):
        services.reject_certificate(certificate=fake, reviewer=reviewer, reason="  ")
    services.reject_certificate(certificate=fake, reviewer=reviewer, reason="Not a CITI report.")
    with pytest.raises(ValidationError, match="already rejected"):
        services.verify_certificate(certificate=fake, reviewer=reviewer)
    assert not current_credentials(credentialed)[caps.TRAINING]
    client.force_login(credentialed)
    assert "Not a CITI report." in client.get(reverse("access-dashboard")).content.decode()


def test_the_researcher_sees_awaiting_verification(client, researcher):
    _upload(researcher)
    client.force_login(researcher)
    assert "awaiting verification" in client.get(reverse("access-dashboard")).content.decode()


@pytest.mark.parametrize("completed_days_ago, valid_days, message", [
    (800, 700, "expired on"),              # already expired when uploaded
    (10, 6 * 366, "not plausible"),        # valid for six years
])
def test_expired_or_implausible_dates_are_refused_at_upload(researcher, completed_days_ago, valid_days, message):
    with pytest.raises(ValidationError, match=message):
        _upload(researcher, completed_days_ago=completed_days_ago, valid_days=valid_days)
    assert not TrainingCertificate.objects.exists()


def test_nobody_verifies_their_own_certificate(reviewer):
    own = give_certificate(reviewer, verified=False)
    with pytest.raises(ValidationError, match="your own"):
        services.verify_certificate(certificate=own, reviewer=reviewer)


def test_a_researcher_cannot_verify(researcher, credentialed):
    other = give_certificate(researcher, verified=False)
    with pytest.raises(ValidationError, match="Only reviewers"):
        services.verify_certificate(certificate=other, reviewer=credentialed)


def test_reviewers_verify_from_their_queue_after_2fa(client, researcher, reviewer):
    waiting = _upload(researcher)
    url = reverse("review-certificate", args=[waiting.pk])
    client.force_login(researcher)
    client.post(url, {"decision": "verify"})
    waiting.refresh_from_db()
    assert waiting.verified_at is None  # a researcher's POST does nothing
    login_verified(client, reviewer)
    page = client.get(reverse("review-certificates")).content.decode()
    assert f'id="certificate-{waiting.pk}"' in page
    client.post(url, {"decision": "verify"})
    waiting.refresh_from_db()
    assert waiting.verified_by == reviewer
    assert f'id="certificate-{waiting.pk}"' not in client.get(reverse("review-certificates")).content.decode()


def test_the_renewal_queue_lists_holders_whose_certificate_expires_soon(client, credentialed, reviewer):
    grant_tier(credentialed, "generate")
    TrainingCertificate.objects.filter(user=credentialed).update(expires_on=timezone.localdate() + timedelta(days=10))
    login_verified(client, reviewer)
    page = client.get(reverse("review-certificates")).content.decode()
    section = page[page.index('id="certificates-due"'):]
    assert credentialed.email in section
    TrainingCertificate.objects.filter(user=credentialed).update(expires_on=timezone.localdate() + timedelta(days=300))
    page = client.get(reverse("review-certificates")).content.decode()
    assert credentialed.email not in page[page.index('id="certificates-due"'):]
