"""Bad input under /api/v1 gets a 4xx JSON error in one shape, never a 500 or an HTML page
(issue 15, item 13). Every request goes to the real endpoints through the whole stack."""

import io
import json

import pytest
from django.urls import reverse

from cxr_platform.api.limits import RequestTooLarge, json_depth
from cxr_platform.api.parsers import LimitedJSONParser
from cxr_platform.api.services import create_api_token
from tests.access.factories import grant_tier
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db

COHORT = {"name": "Effusion study", "size": 4, "seed": 1, "findings": {"pleural_effusion": 0.5}}


@pytest.fixture
def auth(db):
    user = UserFactory()
    grant_tier(user, "export")  # generation + the API
    _, secret = create_api_token(user=user, name="tests")
    return {"HTTP_AUTHORIZATION": f"Bearer {secret}"}


def post_json(client, path, body, auth):
    raw = body if isinstance(body, (bytes, str)) else json.dumps(body)
    return client.post(path, raw, content_type="application/json", **auth)


def assert_json_error(response, status):
    assert response.status_code == status, response.content[:300]
    assert response["Content-Type"].startswith("application/json"), response["Content-Type"]
    body = response.json()
    assert isinstance(body, dict) and body, body
    return body


# --- NUL characters ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path, body",
    [
        ("/api/v1/cohorts", {**COHORT, "name": "Effusion\x00study"}),
        ("/api/v1/cohorts", {**COHORT, "impressions": ["Small left effusion.\x00"]}),
        ("/api/v1/cohorts/preview", {**COHORT, "findings": {"pleural\x00effusion": 0.5}}),
        ("/api/v1/access-requests", {"tier": "ex\x00port", "justification": "A study."}),
        ("/api/v1/access-requests", {"tier": "export", "justification": "A study.\x00"}),
    ],
)
def test_a_nul_character_anywhere_in_a_json_body_is_a_400(client, auth, path, body):
    detail = assert_json_error(post_json(client, path, body, auth), 400)["detail"]
    assert "NUL" in detail


def test_a_nul_character_in_a_form_body_is_a_400(client, auth):
    response = client.post("/api/v1/access-requests", {"tier": "export\x00", "justification": "x"}, **auth)
    assert "NUL" in assert_json_error(response, 400)["detail"]


@pytest.mark.parametrize("path", ["/api/v1/cohorts?search=a%00b", "/api/v1/access-requests?%00=1", "/api/v1/me?x=%00"])
def test_a_nul_character_in_the_query_string_is_a_400(client, auth, path):
    assert "NUL" in assert_json_error(client.get(path, **auth), 400)["detail"]


# --- Pagination -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "query",
    ["limit=99999999999999999999999", "limit=9223372036854775808", "limit=true", "limit=-1", "limit=0",
     "limit=1.5", "limit=501", "offset=99999999999999999999999", "offset=-3", "offset=abc", "limit=%2B5"],
)
def test_limit_and_offset_out_of_range_are_400s(client, auth, query):
    for path in ("/api/v1/cohorts", "/api/v1/access-requests", "/api/v1/models"):
        body = assert_json_error(client.get(f"{path}?{query}", **auth), 400)
        assert set(body) & {"limit", "offset"}, body


def test_the_documented_maximum_page_size_is_accepted(client, auth):
    response = client.get("/api/v1/cohorts?limit=500&offset=2147483647", **auth)
    assert response.status_code == 200
    assert response.json()["results"] == []


# --- Size and depth ---------------------------------------------------------------------------------


def test_json_nested_100000_levels_deep_is_a_400(client, auth):
    body = "[" * 100_000 + "]" * 100_000
    assert "nested" in assert_json_error(post_json(client, "/api/v1/cohorts", body, auth), 400)["detail"]
    body = '{"name": ' * 100_000 + "1" + "}" * 100_000
    assert_json_error(post_json(client, "/api/v1/cohorts/preview", body, auth), 400)


def test_brackets_inside_strings_do_not_count_as_nesting(client, auth):
    assert json_depth(b'{"a": "[[[[[[[[[[\\"{{{{{{{{", "b": [[1]]}') == 3
    response = post_json(client, "/api/v1/access-requests", {"tier": "[" * 5000, "justification": "{" * 5000}, auth)
    assert_json_error(response, 400)  # an unknown tier, reported on the field
    assert "tier" in response.json()


def test_a_3_mb_json_body_is_refused_with_413_before_it_is_read(client, auth):
    body = json.dumps({**COHORT, "impressions": ["x" * 1000] * 3000})
    assert len(body) > 3_000_000
    detail = assert_json_error(post_json(client, "/api/v1/cohorts", body, auth), 413)["detail"]
    assert "1,048,576 bytes" in detail


def test_the_body_limit_is_configurable(client, auth, settings):
    settings.API_MAX_BODY_BYTES = 100
    response = post_json(client, "/api/v1/access-requests", {"tier": "export", "justification": "y" * 200}, auth)
    assert_json_error(response, 413)


def test_the_parser_itself_stops_reading_at_the_limit(settings):
    """A body that arrives without a truthful Content-Length is still cut off at the limit."""
    settings.API_MAX_BODY_BYTES = 1000
    stream = io.BytesIO(b'{"a": "' + b"x" * 5000 + b'"}')
    with pytest.raises(RequestTooLarge):
        LimitedJSONParser().parse(stream, "application/json", {})
    assert stream.tell() == 1001


@pytest.mark.parametrize("body", ["{", "NaN", '{"a": Infinity}', "\xff\xfe", "[1,]"])
def test_malformed_json_is_a_400(client, auth, body):
    assert_json_error(post_json(client, "/api/v1/cohorts/preview", body, auth), 400)


# --- One shape, JSON everywhere -----------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/api/v1/nothing-here", "/api/v1/cohorts/123456789", "/api/v1/", "/api/v1/cohorts/abc"])
def test_404s_under_the_api_are_json(client, auth, path):
    assert isinstance(assert_json_error(client.get(path, **auth), 404)["detail"], str)


def test_404s_elsewhere_stay_html(client):
    response = client.get("/no-such-page/")
    assert response.status_code == 404
    assert response["Content-Type"].startswith("text/html")


def test_unknown_method_and_media_type_are_json(client, auth):
    assert_json_error(client.delete("/api/v1/me", **auth), 405)
    assert_json_error(client.post("/api/v1/cohorts", b"<xml/>", content_type="application/xml", **auth), 415)
    assert_json_error(client.get("/api/v1/me", **auth, HTTP_ACCEPT="text/csv"), 406)


# --- The schema documents the errors -------------------------------------------------------------------


def test_every_operation_documents_its_error_responses(client):
    schema = client.get(reverse("api-schema"), {"format": "json"}).json()
    assert "detail" in schema["components"]["schemas"]["Error"]["properties"]
    operations = [(path, method, op) for path, item in schema["paths"].items() for method, op in item.items()]
    assert len(operations) > 10
    for path, method, operation in operations:
        codes = set(operation["responses"])
        assert {"400", "401", "403", "404", "429"} <= codes, (path, method, codes)
        if method in {"post", "put", "patch"}:
            assert {"413", "415"} <= codes, (path, method, codes)
        error = operation["responses"]["404"]["content"]["application/json"]["schema"]
        assert error == {"$ref": "#/components/schemas/Error"}


def test_pagination_bounds_are_in_the_schema(client):
    schema = client.get(reverse("api-schema"), {"format": "json"}).json()
    parameters = {p["name"]: p for p in schema["paths"]["/api/v1/cohorts"]["get"]["parameters"]}
    assert parameters["limit"]["schema"]["maximum"] == 500
    assert parameters["limit"]["schema"]["minimum"] == 1
    assert parameters["offset"]["schema"]["minimum"] == 0
