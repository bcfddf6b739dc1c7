"""Small edges of issue 18: where each role lands after logging in, the "API tokens" link only
with the API capability, and a short research plan reported as too short rather than "none"."""

import pytest
from django.urls import reverse

from access.credentials import MIN_RESEARCH_PLAN_CHARS
from tests.access.factories import give_profile, grant_tier
from tests.factories import DEFAULT_PASSWORD, StaffFactory, UserFactory

pytestmark = pytest.mark.django_db


def log_in(client, user, **extra):
    return client.post(reverse("login"), {"username": user.get_username(), "password": DEFAULT_PASSWORD, **extra})


def test_a_reviewer_lands_on_the_review_queue(client):
    response = log_in(client, StaffFactory())
    assert response.status_code == 302 and response["Location"] == reverse("review-queue")
    # ... which, without 2FA in this session, goes through it and comes back to the queue.
    follow = client.get(response["Location"])
    assert follow["Location"].startswith(reverse("otp-setup")) and "next=%2Freview%2F" in follow["Location"]


def test_a_researcher_lands_on_home(client):
    response = log_in(client, UserFactory())
    assert response.status_code == 302 and response["Location"] == reverse("home")


def test_next_still_wins(client):
    response = log_in(client, StaffFactory(), next="/audit/")
    assert response["Location"] == "/audit/"
    response = log_in(client, UserFactory(), next="/access/")
    assert response["Location"] == "/access/"


def test_an_offsite_next_falls_back_to_the_landing_page(client):
    response = log_in(client, StaffFactory(), next="https://evil.example/")
    assert response["Location"] == reverse("review-queue")


def test_the_login_page_still_renders(client):
    assert client.get(reverse("login")).status_code == 200


def _has_tokens_link(client) -> bool:
    return f'href="{reverse("api-tokens")}"' in client.get(reverse("home")).content.decode()


def test_api_tokens_link_hidden_without_the_api_capability(client):
    user = UserFactory()
    client.force_login(user)
    assert not _has_tokens_link(client)
    grant_tier(user, "generate")  # cohorts, but not the API
    assert not _has_tokens_link(client)


def test_api_tokens_link_shown_with_the_api_capability(client):
    user = UserFactory()
    grant_tier(user, "export")  # the Export tier includes the API
    client.force_login(user)
    assert _has_tokens_link(client)


def test_a_short_research_plan_is_too_short_not_none(client):
    user = UserFactory()
    give_profile(user, research_plan="x" * 125)
    client.force_login(user)
    body = client.get(reverse("access-dashboard")).content.decode()
    assert f"too short (125/{MIN_RESEARCH_PLAN_CHARS} characters)" in body
    assert '<span class="badge">none</span>' not in body


def test_no_research_plan_is_none_and_a_long_one_is_given(client):
    user = UserFactory()
    give_profile(user, research_plan="   ")
    client.force_login(user)
    body = client.get(reverse("access-dashboard")).content.decode()
    assert '<span class="badge">none</span>' in body and "too short" not in body
    give_profile(user, research_plan="y" * MIN_RESEARCH_PLAN_CHARS)
    body = client.get(reverse("access-dashboard")).content.decode()
    assert '<span class="badge ok">given</span>' in body and "too short" not in body
