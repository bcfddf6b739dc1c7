import pytest
from rest_framework.test import APIClient

from generation import services
from generation.models import Cohort
from tests.access.factories import grant_tier
from tests.factories import UserFactory

from .conftest import cohort_request


@pytest.fixture
def api(api_researcher):
    client = APIClient()
    client.force_authenticate(api_researcher)
    return client


def test_create_returns_the_cohort_with_progress(api, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks():
        response = api.post("/api/v1/cohorts", cohort_request(size=3), format="json")
    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["status"] == "queued" and body["size"] == 3 and body["progress"]["passed"] == 0
    assert Cohort.objects.get().pk == body["id"]


def test_an_invalid_specification_is_a_400_naming_the_field(api):
    response = api.post("/api/v1/cohorts", cohort_request(sex={"F": 0.2}), format="json")
    assert response.status_code == 400
    assert "add up to 1" in response.json()["sex"][0]


def test_an_empty_quality_policy_in_a_form_is_a_400_not_the_default(api):
    response = api.post("/api/v1/cohorts", {"name": "x", "size": 1, "quality_policy": ""}, format="multipart")
    assert response.status_code == 400
    assert "quality_policy" in response.json()
    assert not Cohort.objects.exists()


def test_a_null_quality_policy_is_a_400_not_the_default(api):
    response = api.post("/api/v1/cohorts", cohort_request(size=1, quality_policy=None), format="json")
    assert response.status_code == 400 and "quality_policy" in response.json()


def test_preview_through_the_api(api):
    response = api.post("/api/v1/cohorts/preview", cohort_request(size=5), format="json")
    assert response.status_code == 200 and response.json()["quota"]["this_cohort"] == 5


def test_list_retrieve_cancel_and_images(api, api_researcher):
    done = services.run_cohort_inline(services.request_cohort(user=api_researcher, data=cohort_request(size=2), enqueue=False))
    waiting = services.request_cohort(user=api_researcher, data=cohort_request(name="later"), enqueue=False)
    assert {c["id"] for c in api.get("/api/v1/cohorts").json()["results"]} == {done.pk, waiting.pk}
    assert api.get(f"/api/v1/cohorts/{done.pk}").json()["progress"]["passed"] == 2
    assert api.post(f"/api/v1/cohorts/{waiting.pk}/cancel").json()["status"] == "cancelled"
    assert api.post(f"/api/v1/cohorts/{waiting.pk}/cancel").status_code == 400
    images = api.get(f"/api/v1/cohorts/{done.pk}/images").json()["results"]
    assert [i["index"] for i in images] == [0, 1] and images[0]["demographics"]["sex"] in ("F", "M")
    png = api.get(images[0]["file"])
    assert png.status_code == 200 and b"".join(png.streaming_content).startswith(b"\x89PNG")


def test_other_peoples_cohorts_are_404(api, db):
    other = UserFactory()
    grant_tier(other, "export")
    cohort = services.request_cohort(user=other, data=cohort_request(), enqueue=False)
    assert api.get(f"/api/v1/cohorts/{cohort.pk}").status_code == 404
    assert api.post(f"/api/v1/cohorts/{cohort.pk}/cancel").status_code == 404
    assert api.get(f"/api/v1/cohorts/{cohort.pk}/images").status_code == 404


def test_the_api_needs_the_api_capability(researcher):
    client = APIClient()
    client.force_authenticate(researcher)  # may generate, but not through the API
    response = client.get("/api/v1/cohorts")
    assert response.status_code == 403 and "REST API" in response.json()["detail"]


def test_quota_exceeded_is_a_clear_400(api, api_researcher):
    response = api.post("/api/v1/cohorts", cohort_request(size=20001), format="json")
    assert response.status_code == 400 and "daily quota" in response.json()["size"][0]


@pytest.mark.parametrize(
    "changes, field",
    [
        ({"size": "many"}, "size"),
        ({"size": 0}, "size"),
        ({"seed": -1}, "seed"),
        ({"sex": "half"}, "sex"),
        ({"age": 40}, "age"),
        ({"age": {"bins": [{"min": "x"}]}}, "age"),
        ({"findings": {"edema": "lots"}}, "findings"),
        ({"group_findings": [5]}, "group_findings"),
        ({"preset": {"x": 1}}, "preset"),
        ({"sampling": {"steps": "fast"}}, "sampling"),
        ({"model_version": "latest"}, "model_version"),
        ({"name": ""}, "name"),
    ],
)
def test_malformed_requests_are_400s_naming_the_field(api, changes, field):
    response = api.post("/api/v1/cohorts/preview", cohort_request(**changes), format="json")
    assert response.status_code == 400, response.content
    assert field in response.json()


def test_a_request_that_is_not_an_object_is_a_400(api):
    response = api.post("/api/v1/cohorts", [1, 2], format="json")
    assert response.status_code == 400
