from collections import Counter

from generation.sampling import allocate, image_seed, sample_patients
from generation.specification import parse_specification
from registry.demo import demo_generation_defaults

from .conftest import cohort_request

DEFAULTS = demo_generation_defaults()


def patients(size=200, seed=11, **overrides):
    return sample_patients(parse_specification(cohort_request(**overrides), DEFAULTS), DEFAULTS, size, seed)


def test_same_seed_gives_the_same_patients_and_another_seed_others():
    assert patients(seed=5) == patients(seed=5)
    assert [p.prompt for p in patients(seed=5)] != [p.prompt for p in patients(seed=6)]


def test_shares_and_prevalences_are_met_exactly():
    cohort = patients(size=200, findings={"pleural_effusion": 0.3, "cardiomegaly": 0.2})
    assert Counter(p.demographics["sex"] for p in cohort) == {"F": 100, "M": 100}
    assert set(Counter(p.demographics["race"] for p in cohort).values()) == {50}
    findings = Counter(f for p in cohort for f in p.findings)
    assert findings["pleural_effusion"] == 60 and findings["cardiomegaly"] == 40


def test_findings_co_occur_but_no_finding_stands_alone():
    cohort = patients(size=400, findings={"pleural_effusion": 0.6, "cardiomegaly": 0.6, "no_finding": 0.3})
    assert any({"pleural_effusion", "cardiomegaly"} <= set(p.findings) for p in cohort)
    normal = [p for p in cohort if "no_finding" in p.findings]
    assert len(normal) >= 120 and all(p.findings == ["no_finding"] for p in normal)


def test_prevalences_per_group_apply_within_their_group():
    cohort = patients(size=400, findings={"cardiomegaly": 0.1},
                      group_findings=[{"where": {"race": "BLACK"}, "findings": {"cardiomegaly": 0.5}}])
    black = [p for p in cohort if p.demographics["race"] == "BLACK"]
    others = [p for p in cohort if p.demographics["race"] != "BLACK"]
    assert sum("cardiomegaly" in p.findings for p in black) == 50
    assert sum("cardiomegaly" in p.findings for p in others) == 30


def test_ages_follow_weighted_bins():
    cohort = patients(size=1000, age={"bins": [{"min": 20, "max": 29, "weight": 1}, {"min": 80, "max": 91, "weight": 3}]})
    ages = [p.demographics["age"] for p in cohort]
    assert all(20 <= a <= 29 or 80 <= a <= 91 for a in ages)
    assert 0.7 < sum(a >= 80 for a in ages) / len(ages) < 0.8
    assert max(ages) == 91


def test_prompt_follows_the_model_versions_template():
    patient = patients(size=8)[0]
    d = patient.demographics
    sex = {"F": "female", "M": "male"}[d["sex"]]
    assert patient.prompt == f"{d['age']} year old {d['race']} {sex}. {patient.impression}"
    phrasings = [ph for key in patient.findings for ph in DEFAULTS["findings"][key]["phrasings"]]
    assert all(sentence.strip() + "." in phrasings for sentence in patient.impression.split(".") if sentence.strip())


def test_free_text_impressions_are_spread_evenly():
    texts = ["Mild cardiomegaly.", "Bibasilar atelectasis."]
    cohort = patients(size=10, findings=None, impressions=texts)
    assert Counter(p.impression for p in cohort) == {texts[0]: 5, texts[1]: 5}
    assert all(p.findings == [] for p in cohort)


def test_allocate_uses_largest_remainders():
    assert Counter(allocate(10, {"a": 0.55, "b": 0.45})) == {"a": 6, "b": 4}
    assert len(allocate(7, {"a": 1 / 3, "b": 1 / 3, "c": 1 / 3})) == 7


def test_image_seeds_are_reproducible_and_distinct_per_index_and_attempt():
    seeds = {image_seed(42, i, a) for i in range(100) for a in range(4)}
    assert len(seeds) == 400
    assert image_seed(42, 7, 1) == image_seed(42, 7, 1)
    assert all(0 <= s < 2**63 for s in seeds)


def test_patients_do_not_depend_on_the_key_order_a_json_column_returns():
    shuffled = {**DEFAULTS, "sexes": dict(reversed(DEFAULTS["sexes"].items())),
                "findings": dict(reversed(DEFAULTS["findings"].items()))}
    request = cohort_request(findings={"cardiomegaly": 0.3, "pleural_effusion": 0.5})
    reordered = cohort_request(findings={"pleural_effusion": 0.5, "cardiomegaly": 0.3},
                               sex={"M": 0.5, "F": 0.5}, race=dict(reversed(request["race"].items())))
    assert sample_patients(parse_specification(request, DEFAULTS), DEFAULTS, 50, 9) == sample_patients(
        parse_specification(reordered, shuffled), shuffled, 50, 9
    )


def test_small_cohorts_keep_both_marginals_exact():
    for seed in range(20):
        cohort = patients(size=4, seed=seed)
        assert Counter(p.demographics["sex"] for p in cohort) == {"F": 2, "M": 2}
        assert set(Counter(p.demographics["race"] for p in cohort).values()) == {1}


def test_uneven_shares_keep_both_marginals_and_cells_close_to_their_product():
    cohort = patients(size=30, sex={"F": 0.7, "M": 0.3}, race={"WHITE": 0.5, "BLACK": 0.2, "ASIAN": 0.2, "HISPANIC": 0.1})
    assert Counter(p.demographics["sex"] for p in cohort) == {"F": 21, "M": 9}
    assert Counter(p.demographics["race"] for p in cohort) == {"WHITE": 15, "BLACK": 6, "ASIAN": 6, "HISPANIC": 3}
    cells = Counter((p.demographics["sex"], p.demographics["race"]) for p in cohort)
    assert all(abs(cells[(s, r)] - 30 * sp * rp) < 1.5 for s, sp in {"F": 0.7, "M": 0.3}.items()
               for r, rp in {"WHITE": 0.5, "BLACK": 0.2, "ASIAN": 0.2, "HISPANIC": 0.1}.items())


def test_ties_are_broken_by_the_seed_not_by_category_order():
    firsts = {patients(size=1, seed=seed)[0].demographics["sex"] for seed in range(20)}
    assert firsts == {"F", "M"}
