import pytest

from tests.access.factories import grant_tier
from tests.factories import UserFactory


@pytest.fixture
def researcher(db, demo_model_version, demo_screening_index):
    """May generate with the demo model version, which has a real screening index."""
    user = UserFactory()
    grant_tier(user, "export")
    return user
