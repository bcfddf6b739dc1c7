"""The audit log's filters together, the CSV of the filtered view, and the download itself on the
record (issue 18). Single filters and formula neutralising are in test_audit_page.py."""

import csv
import io
import shutil
from datetime import timedelta
from urllib.parse import parse_qs, urlparse

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from cxr_platform.audit.models import AuditEvent
from cxr_platform.audit.services import record_event
from tests.access.factories import login_verified
from tests.factories import StaffFactory, UserFactory

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
MINUTE = "%Y-%m-%dT%H:%M"


def csv_rows(response):
    return list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))


def seed():
    alice, bob = UserFactory(username="alice"), UserFactory(username="bob")
    return {
        "alice_cohort": record_event("cohort.submitted", actor=alice, target=("generation.cohort", 42)),
        "bob_other_cohort": record_event("cohort.submitted", actor=bob, target=("generation.cohort", 41)),
        "bob_cohort": record_event("cohort.submitted", actor=bob, target=("generation.cohort", 42)),
        "bob_cancel": record_event("cohort.cancelled", actor=bob, target=("generation.cohort", 42)),
        "bob_login": record_event("auth.login", actor=bob, target=bob),
    }


def all_four_filters():
    now = timezone.now()
    return {
        "actor": "bob", "action": "cohort.submitted", "target_type": "generation.cohort", "target_id": "42",
        "since": (now - timedelta(minutes=5)).strftime(MINUTE), "until": (now + timedelta(minutes=5)).strftime(MINUTE),
    }


@pytest.fixture
def auditor(db):
    return StaffFactory(username="auditor")


@pytest.fixture
def staff_client(client, auditor):
    return login_verified(client, auditor)


@pytest.mark.django_db
def test_actor_event_type_object_and_dates_narrow_together(staff_client):
    events = seed()
    response = staff_client.get(reverse("audit-log"), all_four_filters())
    assert [e.sequence for e in response.context["page"]] == [events["bob_cohort"].sequence]


@pytest.mark.django_db
def test_the_csv_holds_exactly_the_filtered_view(staff_client):
    seed()
    filters = {**all_four_filters(), "action": "cohort."}
    shown = [e.sequence for e in staff_client.get(reverse("audit-log"), filters).context["page"]]
    rows = csv_rows(staff_client.get(reverse("audit-log-csv"), filters))
    assert [int(r["sequence"]) for r in rows] == shown and len(shown) == 2


@pytest.mark.django_db
def test_the_download_link_carries_the_filters_shown(staff_client):
    seed()
    filters = all_four_filters()
    body = staff_client.get(reverse("audit-log"), filters).content.decode()
    href = body.split('href="/audit/export.csv?', 1)[1].split('"', 1)[0].replace("&amp;", "&")
    assert {k: v[0] for k, v in parse_qs(href).items()} == filters


@pytest.mark.django_db
def test_downloading_the_csv_is_itself_an_audit_event(staff_client, auditor):
    seed()
    filters = {"actor": "bob", "action": "cohort."}
    csv_rows(staff_client.get(reverse("audit-log-csv"), filters))
    event = AuditEvent.objects.order_by("-sequence").first()
    assert (event.action, event.actor_id, event.actor_username) == ("audit.exported", auditor.pk, "auditor")
    assert event.details == {"filters": filters, "format": "csv"}


@pytest.mark.django_db
def test_a_refused_download_is_not_recorded_as_one(staff_client):
    seed()
    before = AuditEvent.objects.count()
    assert staff_client.get(reverse("audit-log-csv"), {"since": "yesterday-ish"}).status_code == 400
    assert AuditEvent.objects.count() == before


@pytest.mark.django_db
def test_viewing_the_page_is_not_an_export(staff_client):
    seed()
    staff_client.get(reverse("audit-log"), {"actor": "bob"})
    assert not AuditEvent.objects.filter(action="audit.exported").exists()


@pytest.mark.django_db
def test_the_csv_neutralises_formulas_hidden_in_any_column(staff_client):
    record_event("access_request.noted", actor=UserFactory(username="@evil"), target=("access.request", "-1"),
                 details="=cmd|' /C calc'!A0")
    row = csv_rows(staff_client.get(reverse("audit-log-csv"), {"action": "access_request."}))[0]
    assert (row["actor"], row["target_id"], row["details"]) == ("'@evil", "'-1", "'=cmd|' /C calc'!A0")


@pytest.mark.slow
def test_filters_and_download_in_the_browser(live_server, auditor):
    """The form's fields filter the table, and its download link gives the CSV of what is shown."""
    playwright = pytest.importorskip("playwright.sync_api")
    if not shutil.which(CHROMIUM):
        pytest.skip("chromium is not installed (bash scripts/install_system_deps.sh)")
    events = seed()
    session = login_verified(Client(), auditor).cookies["sessionid"].value
    host = urlparse(live_server.url).hostname
    filters = all_four_filters()

    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True,
                                    args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"])
        try:
            context = browser.new_context(viewport={"width": 1280, "height": 900}, accept_downloads=True)
            context.add_cookies([{"name": "sessionid", "value": session, "domain": host, "path": "/"}])
            page = context.new_page()
            page.goto(live_server.url + "/audit/")
            for name in ("actor", "action", "target_type", "target_id", "since", "until"):
                page.fill(f"form.audit-filters [name={name}]", filters[name])
            page.click("form.audit-filters button[type=submit]")
            page.wait_for_url("**/audit/?*")
            shown = [int(t) for t in page.locator("table.audit-log tbody tr td:first-child").all_inner_texts()]
            assert shown == [events["bob_cohort"].sequence]
            with page.expect_download() as download:
                page.click("text=Download CSV")
            with open(download.value.path(), newline="") as handle:
                rows = list(csv.DictReader(handle))
            assert [(int(r["sequence"]), r["actor"], r["target_id"]) for r in rows] == [(shown[0], "bob", "42")]
        finally:
            browser.close()
    assert AuditEvent.objects.filter(action="audit.exported", actor_username="auditor").count() == 1
