"""Quality verdicts as generation stores them, for tests of the card (no generation engine needed)."""

from quality.models import QualityVerdict

BUILTIN_PASSED = [{"name": name, "kind": "builtin", "status": "passed", "reason": "ok", "value": None,
                   "threshold": None}
                  for name in ("finite", "blank", "saturated", "dynamic_range", "structure", "near_duplicate")]


def sex_check(status: str, reason: str = "") -> dict:
    return {"name": "model:sex", "kind": "model", "status": status, "reason": reason or status, "value": None,
            "threshold": 0.5}


def make_verdict(image, *, decision="passed", sex_status="passed", reason="", generation_seconds=1.0):
    failed = ["model:sex"] if sex_status == "failed" else []
    unavailable = ["model:sex"] if sex_status == "unavailable" else []
    return QualityVerdict.objects.create(
        image=image, cohort=image.cohort, attempt=image.attempt, passed=not failed, decision=decision,
        checks=BUILTIN_PASSED + [sex_check(sex_status, reason)], failed_checks=failed,
        unavailable_checks=unavailable, reason=reason, generation_seconds=generation_seconds, seconds=0.01,
    )
