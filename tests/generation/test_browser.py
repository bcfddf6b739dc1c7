"""The whole path in a real browser: the form's preview and submit, a real Celery worker on Redis
generating and screening the batches, and the cohort page's live progress bar and gallery (images
are added as they pass screening, before the page reloads once at the end)."""

import shutil

import pytest
from django.conf import settings as django_settings
from django.test import Client
from django.urls import reverse

from generation.models import Cohort
from tests.access.factories import grant_tier
from tests.factories import UserFactory

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
WATCH_PROGRESS = """
document.addEventListener("DOMContentLoaded", () => {
  const counter = document.getElementById("progress-passed");
  if (!counter) return;
  new MutationObserver(() => window.reportPassed(counter.textContent))
    .observe(counter, {childList: true, characterData: true, subtree: true});
  // Figures the page's script adds (what the server rendered is not a mutation).
  const gallery = document.getElementById("gallery");
  new MutationObserver(() => window.reportGallery(gallery.querySelectorAll("figure").length,
                                                  document.getElementById("progress").dataset.finished))
    .observe(gallery, {childList: true});
});
"""


def browser_session(user) -> dict:
    """A logged-in session cookie for the browser (the login page itself is the access app's to test)."""
    client = Client()
    client.force_login(user)
    return {"name": django_settings.SESSION_COOKIE_NAME, "value": client.cookies[django_settings.SESSION_COOKIE_NAME].value}


@pytest.mark.slow
def test_a_cohort_submitted_in_the_browser_is_generated_by_a_worker_and_shown_live(
    live_server, celery_worker_process, screened_demo_model_version, settings
):
    playwright = pytest.importorskip("playwright.sync_api")
    if not shutil.which(CHROMIUM):
        pytest.skip("chromium is not installed (bash scripts/install_system_deps.sh)")
    settings.GENERATION_BATCH_SIZE = 1  # three batches, so the bar moves in steps
    user = UserFactory()
    grant_tier(user, "generate")
    celery_worker_process(GENERATION_BATCH_SIZE=1)
    session = browser_session(user)  # database work before Playwright's event loop starts

    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"]
        )
        try:
            context = browser.new_context()
            context.add_cookies([{**session, "url": live_server.url}])
            # Every value the page's script writes into the "done" counter while it polls.
            shown = []
            context.expose_function("reportPassed", lambda value: shown.append(int(value)))
            # The gallery's size each time the script adds an image, while the page still polls.
            grown = []
            context.expose_function("reportGallery", lambda count, finished: grown.append((count, finished)))
            context.add_init_script(WATCH_PROGRESS)
            # A second click sends nothing (static/js/submit-once.js): counted on a page whose submits
            # are stopped before they leave, so that the first one's navigation cannot hide the second.
            check = context.new_page()
            check.goto(live_server.url + reverse("cohort-create"))
            check.evaluate("""() => {
                window.submits = 0;
                document.getElementById("cohort-form").addEventListener("submit", (event) => {
                    if (!event.defaultPrevented) window.submits += 1;
                    event.preventDefault();
                });
            }""")
            check.click("button[value=submit]")
            check.wait_for_timeout(200)
            assert check.locator("button[value=submit]").is_disabled()
            check.click("button[value=submit]", force=True)
            check.press("input[name=name]", "Enter")
            assert check.evaluate("window.submits") == 1
            check.close()

            page = context.new_page()
            page.goto(live_server.url + reverse("cohort-create"))
            page.fill("input[name=name]", "Browser cohort")
            page.fill("input[name=size]", "3")
            page.fill("input[name=finding_pleural_effusion]", "0.5")
            page.click("button[value=preview]")
            preview = page.locator("#preview")
            assert "Preview: 3 patients" in preview.locator("h2").text_content()
            assert preview.locator("ol li").count() == 3
            prompts = [text.strip() for text in preview.locator("ol li").all_text_contents()]

            page.click("button[value=submit]")
            page.wait_for_selector("#progress")
            detail_url = page.url

            # The script updates the bar and adds images as batches finish, then reloads once for the charts.
            page.locator('#progress[data-finished="true"]').wait_for(timeout=120_000)
            assert shown and shown[-1] == 3 and shown == sorted(shown), shown
            assert grown and grown[-1] == (3, "false") and all(finished == "false" for _, finished in grown), grown
            assert page.text_content("#cohort-status").strip() == "Completed"
            assert page.text_content("#progress-passed") == "3"
            assert page.locator("#progress-bar").get_attribute("style").replace(" ", "") == "width:100.0%"
            gallery = page.locator("#gallery img")
            assert gallery.count() == 3
            page.locator("#gallery").scroll_into_view_if_needed()
            page.wait_for_function(
                "() => [...document.querySelectorAll('#gallery img')].every(i => i.complete && i.naturalWidth === 64)"
            )
            assert prompts[0] in page.locator("#gallery figcaption").first.text_content()
            assert "Requested versus generated" in page.content()
        finally:
            browser.close()
    cohort = Cohort.objects.get(owner=user)
    assert detail_url.endswith(reverse("cohort-detail", args=[cohort.pk]))
    assert cohort.status == "completed" and cohort.images.filter(status="passed").count() == 3
    # The previewed patients are the ones submitted.
    assert [i.prompt for i in cohort.images.order_by("index")] == prompts
