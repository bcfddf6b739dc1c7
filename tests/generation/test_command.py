import json

import pytest
from django.core.management import CommandError, call_command

from generation.models import Cohort

from .conftest import cohort_request


def test_generate_cohort_inline_goes_through_the_services(researcher, tmp_path, capsys):
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps(cohort_request(size=2)))
    call_command("generate_cohort", "--user", researcher.username, "--spec", str(spec), "--inline")
    cohort = Cohort.objects.get()
    out = capsys.readouterr().out
    assert cohort.status == "completed" and cohort.owner == researcher
    assert f"Cohort {cohort.pk}: completed." in out and out.strip().endswith(str(cohort.pk))
    assert "passed 2/2" in out


def test_generate_cohort_reports_a_bad_specification(researcher, tmp_path):
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps(cohort_request(race={"WHITE": 0.5})))
    with pytest.raises(CommandError, match="race: The race shares must add up to 1"):
        call_command("generate_cohort", "--user", researcher.username, "--spec", str(spec), "--inline")
    assert not Cohort.objects.exists()


def test_generate_cohort_no_wait_queues_the_batches_and_prints_the_id(researcher, tmp_path, capsys):
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps(cohort_request(size=2)))
    call_command("generate_cohort", "--user", researcher.username, "--spec", str(spec), "--no-wait")
    cohort = Cohort.objects.get()
    assert set(cohort.batches.values_list("status", flat=True)) == {"queued"}
    assert capsys.readouterr().out.strip().endswith(str(cohort.pk))


def test_generate_cohort_names_an_unknown_user(db, tmp_path):
    spec = tmp_path / "spec.json"
    spec.write_text("{}")
    with pytest.raises(CommandError, match="No active user 'nobody'"):
        call_command("generate_cohort", "--user", "nobody", "--spec", str(spec))


def test_generate_cohort_fills_unspecified_shares_from_the_default_preset_as_the_api_does(researcher, tmp_path, capsys):
    request = cohort_request(size=2)
    del request["race"]  # only sex, age and findings given: race comes from the balanced preset
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps(request))
    call_command("generate_cohort", "--user", researcher.username, "--spec", str(spec), "--no-wait")
    cohort = Cohort.objects.get(owner=researcher)
    assert cohort.specification["race"] == {"WHITE": 0.25, "BLACK": 0.25, "ASIAN": 0.25, "HISPANIC": 0.25}
