import pytest
from django.core.exceptions import ValidationError

from generation.sampling import sample_patients
from generation.specification import parse_specification, reference_table
from registry.demo import demo_generation_defaults

from .conftest import cohort_request

DEFAULTS = demo_generation_defaults()


def errors_of(data) -> dict:
    with pytest.raises(ValidationError) as caught:
        parse_specification(data, DEFAULTS)
    return caught.value.message_dict


def test_shares_must_add_up_to_one():
    errors = errors_of(cohort_request(sex={"F": 0.7, "M": 0.2}))
    assert errors["sex"] == ["The sex shares must add up to 1; they add up to 0.9."]


def test_unknown_race_names_the_known_categories():
    errors = errors_of(cohort_request(race={"MARTIAN": 1.0}))
    assert "Unknown race category 'MARTIAN'" in errors["race"][0]
    assert "WHITE, BLACK, ASIAN, HISPANIC" in errors["race"][0]


@pytest.mark.parametrize("age", [{"min": 10, "max": 40}, {"min": 50, "max": 95}, {"min": 60, "max": 40}])
def test_ages_must_lie_within_18_to_91(age):
    assert "within 18–91" in errors_of(cohort_request(age=age))["age"][0]


def test_every_problem_is_reported_at_once():
    errors = errors_of(cohort_request(sex={"F": 2}, findings={"dragon_scales": 0.1}))
    assert set(errors) == {"sex", "findings"}


def test_no_finding_prevalence_leaves_room_for_the_other_findings():
    errors = errors_of(cohort_request(findings={"no_finding": 0.8, "edema": 0.5}))
    assert "cannot fit beside 0.8" in errors["findings"][0]


def test_findings_and_free_text_impressions_are_alternatives():
    errors = errors_of(cohort_request(impressions=["Small left pleural effusion."]))
    assert "not both" in errors["impressions"][0]


def test_group_rules_must_select_known_categories():
    errors = errors_of(cohort_request(group_findings=[{"where": {"race": "MARTIAN"}, "findings": {"edema": 0.5}}]))
    assert "unknown race 'MARTIAN'" in errors["group_findings"][0]


def test_balanced_preset_gives_equal_cells():
    spec = parse_specification({"preset": "balanced"}, DEFAULTS)
    patients = sample_patients(spec, DEFAULTS, 80, seed=3)
    cells = {}
    for p in patients:
        key = (p.demographics["sex"], p.demographics["race"])
        cells[key] = cells.get(key, 0) + 1
    assert len(cells) == 8 and set(cells.values()) == {10}


def test_reference_preset_follows_the_shipped_table():
    table = reference_table()
    spec = parse_specification({"preset": "reference"}, DEFAULTS)
    assert spec.race == {race: table["race"][race] for race in DEFAULTS["races"]}
    assert spec.findings["pleural_effusion"] == table["findings"]["pleural_effusion"]


def test_preset_values_can_be_overridden():
    spec = parse_specification({"preset": "reference", "sex": {"F": 1.0}}, DEFAULTS)
    assert spec.sex == {"M": 0.0, "F": 1.0}


def test_normalised_spec_round_trips():
    from generation.specification import CohortSpec

    spec = parse_specification(
        cohort_request(age={"bins": [{"min": 20, "max": 30, "weight": 1}, {"min": 70, "max": 91, "weight": 3}]},
                       group_findings=[{"where": {"sex": "F"}, "findings": {"edema": 0.5}}]),
        DEFAULTS,
    )
    assert CohortSpec.from_dict(spec.as_dict()) == spec


def test_sampling_overrides_outside_the_bounds_are_refused():
    errors = errors_of(cohort_request(sampling={"steps": 10_000}))
    assert errors["sampling"]
