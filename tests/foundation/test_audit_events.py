"""Security-relevant actions leave audit events with the client's IP and user agent."""

import pytest
from django.contrib.auth.models import Group
from django.urls import reverse

from cxr_platform.audit.models import AuditEvent
from tests.factories import DEFAULT_PASSWORD, UserFactory

pytestmark = pytest.mark.django_db

CLIENT = {"REMOTE_ADDR": "203.0.113.7", "HTTP_USER_AGENT": "pytest-browser/1.0"}


def only_event(action):
    events = list(AuditEvent.objects.filter(action=action))
    assert len(events) == 1, f"expected one {action} event, found {len(events)}"
    return events[0]


def assert_from_client(event):
    assert event.ip_address == CLIENT["REMOTE_ADDR"]
    assert event.user_agent == CLIENT["HTTP_USER_AGENT"]


def test_login_is_recorded(client):
    user = UserFactory()
    response = client.post(reverse("login"), {"username": user.username, "password": DEFAULT_PASSWORD}, **CLIENT)
    assert response.status_code == 302
    event = only_event("auth.login")
    assert event.actor == user
    assert (event.target_type, event.target_id) == ("access.user", str(user.pk))
    assert_from_client(event)


def test_failed_login_is_recorded_without_the_password(client):
    user = UserFactory()
    response = client.post(reverse("login"), {"username": user.username, "password": "wrong-password-123"}, **CLIENT)
    assert response.status_code == 200
    event = only_event("auth.login_failed")
    assert event.actor is None
    assert event.details == {"username": user.username}
    assert "wrong-password-123" not in str(event.details)
    assert_from_client(event)


def test_logout_is_recorded(client):
    user = UserFactory()
    client.force_login(user)
    response = client.post(reverse("logout"), **CLIENT)
    assert response.status_code == 302
    event = only_event("auth.logout")
    assert event.actor == user
    assert_from_client(event)


def test_password_change_is_recorded(client):
    user = UserFactory()
    client.force_login(user)
    new_password = "a-new-long-passphrase-42"
    response = client.post(
        reverse("password_change"),
        {"old_password": DEFAULT_PASSWORD, "new_password1": new_password, "new_password2": new_password},
        **CLIENT,
    )
    assert response.status_code == 302
    event = only_event("auth.password_changed")
    assert event.actor == user
    assert_from_client(event)


@pytest.fixture
def admin_client_with_ua(client, settings):
    settings.REQUIRE_STAFF_2FA = False
    client.force_login(UserFactory(username="site-admin", is_staff=True, is_superuser=True))
    return client


def test_admin_change_is_recorded(admin_client_with_ua):
    response = admin_client_with_ua.post(reverse("admin:auth_group_add"), {"name": "auditors"}, **CLIENT)
    assert response.status_code == 302
    event = only_event("admin.add")
    group = Group.objects.get(name="auditors")
    assert event.actor_username == "site-admin"
    assert (event.target_type, event.target_id) == ("group", str(group.pk))
    assert event.details["object"] == "auditors"
    assert_from_client(event)


def test_admin_bulk_deletion_records_each_object(admin_client_with_ua):
    groups = [Group.objects.create(name=name) for name in ("first", "second")]
    response = admin_client_with_ua.post(
        reverse("admin:auth_group_changelist"),
        {"action": "delete_selected", "_selected_action": [g.pk for g in groups], "post": "yes"},
        **CLIENT,
    )
    assert response.status_code == 302
    assert not Group.objects.exists()
    deleted = AuditEvent.objects.filter(action="admin.delete").order_by("target_id")
    assert [e.details["object"] for e in deleted] == ["first", "second"]
    assert all(e.ip_address == CLIENT["REMOTE_ADDR"] for e in deleted)
