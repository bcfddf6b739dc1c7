"""The screening API: a cohort's privacy summary and verdicts for its owner, the matches and
confirm / release for privacy reviewers, and refusals for everyone else."""

import pytest
from django.urls import reverse
from rest_framework.test import APIClient

from cxr_platform.audit.models import AuditEvent
from screening import selectors
from screening.models import ScreeningRecord
from screening.services import screen_images
from tests.access.factories import grant_tier, login_verified
from tests.factories import StaffFactory, UserFactory
from tests.screening.factories import make_cohort, make_image
from tests.screening.review_fixtures import (  # noqa: F401 - fixtures
    near_copy,
    owner_api,
    reviewer,
    reviewer_api,
    screened,
    token_client,
    train_array,
)

pytestmark = pytest.mark.django_db


def _privacy(cohort):
    return f"/api/v1/cohorts/{cohort.pk}/privacy"


def _verdicts(cohort):
    return f"/api/v1/cohorts/{cohort.pk}/screening"


def _confirm(record):
    return f"/api/v1/screening/{record.pk}/confirm"


def _release(record):
    return f"/api/v1/screening/{record.pk}/release"


REVIEWER_FIELDS = {"holdout_score", "exact_match", "best_match", "best_match_path", "stage_scores", "duplicate_of",
                   "duplicate_similarity", "review_reason", "reviewed_by", "reviewed_at"}


# --- The owner ---------------------------------------------------------------------------------------


def test_the_owner_gets_the_privacy_summary_by_token(owner_api, screened):
    response = owner_api.get(_privacy(screened["cohort"]))
    assert response.status_code == 200, response.content
    body = response.json()
    expected = selectors.privacy_summary(screened["cohort"])
    assert {k: body[k] for k in expected} == expected
    assert body["cohort"] == screened["cohort"].pk
    assert (body["screened"], body["passed"], body["flagged"]) == (2, 1, 1)
    assert body["review"] == {"pending": 1, "confirmed": 0, "released": 0}


def test_the_owner_sees_every_verdict_but_never_the_training_match(owner_api, screened):
    response = owner_api.get(_verdicts(screened["cohort"]))
    assert response.status_code == 200, response.content
    rows = {row["id"]: row for row in response.json()["results"]}
    flagged, passed = rows[screened["flagged"].pk], rows[screened["passed"].pk]
    assert flagged["decision"] == "memorized" and flagged["flagged"] is True
    assert flagged["score"] >= flagged["threshold"] == screened["flagged"].threshold
    assert "training radiograph" in flagged["reason"] and flagged["review_status"] == "pending"
    assert passed["decision"] == "passed" and passed["flagged"] is False and passed["review_status"] == ""
    assert flagged["sealed"] is True and passed["sealed"] is True
    assert (flagged["index"], passed["index"]) == (0, 1)
    for row in rows.values():
        assert all(row[name] is None for name in REVIEWER_FIELDS), row
    text = response.content.decode()
    for record in (screened["flagged"], screened["passed"]):
        assert record.best_match_path and record.best_match_path not in text


def test_someone_elses_cohort_is_404(screened):
    stranger = UserFactory()
    grant_tier(stranger, "export")
    api = token_client(stranger)
    for url in (_privacy(screened["cohort"]), _verdicts(screened["cohort"])):
        response = api.get(url)
        assert response.status_code == 404 and response.json()["detail"]


def test_a_grant_without_the_api_is_403(screened, demo_model_version):
    researcher = UserFactory()
    grant_tier(researcher, "generate")  # generation in the browser, but not the API
    response = token_client(researcher).get(_verdicts(make_cohort(demo_model_version, owner=researcher)))
    assert response.status_code == 403 and "REST API" in response.json()["detail"]


def test_no_credentials_is_401(screened):
    response = APIClient().get(_verdicts(screened["cohort"]))
    assert response.status_code == 401 and response.json()["detail"]


# --- Researchers cannot review -----------------------------------------------------------------------


@pytest.mark.parametrize("path", [_confirm, _release])
def test_a_researcher_cannot_confirm_or_release_even_in_their_own_cohort(owner_api, screened, path):
    record = screened["flagged"]
    response = owner_api.post(path(record), {"reason": "looks fine to me"}, format="json")
    assert response.status_code == 403
    assert response["Content-Type"].startswith("application/json") and "privacy reviewers" in response.json()["detail"]
    record.refresh_from_db()
    assert record.review_status == "pending"
    assert not AuditEvent.objects.filter(action__startswith="screening.quarantine_").exists()


def test_a_staff_api_token_is_not_a_second_factor(screened, reviewer, settings):
    settings.REQUIRE_STAFF_2FA = True
    response = token_client(reviewer).post(_release(screened["flagged"]), {"reason": "no"}, format="json")
    assert response.status_code == 403 and "two-factor" in response.json()["detail"]


def test_staff_who_have_not_passed_two_factor_cannot_review(screened, reviewer, settings):
    settings.REQUIRE_STAFF_2FA = True
    client = APIClient()
    client.force_login(reviewer)
    assert client.post(_confirm(screened["flagged"]), {}, format="json").status_code == 403
    assert client.get(_verdicts(screened["cohort"])).status_code == 403  # no grant, no reviewer: nothing


# --- Privacy reviewers -------------------------------------------------------------------------------


def test_a_reviewer_sees_the_matches_of_any_cohort_and_the_look_is_audited(reviewer_api, reviewer, screened):
    response = reviewer_api.get(_verdicts(screened["cohort"]))
    assert response.status_code == 200, response.content
    rows = {row["id"]: row for row in response.json()["results"]}
    flagged = rows[screened["flagged"].pk]
    record = screened["flagged"]
    assert flagged["best_match_path"] == record.best_match_path and flagged["best_match"] == record.best_match
    assert flagged["stage_scores"]["fused"] == pytest.approx(record.score, abs=1e-4)
    assert flagged["exact_match"] is False and flagged["holdout_score"] is not None
    event = AuditEvent.objects.get(action="screening.verdicts_viewed")
    assert event.actor_id == reviewer.pk and sorted(event.details["records"]) == sorted(rows)
    assert reviewer_api.get(_privacy(screened["cohort"])).status_code == 200


def test_release_needs_a_reason(reviewer_api, screened):
    for body in ({}, {"reason": "   "}):
        response = reviewer_api.post(_release(screened["flagged"]), body, format="json")
        assert response.status_code == 400 and "reason" in response.json(), response.content
    screened["flagged"].refresh_from_db()
    assert screened["flagged"].review_status == "pending"


def test_a_reviewer_releases_a_false_positive_audited_with_the_reviewer(reviewer_api, reviewer, screened):
    record = screened["flagged"]
    old_seal = record.seal
    response = reviewer_api.post(_release(record), {"reason": "Different patient: other clavicles."}, format="json")
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["review_status"] == "released" and body["reviewed_by"] == reviewer.username
    assert body["review_reason"] == "Different patient: other clavicles." and body["sealed"] is True
    record.refresh_from_db()
    assert record.review_status == "released" and record.reviewed_by_id == reviewer.pk
    assert record.flagged is True and record.image.status == "flagged"  # still out of the cohort
    assert record.seal != old_seal and selectors.sealed_ok(record)
    event = AuditEvent.objects.get(action="screening.quarantine_released")
    assert event.actor_id == reviewer.pk
    assert (event.target_type, event.target_id) == ("screening.screeningrecord", str(record.pk))
    assert event.details["reason"] == "Different patient: other clavicles." and event.details["seal"] == record.seal
    assert reviewer_api.get(_privacy(screened["cohort"])).json()["review"] == {
        "pending": 0, "confirmed": 0, "released": 1}


def test_a_released_image_can_still_be_confirmed_but_a_confirmed_one_is_never_released(reviewer_api, screened):
    record = screened["flagged"]
    assert reviewer_api.post(_release(record), {"reason": "ok"}, format="json").status_code == 200
    response = reviewer_api.post(_confirm(record), {"reason": "second look: same patient"}, format="json")
    assert response.status_code == 200 and response.json()["review_status"] == "confirmed"
    again = reviewer_api.post(_release(record), {"reason": "changed my mind"}, format="json")
    assert again.status_code == 409 and "already confirmed" in again.json()["detail"]
    assert reviewer_api.post(_confirm(record), {}, format="json").status_code == 409
    actions = list(AuditEvent.objects.filter(action__startswith="screening.quarantine_")
                   .order_by("sequence").values_list("action", flat=True))
    assert actions == ["screening.quarantine_released", "screening.quarantine_confirmed"]


def test_only_quarantined_images_are_reviewed(reviewer_api, screened):
    response = reviewer_api.post(_confirm(screened["passed"]), {}, format="json")
    assert response.status_code == 409 and "passed screening" in response.json()["detail"]
    assert reviewer_api.post("/api/v1/screening/999999999/confirm", {}, format="json").status_code == 404


def test_nobody_releases_an_image_of_their_own_cohort(screened, demo_screening_index, screening_split, settings):
    settings.REQUIRE_STAFF_2FA = True
    staff_owner = StaffFactory()
    cohort = make_cohort(demo_screening_index.model_version, owner=staff_owner)
    image = make_image(cohort, near_copy(screening_split, 3))
    [verdict] = screen_images([image])
    assert verdict.flagged and not image.screening.exact_match
    api = login_verified(APIClient(), staff_owner)
    response = api.post(_release(image.screening), {"reason": "mine is fine"}, format="json")
    assert response.status_code == 403 and "own cohort" in response.json()["detail"]
    assert api.post(_confirm(image.screening), {}, format="json").status_code == 200  # tightening is fine


def test_an_exact_copy_is_never_released(reviewer_api, demo_screening_index, screening_split):
    cohort = make_cohort(demo_screening_index.model_version)
    image = make_image(cohort, train_array(screening_split, 4))
    screen_images([image])
    record = ScreeningRecord.objects.get(image=image)
    assert record.exact_match and record.flagged
    response = reviewer_api.post(_release(record), {"reason": "looks synthetic"}, format="json")
    assert response.status_code == 409 and "exact copy" in response.json()["detail"]


def test_a_session_post_without_the_csrf_token_is_refused(screened, reviewer, settings):
    settings.REQUIRE_STAFF_2FA = True
    client = login_verified(APIClient(enforce_csrf_checks=True), reviewer)
    response = client.post(_confirm(screened["flagged"]), {}, format="json")
    assert response.status_code == 403 and "CSRF" in response.json()["detail"]


# --- The browser uses the same rules -----------------------------------------------------------------


def test_the_browser_release_and_confirm_use_the_same_rules(client, reviewer, screened, settings):
    settings.REQUIRE_STAFF_2FA = True
    login_verified(client, reviewer)
    record = screened["flagged"]
    page = client.get(reverse("screening-record", args=[record.pk]))
    assert page.status_code == 200 and reverse("screening-release", args=[record.pk]) in page.content.decode()
    response = client.post(reverse("screening-release", args=[record.pk]), {"reason": ""}, follow=True)
    assert "reason is required" in response.content.decode()
    record.refresh_from_db()
    assert record.review_status == "pending"
    client.post(reverse("screening-release", args=[record.pk]), {"reason": "other patient"})
    record.refresh_from_db()
    assert record.review_status == "released" and record.reviewed_by_id == reviewer.pk
    assert AuditEvent.objects.filter(action="screening.quarantine_released", actor=reviewer).count() == 1
    listing = client.get(reverse("screening-quarantine"), {"review": "pending"})
    assert [r.pk for r in listing.context["page"]] == []


def test_researchers_cannot_review_in_the_browser(client, screened):
    client.force_login(screened["owner"])
    response = client.post(reverse("screening-release", args=[screened["flagged"].pk]), {"reason": "x"})
    assert response.status_code == 403 and b"for staff" in response.content  # the one not-allowed page
    screened["flagged"].refresh_from_db()
    assert screened["flagged"].review_status == "pending"


def test_the_schema_documents_the_screening_endpoints(client):
    schema = client.get(reverse("api-schema"), {"format": "json"}).json()
    paths = schema["paths"]
    assert "get" in paths["/api/v1/cohorts/{id}/privacy"] and "get" in paths["/api/v1/cohorts/{id}/screening"]
    for action in ("confirm", "release"):
        operation = paths[f"/api/v1/screening/{{record_id}}/{action}"]["post"]
        assert {"200", "403", "404", "409"} <= set(operation["responses"])
    release = paths["/api/v1/screening/{record_id}/release"]["post"]["requestBody"]["content"]["application/json"]
    component = release["schema"]["$ref"].rsplit("/", 1)[-1]
    assert schema["components"]["schemas"][component]["required"] == ["reason"]
