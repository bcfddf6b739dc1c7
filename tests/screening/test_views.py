"""The privacy reviewers' quarantine: only staff see it, every look is audited."""

import numpy as np
import pytest
from django.urls import reverse

from cxr_platform.audit.models import AuditEvent
from screening import edits, imaging
from screening.services import screen_images
from tests.factories import StaffFactory, UserFactory
from tests.screening.factories import make_cohort, make_image, noise_image

pytestmark = pytest.mark.django_db


@pytest.fixture
def screened(demo_screening_index, screening_split):
    """One flagged (near-copy) and one passed image of a researcher's cohort."""
    owner = UserFactory()
    cohort = make_cohort(demo_screening_index.model_version, owner=owner)
    original = np.nan_to_num(imaging.load_gray(imaging.list_images(screening_split[0])[7]), nan=0.0)
    flagged = make_image(cohort, edits.gaussian_noise(original, np.random.default_rng(1)))
    passed = make_image(cohort, noise_image(3))
    screen_images([flagged, passed])
    return {"owner": owner, "flagged": flagged.screening, "passed": passed.screening}


@pytest.fixture
def reviewer_client(client, settings):
    settings.REQUIRE_STAFF_2FA = False
    client.force_login(StaffFactory())
    return client


def _urls(record):
    return [reverse(name, args=[record.pk]) for name in
            ("screening-record", "screening-synthetic-image", "screening-training-match")]


def test_reviewers_see_the_quarantine(reviewer_client, screened):
    response = reviewer_client.get(reverse("screening-quarantine"))
    assert response.status_code == 200
    assert [r.pk for r in response.context["page"]] == [screened["flagged"].pk]


def test_a_reviewer_sees_the_flagged_image_and_its_training_match_and_each_look_is_audited(reviewer_client,
                                                                                          screened):
    record = screened["flagged"]
    page, synthetic, match = _urls(record)
    response = reviewer_client.get(page)
    assert response.status_code == 200
    assert record.best_match_path in response.content.decode()
    for url in (synthetic, match):
        response = reviewer_client.get(url)
        assert response.status_code == 200 and response["Content-Type"] == "image/png"
        assert response.content.startswith(b"\x89PNG")
    actions = list(AuditEvent.objects.filter(action__startswith="screening.").values_list("action", flat=True))
    assert sorted(actions) == ["screening.quarantine_viewed", "screening.synthetic_image_viewed",
                               "screening.training_match_viewed"]


def test_images_that_passed_are_not_in_the_reviewers_view(reviewer_client, screened):
    for url in _urls(screened["passed"]):
        assert reviewer_client.get(url).status_code == 404


@pytest.mark.parametrize("who", ["owner", "other"])
def test_researchers_are_not_allowed_even_for_their_own_cohort(client, screened, who):
    # The "not allowed" page (issue 18), the same for every record, so it tells nothing about them.
    client.force_login(screened["owner"] if who == "owner" else UserFactory())
    for url in [reverse("screening-quarantine"), reverse("screening-indexes"), *_urls(screened["flagged"])]:
        assert client.get(url).status_code == 403
    assert not AuditEvent.objects.filter(action__startswith="screening.").exists()


def test_anonymous_visitors_are_sent_to_sign_in(client, screened):
    response = client.get(_urls(screened["flagged"])[2])
    assert response.status_code == 302 and "login" in response["Location"]


def test_staff_without_two_factor_are_sent_to_verify(client, settings, screened):
    settings.REQUIRE_STAFF_2FA = True
    client.force_login(StaffFactory())
    response = client.get(reverse("screening-quarantine"))
    assert response.status_code == 302 and "/2fa/" in response["Location"]


def test_admins_see_the_calibration(reviewer_client, demo_screening_index):
    response = reviewer_client.get(reverse("screening-indexes"))
    assert response.status_code == 200
    body = response.content.decode()
    assert f"{demo_screening_index.threshold:.4f}" in body
    assert "held-out images flagged" in body
