"""Reviewer-API tokens: issued only to staff from a 2FA-verified session, short-lived, audited."""

import re
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone
from django_otp.plugins.otp_totp.models import TOTPDevice
from rest_framework.test import APIClient

from access.models import AccessRequest
from cxr_platform.api.models import ApiToken
from cxr_platform.api.services import create_api_token, issue_review_token
from cxr_platform.audit.models import AuditEvent
from tests.access.factories import login_verified, make_request

pytestmark = pytest.mark.django_db
QUEUE = "/api/v1/review/requests"
TOKENS = "/api/v1/review/tokens"


def bearer(secret) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
    return client


def test_verified_staff_session_gets_a_short_lived_review_token(client, reviewer, settings):
    settings.REVIEWER_TOKEN_TTL_SECONDS = 900
    login_verified(client, reviewer)
    before = timezone.now()
    response = client.post(TOKENS, {"name": "review script"}, content_type="application/json")
    assert response.status_code == 201
    data = response.json()
    token = ApiToken.objects.get(prefix=data["prefix"])
    assert data["token"].startswith("cxr_") and data["scope"] == "review"
    assert token.scope == ApiToken.Scope.REVIEW and token.user == reviewer
    assert before + timedelta(seconds=890) < token.expires_at <= timezone.now() + timedelta(seconds=900)


def test_issuing_a_review_token_is_audited_with_its_scope_and_expiry(client, reviewer):
    login_verified(client, reviewer)
    prefix = client.post(TOKENS, {}, content_type="application/json").json()["prefix"]
    event = AuditEvent.objects.get(action="api_token.created", actor_username=reviewer.username)
    assert event.details["prefix"] == prefix and event.details["scope"] == "review" and event.details["expires_at"]


def test_staff_session_without_2fa_gets_no_review_token(client, reviewer):
    TOTPDevice.objects.create(user=reviewer, name="phone", confirmed=True)
    client.force_login(reviewer)
    response = client.post(TOKENS, {}, content_type="application/json")
    assert response.status_code == 403
    assert "two-factor" in response.json()["detail"]
    assert not ApiToken.objects.filter(user=reviewer).exists()


def test_researcher_session_gets_no_review_token(client, researcher):
    login_verified(client, researcher)
    response = client.post(TOKENS, {}, content_type="application/json")
    assert response.status_code == 403 and "staff" in response.json()["detail"]
    assert not ApiToken.objects.filter(user=researcher).exists()


def test_a_token_cannot_mint_a_review_token(reviewer):
    _, secret = issue_review_token(user=reviewer, name="first", two_factor_verified=True)
    response = bearer(secret).post(TOKENS, {}, format="json")
    assert response.status_code == 403
    assert ApiToken.objects.filter(user=reviewer).count() == 1


def test_without_required_2fa_setting_staff_session_suffices(client, reviewer, settings):
    settings.REQUIRE_STAFF_2FA = False  # development mode: the same relaxation as the review pages
    client.force_login(reviewer)
    assert client.post(TOKENS, {}, content_type="application/json").status_code == 201


def test_plain_researcher_token_of_staff_is_refused_by_the_reviewer_api(reviewer):
    _, secret = create_api_token(user=reviewer, name="everyday")
    response = bearer(secret).get(QUEUE)
    assert response.status_code == 403
    assert "no review scope" in response.json()["detail"]


def test_expired_review_token_is_refused_with_403_and_its_expiry_audited_once(reviewer):
    token, secret = issue_review_token(user=reviewer, name="old", two_factor_verified=True)
    ApiToken.objects.filter(pk=token.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    client = bearer(secret)
    first, second = client.get(QUEUE), client.get(QUEUE)
    assert first.status_code == second.status_code == 403
    assert "expired" in first.json()["detail"] and "two-factor" in first.json()["detail"]
    events = AuditEvent.objects.filter(action="api_token.expired", target_id=str(token.pk))
    assert events.count() == 1 and events.get().actor_username == reviewer.username


def test_expired_review_token_opens_no_other_endpoint_either(reviewer):
    token, secret = issue_review_token(user=reviewer, name="old", two_factor_verified=True)
    ApiToken.objects.filter(pk=token.pk).update(expires_at=timezone.now())
    assert bearer(secret).get("/api/v1/me").status_code == 403


def test_review_token_of_someone_no_longer_staff_is_refused(reviewer, credentialed):
    pending = make_request(credentialed, "generate", status=AccessRequest.Status.SUBMITTED)
    _, secret = issue_review_token(user=reviewer, name="t", two_factor_verified=True)
    reviewer.is_staff = False
    reviewer.save(update_fields=["is_staff"])
    response = bearer(secret).post(f"{QUEUE}/{pending.pk}/approve", {}, format="json")
    assert response.status_code == 403 and "staff" in response.json()["detail"]
    pending.refresh_from_db()
    assert pending.status == AccessRequest.Status.SUBMITTED


def test_tokens_page_issues_a_review_token_to_verified_staff(client, reviewer):
    login_verified(client, reviewer)
    response = client.post(reverse("api-token-review-create"), {"name": "review script"})
    assert response.status_code == 200
    secret = re.search(r'<pre id="new-token">(cxr_[^<]+)</pre>', response.content.decode()).group(1)
    assert bearer(secret).get(QUEUE).status_code == 200


def test_tokens_page_refuses_a_review_token_without_2fa(client, reviewer):
    client.force_login(reviewer)
    response = client.post(reverse("api-token-review-create"), {"name": "review script"})
    assert response.status_code == 403
    assert "two-factor" in response.content.decode()
    assert not ApiToken.objects.filter(user=reviewer).exists()


def test_tokens_page_shows_an_expired_review_token_as_expired(client, reviewer):
    token, _ = issue_review_token(user=reviewer, name="review script", two_factor_verified=True)
    ApiToken.objects.filter(pk=token.pk).update(expires_at=timezone.now() - timedelta(minutes=1))
    client.force_login(reviewer)
    row = re.search(r"<tr><td>review script</td>.*?</tr>", client.get(reverse("api-tokens")).content.decode(), re.S)
    assert "Reviewer API" in row.group(0) and "expired" in row.group(0) and "Revoke" not in row.group(0)
