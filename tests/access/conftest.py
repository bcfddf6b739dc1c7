import pytest

from tests.access.factories import give_credentials, login_verified
from tests.factories import StaffFactory, UserFactory


@pytest.fixture(autouse=True)
def _default_tiers_and_agreements(request):
    """The seeded tiers and agreements, also after a transactional test elsewhere (e.g. with a
    live Celery worker) flushed the database: the data migration's rows do not survive a flush."""
    names = set(request.fixturenames)
    if request.node.get_closest_marker("django_db") is None:
        if not names & {"db", "transactional_db", "live_server"}:
            return
        request.getfixturevalue("transactional_db" if names & {"transactional_db", "live_server"} else "db")
    from access.defaults import seed_defaults
    from access.models import Agreement, AgreementVersion, Tier

    seed_defaults(Tier, Agreement, AgreementVersion)


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
