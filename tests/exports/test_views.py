"""The browser: the cohort's export section, progress JSON, download through a fresh link."""

import pytest
from django.test import Client

from exports.models import Export
from tests.factories import UserFactory


@pytest.fixture
def browser(exporter):
    client = Client()
    client.force_login(exporter)
    return client


def test_export_section_has_the_button(browser, xray_cohort):
    page = browser.get(f"/exports/cohorts/{xray_cohort.pk}/")
    assert page.status_code == 200
    assert b'id="export-button"' in page.content and b"Export 4 images as DICOM" in page.content


def test_export_from_the_browser_then_download(browser, xray_cohort, eager_celery, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        response = browser.post(f"/exports/cohorts/{xray_cohort.pk}/", {"include_png": "1"})
    assert response.status_code == 302
    export = Export.objects.get()
    progress = browser.get(f"/exports/{export.pk}/progress.json").json()
    assert progress["status"] == "ready" and progress["percent"] == 100 and progress["link_url"]
    page = browser.get(f"/exports/cohorts/{xray_cohort.pk}/")
    assert b"export-download" in page.content
    link = browser.post(progress["link_url"])
    assert link.status_code == 302
    download = browser.get(link["Location"])
    assert download.status_code == 200
    assert download["Content-Disposition"] == f'attachment; filename="{export.download_name}"'


def test_other_users_cannot_see_the_export(xray_cohort, eager_celery, django_capture_on_commit_callbacks, browser):
    with django_capture_on_commit_callbacks(execute=True):
        browser.post(f"/exports/cohorts/{xray_cohort.pk}/")
    export = Export.objects.get()
    other = UserFactory()
    from tests.access.factories import grant_tier

    grant_tier(other, "export")
    client = Client()
    client.force_login(other)
    assert client.get(f"/exports/{export.pk}/progress.json").status_code == 404
    assert client.post(f"/exports/{export.pk}/link").status_code == 404
    assert client.get(f"/exports/cohorts/{xray_cohort.pk}/").status_code == 404


def test_post_needs_csrf(exporter, xray_cohort):
    client = Client(enforce_csrf_checks=True)
    client.force_login(exporter)
    assert client.post(f"/exports/cohorts/{xray_cohort.pk}/").status_code == 403
    assert not Export.objects.exists()


@pytest.mark.parametrize("seconds, said", [(7 * 86400, "7 days"), (86400, "1 day"), (12 * 3600, "12 hours"),
                                           (90, "2 minutes")])
def test_retention_is_said_in_words(seconds, said):
    from exports.templatetags.exports_tags import _duration

    assert _duration(seconds) == said


def test_the_export_form_posted_twice_makes_one_export(client, exporter, small_cohort):
    from django.urls import reverse

    from exports.models import Export

    client.force_login(exporter)
    page = client.get(reverse("export-cohort", args=[small_cohort.pk])).content.decode()
    token = page.split('name="form_token" value="')[1].split('"')[0]
    for _ in range(2):  # a double click, or the browser resending the POST
        response = client.post(reverse("export-cohort", args=[small_cohort.pk]),
                               {"transfer_syntax": "explicit", "form_token": token})
        assert response.status_code == 302
    assert Export.objects.filter(cohort=small_cohort).count() == 1
    assert "data-once" in page and "submit-once.js" in page
