"""Agreements: typed-name signatures record version, SHA-256 of the exact text, time and IP."""

import pytest
from django.urls import reverse

from access import services
from access.credentials import agreements_to_sign
from access.models import Agreement, AgreementSignature, AgreementVersion
from tests.access.factories import give_profile
from tests.factories import StaffFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def signer_client(client, researcher):
    give_profile(researcher, full_name="Rita Levi")
    client.force_login(researcher)
    return client


def dua():
    return Agreement.objects.get(slug="mimic-cxr-dua").current_version


def test_the_page_shows_the_text_and_its_hash(signer_client):
    page = signer_client.get(reverse("access-agreement-sign", args=["mimic-cxr-dua"])).content.decode()
    assert "I will not attempt to identify any individual" in page
    assert dua().sha256 in page


def test_signing_records_version_hash_time_and_ip(signer_client, researcher):
    version = dua()
    response = signer_client.post(
        reverse("access-agreement-sign", args=["mimic-cxr-dua"]),
        {"typed_name": "  rita   levi ", "text_sha256": version.sha256}, REMOTE_ADDR="203.0.113.9",
    )
    assert response.status_code == 302
    signature = AgreementSignature.objects.get(user=researcher)
    assert signature.version == version and signature.text_sha256 == AgreementVersion.hash_text(version.text)
    assert signature.ip_address == "203.0.113.9" and signature.signed_at is not None
    assert version not in agreements_to_sign(researcher)


def test_a_different_name_is_refused(signer_client, researcher):
    response = signer_client.post(
        reverse("access-agreement-sign", args=["mimic-cxr-dua"]), {"typed_name": "Someone Else", "text_sha256": dua().sha256}
    )
    assert response.status_code == 200
    assert "Type your full name exactly" in response.content.decode()
    assert not AgreementSignature.objects.filter(user=researcher).exists()


def test_signing_a_text_other_than_the_current_one_is_refused(signer_client, researcher):
    response = signer_client.post(
        reverse("access-agreement-sign", args=["mimic-cxr-dua"]), {"typed_name": "Rita Levi", "text_sha256": "0" * 64}
    )
    assert "changed while you were reading" in response.content.decode()
    assert not AgreementSignature.objects.filter(user=researcher).exists()


def test_a_new_version_must_be_signed_again(signer_client, researcher):
    old = dua()
    services.sign_agreement(user=researcher, version=old, typed_name="Rita Levi", shown_sha256=old.sha256)
    new = services.publish_agreement_version(agreement=old.agreement, text=old.text + "7. Added.\n", actor=StaffFactory())
    assert new.number == old.number + 1
    assert new in agreements_to_sign(researcher)
    with pytest.raises(Exception, match="newer version"):
        services.sign_agreement(user=researcher, version=old, typed_name="Rita Levi", shown_sha256=old.sha256)


def test_unknown_agreement_is_404(signer_client):
    assert signer_client.get("/access/agreements/no-such-thing/").status_code == 404


def test_admin_publishes_a_new_version_through_the_service(client):
    from cxr_platform.audit.models import AuditEvent
    from tests.access.factories import login_verified

    admin_user = StaffFactory(is_superuser=True)
    login_verified(client, admin_user)
    agreement = Agreement.objects.get(slug="platform-terms")
    response = client.post("/admin/access/agreementversion/add/", {"agreement": agreement.pk, "text": "New terms."})
    assert response.status_code == 302
    current = agreement.current_version
    assert current.number == 2 and current.text == "New terms." and current.published_by == admin_user
    assert current.sha256 == AgreementVersion.hash_text("New terms.")
    assert AuditEvent.objects.filter(action="agreement.published", actor=admin_user).exists()
    # Published texts are read-only in the admin.
    client.post(f"/admin/access/agreementversion/{current.pk}/change/", {"text": "Tampered"})
    current.refresh_from_db()
    assert current.text == "New terms."
