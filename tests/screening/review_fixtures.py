"""A researcher's cohort with one image flagged by real screening and one that passed, and the
clients of the people who ask about it (owner and others by API token, privacy reviewers by a
session that passed two-factor authentication). Used by test_api.py and test_sealing.py."""

import numpy as np
import pytest
from rest_framework.test import APIClient

from cxr_platform.api.services import create_api_token
from generation.models import SyntheticImage
from screening import imaging
from screening.services import screen_images
from tests.access.factories import grant_tier, login_verified
from tests.factories import StaffFactory, UserFactory
from tests.screening.factories import make_cohort, make_image, noise_image


def train_array(screening_split, position: int) -> np.ndarray:
    return np.nan_to_num(imaging.load_gray(imaging.list_images(screening_split[0])[position]), nan=0.0)


def near_copy(screening_split, position: int) -> np.ndarray:
    """A training image with a fifth of another one blended in: clearly flagged (fused score about 0.9
    against a threshold near 0.78), but not an exact copy, so a reviewer may release it."""
    from PIL import Image

    image = train_array(screening_split, position)
    other = train_array(screening_split, position + 1)
    other = np.asarray(Image.fromarray(other.astype(np.float32), mode="F").resize(image.shape[::-1]), dtype=np.float32)
    return 0.8 * image + 0.2 * other


def set_status(image, status):
    """What generation does with a verdict: the image becomes passed (shown) or flagged (quarantined)."""
    SyntheticImage.objects.filter(pk=image.pk).update(status=status)


@pytest.fixture
def screened(demo_screening_index, screening_split):
    """{"owner", "cohort", "flagged": record, "passed": record} after real screening."""
    owner = UserFactory()
    grant_tier(owner, "export")  # the REST API and generation
    cohort = make_cohort(demo_screening_index.model_version, owner=owner)
    copy = make_image(cohort, near_copy(screening_split, 7))
    new = make_image(cohort, noise_image(3))
    screen_images([copy, new])
    set_status(copy, SyntheticImage.Status.FLAGGED)
    set_status(new, SyntheticImage.Status.PASSED)
    copy.refresh_from_db()
    new.refresh_from_db()
    # What the tests below rely on: a near-copy (not an exact one) flagged, an original passed.
    assert copy.screening.flagged and not copy.screening.exact_match and not new.screening.flagged
    return {"owner": owner, "cohort": cohort, "flagged": copy.screening, "passed": new.screening}


def token_client(user) -> APIClient:
    _, secret = create_api_token(user=user, name="test")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
    return client


@pytest.fixture
def owner_api(screened):
    return token_client(screened["owner"])


@pytest.fixture
def reviewer(db):
    return StaffFactory()


@pytest.fixture
def reviewer_api(reviewer, settings):
    """A privacy reviewer's browser session that passed TOTP (two-factor authentication required)."""
    settings.REQUIRE_STAFF_2FA = True
    return login_verified(APIClient(), reviewer)
