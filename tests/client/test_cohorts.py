"""cxr cohort create / list / show / cancel against the live server (create --wait with a worker: test_journey.py)."""

import pytest

from generation.models import Cohort
from tests.exports.factories import array_pngs, make_cohort

from .conftest import api_user

SPEC = """\
# A small cohort of the demo model, as a researcher writes it
name: CLI effusion study
size: 2
seed: 1234
sex: {F: 0.5, M: 0.5}
race: {WHITE: 0.25, BLACK: 0.25, ASIAN: 0.25, HISPANIC: 0.25}
age: {min: 40, max: 80}
findings:
  pleural_effusion: 0.5
"""


@pytest.fixture
def spec(tmp_path):
    path = tmp_path / "spec.yaml"
    path.write_text(SPEC)
    return path


def test_list_and_show_give_json_that_scripts_can_read_of_your_own_cohorts_only(cxr, demo_model_version):
    user, token = api_user()
    first = make_cohort(user, demo_model_version, pngs=array_pngs(2, size=16), name="First")
    second = make_cohort(user, demo_model_version, pngs=array_pngs(3, size=16), name="Second")
    others = make_cohort(api_user()[0], demo_model_version, pngs=array_pngs(1, size=16), name="Someone else's")
    cxr.login(token)
    listed = cxr("cohort", "list", "--json")
    assert listed.code == 0, listed.stderr
    assert sorted(c["id"] for c in listed.json()) == [first.pk, second.pk]
    shown = cxr("cohort", "show", second.pk, "--json").json()
    assert (shown["name"], shown["status"], shown["progress"]["passed"]) == ("Second", "completed", 3)
    text = cxr("cohort", "list").stdout
    assert "First" in text and "Second" in text and "Someone else's" not in text
    not_yours = cxr("cohort", "show", others.pk)
    assert not_yours.code == 5 and "HTTP 404" in not_yours.stderr


def test_cancel_stops_a_queued_cohort_and_a_second_cancel_is_refused(cxr, spec, screened_demo_model_version):
    _, token = api_user()
    cxr.login(token)
    created = cxr("cohort", "create", spec, "--json")  # no worker runs: it stays queued
    assert created.code == 0, created.stderr
    cohort_id = created.json()["id"]
    cancelled = cxr("cohort", "cancel", cohort_id, "--json")
    assert cancelled.code == 0 and cancelled.json()["status"] == "cancelled"
    assert Cohort.objects.get(pk=cohort_id).status == "cancelled"
    again = cxr("cohort", "cancel", cohort_id)
    assert again.code == 1 and "already cancelled" in again.stderr


def test_a_spec_that_is_not_yaml_is_refused_with_its_line_before_anything_is_sent(offline_cxr, tmp_path):
    broken = tmp_path / "broken.yaml"
    broken.write_text("name: x\nsize: [2\n")
    result = offline_cxr("cohort", "create", broken, token="cxr_unused")
    assert result.code == 2
    assert "not valid YAML at line" in result.stderr and "Cannot reach" not in result.stderr


def test_the_servers_objection_to_a_spec_names_the_field(cxr, tmp_path, screened_demo_model_version):
    _, token = api_user()
    cxr.login(token)
    bad = tmp_path / "bad.yaml"
    bad.write_text(SPEC.replace("size: 2", "size: 0"))
    result = cxr("cohort", "create", bad)
    assert result.code == 1
    assert "size:" in result.stderr and "HTTP 400" in result.stderr
    assert "Traceback" not in result.stderr
