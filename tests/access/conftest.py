import pytest

from tests.access.factories import give_credentials, login_verified
from tests.factories import StaffFactory, UserFactory


@pytest.fixture
def researcher(db):
    return UserFactory(username="rita")


@pytest.fixture
def credentialed(researcher):
    give_credentials(researcher)
    return researcher


@pytest.fixture
def reviewer(db):
    return StaffFactory(username="rev-one")


@pytest.fixture
def second_reviewer(db):
    return StaffFactory(username="rev-two")


@pytest.fixture
def reviewer_client(client, reviewer):
    return login_verified(client, reviewer)
