import pytest
from django.urls import reverse

from generation import services
from generation.models import Cohort
from tests.factories import UserFactory

from .conftest import cohort_request


@pytest.fixture
def browser(client, researcher):
    client.force_login(researcher)
    return client


def form_data(**overrides):
    data = {"name": "Browser cohort", "size": 4, "preset": "balanced", "finding_pleural_effusion": "0.5"}
    data.update(overrides)
    return data


def completed_cohort(user, size=2):
    cohort = services.request_cohort(user=user, data=cohort_request(size=size), enqueue=False)
    return services.run_cohort_inline(cohort)


def test_the_cohort_list_shows_only_my_cohorts(browser, researcher, db):
    mine = services.request_cohort(user=researcher, data=cohort_request(name="Mine"), enqueue=False)
    other = UserFactory()
    from tests.access.factories import grant_tier

    grant_tier(other, "generate")
    services.request_cohort(user=other, data=cohort_request(name="Theirs"), enqueue=False)
    newer = services.run_cohort_inline(
        services.request_cohort(user=researcher, data=cohort_request(name="Newer", size=1), enqueue=False)
    )
    page = browser.get(reverse("cohort-list")).content.decode()
    assert mine.name in page and "Theirs" not in page
    assert page.index(newer.name) < page.index(mine.name)  # newest first
    assert "100%" in page and "0%" in page  # share done per cohort


def test_pages_need_the_generate_capability(client, db):
    client.force_login(UserFactory())
    assert client.get(reverse("cohort-list")).status_code == 403
    assert client.get(reverse("cohort-create")).status_code == 403


def test_preview_shows_cells_prompts_and_quota_and_creates_nothing(browser):
    response = browser.post(reverse("cohort-create"), form_data(action="preview"))
    page = response.content.decode()
    assert response.status_code == 200 and 'id="preview"' in page
    assert "this cohort uses <strong>4</strong> images" in page and "year old" in page
    assert not Cohort.objects.exists()


def test_submitting_after_a_preview_makes_the_previewed_patients(browser, django_capture_on_commit_callbacks):
    preview = browser.post(reverse("cohort-create"), form_data(action="preview")).context["preview"]
    with django_capture_on_commit_callbacks():
        response = browser.post(reverse("cohort-create"), form_data(action="submit", seed=preview["seed"]))
    cohort = Cohort.objects.get()
    assert response.url == reverse("cohort-detail", args=[cohort.pk])
    assert [i.prompt for i in cohort.images.order_by("index")] == preview["first_prompts"]


def test_invalid_shares_are_shown_as_form_errors(browser):
    response = browser.post(reverse("cohort-create"), form_data(action="preview", preset="", female_share="0.5"))
    page = response.content.decode()
    assert response.status_code == 200 and "Race: Give race shares or choose a preset." in page


def test_invalid_advanced_json_is_a_form_error(browser):
    response = browser.post(reverse("cohort-create"), form_data(action="preview", advanced="{not json"))
    assert "Not valid JSON" in response.content.decode()


def test_the_cohort_page_shows_progress_gallery_and_chart(browser, researcher):
    cohort = completed_cohort(researcher)
    page = browser.get(reverse("cohort-detail", args=[cohort.pk])).content.decode()
    image = cohort.images.first()
    assert reverse("cohort-image", args=[cohort.pk, image.pk]) in page
    assert image.prompt in page and "Requested versus generated" in page and "2</strong> of 2 done" in page


def test_the_cohort_page_shows_the_privacy_summary_of_screening(browser, researcher):
    cohort = completed_cohort(researcher)
    response = browser.get(reverse("cohort-detail", args=[cohort.pk]))
    privacy = response.context["privacy"]
    assert privacy["screened"] == 2 and privacy["passed"] == 2 and privacy["released_exact_matches"] == 0
    assert sum(bar["count"] for bar in privacy["bars"]) == 2
    assert "2 images screened against the model's training radiographs" in response.content.decode()


def test_progress_json_reports_counts(browser, researcher):
    cohort = completed_cohort(researcher)
    data = browser.get(reverse("cohort-progress", args=[cohort.pk])).json()
    assert data["passed"] == 2 and data["percent"] == 100.0 and data["finished"] is True


def test_passed_images_are_served_to_their_owner_only(browser, researcher, client):
    cohort = completed_cohort(researcher)
    image = cohort.images.first()
    url = reverse("cohort-image", args=[cohort.pk, image.pk])
    response = browser.get(url)
    assert response.status_code == 200 and response["Content-Type"] == "image/png"
    assert b"".join(response.streaming_content).startswith(b"\x89PNG")
    stranger = UserFactory()
    from tests.access.factories import grant_tier

    grant_tier(stranger, "generate")
    client.force_login(stranger)
    assert client.get(url).status_code == 404
    assert client.get(reverse("cohort-detail", args=[cohort.pk])).status_code == 404


def test_images_not_yet_screened_are_not_served(browser, researcher):
    cohort = services.request_cohort(user=researcher, data=cohort_request(), enqueue=False)
    image = cohort.images.first()
    assert browser.get(reverse("cohort-image", args=[cohort.pk, image.pk])).status_code == 404


def test_cancel_button_cancels(browser, researcher):
    cohort = services.request_cohort(user=researcher, data=cohort_request(), enqueue=False)
    browser.post(reverse("cohort-cancel", args=[cohort.pk]))
    cohort.refresh_from_db()
    assert cohort.status == "cancelled"
