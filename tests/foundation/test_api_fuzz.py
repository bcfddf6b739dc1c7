"""schemathesis against the schema the platform serves: generated requests, valid and invalid,
to every operation under /api/v1 through the real WSGI application (in process, no network).
None may be a server error or break the published schema (issue 15, item 13)."""

import os

import pytest
from django.core.wsgi import get_wsgi_application
from rest_framework.throttling import UserRateThrottle

from cxr_platform.api.services import create_api_token
from tests.access.factories import grant_tier
from tests.factories import UserFactory

schemathesis = pytest.importorskip("schemathesis")
from hypothesis import HealthCheck, Phase, given  # noqa: E402
from hypothesis import settings as hypothesis_settings  # noqa: E402
from hypothesis.errors import Unsatisfiable  # noqa: E402
from schemathesis.generation import GenerationMode  # noqa: E402

# Cases per operation and generation mode; at least 1,000 in all (asserted below).
EXAMPLES = int(os.environ.get("API_FUZZ_EXAMPLES", "40"))
MIN_CASES = 1000


def _form_drops_a_field(case) -> bool:
    """Whether the request schemathesis sends is valid although its generated case is not, because a form
    (multipart or urlencoded) field whose value is an empty list is sent as no field at all. A case made
    invalid by ``"quality_policy": []`` reaches the API as a valid request without ``quality_policy`` and is
    rightly accepted, so "accepted invalid data" would be a false alarm for it (the other checks stay)."""
    media_type = (case.media_type or "").lower()
    if not (media_type.startswith("multipart/") or media_type.startswith("application/x-www-form-urlencoded")):
        return False
    if not isinstance(case.body, dict) or not any(value == [] for value in case.body.values()):
        return False
    sent = {name: value for name, value in case.body.items() if value != []}
    return any(body.media_type == case.media_type and body.is_valid(sent) for body in case.operation.body)


def _checks():
    from schemathesis.checks import load_all_checks, not_a_server_error

    load_all_checks()
    from schemathesis.specs.openapi import checks as openapi

    return [
        not_a_server_error,
        openapi.status_code_conformance,
        openapi.content_type_conformance,
        openapi.response_schema_conformance,
        openapi.negative_data_rejection,
    ]


@pytest.fixture
def api_user(db, demo_model_version):
    user = UserFactory()
    grant_tier(user, "export")
    grant_tier(user, "weights")
    _, secret = create_api_token(user=user, name="fuzz")
    return {"Authorization": f"Bearer {secret}"}


@pytest.mark.slow
def test_generated_requests_get_no_server_error_and_match_the_schema(api_user, monkeypatch):
    from django.core import signals
    from django.db import close_old_connections

    monkeypatch.setattr(UserRateThrottle, "THROTTLE_RATES", {"user": "1000000/hour"})
    # As Django's test client does: the WSGI handler would close the test's connection (and its
    # transaction) after every request.
    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    try:
        _fuzz(api_user)
    finally:
        signals.request_started.connect(close_old_connections)
        signals.request_finished.connect(close_old_connections)


def _fuzz(api_user):
    app = get_wsgi_application()
    schema = schemathesis.openapi.from_wsgi("/api/schema/?format=json", app)
    checks = _checks()
    from schemathesis.specs.openapi.checks import negative_data_rejection
    failures: dict[str, set[str]] = {}
    counted = {"cases": 0}

    def run(operation, mode):
        # /api/v1/health answers 503 only when the database or storage fails (a missing GPU worker or
        # broker is "degraded", 200), so here a 503 from it is a real failure like any other.
        operation_checks = checks

        @hypothesis_settings(
            max_examples=EXAMPLES, deadline=None, database=None, derandomize=True,
            phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck),
        )
        @given(case=operation.as_strategy(generation_mode=mode))
        def exercise(case):
            counted["cases"] += 1
            response = case.call(headers=api_user)
            case_checks = operation_checks
            if _form_drops_a_field(case):
                case_checks = [check for check in operation_checks if check is not negative_data_rejection]
            try:
                case.validate_response(response, checks=case_checks, headers=api_user)
            except Exception as exc:  # collect every distinct failure instead of stopping at the first
                summary = f"{case.method} {case.path} ({mode.value}) -> {response.status_code}: "
                failures.setdefault(summary + str(exc).splitlines()[0][:200], set()).add(repr(case)[:400])

        try:
            exercise()
        except Unsatisfiable:
            # An operation with no inputs at all (GET /api/v1/me) has no invalid variant to send.
            if mode is not GenerationMode.NEGATIVE:
                raise

    for result in schema.get_all_operations():
        operation = result.ok()
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            run(operation, mode)

    assert counted["cases"] >= MIN_CASES, counted
    assert not failures, "\n".join(f"{summary}\n    e.g. {sorted(cases)[0]}" for summary, cases in sorted(failures.items()))
