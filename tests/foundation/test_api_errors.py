"""Every API error, whatever raised it, comes in one shape: a JSON object whose ``detail`` is one
string, and for invalid input each field's messages as a list (issue 18: "API errors come
sometimes as a string and sometimes as a list"). The requests go through the whole stack."""

import json

import pytest
from django.core.cache import cache
from rest_framework.throttling import UserRateThrottle

from cxr_platform.api.exceptions import error_body
from cxr_platform.api.services import create_api_token
from generation.models import Cohort
from tests.access.factories import TierFactory, grant_tier
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db


def assert_messages(value):
    """A field's errors: a non-empty list of strings, or the same nested (dicts, lists of them)."""
    if isinstance(value, dict):
        for item in value.values():
            assert_messages(item)
        return
    assert isinstance(value, list) and value, value
    for item in value:
        if isinstance(item, str):
            assert item
        elif item != {}:  # an item of a list field that had no error
            assert_messages(item)


def assert_one_shape(response, status: int) -> dict:
    assert response.status_code == status, response.content[:300]
    assert response["Content-Type"].startswith("application/json"), response["Content-Type"]
    body = response.json()
    assert isinstance(body, dict), body
    assert isinstance(body.get("detail"), str) and body["detail"].strip(), body
    for key, value in body.items():
        if key != "detail":
            assert_messages(value)
    return body


def bearer(user) -> dict:
    _, secret = create_api_token(user=user, name="tests")
    return {"HTTP_AUTHORIZATION": f"Bearer {secret}"}


@pytest.fixture
def researcher(db):
    user = UserFactory()
    grant_tier(user, "export")  # generation, DICOM export and the API
    return user


@pytest.fixture
def auth(researcher):
    return bearer(researcher)


def post_json(client, path, body, auth, **extra):
    return client.post(path, json.dumps(body), content_type="application/json", **auth, **extra)


# (name, how to make the request, the status it must get)
CASES = [
    ("401 without credentials", lambda c, a: c.get("/api/v1/cohorts"), 401),
    ("401 with a revoked or unknown token", lambda c, a: c.get("/api/v1/cohorts", HTTP_AUTHORIZATION="Bearer cxr_nope"), 401),
    ("401 with a malformed Authorization header", lambda c, a: c.get("/api/v1/whoami", HTTP_AUTHORIZATION="Bearer a b"), 401),
    ("404 for an unknown cohort", lambda c, a: c.get("/api/v1/cohorts/99999999", **a), 404),
    ("404 for an unknown export", lambda c, a: c.get("/api/v1/exports/99999999", **a), 404),
    ("404 for an unknown access request", lambda c, a: c.get("/api/v1/access-requests/99999999", **a), 404),
    ("404 for an unknown model version", lambda c, a: c.get("/api/v1/models/99999999/files", **a), 404),
    ("404 for an unknown URL", lambda c, a: c.get("/api/v1/no-such-thing", **a), 404),
    ("405 for a method the endpoint lacks", lambda c, a: c.delete("/api/v1/cohorts", **a), 405),
    ("406 for an Accept the API cannot answer", lambda c, a: c.get("/api/v1/whoami", HTTP_ACCEPT="application/xml", **a), 406),
    ("415 for a body that is not JSON", lambda c, a: c.post("/api/v1/cohorts", "x", content_type="text/csv", **a), 415),
    ("400 for malformed JSON", lambda c, a: c.post("/api/v1/cohorts", "{", content_type="application/json", **a), 400),
    ("400 for a NUL character", lambda c, a: post_json(c, "/api/v1/cohorts", {"name": "a\x00b"}, a), 400),
    ("400 for a query parameter out of range", lambda c, a: c.get("/api/v1/cohorts?limit=0", **a), 400),
    ("400 for an invalid cohort", lambda c, a: post_json(c, "/api/v1/cohorts", {"name": "x", "size": 0}, a), 400),
    ("400 for an empty cohort", lambda c, a: post_json(c, "/api/v1/cohorts", {}, a), 400),
    ("400 for an invalid cohort preview", lambda c, a: post_json(c, "/api/v1/cohorts/preview", {"size": "many"}, a), 400),
    ("400 for an invalid access request", lambda c, a: post_json(c, "/api/v1/access-requests", {"tier": "nope"}, a), 400),
    ("403 for the reviewer API without staff", lambda c, a: c.get("/api/v1/review/requests", **a), 403),
    ("403 for a privacy review without staff", lambda c, a: post_json(c, "/api/v1/screening/1/confirm", {}, a), 403),
]


@pytest.mark.parametrize("make_request, status", [case[1:] for case in CASES], ids=[case[0] for case in CASES])
def test_every_error_comes_in_the_one_shape(client, auth, demo_model_version, make_request, status):
    assert_one_shape(make_request(client, auth), status)


def test_a_request_too_large_is_a_413_in_the_one_shape(client, auth, settings):
    settings.API_MAX_BODY_BYTES = 100
    assert_one_shape(post_json(client, "/api/v1/cohorts", {"name": "x" * 200}, auth), 413)


def test_a_user_without_the_api_gets_a_403_in_the_one_shape(client):
    user = UserFactory()
    grant_tier(user, "generate")  # the browser only
    body = assert_one_shape(client.get("/api/v1/cohorts", **bearer(user)), 403)
    assert "REST API" in body["detail"]


def test_the_throttle_answers_429_in_the_one_shape(client, auth, monkeypatch):
    monkeypatch.setitem(UserRateThrottle.THROTTLE_RATES, "user", "1/hour")
    cache.clear()
    try:
        assert client.get("/api/v1/whoami", **auth).status_code == 200
        response = client.get("/api/v1/whoami", **auth)
        body = assert_one_shape(response, 429)
        assert "throttled" in body["detail"].lower() and int(response["Retry-After"]) > 0
    finally:
        cache.clear()


def test_a_service_refusal_without_a_field_is_a_string_not_a_list(client, auth, researcher):
    TierFactory(slug="weights")
    tier = {"tier": "weights", "justification": "A study of pleural effusion detection across sites."}
    assert post_json(client, "/api/v1/access-requests", tier, auth).status_code == 201
    body = assert_one_shape(post_json(client, "/api/v1/access-requests", tier, auth), 400)
    assert body["detail"].startswith("You already have an open or approved request")


def test_field_errors_keep_their_lists_and_detail_names_them(client, auth, demo_model_version):
    body = assert_one_shape(post_json(client, "/api/v1/cohorts", {"name": "x", "size": 0}, auth), 400)
    assert isinstance(body["size"], list) and body["size"][0]
    assert body["detail"].startswith("Invalid input.") and "size: " in body["detail"]


def test_export_refusals_come_in_the_one_shape(client, auth, researcher, demo_model_version):
    cohort = Cohort.objects.create(owner=researcher, name="running", model_version=demo_model_version, seed=1,
                                   size=4, status=Cohort.Status.RUNNING)
    assert_one_shape(post_json(client, f"/api/v1/cohorts/{cohort.pk}/exports", {"transfer_syntax": "nope"}, auth), 400)
    body = assert_one_shape(post_json(client, f"/api/v1/cohorts/{cohort.pk}/exports", {}, auth), 409)
    assert "still being generated" in body["detail"]


@pytest.mark.parametrize(
    "raw, expected",
    [
        ("Not found.", {"detail": "Not found."}),
        (["First.", "Second."], {"detail": "First. Second."}),
        ({"detail": ["Only one."]}, {"detail": "Only one."}),
        ({"size": "Too small."}, {"detail": "Invalid input. size: Too small.", "size": ["Too small."]}),
        ({"non_field_errors": ["Shares must add up to 1"]},
         {"detail": "Invalid input. Shares must add up to 1.", "non_field_errors": ["Shares must add up to 1"]}),
        ({"age": {"min": ["Must be at least 18."]}},
         {"detail": "Invalid input. age.min: Must be at least 18.", "age": {"min": ["Must be at least 18."]}}),
        ({"items": [{}, {"name": ["Required."]}]},
         {"detail": "Invalid input. items.1.name: Required.", "items": [{}, {"name": ["Required."]}]}),
    ],
)
def test_error_bodies_are_put_in_the_one_shape(raw, expected):
    assert error_body(raw) == expected


def test_a_long_list_of_field_errors_is_summed_up():
    body = error_body({f"field{n}": ["Required."] for n in range(8)})
    assert body["detail"].endswith("(and 3 more)") and len(body) == 9
