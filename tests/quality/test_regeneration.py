"""Quality control in generation, with tiny TorchScript QC models whose verdicts the tests control:
regeneration with a fresh seed, the attempt limit, the after-last-attempt policy, unavailable checks."""

import pytest

from cxr_platform.audit.models import AuditEvent
from generation import services
from generation.sampling import image_seed
from quality.classifiers import Declaration, prepare
from quality.models import QualityVerdict
from quality.sealing import sealed_ok
from quality.selectors import quality_card
from quality.services import register_qc_model
from tests.quality.qc_models import MeanIntensitySex, save

SEX_FIELDS = {"predicts": "sex", "labels": ["F", "M"], "input_size": 64, "mean": 0.0, "std": 1.0, "threshold": 0.5}


def request(size=2, **overrides):
    data = {"name": "QC study", "size": size, "seed": 1234, "sex": {"F": 0.5, "M": 0.5},
            "race": {"WHITE": 1.0}, "age": {"min": 40, "max": 60}, "findings": {"pleural_effusion": 0.5},
            "sampling": {"steps": 1}}  # one denoising step: these tests are about what happens after decoding
    data.update(overrides)
    return data


def register_sex_model(model_version, tmp_path, module):
    path = tmp_path / "sex.pt"
    return register_qc_model(model_version=model_version, name="sex", path=path, sha256=save(module, path),
                             **SEX_FIELDS)


def everyone_looks_female(model_version, tmp_path):
    """Every image's mean is above -1, so the model sees "F" in every image: men always fail."""
    return register_sex_model(model_version, tmp_path, MeanIntensitySex(cut=-1.0))


def run(user, **overrides):
    cohort = services.request_cohort(user=user, data=request(**overrides), enqueue=False)
    return services.run_cohort_inline(cohort)


def test_images_that_pass_every_check_are_delivered_with_their_verdicts(researcher, demo_model_version, tmp_path):
    everyone_looks_female(demo_model_version, tmp_path)
    cohort = run(researcher, size=1, sex={"F": 1.0})
    assert cohort.status == "completed"
    verdicts = QualityVerdict.objects.filter(cohort=cohort)
    assert verdicts.count() == 1 and all(v.passed and v.decision == "passed" for v in verdicts)
    names = [c["name"] for c in verdicts[0].checks]
    assert names[:6] == ["finite", "blank", "saturated", "dynamic_range", "structure", "near_duplicate"]
    assert names[6] == "model:sex" and verdicts[0].checks[6]["extra"]["predicted"] == "F"
    assert sealed_ok(verdicts[0])
    assert verdicts[0].checks[0]["status"] == "passed"  # the engine reported its decoder output: no NaN / inf


def test_a_failing_patient_is_regenerated_up_to_the_limit_then_dropped_and_counted_in_its_subgroup(
        researcher, demo_model_version, tmp_path, settings):
    settings.QC_MAX_ATTEMPTS = 2
    everyone_looks_female(demo_model_version, tmp_path)
    cohort = run(researcher, quality_policy="drop")
    man = cohort.images.filter(demographics__sex="M")
    assert sorted(man.values_list("attempt", "status")) == [(0, "rejected"), (1, "rejected")]
    assert man.get(attempt=1).seed == image_seed(cohort.seed, man.first().index, 1)
    assert list(QualityVerdict.objects.filter(image__in=man).order_by("attempt").values_list("decision", flat=True)) \
        == ["regenerated", "dropped"]
    assert cohort.status == "completed"
    assert list(cohort.images.filter(status="passed").values_list("demographics__sex", flat=True)) == ["F"]
    assert AuditEvent.objects.filter(action="synthetic_image.qc_failed").count() == 2
    assert AuditEvent.objects.filter(action="synthetic_image.dropped").count() == 1
    completed = AuditEvent.objects.get(action="cohort.completed", target_id=str(cohort.pk))
    assert completed.details["dropped"] == 1
    # The same known outcome, per subgroup: women always pass, men never do.
    card = quality_card(cohort)
    by_sex = {row["sex"]: row for row in card["subgroups"]["sex"]}
    assert (by_sex["F"]["images_checked"], by_sex["F"]["pass_rate"], by_sex["F"]["patient_pass_rate"]) == (1, 1.0, 1.0)
    assert (by_sex["M"]["images_checked"], by_sex["M"]["pass_rate"], by_sex["M"]["dropped"]) == (2, 0.0, 1)
    assert (card["overall"]["patients"], card["overall"]["images_checked"], card["overall"]["dropped"]) == (2, 3, 1)
    assert card["regeneration"]["quality_regenerations"] == 1 and card["failures_by_check"] == {"model:sex": 2}
    cells = {(c["sex"], c["race"]): c["patient_pass_rate"] for c in card["subgroups"]["cells"]}
    assert cells == {("F", "WHITE"): 1.0, ("M", "WHITE"): 0.0}


def test_deliver_policy_delivers_the_last_attempt_flagged(researcher, demo_model_version, tmp_path, settings):
    settings.QC_MAX_ATTEMPTS = 2
    everyone_looks_female(demo_model_version, tmp_path)
    cohort = run(researcher, quality_policy="deliver")
    man = cohort.images.filter(demographics__sex="M")
    assert sorted(man.values_list("attempt", "status")) == [(0, "rejected"), (1, "passed")]
    assert man.get(attempt=1).quality.decision == "delivered_flagged"
    assert cohort.status == "completed" and cohort.images.filter(status="passed").count() == 2


def test_a_patient_that_fails_once_passes_with_its_fresh_seed(researcher, demo_model_version, tmp_path):
    from generation.inference import SamplingParams, get_engine

    cohort = services.request_cohort(user=researcher, data=request(size=1, sex={"F": 1.0}), enqueue=False)
    image = cohort.images.get()
    params = SamplingParams.from_defaults(demo_model_version.defaults, {"steps": 1})
    seeds = [image_seed(cohort.seed, 0, attempt) for attempt in (0, 1)]
    pictures = get_engine(demo_model_version).generate([image.prompt] * 2, seeds, params)
    declaration = Declaration("sex", ("F", "M"), 64, 0.0, 1.0, 0.5)
    first, second = (float(prepare([p], declaration).mean()) for p in pictures)
    assert first != second
    # The cut between the two attempts' means: the first looks male, the second female.
    register_sex_model(demo_model_version, tmp_path, MeanIntensitySex(cut=(first + second) / 2,
                                                                      brighter_is_female=second > first))
    services.run_cohort_inline(cohort)
    cohort.refresh_from_db()
    assert cohort.status == "completed"
    assert list(cohort.images.values_list("attempt", "status")) == [(0, "rejected"), (1, "passed")]
    assert "Asked for sex F" in cohort.images.get(attempt=0).error
    assert quality_card(cohort)["regeneration"]["quality_regenerations"] == 1


def test_a_configured_model_whose_file_changed_marks_its_check_unavailable(researcher, demo_model_version, tmp_path):
    qc_model = everyone_looks_female(demo_model_version, tmp_path)
    with open(qc_model.path, "ab") as handle:
        handle.write(b"tampered")
    cohort = run(researcher, size=1)
    assert cohort.status == "completed"
    verdicts = list(QualityVerdict.objects.filter(cohort=cohort))
    assert len(verdicts) == 1 and all(v.unavailable_checks == ["model:sex"] and v.passed for v in verdicts)
    check = next(c for c in verdicts[0].checks if c["name"] == "model:sex")
    assert check["status"] == "unavailable" and "changed since registration" in check["reason"]
    card = quality_card(cohort)
    assert card["unavailable_checks"]["model:sex"]["images"] == 1


def test_an_unknown_policy_is_refused_with_a_clear_message(researcher):
    from django.core.exceptions import ValidationError

    with pytest.raises(ValidationError) as caught:
        services.plan_cohort(user=researcher, data=request(quality_policy="sometimes"))
    assert "quality_policy" in caught.value.message_dict
