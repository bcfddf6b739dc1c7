"""CITI certificate uploads: content-checked, at most 10 MB, encrypted at rest, served only to the
owner and to reviewers who passed 2FA, through a view."""

from datetime import timedelta
from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse
from django.utils import timezone

from access import encryption, services
from access.certificates import MAX_CERTIFICATE_BYTES, read_certificate
from access.models import TrainingCertificate
from cxr_platform.audit.models import AuditEvent
from tests.access.factories import login_verified, tiny_pdf
from tests.factories import StaffFactory, UserFactory

pytestmark = pytest.mark.django_db
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64


def upload(client, content: bytes, name="citi.pdf", content_type="application/pdf", **dates):
    today = timezone.localdate()
    data = {
        "file": SimpleUploadedFile(name, content, content_type),
        "completed_on": dates.get("completed_on", today - timedelta(days=10)).isoformat(),
        "expires_on": dates.get("expires_on", today + timedelta(days=700)).isoformat(),
    }
    return client.post(reverse("access-certificate-upload"), data)


@pytest.fixture
def owner_client(client, researcher):
    client.force_login(researcher)
    return client


def test_a_real_pdf_is_accepted_and_stored_encrypted(owner_client, researcher, settings):
    response = upload(owner_client, tiny_pdf())
    assert response.status_code == 302
    certificate = TrainingCertificate.objects.get(user=researcher)
    on_disk = Path(settings.MEDIA_ROOT, certificate.file.name).read_bytes()
    assert b"%PDF" not in on_disk and tiny_pdf()[:200] not in on_disk
    assert "citi" not in certificate.file.name  # the stored name says nothing about the upload
    assert read_certificate(certificate) == tiny_pdf()
    assert AuditEvent.objects.filter(action="certificate.uploaded", actor=researcher).exists()


def test_a_png_named_pdf_is_refused_with_a_clear_message(owner_client, researcher):
    response = upload(owner_client, PNG, name="certificate.pdf", content_type="application/pdf")
    assert response.status_code == 400
    assert "not a PDF" in response.content.decode()
    assert not TrainingCertificate.objects.exists()


def test_a_file_with_a_pdf_header_but_garbage_inside_is_refused(owner_client):
    response = upload(owner_client, b"%PDF-1.7\n" + b"this is not really a pdf" * 50)
    assert response.status_code == 400
    assert "cannot be read as one" in response.content.decode()
    assert not TrainingCertificate.objects.exists()


def test_an_empty_file_is_refused(owner_client):
    response = upload(owner_client, b"")
    assert response.status_code == 400
    assert not TrainingCertificate.objects.exists()


def test_a_file_over_10_mb_is_refused(owner_client):
    big = tiny_pdf() + b"%" + b"0" * (MAX_CERTIFICATE_BYTES)
    response = upload(owner_client, big)
    assert response.status_code == 400
    assert "10 MB" in response.content.decode()
    assert not TrainingCertificate.objects.exists()


def test_expiry_before_completion_is_refused(owner_client):
    today = timezone.localdate()
    response = upload(owner_client, tiny_pdf(), completed_on=today, expires_on=today - timedelta(days=1))
    assert response.status_code == 400
    assert "expiry date must be after" in response.content.decode()


def test_owner_reads_their_certificate(owner_client, researcher):
    upload(owner_client, tiny_pdf())
    certificate = TrainingCertificate.objects.get()
    response = owner_client.get(reverse("access-certificate-file", args=[certificate.pk]))
    assert response.status_code == 200
    assert response["Content-Type"] == "application/pdf"
    assert response.content == tiny_pdf()


def test_another_researcher_guessing_the_id_gets_404(client, researcher):
    certificate = services.upload_certificate(
        user=researcher, uploaded_file=SimpleUploadedFile("c.pdf", tiny_pdf()),
        completed_on=timezone.localdate(), expires_on=timezone.localdate() + timedelta(days=5), actor=researcher,
    )
    client.force_login(UserFactory())
    for pk in (certificate.pk, certificate.pk + 1, "abc"):
        response = client.get(f"/access/certificates/{pk}/file/")
        assert response.status_code == 404
        assert b"%PDF" not in response.content


def test_reviewer_reads_it_only_after_2fa(client, researcher):
    certificate = services.upload_certificate(
        user=researcher, uploaded_file=SimpleUploadedFile("c.pdf", tiny_pdf()),
        completed_on=timezone.localdate(), expires_on=timezone.localdate() + timedelta(days=5), actor=researcher,
    )
    reviewer = StaffFactory()
    client.force_login(reviewer)
    assert client.get(reverse("access-certificate-file", args=[certificate.pk])).status_code == 404
    login_verified(client, reviewer)
    response = client.get(reverse("access-certificate-file", args=[certificate.pk]))
    assert response.status_code == 200 and response.content == tiny_pdf()
    assert AuditEvent.objects.filter(action="certificate.viewed", actor=reviewer).exists()


def test_anonymous_users_are_sent_to_login(client, researcher):
    assert client.get(reverse("access-certificate-file", args=[1])).status_code == 302


def test_key_rotation_re_encrypts_with_the_new_key(researcher, settings):
    certificate = services.upload_certificate(
        user=researcher, uploaded_file=SimpleUploadedFile("c.pdf", tiny_pdf()),
        completed_on=timezone.localdate(), expires_on=timezone.localdate() + timedelta(days=5), actor=researcher,
    )
    old_key = settings.FILE_ENCRYPTION_KEYS[0]
    new_key = Fernet.generate_key().decode()
    settings.FILE_ENCRYPTION_KEYS = [new_key, old_key]
    assert read_certificate(certificate) == tiny_pdf()  # old files still readable
    assert services.rotate_certificate_keys() == 1
    settings.FILE_ENCRYPTION_KEYS = [new_key]
    certificate.refresh_from_db()
    assert read_certificate(certificate) == tiny_pdf()
    settings.FILE_ENCRYPTION_KEYS = [old_key]
    with pytest.raises(encryption.UnreadableFile):
        read_certificate(certificate)
