"""Registration with e-mail verification, password reset, and lockout after failed logins."""

import re

import pytest
from django.core import mail
from django.urls import reverse

from access.models import User
from cxr_platform.audit.models import AuditEvent
from tests.factories import DEFAULT_PASSWORD, UserFactory

pytestmark = pytest.mark.django_db


def link_in(message) -> str:
    return re.search(r"https?://[^/\s]+(/\S+)", message.body).group(1)


def register(client, **overrides):
    data = {"username": "newbie", "email": "Newbie@Example.org", "password1": "a-long-passphrase-9", "password2": "a-long-passphrase-9"}
    data.update(overrides)
    return client.post(reverse("register"), data)


def test_registration_sends_a_link_that_verifies_the_address(client, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        response = register(client)
    assert response.status_code == 302
    user = User.objects.get(username="newbie")
    assert user.email == "newbie@example.org" and not user.email_verified
    assert len(mail.outbox) == 1 and mail.outbox[0].to == ["newbie@example.org"]
    page = client.get(link_in(mail.outbox[0]))
    assert page.status_code == 200 and "confirmed" in page.content.decode()
    user.refresh_from_db()
    assert user.email_verified
    assert AuditEvent.objects.filter(action="auth.email_verified", actor=user).exists()


def test_a_tampered_verification_link_is_refused(client):
    response = client.get(reverse("verify-email", args=["not-a-token"]))
    assert response.status_code == 400 and "not valid" in response.content.decode()


def test_registration_refuses_a_taken_address_and_weak_passwords(client):
    UserFactory(username="old", email="taken@example.org")
    response = register(client, email="TAKEN@example.org")
    assert response.status_code == 200 and "An account with this e-mail address exists" in response.content.decode()
    response = register(client, password1="12345", password2="12345")
    assert response.status_code == 200 and not User.objects.filter(username="newbie").exists()


def test_password_reset_mails_a_working_link(client):
    user = UserFactory(email="forgetful@example.org")
    response = client.post(reverse("password_reset"), {"email": "forgetful@example.org"})
    assert response.status_code == 302 and len(mail.outbox) == 1
    confirm = client.get(link_in(mail.outbox[0]), follow=True)
    assert "Choose a new password" in confirm.content.decode()
    done = client.post(confirm.redirect_chain[-1][0], {"new_password1": "another-long-pass-7", "new_password2": "another-long-pass-7"})
    assert done.status_code == 302
    user.refresh_from_db()
    assert user.check_password("another-long-pass-7")


def test_repeated_failed_logins_lock_the_account(client, settings):
    user = UserFactory(username="target")
    for _ in range(settings.AXES_FAILURE_LIMIT):
        client.post(reverse("login"), {"username": "target", "password": "wrong"}, REMOTE_ADDR="198.51.100.7")
    locked = client.post(reverse("login"), {"username": "target", "password": DEFAULT_PASSWORD}, REMOTE_ADDR="198.51.100.7")
    assert locked.status_code == 429
    assert "Too many failed logins" in locked.content.decode()
    assert "_auth_user_id" not in client.session
    assert user.is_active


def test_the_login_page_links_registration_and_reset(client):
    page = client.get(reverse("login")).content.decode()
    assert reverse("register") in page and reverse("password_reset") in page
