"""The reviewer workflow in a real browser: the researcher logs in and submits a request; the
reviewer logs in, sets up TOTP from the QR page's key, checks PhysioNet and approves."""

import base64
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
            staff.goto(base + "/review/")
            assert "/accounts/2fa/setup/" in staff.url
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
