"""Every screening verdict is sealed; an edit made in the database behind the platform's back is
found by verify_screening_seals and refused by the selectors that gate showing and exporting."""

import pytest
from django.apps import apps as django_apps
from django.core.management import CommandError, call_command
from django.db import connection

from generation.models import SyntheticImage
from screening import selectors, sealing
from screening.models import ScreeningRecord
from screening.services import ReviewRefused, confirm_quarantined, release_quarantined
from tests.screening.review_fixtures import (  # noqa: F401 - fixtures
    owner_api,
    reviewer,
    screened,
    set_status,
)

pytestmark = pytest.mark.django_db


def _raw(sql: str, params):
    """An edit made directly in the database (psql, a restored backup, an attacker), not through Django."""
    with connection.cursor() as cursor:
        cursor.execute(sql, params)


def _verify(*args) -> tuple[bool, str]:
    from io import StringIO

    out = StringIO()
    try:
        call_command("verify_screening_seals", *args, stdout=out)
    except CommandError as exc:
        return False, out.getvalue() + str(exc)
    return True, out.getvalue()


def test_every_verdict_is_sealed_when_it_is_written_passed_ones_too(screened):
    for record in (screened["flagged"], screened["passed"]):
        record.refresh_from_db()
        assert record.seal.startswith("v1:") and selectors.sealed_ok(record)
    ok, output = _verify()
    assert ok, output
    assert "2 records verified" in output


def test_unflagging_a_record_in_the_database_is_detected(screened):
    record = screened["flagged"]
    _raw("UPDATE screening_screeningrecord SET flagged = %s, decision = %s WHERE id = %s",
         [False, "passed", record.pk])
    # …and showing it, as someone with database access would next.
    set_status(record.image, SyntheticImage.Status.PASSED)
    ok, output = _verify()
    assert not ok
    assert f"record #{record.pk}" in output and "does not match its seal" in output
    assert "NOT intact" in output
    record.refresh_from_db()
    assert not selectors.sealed_ok(record)
    assert not selectors.cleared_for_release(record.image)
    assert selectors.unreleasable_image_ids(SyntheticImage.objects.filter(cohort=screened["cohort"])) == {
        record.image_id}


def test_changing_a_score_is_detected(screened):
    record = screened["passed"]
    _raw("UPDATE screening_screeningrecord SET score = score - 0.2 WHERE id = %s", [record.pk])
    ok, output = _verify()
    assert not ok and f"record #{record.pk}" in output
    assert selectors.cleared_for_release(screened["flagged"].image) is False  # flagged: never cleared
    record.refresh_from_db()
    assert selectors.cleared_for_release(record.image) is False


def test_the_owner_sees_that_a_record_was_tampered_with(owner_api, screened):
    _raw("UPDATE screening_screeningrecord SET reason = %s WHERE id = %s", ["all fine", screened["flagged"].pk])
    rows = {row["id"]: row for row in owner_api.get(f"/api/v1/cohorts/{screened['cohort'].pk}/screening")
            .json()["results"]}
    assert rows[screened["flagged"].pk]["sealed"] is False and rows[screened["passed"].pk]["sealed"] is True


def test_an_untouched_passed_image_is_cleared(screened):
    assert selectors.cleared_for_release(screened["passed"].image)
    assert selectors.unreleasable_image_ids([screened["passed"].image]) == set()


def test_a_review_written_in_the_database_is_detected_and_never_sealed_over(screened, reviewer):
    record = screened["flagged"]
    _raw("UPDATE screening_screeningrecord SET review_status = %s, review_reason = %s WHERE id = %s",
         ["released", "fine", record.pk])
    assert not _verify()[0]
    record.refresh_from_db()
    # A legitimate review must not re-seal (launder) a tampered record.
    with pytest.raises(ReviewRefused, match="does not match its seal"):
        confirm_quarantined(record, actor=reviewer)
    record.refresh_from_db()
    assert not selectors.sealed_ok(record)


def test_a_legitimate_review_reseals_and_verifies(screened, reviewer):
    release_quarantined(screened["flagged"], actor=reviewer, reason="other patient")
    ok, output = _verify()
    assert ok, output


def test_putting_back_an_earlier_sealed_state_is_detected_by_the_audit_cross_check(screened, reviewer):
    record = screened["flagged"]
    record.refresh_from_db()
    before = (record.review_status, record.review_reason, record.reviewed_at, record.seal)
    confirm_quarantined(record, actor=reviewer, reason="same patient")
    assert _verify()[0]
    # Someone restores the row as it was before the confirmation (a valid seal, but an old one).
    _raw("UPDATE screening_screeningrecord SET review_status = %s, review_reason = %s, reviewed_at = %s, "
         "reviewed_by_id = NULL, seal = %s WHERE id = %s", [*before, record.pk])
    record.refresh_from_db()
    assert selectors.sealed_ok(record)  # the seal alone cannot tell…
    ok, output = _verify()
    assert not ok and "earlier state was put back" in output  # …the audit log can


def test_a_deleted_record_of_a_shown_image_is_detected(screened):
    image_id = screened["passed"].image_id
    _raw("DELETE FROM screening_screeningrecord WHERE id = %s", [screened["passed"].pk])
    ok, output = _verify()
    assert not ok and f"image #{image_id}" in output and "no screening record" in output
    image = SyntheticImage.objects.get(pk=image_id)
    assert not selectors.cleared_for_release(image)


def test_showing_a_quarantined_image_is_detected(screened):
    set_status(screened["flagged"].image, SyntheticImage.Status.PASSED)
    ok, output = _verify()
    assert not ok and "its screening record says memorized" in output


def test_seals_depend_on_the_key(screened, settings):
    settings.AUDIT_HMAC_KEY = "another key " * 4
    ok, output = _verify()
    assert not ok and output.count("does not match its seal") == 2


def test_the_cohort_option_limits_the_check(screened, demo_screening_index):
    _raw("UPDATE screening_screeningrecord SET threshold = 0.99 WHERE id = %s", [screened["flagged"].pk])
    assert not _verify("--cohort", str(screened["cohort"].pk))[0]
    with pytest.raises(CommandError, match="No cohort"):
        call_command("verify_screening_seals", "--cohort", "999999")


def test_the_migration_seals_records_written_before_it(screened):
    from importlib import import_module

    migration = import_module("screening.migrations.0002_review_and_seal")
    ScreeningRecord.objects.update(seal="", review_status="")
    migration.seal_existing(django_apps, None)
    flagged = ScreeningRecord.objects.get(pk=screened["flagged"].pk)
    passed = ScreeningRecord.objects.get(pk=screened["passed"].pk)
    assert flagged.review_status == "pending" and passed.review_status == ""
    assert sealing.seal_matches(flagged) and sealing.seal_matches(passed)


def test_a_seal_survives_the_database_round_trip_of_awkward_numbers(screened):
    record = ScreeningRecord.objects.get(pk=screened["passed"].pk)
    record.stage_scores = {**record.stage_scores, "rotation": -0.0, "big": 1e20, "small": 1e-7, "zoom": 1, "n": [2.5]}
    record.score = -0.0
    record.save(update_fields=["stage_scores", "score"])
    sealing.seal(record)
    assert sealing.seal_matches(ScreeningRecord.objects.get(pk=record.pk))
