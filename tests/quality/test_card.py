"""The quality card on the API, the cohort page and in every export, from stored verdicts."""

import json

import pytest
from django.urls import reverse
from rest_framework.test import APIClient

from exports import services as exports
from exports.signing import verify_package
from quality.selectors import quality_card
from tests.access.factories import grant_tier
from tests.exports.factories import make_cohort, real_xray_pngs
from tests.factories import UserFactory
from tests.quality.factories import make_verdict


@pytest.fixture
def cohort(researcher, demo_model_version, cxr_public_dir):
    """4 delivered images (index 0, 2: M; 1, 3: F); the sex model agreed on 3 and failed image 3
    (delivered flagged)."""
    cohort = make_cohort(researcher, demo_model_version, pngs=real_xray_pngs(cxr_public_dir, 4))
    for image in cohort.images.order_by("index"):
        if image.index == 3:
            make_verdict(image, decision="delivered_flagged", sex_status="failed", reason="Asked for sex F")
        else:
            make_verdict(image)
    return cohort


def test_the_card_counts_pass_rates_per_subgroup(cohort):
    card = quality_card(cohort)
    by_sex = {row["sex"]: row for row in card["subgroups"]["sex"]}
    assert (by_sex["M"]["pass_rate"], by_sex["F"]["pass_rate"], by_sex["F"]["delivered_flagged"]) == (1.0, 0.5, 1)
    assert card["overall"]["pass_rate"] == 0.75 and card["failures_by_check"] == {"model:sex": 1}
    assert (card["delivered_flagged_indices"], card["dropped_indices"]) == ([3], [])


def test_without_an_encoder_fidelity_and_diversity_say_why_they_are_unavailable(cohort):
    card = quality_card(cohort)
    for figure in ("fidelity", "diversity"):
        assert card[figure]["available"] is False and "No feature encoder is registered" in card[figure]["reason"]
    assert "frechet" not in json.dumps(card).lower().replace("fréchet distance, precision", "")


def test_the_api_returns_the_card_to_the_owner_only(cohort, researcher):
    client = APIClient()
    client.force_authenticate(researcher)
    response = client.get(f"/api/v1/cohorts/{cohort.pk}/quality")
    assert response.status_code == 200 and response.json()["overall"]["images_checked"] == 4
    other = UserFactory()
    grant_tier(other, "export")
    client.force_authenticate(other)
    assert client.get(f"/api/v1/cohorts/{cohort.pk}/quality").status_code == 404


def test_the_cohort_page_shows_the_card(client, researcher):
    from generation import services
    from tests.quality.test_regeneration import request

    planned = services.request_cohort(user=researcher, data=request(size=2), enqueue=False)
    first, second = planned.images.order_by("index")
    make_verdict(first)
    make_verdict(second, decision="regenerated", sex_status="unavailable",
                 reason="QC model sex unavailable: The file sex.pt is missing.")
    client.force_login(researcher)
    page = client.get(reverse("cohort-detail", args=[planned.pk])).content.decode()
    assert 'id="quality-card"' in page and "2 passed (100%)" in page
    assert "model:sex was unavailable for 1 image: QC model sex unavailable: The file sex.pt is missing." in page


def test_every_export_carries_the_card_as_json_and_text_and_still_verifies(cohort, tmp_path):
    exports.write_cohort_package(cohort, tmp_path / "pkg")
    package = tmp_path / "pkg"
    card = json.loads((package / "quality-card.json").read_text())
    assert card["overall"]["delivered_flagged"] == 1
    assert "| sex F | 2 | 1 | 50% |" in (package / "quality-card.md").read_text()
    manifest = json.loads((package / "manifest.json").read_text())
    assert {"quality-card.json", "quality-card.md"} <= set(manifest["files"])
    assert verify_package(package).ok
    assert "they agreed in 3 of 4 checks (75%)" in (package / "README.md").read_text()


def test_the_policy_is_set_at_creation_through_the_api(researcher):
    from tests.quality.test_regeneration import request

    client = APIClient()
    client.force_authenticate(researcher)
    response = client.post("/api/v1/cohorts", request(size=1, quality_policy="drop"), format="json")
    assert response.status_code == 201 and response.json()["quality_policy"] == "drop"
    bad = client.post("/api/v1/cohorts", request(size=1, quality_policy="maybe"), format="json")
    assert bad.status_code == 400 and "quality_policy" in bad.content.decode()
