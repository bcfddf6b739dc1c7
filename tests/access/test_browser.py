"""The reviewer workflow in a real browser: the researcher logs in and submits a request; the
reviewer logs in, sets up TOTP from the QR page's key, checks PhysioNet and approves."""

import base64
import os
import shutil

import pytest
from django_otp.oath import totp

from access.models import AccessRequest
from tests.access.factories import give_credentials
from tests.factories import DEFAULT_PASSWORD, StaffFactory, UserFactory

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


def log_in(page, base, username):
    page.goto(base + "/accounts/login/")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", DEFAULT_PASSWORD)
    page.click("main button[type=submit]")


@pytest.mark.slow
def test_request_submitted_and_approved_in_the_browser(live_server):
    playwright = pytest.importorskip("playwright.sync_api")
    if not shutil.which(CHROMIUM):
        pytest.skip("chromium is not installed (bash scripts/install_system_deps.sh)")
    researcher = UserFactory(username="browser-researcher")
    give_credentials(researcher)
    researcher.physionet_attestations.update(checked_at=None)
    StaffFactory(username="browser-reviewer")
    base = live_server.url

    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"])
        try:
            page = browser.new_context().new_page()
            log_in(page, base, "browser-researcher")
            page.goto(base + "/access/requests/new/?tier=generate")
            page.fill("textarea[name=justification]", "Fairness study of a pneumothorax classifier.")
            page.click("main button[type=submit]")
            page.click("button[value=submit]")
            assert "Submitted" in page.inner_text("main")
            pk = int(page.url.rstrip("/").rsplit("/", 1)[1])  # no ORM here: Playwright runs an event loop

            staff = browser.new_context().new_page()
            log_in(staff, base, "browser-reviewer")
            # A reviewer lands on the review queue, through setting up two-factor authentication.
            assert "/accounts/2fa/setup/" in staff.url and "next=%2Freview%2F" in staff.url
            secret = base64.b32decode(staff.inner_text("main code"))
            staff.fill("input[name=token]", f"{totp(secret):06d}")
            staff.click("main button[type=submit]")
            assert staff.url.endswith("/review/")
            staff.click(f"a[href='/review/requests/{pk}/']")
            staff.click("text=I checked this username on PhysioNet")
            staff.check("input[name=decision][value=approve]")
            staff.click("text=Record decision")
            assert "Approved; the grant is active." in staff.inner_text("main")

            page.goto(base + "/access/")
            assert "held" in page.inner_text("main")
        finally:
            browser.close()
    request_obj = AccessRequest.objects.get(pk=pk)
    assert request_obj.user == researcher and request_obj.status == "approved"


@pytest.mark.slow
def test_not_allowed_page_and_a_readable_audit_log_in_the_browser(live_server):
    """A researcher on a staff page sees the one "not allowed" page; the audit log fits a
    1280 px window, with one-line timestamps, even with long details."""
    playwright = pytest.importorskip("playwright.sync_api")
    if not shutil.which(CHROMIUM):
        pytest.skip("chromium is not installed (bash scripts/install_system_deps.sh)")
    from cxr_platform.audit.services import record_event

    UserFactory(username="browser-rita")
    StaffFactory(username="browser-auditor")
    record_event("cohort.completed", target=("generation.cohort", 1),
                 details={"prompt": "x" * 400, "path": "/srv/" + "a/" * 120, "counts": {"passed": 10, "flagged": 2}})
    base = live_server.url

    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"])
        try:
            page = browser.new_context(viewport={"width": 1280, "height": 900}).new_page()
            log_in(page, base, "browser-rita")
            for url in ("/review/", "/audit/", "/screening/", "/admin/"):
                response = page.goto(base + url)
                assert response.status == 403, url
                text = page.inner_text("main")
                assert "Not allowed" in text and "staff account" in text, url
                assert page.locator("main a[href='/access/']").count() == 1

            staff = browser.new_context(viewport={"width": 1280, "height": 900}).new_page()
            log_in(staff, base, "browser-auditor")
            secret = base64.b32decode(staff.inner_text("main code"))
            staff.fill("input[name=token]", f"{totp(secret):06d}")
            staff.click("main button[type=submit]")
            staff.goto(base + "/audit/")
            assert staff.evaluate("document.documentElement.scrollWidth") <= 1280
            stamp = staff.locator("table.audit-log td.nowrap").first
            assert stamp.inner_text().endswith(" UTC")
            lines = stamp.evaluate("el => { const r = document.createRange(); r.selectNodeContents(el); "
                                   "return new Set([...r.getClientRects()].map(b => Math.round(b.top))).size; }")
            assert lines == 1
            if os.environ.get("AUDIT_SCREENSHOT"):
                staff.screenshot(path=os.environ["AUDIT_SCREENSHOT"], full_page=True)
            assert "system" in staff.locator("table.audit-log td.actor").first.inner_text() or \
                "system" in staff.inner_text("table.audit-log")
            assert "counts:" in staff.inner_text("table.audit-log")
            staff.fill("input[name=actor]", "system")
            staff.click("form.audit-filters button[type=submit]")
            assert "cohort.completed" in staff.inner_text("table.audit-log")
            assert "auth.login" not in staff.inner_text("table.audit-log")
        finally:
            browser.close()
