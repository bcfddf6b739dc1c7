"""/api/v1/me, /api/v1/tiers, /api/v1/access-requests: users only ever see their own objects."""

import pytest
from rest_framework.test import APIClient

from access import capabilities as caps
from access.models import AccessRequest
from tests.access.factories import give_credentials, grant_tier, make_request
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db
S = AccessRequest.Status


@pytest.fixture
def api(researcher):
    client = APIClient()
    client.force_authenticate(researcher)
    return client


def test_me_shows_profile_grants_capabilities_and_quotas(api, researcher):
    grant_tier(researcher, "generate")
    data = api.get("/api/v1/me").json()
    assert data["username"] == researcher.username
    assert data["profile"]["full_name"]
    assert [g["tier"] for g in data["grants"]] == ["generate"]
    assert data["capabilities"] == [caps.GENERATE]
    assert data["quotas"][caps.DAILY_IMAGES]["limit"] == 500
    assert data["quotas"][caps.DAILY_IMAGES]["left"] == 500


def test_tiers_say_what_is_missing(api):
    tiers = {t["slug"]: t for t in api.get("/api/v1/tiers").json()}
    assert set(tiers) == {"generate", "export", "weights"}
    assert caps.CREDENTIALS[caps.TRAINING] in tiers["generate"]["missing"]
    assert tiers["weights"]["approvals_required"] == 2


def test_create_retrieve_list_and_submit(api, researcher):
    give_credentials(researcher)
    created = api.post("/api/v1/access-requests", {"tier": "export", "justification": "DICOM pipeline tests"}, format="json")
    assert created.status_code == 201 and created.json()["status"] == "draft"
    pk = created.json()["id"]
    assert api.get(f"/api/v1/access-requests/{pk}").json()["tier"] == "export"
    assert [r["id"] for r in api.get("/api/v1/access-requests").json()["results"]] == [pk]
    submitted = api.post(f"/api/v1/access-requests/{pk}/submit")
    assert submitted.status_code == 200 and submitted.json()["status"] == "submitted"
    again = api.post(f"/api/v1/access-requests/{pk}/submit")
    assert again.status_code == 400 and "not possible" in str(again.json())


def test_submit_without_credentials_is_a_clear_400(api, researcher):
    pk = api.post("/api/v1/access-requests", {"tier": "generate", "justification": "x"}, format="json").json()["id"]
    response = api.post(f"/api/v1/access-requests/{pk}/submit")
    assert response.status_code == 400 and "Before submitting" in str(response.json())


@pytest.mark.parametrize("body", [{}, {"tier": "nope", "justification": "x"}, {"tier": "generate"}, {"tier": "generate", "justification": ""}, ["x"]])
def test_bad_input_is_a_400(api, body):
    assert api.post("/api/v1/access-requests", body, format="json").status_code == 400


def test_other_users_requests_are_invisible_and_untouchable(api, researcher):
    other = UserFactory()
    give_credentials(other)
    theirs = make_request(other, "generate")
    assert api.get(f"/api/v1/access-requests/{theirs.pk}").status_code == 404
    assert api.post(f"/api/v1/access-requests/{theirs.pk}/submit").status_code == 404
    assert api.get("/api/v1/access-requests").json()["results"] == []
    theirs.refresh_from_db()
    assert theirs.status == S.DRAFT
    grant_tier(other, "export")
    assert api.get("/api/v1/me").json()["grants"] == []


def test_anonymous_requests_are_refused():
    assert APIClient().get("/api/v1/me").status_code in (401, 403)
