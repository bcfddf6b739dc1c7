"""A create sent twice makes one cohort and spends the quota once: the API's Idempotency-Key, the
browser form's one-time token, and the database constraint behind both."""

import re
import threading
from pathlib import Path

import pytest
from django.db import IntegrityError, connection, transaction
from django.urls import reverse
from rest_framework.test import APIClient

from generation import services
from generation.models import Cohort

from .conftest import cohort_request

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def api(api_researcher):
    client = APIClient()
    client.force_authenticate(api_researcher)
    return client


def test_the_same_key_twice_returns_the_first_cohort_with_the_same_status_and_spends_the_quota_once(
    api, api_researcher, django_capture_on_commit_callbacks
):
    headers = {"HTTP_IDEMPOTENCY_KEY": "7d6c9c1e-3b1f-4a55-9a0e-1f0c7d1e2a33"}
    with django_capture_on_commit_callbacks():
        first = api.post("/api/v1/cohorts", cohort_request(size=6, seed=None), format="json", **headers)
        second = api.post("/api/v1/cohorts", cohort_request(size=6, seed=None), format="json", **headers)
    assert first.status_code == second.status_code == 201
    assert first.json()["id"] == second.json()["id"] and first.json()["seed"] == second.json()["seed"]
    assert "Idempotent-Replayed" not in first and second["Idempotent-Replayed"] == "true"
    assert Cohort.objects.count() == 1
    assert services.images_reserved(api_researcher) == 6


def test_a_repeat_is_answered_even_once_the_quota_is_spent(api, api_researcher, django_capture_on_commit_callbacks):
    headers = {"HTTP_IDEMPOTENCY_KEY": "whole-quota"}
    with django_capture_on_commit_callbacks():
        first = api.post("/api/v1/cohorts", cohort_request(size=500), format="json", **headers)
        again = api.post("/api/v1/cohorts", cohort_request(size=500), format="json", **headers)
    assert first.status_code == again.status_code == 201 and again.json()["id"] == first.json()["id"]


def test_the_same_key_with_a_different_body_is_refused_with_a_clear_message(api, django_capture_on_commit_callbacks):
    headers = {"HTTP_IDEMPOTENCY_KEY": "key-1"}
    with django_capture_on_commit_callbacks():
        first = api.post("/api/v1/cohorts", cohort_request(size=4), format="json", **headers)
        other = api.post("/api/v1/cohorts", cohort_request(size=5), format="json", **headers)
    assert other.status_code == 422
    detail = other.json()["detail"]
    assert "already used for a different request" in detail and f"cohort {first.json()['id']}" in detail
    assert Cohort.objects.count() == 1


def test_keys_are_per_user(api, db, django_capture_on_commit_callbacks):
    from tests.access.factories import grant_tier
    from tests.factories import UserFactory

    other = UserFactory()
    grant_tier(other, "export")
    other_api = APIClient()
    other_api.force_authenticate(other)
    headers = {"HTTP_IDEMPOTENCY_KEY": "shared-key"}
    with django_capture_on_commit_callbacks():
        mine = api.post("/api/v1/cohorts", cohort_request(), format="json", **headers)
        theirs = other_api.post("/api/v1/cohorts", cohort_request(), format="json", **headers)
    assert mine.status_code == theirs.status_code == 201 and mine.json()["id"] != theirs.json()["id"]


@pytest.mark.parametrize("key", ["", "x" * 256, "with space", "ümlaut"])
def test_a_malformed_key_is_a_400(api, key):
    response = api.post("/api/v1/cohorts", cohort_request(), format="json", HTTP_IDEMPOTENCY_KEY=key)
    assert response.status_code == 400 and "idempotency key" in response.json()["idempotency_key"][0]
    assert not Cohort.objects.exists()


def test_the_database_refuses_a_second_cohort_with_the_same_owner_and_key(api_researcher):
    services.request_cohort_once(user=api_researcher, data=cohort_request(), idempotency_key="k", enqueue=False)
    duplicate = Cohort.objects.get()
    duplicate.pk = None
    with pytest.raises(IntegrityError), transaction.atomic():
        duplicate.save()


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_two_concurrent_requests_with_the_same_key_create_one_cohort(screened_demo_model_version):
    from tests.access.factories import grant_tier
    from tests.factories import UserFactory

    user = UserFactory()
    grant_tier(user, "export")
    barrier, outcomes, errors = threading.Barrier(2), [], []

    def post():
        try:
            client = APIClient()
            client.force_authenticate(user)
            barrier.wait()
            response = client.post("/api/v1/cohorts", cohort_request(size=8), format="json",
                                   HTTP_IDEMPOTENCY_KEY="concurrent")
            outcomes.append((response.status_code, response.json()["id"]))
        except Exception as exc:  # reported below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=post) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not errors
    assert [code for code, _ in outcomes] == [201, 201] and len({pk for _, pk in outcomes}) == 1
    assert Cohort.objects.count() == 1 and services.images_reserved(user) == 8


# --- The browser form -------------------------------------------------------------------------------


def form_data(token, **overrides):
    data = {"name": "Twice", "size": 4, "preset": "balanced", "action": "submit", "submission_token": token}
    data.update(overrides)
    return data


def issued_token(client) -> str:
    page = client.get(reverse("cohort-create")).content.decode()
    return re.search(r'name="submission_token" value="([^"]+)"', page).group(1)


def test_the_form_carries_a_new_token_each_time_it_is_issued(client, researcher):
    client.force_login(researcher)
    first, second = issued_token(client), issued_token(client)
    assert len(first) >= 16 and first != second


def test_posting_the_form_twice_with_its_token_makes_one_cohort_and_redirects_to_it(
    client, researcher, django_capture_on_commit_callbacks
):
    client.force_login(researcher)
    token = issued_token(client)
    with django_capture_on_commit_callbacks():
        first = client.post(reverse("cohort-create"), form_data(token))
        second = client.post(reverse("cohort-create"), form_data(token), follow=True)
    cohort = Cohort.objects.get()
    assert first.status_code == 302 and first["Location"] == reverse("cohort-detail", args=[cohort.pk])
    assert second.redirect_chain == [(reverse("cohort-detail", args=[cohort.pk]), 302)]
    assert "This form was already submitted" in second.content.decode()
    assert services.images_reserved(researcher) == 4
    # A new form is a new cohort.
    with django_capture_on_commit_callbacks():
        client.post(reverse("cohort-create"), form_data(issued_token(client)))
    assert Cohort.objects.count() == 2


def test_a_preview_keeps_the_token_for_the_submit_that_follows(client, researcher, django_capture_on_commit_callbacks):
    client.force_login(researcher)
    token = issued_token(client)
    preview = client.post(reverse("cohort-create"), form_data(token, action="preview")).content.decode()
    assert f'name="submission_token" value="{token}"' in preview


def test_the_submit_buttons_are_disabled_after_the_first_click_by_a_static_script(client, researcher):
    client.force_login(researcher)
    page = client.get(reverse("cohort-create")).content.decode()
    assert "data-once" in page and "js/submit-once.js" in page
    script = (REPO_ROOT / "static" / "js" / "submit-once.js").read_text()
    assert "button.disabled = true" in script and "preventDefault" in script
