"""The image viewer in a real browser: opened from the gallery, zoomed with the wheel, panned by
dragging, windowed with the sliders and by right-dragging, with the side panel filled and both
downloads offered."""

import shutil

import pytest
from django.urls import reverse

from generation.specification import parse_specification
from tests.access.factories import grant_tier
from tests.exports.factories import array_pngs, make_cohort
from tests.factories import UserFactory

from .test_browser import CHROMIUM, browser_session

CENTRE_PIXEL = """() => {
  const canvas = document.getElementById("viewer-canvas");
  const data = canvas.getContext("2d").getImageData(canvas.width >> 1, canvas.height >> 1, 1, 1).data;
  return data[0];
}"""


@pytest.mark.slow
def test_an_image_opens_large_zooms_pans_windows_and_offers_both_downloads(live_server, demo_model_version):
    playwright = pytest.importorskip("playwright.sync_api")
    if not shutil.which(CHROMIUM):
        pytest.skip("chromium is not installed (bash scripts/install_system_deps.sh)")
    user = UserFactory()
    grant_tier(user, "export")
    cohort = make_cohort(user, demo_model_version, pngs=array_pngs(3, size=64))
    cohort.specification = parse_specification({"preset": "balanced"}, demo_model_version.defaults).as_dict()
    cohort.save(update_fields=["specification"])
    second, third = cohort.images.get(index=1), cohort.images.get(index=2)
    session = browser_session(user)  # database work before Playwright's event loop starts

    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"]
        )
        try:
            context = browser.new_context(viewport={"width": 1280, "height": 800})
            context.add_cookies([{**session, "url": live_server.url}])
            page = context.new_page()
            errors = []
            page.on("pageerror", lambda error: errors.append(str(error)))
            page.goto(live_server.url + reverse("cohort-detail", args=[cohort.pk]))

            page.locator(f'#gallery figure[data-id="{second.pk}"] a.gallery-open').click()
            viewer = page.locator('#viewer[data-loaded="true"]')
            viewer.wait_for(timeout=10_000)
            assert page.locator("#viewer-prompt").text_content() == second.prompt
            assert page.locator("#viewer-labels li").all_text_contents() == ["Pleural effusion"]
            assert page.locator("#viewer-screening").text_content().startswith("Passed · score 0.300")

            canvas = page.locator("#viewer-canvas")
            fitted = float(canvas.get_attribute("data-zoom"))
            box = canvas.bounding_box()
            page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
            page.mouse.wheel(0, -400)
            page.wait_for_function(f"() => parseFloat(document.getElementById('viewer-canvas').dataset.zoom) > {fitted}")

            pan = float(canvas.get_attribute("data-pan-x"))
            page.mouse.down()
            page.mouse.move(box["x"] + box["width"] / 2 + 80, box["y"] + box["height"] / 2, steps=4)
            page.mouse.up()
            assert float(canvas.get_attribute("data-pan-x")) == pytest.approx(pan + 80, abs=1)

            before = page.evaluate(CENTRE_PIXEL)
            page.locator("#viewer-level").fill("0")
            page.locator("#viewer-window").fill("1")  # everything above 0 becomes white
            assert canvas.get_attribute("data-level") == "0" and canvas.get_attribute("data-window") == "1"
            after = page.evaluate(CENTRE_PIXEL)
            assert after == 255 and after != before

            # Right-drag: right widens the window, up raises the level.
            page.locator("#viewer-reset").click()
            page.mouse.move(box["x"] + 200, box["y"] + 300)
            page.mouse.down(button="right")
            page.mouse.move(box["x"] + 150, box["y"] + 260, steps=4)
            page.mouse.up(button="right")
            assert canvas.get_attribute("data-window") == "206" and canvas.get_attribute("data-level") == "168"

            png = page.locator("#viewer-download-png")
            dicom = page.locator("#viewer-download-dicom")
            assert png.is_visible() and dicom.is_visible()
            png_response = page.request.get(live_server.url + png.get_attribute("href"))
            dicom_response = page.request.get(live_server.url + dicom.get_attribute("href"))
            assert png_response.ok and png_response.body().startswith(b"\x89PNG")
            assert dicom_response.ok and dicom_response.body()[128:132] == b"DICM"

            page.locator("#viewer-next").click()  # the next image of the gallery
            page.wait_for_function(
                f"() => document.getElementById('viewer').dataset.imageId === '{third.pk}'"
                " && document.getElementById('viewer').dataset.loaded === 'true'")
            page.keyboard.press("Escape")
            page.locator("#viewer").wait_for(state="hidden")
            assert not errors, errors
        finally:
            browser.close()
