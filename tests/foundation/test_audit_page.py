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
        assert response.status_code == 403
        assert "cohort.submitted" not in response.content.decode()


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


# --- Readable (issue 18): one-line UTC times, key: value details, "system" for worker events ---


def test_worker_events_show_system_as_the_actor_and_requests_without_a_user_anonymous(staff_client):
    worker = record_event("cohort.completed", target=("generation.cohort", 7), details={"images": 12})  # no request
    web = record_event("auth.login_failed", details={"username": "mallory"},
                       request=RequestFactory().get("/", REMOTE_ADDR="198.51.100.7"))
    assert (worker.actor_label, web.actor_label) == ("system", "anonymous")
    body = staff_client.get(reverse("audit-log"), {"action": "cohort.completed"}).content.decode()
    assert '<span class="muted">system</span>' in body
    assert "anonymous" not in body.split("<tbody>")[1]
    assert shown_sequences(staff_client.get(reverse("audit-log"), {"actor": "system"})) == [worker.sequence]
    assert shown_sequences(staff_client.get(reverse("audit-log"), {"actor": "anonymous"})) == [web.sequence]
    rows = csv_rows(staff_client.get(reverse("audit-log-csv"), {"actor": "system"}))
    assert [(r["actor"], r["action"]) for r in rows] == [("system", "cohort.completed")]


def test_details_are_key_value_pairs_and_times_one_utc_line(staff_client):
    event = record_event("export.created", actor=UserFactory(username="carol"), target=("exports.export", 3),
                         details={"cohort": 42, "transfer_syntax": "JPEG-LS", "checked": True, "counts": {"a": 1}})
    body = staff_client.get(reverse("audit-log"), {"action": "export."}).content.decode()
    assert "<dt>cohort:</dt><dd>42</dd>" in body
    assert "<dt>transfer_syntax:</dt><dd>JPEG-LS</dd>" in body
    assert "<dt>checked:</dt><dd>yes</dd>" in body
    assert "<dt>counts:</dt><dd>{&quot;a&quot;: 1}</dd>" in body
    assert "{&quot;checked&quot;" not in body  # not the raw JSON
    stamp = event.occurred_at.astimezone(__import__("datetime").timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
    assert f'<td class="nowrap">{stamp}</td>' in body
    assert 'class="dense audit-log"' in body and "<colgroup>" in body  # the fixed layout that wraps


def test_times_stay_utc_whatever_the_time_zone(staff_client, settings):
    settings.TIME_ZONE = "America/New_York"
    event = record_event("auth.login", actor=UserFactory(username="dave"))
    stamp = event.occurred_at.astimezone(__import__("datetime").timezone.utc)
    body = staff_client.get(reverse("audit-log")).content.decode()
    assert stamp.strftime("%Y-%m-%d %H:%M:%S UTC") in body
    since = (stamp - timedelta(minutes=1)).strftime("%Y-%m-%dT%H:%M")
    until = (stamp + timedelta(minutes=1)).strftime("%Y-%m-%dT%H:%M")
    response = staff_client.get(reverse("audit-log"), {"since": since, "until": until, "actor": "dave"})
    assert shown_sequences(response) == [event.sequence]


def test_detail_pairs_for_odd_details():
    from cxr_platform.audit.views import detail_pairs

    assert detail_pairs({}) == []
    assert detail_pairs({"b": None, "a": [1, 2]}) == [("a", "[1, 2]"), ("b", "—")]
    assert detail_pairs(["x"]) == [("", '["x"]')]


def test_the_filters_offer_the_known_values(staff_client, events):
    body = staff_client.get(reverse("audit-log")).content.decode()
    assert '<option value="cohort.submitted">' in body and '<option value="generation.cohort">' in body
    assert '<option value="system">' in body and '<option value="bob">' in body
