from datetime import timedelta

from django.utils import timezone

from generation import selectors, services
from generation.models import Cohort, SyntheticImage

from .conftest import cohort_request


def test_progress_counts_each_state_and_estimates_the_time_left(researcher):
    cohort = services.request_cohort(user=researcher, data=cohort_request(size=8), enqueue=False)
    started = timezone.now() - timedelta(seconds=100)
    Cohort.objects.filter(pk=cohort.pk).update(status="running", started_at=started)
    states = ["passed", "passed", "failed", "screening", "generating", "pending", "pending", "pending"]
    for index, state in enumerate(states):
        SyntheticImage.objects.filter(cohort=cohort, index=index).update(status=state)
    cohort.refresh_from_db()
    progress = selectors.cohort_progress(cohort, now=started + timedelta(seconds=100))
    assert (progress["passed"], progress["failed"], progress["screening"], progress["generating"]) == (2, 1, 1, 1)
    assert progress["percent"] == 37.5 and not progress["finished"]
    assert progress["eta_seconds"] == 250  # 50 s per screened image, 5 images to go


def test_no_estimate_before_the_first_image_passes(researcher):
    cohort = services.request_cohort(user=researcher, data=cohort_request(size=2), enqueue=False)
    assert selectors.cohort_progress(cohort)["eta_seconds"] is None


def test_the_chart_compares_requested_and_generated_shares(researcher):
    cohort = services.run_cohort_inline(
        services.request_cohort(user=researcher, data=cohort_request(size=4, sex={"F": 1.0}), enqueue=False)
    )
    charts = {c["attribute"]: {r["category"]: r for r in c["rows"]} for c in selectors.requested_vs_generated(cohort)}
    assert charts["sex"]["F"]["requested"] == 100.0 and charts["sex"]["F"]["generated"] == 100.0
    assert charts["sex"]["M"]["requested"] == 0.0 and charts["sex"]["M"]["count"] == 0
    assert charts["findings"]["pleural_effusion"]["requested"] == 50.0
    assert charts["findings"]["pleural_effusion"]["count"] == 2
    assert abs(sum(r["requested"] for r in charts["age"].values()) - 100.0) < 0.5  # rounded per band


_COUNTS_ON_SQLITE = """
import json
from django.utils import timezone
from generation import selectors
from generation.models import Cohort, SyntheticImage
from registry.demo import demo_generation_defaults
from registry.models import ModelVersion
from tests.factories import UserFactory

version = ModelVersion.objects.create(name="m", version="1", directory="/nonexistent", defaults=demo_generation_defaults())
owner = UserFactory()
cohort = Cohort.objects.create(owner=owner, name="c", model_version=version, seed=1, size=8, status="running",
                               submitted_at=timezone.now(), started_at=timezone.now())
states = ["passed", "passed", "passed", "failed", "screening", "screening", "flagged", "pending"]
SyntheticImage.objects.bulk_create(SyntheticImage(cohort=cohort, index=i, seed=i, prompt="p", status=s)
                                   for i, s in enumerate(states))
read = [selectors.CohortListing(owner)[0:10][0], selectors.cohort_list_of(owner)[0],
        selectors.cohort_of(owner, cohort.pk, with_progress=True)]
print(json.dumps([{k: selectors.cohort_progress(c)[k] for k in ("passed", "failed", "screening", "generating", "flagged")}
                  for c in read]))
"""


def test_progress_is_counted_the_same_on_the_embedded_sqlite_database(tmp_path):
    """The counts by status are one SQL expression per database vendor (JSON_GROUP_OBJECT on SQLite,
    which `make run` uses): the list, the browser's list and the status read agree there too."""
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    repo = Path(__file__).resolve().parents[2]
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE", "PYTEST"))}
    environment.update(DJANGO_ENV="development", DATABASE_URL=f"sqlite:///{tmp_path / 'db.sqlite3'}",
                       CXR_VAR_DIR=str(tmp_path / "var"))
    manage = [sys.executable, str(repo / "manage.py")]
    subprocess.run([*manage, "migrate", "-v0"], env=environment, check=True, timeout=300, cwd=repo)
    out = subprocess.run([*manage, "shell", "-c", _COUNTS_ON_SQLITE], env=environment, check=True, timeout=120,
                         capture_output=True, text=True, cwd=repo)
    expected = {"passed": 3, "failed": 1, "screening": 2, "generating": 0, "flagged": 1}
    assert json.loads(out.stdout.strip().splitlines()[-1]) == [expected] * 3
