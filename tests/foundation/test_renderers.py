"""The API's JSON renderer (orjson) writes what DRF's JSONRenderer writes."""

import datetime as dt
import decimal
import uuid

from django.utils.translation import gettext_lazy
from rest_framework.renderers import JSONRenderer

from cxr_platform.api.renderers import FastJSONRenderer

PAYLOAD = {
    "id": 7, "name": "Kohorte “Ümlaut” 胸部 \u2028", "percent": 37.5, "ratio": 0.1 + 0.2, "flag": True, "none": None,
    "created_at": dt.datetime(2026, 12, 3, 19, 48, 9, 123456, tzinfo=dt.timezone.utc),
    "day": dt.date(2026, 12, 3), "at": dt.time(9, 5), "took": dt.timedelta(seconds=90),
    "amount": decimal.Decimal("12.50"), "uid": uuid.UUID(int=1), "label": gettext_lazy("Not found."),
    "nested": [{"counts": {"passed": 3}, 4: "integer key"}, [1, 2.5, -0.0]], "big": 2 ** 62,
}


def test_it_writes_the_bytes_drf_writes():
    assert FastJSONRenderer().render(PAYLOAD) == JSONRenderer().render(PAYLOAD)


def test_a_float_in_exponent_form_has_the_same_value():
    import json

    payload = {"tiny": 2.5e-7, "huge": 1e22}
    assert FastJSONRenderer().render(payload) == b'{"tiny":2.5e-7,"huge":1e+22}'  # Python writes 2.5e-07
    assert json.loads(FastJSONRenderer().render(payload)) == json.loads(JSONRenderer().render(payload)) == payload


def test_indented_json_when_asked_for_is_drfs():
    media = "application/json; indent=4"
    assert FastJSONRenderer().render(PAYLOAD, media, {}) == JSONRenderer().render(PAYLOAD, media, {})


def test_what_it_cannot_write_falls_back_to_drf():
    payload = {"huge": 2 ** 70}
    assert FastJSONRenderer().render(payload) == JSONRenderer().render(payload) == b'{"huge":1180591620717411303424}'


def test_the_api_answers_with_it(client):
    from rest_framework.settings import api_settings

    assert api_settings.DEFAULT_RENDERER_CLASSES[0] is FastJSONRenderer
    response = client.get("/api/v1/whoami")
    assert response.status_code == 401 and response.json() == {"detail": "Authentication credentials were not provided."}
