import shutil

import pytest

from tests.access.factories import grant_tier
from tests.factories import UserFactory
from tests.registry.factories import register_demo


@pytest.fixture
def model_dir(demo_model_dir, tmp_path):
    """A private copy of the demo pipeline that a test may change."""
    target = tmp_path / "model"
    shutil.copytree(demo_model_dir, target)
    return target


@pytest.fixture
def version(db, model_dir):
    return register_demo(model_dir)


@pytest.fixture
def holder(db):
    """A researcher with the Weights tier."""
    user = UserFactory()
    grant_tier(user, "weights")
    return user


@pytest.fixture
def holder_client(client, holder):
    client.force_login(holder)
    return client
