"""The staff page of the audit log: filters and CSV export."""

import csv
import io
from datetime import timedelta

import pytest
from django.test import RequestFactory
from django.urls import reverse
from django.utils import timezone

from cxr_platform.audit.models import AuditEvent
from cxr_platform.audit.services import record_event
from tests.factories import StaffFactory, UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff_client(client):
    from tests.access.factories import login_verified  # the audit log needs staff 2FA (issue 3)

    return login_verified(client, StaffFactory(username="auditor"))


@pytest.fixture
def events():
    alice, bob = UserFactory(username="alice"), UserFactory(username="bob")
    return {
        "alice_login": record_event("auth.login", actor=alice, target=alice),
        "bob_login": record_event("auth.login", actor=bob, target=bob),
        "bob_cohort": record_event("cohort.submitted", actor=bob, target=("generation.cohort", 42)),
    }


def shown_sequences(response):
    return sorted(e.sequence for e in response.context["page"])


def csv_rows(response):
    return list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))


def test_anonymous_visitors_cannot_see_the_log(client, events):
    response = client.get(reverse("audit-log"))
    assert response.status_code == 302
    assert "cohort.submitted" not in response.content.decode()


def test_researchers_cannot_see_the_log(client, events):
    client.force_login(UserFactory())
    for url in (reverse("audit-log"), reverse("audit-log-csv")):
        response = client.get(url)
        assert response.status_code == 302
        assert "/login/" in response["Location"]


def test_staff_see_every_event_newest_first(staff_client, events):
    response = staff_client.get(reverse("audit-log"))
    assert response.status_code == 200
    shown = [e.sequence for e in response.context["page"]]
    assert shown == sorted(AuditEvent.objects.values_list("sequence", flat=True), reverse=True)
    assert shown[0] == events["bob_cohort"].sequence
    assert "cohort.submitted" in response.content.decode()


def test_filter_by_actor(staff_client, events):
    response = staff_client.get(reverse("audit-log"), {"actor": "BOB"})
    assert shown_sequences(response) == [events["bob_login"].sequence, events["bob_cohort"].sequence]


def test_filter_by_action_prefix(staff_client, events):
    response = staff_client.get(reverse("audit-log"), {"action": "cohort."})
    assert shown_sequences(response) == [events["bob_cohort"].sequence]


def test_filter_by_target(staff_client, events):
    response = staff_client.get(reverse("audit-log"), {"target_type": "generation.cohort", "target_id": "42"})
    assert shown_sequences(response) == [events["bob_cohort"].sequence]


def test_filter_by_time_range(staff_client, events):
    now = timezone.now()
    since = (now - timedelta(minutes=5)).strftime("%Y-%m-%dT%H:%M")
    until = (now + timedelta(minutes=5)).strftime("%Y-%m-%dT%H:%M")
    response = staff_client.get(reverse("audit-log"), {"since": since, "until": until})
    assert shown_sequences(response) == sorted(AuditEvent.objects.values_list("sequence", flat=True))
    later = (now + timedelta(minutes=10)).strftime("%Y-%m-%dT%H:%M")
    response = staff_client.get(reverse("audit-log"), {"since": later})
    assert shown_sequences(response) == []


def test_invalid_filter_shows_an_error_not_everything(staff_client, events):
    response = staff_client.get(reverse("audit-log"), {"since": "last tuesday"})
    assert response.status_code == 200
    assert shown_sequences(response) == []
    assert "Enter a valid date/time." in response.content.decode()


def test_csv_export_follows_the_filters(staff_client, events):
    response = staff_client.get(reverse("audit-log-csv"), {"actor": "bob"})
    assert response.status_code == 200
    assert response["Content-Type"] == "text/csv"
    assert "attachment" in response["Content-Disposition"]
    rows = csv_rows(response)
    assert [(int(r["sequence"]), r["actor"], r["action"]) for r in rows] == [
        (events["bob_cohort"].sequence, "bob", "cohort.submitted"),
        (events["bob_login"].sequence, "bob", "auth.login"),
    ]
    assert rows[0]["mac"] == events["bob_cohort"].mac


def test_csv_export_with_invalid_filters_is_refused(staff_client, events):
    response = staff_client.get(reverse("audit-log-csv"), {"until": "soon"})
    assert response.status_code == 400
    assert "Invalid filters: until" in response.content.decode()


def test_csv_export_neutralises_spreadsheet_formulas(staff_client):
    request = RequestFactory().get("/", HTTP_USER_AGENT='=HYPERLINK("http://evil.example","click")', REMOTE_ADDR="198.51.100.1")
    record_event("auth.login_failed", target=("user", "+1+1"), details={"username": "@SUM(A1)"}, request=request,
                 actor_username="-2+3")
    row = csv_rows(staff_client.get(reverse("audit-log-csv"), {"action": "auth.login_failed"}))[0]
    assert row["user_agent"] == "'" + '=HYPERLINK("http://evil.example","click")'
    assert row["target_id"] == "'+1+1"
    assert row["actor"] == "'-2+3"
    assert row["ip_address"] == "198.51.100.1"
    assert AuditEvent.objects.get(action="auth.login_failed").user_agent.startswith("=")  # the log itself keeps what was sent
