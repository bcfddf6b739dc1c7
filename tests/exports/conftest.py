import shutil

import pytest

from tests.access.factories import grant_tier
from tests.factories import UserFactory

from .factories import array_pngs, make_cohort, real_xray_pngs


def require_tool(name: str) -> str:
    """The path of a system tool the proof tests need (installed by scripts/install_system_deps.sh)."""
    import os

    path = shutil.which(name)
    if path is None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{name} is missing: run scripts/install_system_deps.sh")
        pytest.skip(f"{name} is missing: run scripts/install_system_deps.sh")
    return path


@pytest.fixture(autouse=True)
def _serial_encoder(settings):
    """Encode in the calling thread unless a test asks for encoder threads."""
    settings.EXPORT_WORKERS = 1


@pytest.fixture
def exporter(db, demo_model_version):
    user = UserFactory()
    grant_tier(user, "export")
    return user


@pytest.fixture
def xray_cohort(exporter, demo_model_version, cxr_public_dir):
    """4 passed images from the shared real X-rays (64 px) and 1 flagged one."""
    return make_cohort(exporter, demo_model_version, pngs=real_xray_pngs(cxr_public_dir, 4), flagged=1)


@pytest.fixture
def small_cohort(exporter, demo_model_version):
    return make_cohort(exporter, demo_model_version, pngs=array_pngs(3, size=32))


@pytest.fixture
def eager_celery():
    from cxr_platform.celery import app

    previous = app.conf.task_always_eager
    app.conf.task_always_eager = True
    yield app
    app.conf.task_always_eager = previous
