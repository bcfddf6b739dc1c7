"""A quality verdict changed outside the platform is reported by verify_quality_seals."""

import pytest
from django.core.management import CommandError, call_command

from generation import services
from quality import sealing
from quality.models import QualityVerdict
from tests.quality.factories import make_verdict
from tests.quality.test_regeneration import request


def test_a_verdict_turned_from_failed_to_passed_in_the_database_is_reported(researcher, capsys):
    cohort = services.request_cohort(user=researcher, data=request(size=1), enqueue=False)
    verdict = make_verdict(cohort.images.get(), decision="dropped", sex_status="failed", reason="Asked for sex F")
    QualityVerdict.objects.filter(pk=verdict.pk).update(seal=sealing.compute(verdict))
    call_command("verify_quality_seals")
    QualityVerdict.objects.filter(pk=verdict.pk).update(passed=True, decision="passed")
    with pytest.raises(CommandError, match="1 quality verdict"):
        call_command("verify_quality_seals")
    assert f"verdict {verdict.pk}" in capsys.readouterr().out
