"""Personal API tokens: shown once, stored hashed, revocable, last use recorded."""

import hashlib
import re

import pytest
from django.db import connection
from django.urls import reverse

from cxr_platform.api.models import ApiToken
from cxr_platform.api.services import create_api_token, revoke_api_token
from cxr_platform.audit.models import AuditEvent
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def researcher():
    return UserFactory(username="researcher")


def whoami(client, raw):
    return client.get(reverse("api-whoami"), HTTP_AUTHORIZATION=f"Bearer {raw}")


def test_new_token_is_shown_once(client, researcher):
    client.force_login(researcher)
    response = client.post(reverse("api-tokens"), {"name": "lab workstation"})
    assert response.status_code == 200
    raw = re.search(r'<pre id="new-token">(cxr_[^<]+)</pre>', response.content.decode()).group(1)
    assert raw not in client.get(reverse("api-tokens")).content.decode()
    assert AuditEvent.objects.filter(action="api_token.created", actor_username="researcher").exists()


def test_token_is_stored_only_as_a_hash(researcher):
    token, raw = create_api_token(user=researcher, name="laptop")
    assert token.token_hash == hashlib.sha256(raw.encode()).hexdigest()
    with connection.cursor() as cursor:
        cursor.execute("SELECT * FROM api_apitoken")
        stored = " ".join(str(value) for row in cursor.fetchall() for value in row)
    assert raw not in stored


def test_bearer_token_authenticates(client, researcher):
    _, raw = create_api_token(user=researcher, name="laptop")
    response = whoami(client, raw)
    assert response.status_code == 200
    assert response.json() == {"username": "researcher", "authenticated_with": "token", "token_prefix": raw[:12]}


def test_unknown_token_is_refused(client, researcher):
    create_api_token(user=researcher, name="laptop")
    response = whoami(client, "cxr_not-a-real-token")
    assert response.status_code == 401
    assert response.json()["detail"] == "Invalid or revoked API token."


def test_malformed_authorization_header_is_refused_plainly(client):
    response = client.get(reverse("api-whoami"), HTTP_AUTHORIZATION="Bearer")
    assert response.status_code == 401
    assert "expected 'Bearer <token>'" in response.json()["detail"]


def test_revoked_token_is_refused(client, researcher):
    token, raw = create_api_token(user=researcher, name="laptop")
    revoke_api_token(token=token, actor=researcher)
    assert whoami(client, raw).status_code == 401


def test_token_of_a_deactivated_account_is_refused(client, researcher):
    _, raw = create_api_token(user=researcher, name="laptop")
    researcher.is_active = False
    researcher.save(update_fields=["is_active"])
    assert whoami(client, raw).status_code == 401


def test_last_use_is_recorded(client, researcher):
    token, raw = create_api_token(user=researcher, name="laptop")
    assert token.last_used_at is None
    whoami(client, raw)
    token.refresh_from_db()
    assert token.last_used_at is not None


def test_user_revokes_own_token_from_settings(client, researcher):
    token, _ = create_api_token(user=researcher, name="laptop")
    client.force_login(researcher)
    response = client.post(reverse("api-token-revoke", args=[token.pk]))
    assert response.status_code == 302
    token.refresh_from_db()
    assert token.revoked_at is not None
    assert AuditEvent.objects.filter(action="api_token.revoked", target_id=str(token.pk)).exists()


def test_users_cannot_revoke_others_tokens(client, researcher):
    token, raw = create_api_token(user=researcher, name="laptop")
    client.force_login(UserFactory(username="mallory"))
    response = client.post(reverse("api-token-revoke", args=[token.pk]))
    assert response.status_code == 404
    token.refresh_from_db()
    assert token.revoked_at is None
    assert whoami(client, raw).status_code == 200


def test_users_see_only_their_own_tokens(client, researcher):
    create_api_token(user=researcher, name="researcher's laptop")
    client.force_login(UserFactory(username="mallory"))
    page = client.get(reverse("api-tokens")).content.decode()
    assert "researcher&#x27;s laptop" not in page and "researcher's laptop" not in page
    assert "No tokens yet." in page


def test_revoking_needs_post(client, researcher):
    token, _ = create_api_token(user=researcher, name="laptop")
    client.force_login(researcher)
    assert client.get(reverse("api-token-revoke", args=[token.pk])).status_code == 405
    assert ApiToken.objects.get(pk=token.pk).revoked_at is None
