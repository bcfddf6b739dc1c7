"""The cohort page in a real browser: the progress bar follows the batches to completion."""

import shutil
import threading

import pytest
from django.urls import reverse

from generation import services
from tests.access.factories import grant_tier
from tests.factories import DEFAULT_PASSWORD, UserFactory

from .conftest import cohort_request

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_the_cohort_page_follows_progress_to_completion(live_server, demo_model_version, settings):
    playwright = pytest.importorskip("playwright.sync_api")
    if not shutil.which(CHROMIUM):
        pytest.skip("chromium is not installed (apt-get install chromium)")
    settings.GENERATION_BATCH_SIZE = 1
    user = UserFactory()
    grant_tier(user, "generate")
    cohort = services.request_cohort(user=user, data=cohort_request(size=3), enqueue=False)
    start = threading.Event()

    def run_batches():
        from django.db import connection

        start.wait(30)
        try:
            services.run_cohort_inline(cohort)
        finally:
            connection.close()

    runner = threading.Thread(target=run_batches)
    runner.start()
    try:
        with playwright.sync_playwright() as p:
            browser = p.chromium.launch(
                executable_path=CHROMIUM, headless=True,
                args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
            )
            page = browser.new_page()
            page.goto(live_server.url + reverse("login"))
            page.fill("input[name=username]", user.username)
            page.fill("input[name=password]", DEFAULT_PASSWORD)
            page.click("main button[type=submit]")
            page.goto(live_server.url + reverse("cohort-detail", args=[cohort.pk]))
            assert page.text_content("#progress-passed") == "0"
            start.set()
            page.wait_for_selector("#cohort-status.completed", timeout=60_000)
            assert page.text_content("#progress-passed") == "3"
            assert page.locator("#progress-bar").get_attribute("style").replace(" ", "") == "width:100.0%"
            assert page.locator("#gallery img").count() == 3
            browser.close()
    finally:
        start.set()
        runner.join(60)
