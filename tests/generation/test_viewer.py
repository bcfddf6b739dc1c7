"""The cohort page's image viewer and live gallery, server side: the per-image JSON, PNG and DICOM
endpoints and who may use them, the gallery's cursor, and the cohort form's rough edges (preview
labels, race shares, the API's default preset, the privacy histogram)."""

import io
import re
from datetime import timedelta

import numpy as np
import pydicom
import pytest
from django.db import connection
from django.urls import reverse
from django.utils import timezone
from PIL import Image

from cxr_platform.audit.models import AuditEvent
from generation import selectors
from generation.forms import CohortForm
from generation.models import SyntheticImage
from generation.specification import parse_specification
from screening.models import ScreeningRecord
from tests.access.factories import grant_tier
from tests.exports.factories import array_pngs, make_cohort
from tests.factories import UserFactory


def user_with(tier):
    user = UserFactory()
    grant_tier(user, tier)
    return user


@pytest.fixture
def owner(db):
    return user_with("generate")


@pytest.fixture
def cohort(owner, demo_model_version):
    """Three passed images (index 1 asks for pleural effusion) and one quarantined."""
    cohort = make_cohort(owner, demo_model_version, pngs=array_pngs(3), flagged=1)
    # The stored, normalised specification the cohort page's charts read.
    cohort.specification = parse_specification({"preset": "balanced"}, demo_model_version.defaults).as_dict()
    cohort.save(update_fields=["specification"])
    return cohort


def passed(cohort, index=1):
    return cohort.images.get(index=index, status=SyntheticImage.Status.PASSED)


def quarantined(cohort):
    return cohort.images.get(status=SyntheticImage.Status.FLAGGED)


def url(name, image):
    return reverse(name, args=[image.cohort_id, image.pk])


def test_the_details_give_prompt_human_labels_and_the_screening_verdict(client, owner, cohort):
    image = passed(cohort)
    client.force_login(owner)
    details = client.get(url("cohort-image-details", image)).json()
    assert details["prompt"] == image.prompt and details["index"] == 1
    assert details["labels"] == ["Pleural effusion"]
    assert details["demographics"]["Sex"] == "Female"
    assert details["screening"]["decision"] == "passed" and details["screening"]["score"] == 0.3
    assert details["screening"]["threshold"] == 0.8
    assert details["png"] == url("cohort-image", image)


def test_the_details_carry_the_quality_control_verdict(client, owner, cohort):
    from quality.models import QualityVerdict

    image = passed(cohort)
    QualityVerdict.objects.create(image=image, cohort=cohort, passed=False, decision="delivered_flagged",
                                  failed_checks=["model:sex"], reason="The sex classifier says M.")
    client.force_login(owner)
    quality = client.get(url("cohort-image-details", image)).json()["quality_control"]
    assert quality == {"Verdict": "Failed on the last attempt; delivered flagged", "Failed checks": "model:sex",
                       "Reason": "The sex classifier says M."}


def test_without_the_export_tier_the_details_offer_no_dicom_and_say_why(client, owner, cohort):
    client.force_login(owner)
    details = client.get(url("cohort-image-details", passed(cohort))).json()
    assert details["dicom"] is None and "Export tier" in details["dicom_unavailable"]


@pytest.mark.parametrize("name", ["cohort-image", "cohort-image-details", "cohort-image-dicom"])
def test_another_researcher_gets_404_for_every_image_endpoint(client, cohort, name):
    client.force_login(user_with("export"))
    assert client.get(url(name, passed(cohort))).status_code == 404


@pytest.mark.parametrize("name", ["cohort-image", "cohort-image-details"])
def test_a_quarantined_image_is_not_served_to_its_owner(client, owner, cohort, name):
    client.force_login(owner)
    assert client.get(url(name, quarantined(cohort))).status_code == 404


def test_a_quarantined_image_is_not_served_as_dicom(client, demo_model_version):
    exporter = user_with("export")
    cohort = make_cohort(exporter, demo_model_version, pngs=array_pngs(1), flagged=1)
    client.force_login(exporter)
    assert client.get(url("cohort-image-dicom", quarantined(cohort))).status_code == 404


def test_the_png_download_link_names_the_file(client, owner, cohort):
    client.force_login(owner)
    response = client.get(url("cohort-image", passed(cohort)) + "?download=1")
    assert response.status_code == 200
    assert response["Content-Disposition"] == f'attachment; filename="SYNTHETIC-C{cohort.pk}-000001.png"'


def test_the_dicom_download_is_a_synthetic_instance_with_the_images_pixels(client, demo_model_version):
    exporter = user_with("export")
    cohort = make_cohort(exporter, demo_model_version, pngs=array_pngs(2))
    image = passed(cohort)
    client.force_login(exporter)
    response = client.get(url("cohort-image-dicom", image))
    assert response.status_code == 200 and response["Content-Type"] == "application/dicom"
    dataset = pydicom.dcmread(io.BytesIO(response.content))
    assert dataset.SOPClassUID == "1.2.840.10008.5.1.4.1.1.7" and dataset.PatientID.startswith("SYNTHETIC-")
    with image.image.open("rb") as handle:
        assert np.array_equal(dataset.pixel_array, np.asarray(Image.open(handle).convert("L")))
    assert AuditEvent.objects.filter(action="generation.image_dicom_downloaded", target_id=str(image.pk),
                                     actor=exporter).exists()


def test_the_dicom_download_needs_the_export_tier(client, owner, cohort):
    client.force_login(owner)
    assert client.get(url("cohort-image-dicom", passed(cohort))).status_code == 403


def test_an_image_whose_verdict_was_edited_in_the_database_is_not_served_as_dicom(client, demo_model_version):
    exporter = user_with("export")
    cohort = make_cohort(exporter, demo_model_version, pngs=array_pngs(1))
    image = passed(cohort, index=0)
    with connection.cursor() as cursor:
        cursor.execute(f"UPDATE {ScreeningRecord._meta.db_table} SET score = 0.01 WHERE image_id = %s", [image.pk])
    client.force_login(exporter)
    response = client.get(url("cohort-image-dicom", image))
    assert response.status_code == 409 and b"no intact screening verdict" in response.content


def test_the_gallery_feed_brings_images_that_passed_after_the_cursor(client, owner, cohort):
    earlier = timezone.now() - timedelta(minutes=5)
    SyntheticImage.objects.filter(cohort=cohort).update(updated_at=earlier)
    start = selectors.gallery_start_cursor()
    SyntheticImage.objects.filter(pk=passed(cohort, 2).pk).update(updated_at=timezone.now())
    client.force_login(owner)
    data = client.get(reverse("cohort-gallery", args=[cohort.pk]), {"after": start}).json()
    assert [item["index"] for item in data["images"]] == [2]
    assert data["images"][0]["details"] == url("cohort-image-details", passed(cohort, 2))
    assert data["progress"]["passed"] == 3


def test_the_gallery_cursor_stays_behind_images_that_may_not_have_committed_yet(owner, cohort):
    """What passed in the last few seconds comes again on the next poll (the page adds it once):
    a batch committed late with an earlier timestamp is not skipped."""
    now = timezone.now()
    SyntheticImage.objects.filter(cohort=cohort).update(updated_at=now)
    first = selectors.gallery_since(cohort, selectors.gallery_start_cursor(now=now - timedelta(minutes=1)), now=now)
    again = selectors.gallery_since(cohort, first["cursor"], now=now)
    later = selectors.gallery_since(cohort, first["cursor"], now=now + timedelta(minutes=1))
    assert len(first["images"]) == len(again["images"]) == 3
    assert len(selectors.gallery_since(cohort, later["cursor"], now=now + timedelta(minutes=1))["images"]) == 0


def test_the_gallery_pages_through_a_full_page(owner, cohort):
    old = timezone.now() - timedelta(minutes=5)
    SyntheticImage.objects.filter(cohort=cohort).update(updated_at=old)  # one timestamp: a whole batch
    first = selectors.gallery_since(cohort, "", limit=2)
    second = selectors.gallery_since(cohort, first["cursor"], limit=2)
    assert [i.index for i in first["images"]] + [i.index for i in second["images"]] == [0, 1, 2]


@pytest.mark.parametrize("cursor", ["abc", "1-x", "99999999999999999999-1", "1-99999999999999999999999"])
def test_a_cursor_the_page_did_not_give_is_a_400(client, owner, cohort, cursor):
    client.force_login(owner)
    response = client.get(reverse("cohort-gallery", args=[cohort.pk]), {"after": cursor})
    assert response.status_code == 400 and "cursor" in response.json()["detail"]


def test_the_gallery_feed_is_the_owners_only(client, cohort):
    client.force_login(user_with("generate"))
    assert client.get(reverse("cohort-gallery", args=[cohort.pk])).status_code == 404


def test_the_cohort_page_loads_the_viewer_scripts_with_the_nonce_and_no_unsigned_script(client, owner, cohort):
    client.force_login(owner)
    response = client.get(reverse("cohort-detail", args=[cohort.pk]))
    page = response.content.decode()
    nonce = re.search(r"'nonce-([^']+)'", response["Content-Security-Policy"]).group(1)
    scripts = re.findall(r"<script[^>]*>", page)
    assert any("js/image-viewer.js" in s for s in scripts) and any("js/cohort-live.js" in s for s in scripts)
    assert all(f'nonce="{nonce}"' in s or "src=" in s for s in scripts)
    assert 'id="viewer"' in page and url("cohort-image-details", passed(cohort)) in page
    assert " on" not in " ".join(re.findall(r"<[^>]+\son[a-z]+=", page))  # no inline handlers


def test_the_privacy_histogram_has_axes_and_the_threshold_marker(client, owner, cohort):
    client.force_login(owner)
    response = client.get(reverse("cohort-detail", args=[cohort.pk]))
    chart = response.context["privacy"]["chart"]
    page = response.content.decode()
    assert 'id="privacy-threshold"' in page and "threshold 0.800" in page and "best-match score" in page
    assert chart["threshold"]["x"] == pytest.approx(chart["left"] + 0.8 * (chart["right"] - chart["left"]))
    assert [t["label"] for t in chart["x_ticks"]] == ["0", "0.25", "0.5", "0.75", "1"]
    assert [b["above"] for b in chart["bars"]].count(True) == 4  # bins 0.80-1.00 are red


# --- The cohort form and the API's preset ---------------------------------------------------------


def form_spec(user, **fields) -> dict:
    form = CohortForm({"name": "Races", "size": 8, **fields}, user=user)
    assert form.is_valid(), form.errors
    return form.specification()


def test_one_race_filled_leaves_the_rest_to_the_balanced_preset(owner, demo_model_version):
    race = form_spec(owner, preset="balanced", race_WHITE="0.4")["race"]
    assert race["WHITE"] == 0.4 and race["BLACK"] == race["ASIAN"] == race["HISPANIC"] == pytest.approx(0.2)


def test_one_race_filled_leaves_the_rest_in_the_reference_proportions(owner, demo_model_version):
    race = form_spec(owner, preset="reference", race_WHITE="0.4")["race"]
    # Reference: BLACK 0.20, HISPANIC 0.08, ASIAN 0.04 of the 0.60 left.
    assert race["BLACK"] == pytest.approx(0.6 * 0.2 / 0.32) and race["ASIAN"] == pytest.approx(0.6 * 0.04 / 0.32)
    assert sum(race.values()) == pytest.approx(1.0)


def test_without_a_preset_empty_race_fields_are_zero(owner, demo_model_version):
    race = form_spec(owner, preset="", race_WHITE="1")["race"]
    assert race == {**{r: 0.0 for r in race}, "WHITE": 1.0}


def test_the_preview_comes_first_with_labels_not_keys(client, owner, demo_model_version):
    client.force_login(owner)
    response = client.post(reverse("cohort-create"), {
        "name": "Labels", "size": 4, "preset": "balanced", "finding_pleural_effusion": "0.5", "action": "preview"})
    page = response.content.decode()
    preview = page[page.index('id="preview"'):page.index('id="cohort-form"')]
    assert "Pleural effusion" in preview and "Female" in preview and "White" in preview
    assert "<td>pleural_effusion</td>" not in preview and "<th>WHITE</th>" not in preview


def api_client():
    from rest_framework.test import APIClient

    client = APIClient()
    client.force_authenticate(user_with("export"))
    return client


def test_the_api_defaults_to_the_balanced_preset_like_the_browser(demo_model_version):
    response = api_client().post("/api/v1/cohorts/preview", {"name": "No preset", "size": 4}, format="json")
    assert response.status_code == 200, response.content
    counts = response.json()["counts"]
    assert counts["race"] == {"ASIAN": 1, "BLACK": 1, "HISPANIC": 1, "WHITE": 1} and counts["sex"] == {"F": 2, "M": 2}


def test_the_api_with_preset_null_asks_for_every_share(demo_model_version):
    response = api_client().post("/api/v1/cohorts/preview", {"name": "None", "size": 4, "preset": None}, format="json")
    assert response.status_code == 400 and "choose a preset" in response.content.decode()
