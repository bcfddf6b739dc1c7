"""In a real browser with a real Celery worker: the Export button queues a build, the row's
progress updates live, and the download button delivers a package that verifies."""

import shutil

import pytest
from django.conf import settings as django_settings
from django.test import Client

from exports import signing
from exports.models import Export
from tests.access.factories import grant_tier
from tests.factories import UserFactory

from .factories import array_pngs, make_cohort

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
WATCH = """
document.addEventListener("DOMContentLoaded", () => {
  document.querySelectorAll(".export-status").forEach((badge) => {
    window.reportStatus(badge.textContent.trim());
    new MutationObserver(() => window.reportStatus(badge.textContent.trim()))
      .observe(badge, {childList: true, characterData: true, subtree: true});
  });
});
"""


def browser_session(user) -> dict:
    client = Client()
    client.force_login(user)
    return {"name": django_settings.SESSION_COOKIE_NAME, "value": client.cookies[django_settings.SESSION_COOKIE_NAME].value}


@pytest.mark.slow
def test_export_in_the_browser_with_live_progress_and_download(live_server, celery_worker_process,
                                                                 demo_model_version, tmp_path):
    playwright = pytest.importorskip("playwright.sync_api")
    if not shutil.which(CHROMIUM):
        pytest.skip("chromium is not installed (bash scripts/install_system_deps.sh)")
    user = UserFactory()
    grant_tier(user, "export")
    cohort = make_cohort(user, demo_model_version, pngs=array_pngs(40, size=64))
    cookie = {**browser_session(user), "url": live_server.url}  # the ORM is off limits inside playwright's loop

    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True,
                                    args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"])
        try:
            context = browser.new_context(accept_downloads=True)
            context.add_cookies([cookie])
            shown = []
            context.expose_function("reportStatus", lambda value: shown.append(value))
            context.add_init_script(WATCH)
            page = context.new_page()
            page.goto(f"{live_server.url}/exports/cohorts/{cohort.pk}/")
            page.check("input[name=include_png]")
            page.click("#export-button")
            # The worker starts only once the page shows the queued export, so the build can't finish
            # before the browser has seen it waiting (a warm worker builds 40 small images in well under a second).
            page.locator(".export-status", has_text="Queued").wait_for(timeout=30_000)
            celery_worker_process(EXPORT_WORKERS=1)
            # The row polls progress.json and reloads when the export is ready.
            page.locator("button.export-download").wait_for(timeout=120_000)
            assert "Queued" in shown or "Building" in shown, shown
            assert shown[-1] == "Ready", shown
            with page.expect_download() as download_info:
                page.click("button.export-download")
            target = tmp_path / "browser.zip"
            download_info.value.save_as(target)
        finally:
            browser.close()
    export = Export.objects.get(owner=user)
    assert export.include_png and export.status == "ready"
    result = signing.verify_package(target)
    # + DICOMDIR, README, manifest.csv, key, verify.py, quality-card.json and .md
    assert result.ok and result.checked == 40 * 2 + 7
