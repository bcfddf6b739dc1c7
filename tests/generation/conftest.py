import pytest

from tests.access.factories import grant_tier
from tests.factories import UserFactory


def cohort_request(**overrides) -> dict:
    """A small, valid create-call JSON for the demo model."""
    data = {
        "name": "Effusion study",
        "size": 4,
        "seed": 1234,
        "sex": {"F": 0.5, "M": 0.5},
        "race": {"WHITE": 0.25, "BLACK": 0.25, "ASIAN": 0.25, "HISPANIC": 0.25},
        "age": {"min": 40, "max": 80},
        "findings": {"pleural_effusion": 0.5, "cardiomegaly": 0.25},
    }
    data.update(overrides)
    return data


@pytest.fixture
def screened_demo_model_version(demo_model_version, demo_screening_index):
    """The demo model version with a real, calibrated memorization-screening index (screening's fixture)."""
    return demo_model_version


@pytest.fixture
def unscreened_researcher(db, demo_model_version):
    """May generate with a model version that has no screening index."""
    user = UserFactory()
    grant_tier(user, "generate")
    return user


@pytest.fixture
def researcher(db, screened_demo_model_version):
    user = UserFactory()
    grant_tier(user, "generate")
    return user


@pytest.fixture
def api_researcher(db, screened_demo_model_version):
    user = UserFactory()
    grant_tier(user, "export")
    return user


@pytest.fixture
def eager_celery():
    """Tasks run in the calling process (for tests of what a task does, not of the broker)."""
    from cxr_platform.celery import app

    previous = app.conf.task_always_eager
    app.conf.task_always_eager = True
    yield app
    app.conf.task_always_eager = previous
