"""Fixtures shared by the whole suite. App-specific fixtures live next to their tests;
fixtures other apps reuse live in tests/fixtures/ and are listed in pytest_plugins."""

import os
import shutil
from pathlib import Path

import pytest

pytest_plugins = [
    "tests.fixtures.db_roles", "tests.fixtures.models", "tests.fixtures.celery_worker", "tests.fixtures.screening",
]

REPO_ROOT = Path(__file__).resolve().parent.parent
# The 60 real public chest X-rays the tests use, downscaled to 256 px, shipped in the repository
# (tests/assets/cxr_public, built by scripts/make_test_assets.py). CXR_PUBLIC_DIR points the tests
# at another folder of the same layout (images/ and metadata.csv), e.g. the full-size originals.
CXR_PUBLIC = Path(os.environ.get("CXR_PUBLIC_DIR") or REPO_ROOT / "tests" / "assets" / "cxr_public")
_DEMO_MODEL_CACHE = Path(os.environ.get("CXR_TEST_CACHE", "/tmp/cxr-platform-test-cache")) / "demo-model"


def pytest_runtest_setup(item):
    """``@pytest.mark.postgres`` tests skip on SQLite, except under CI where PostgreSQL is required."""
    if item.get_closest_marker("postgres"):
        from django.conf import settings

        if not settings.DATABASE_IS_POSTGRES:
            if settings.CI:
                pytest.fail("CI=true but the tests are not running on PostgreSQL")
            pytest.skip("needs PostgreSQL")


@pytest.fixture(scope="session")
def django_db_setup(django_db_setup, django_db_blocker):
    """pytest-django's test database, created and migrated by the owner; the tests then connect as
    a role that owns no table, as the application does in production (tests/fixtures/db_roles.py)."""
    from tests.fixtures.db_roles import activate_app_role, deactivate_app_role

    with django_db_blocker.unblock():
        activate_app_role()
    yield
    with django_db_blocker.unblock():
        deactivate_app_role()


@pytest.fixture(autouse=True)
def _media_root(settings, tmp_path):
    """Every test gets its own storage directory."""
    settings.MEDIA_ROOT = tmp_path / "media"
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {"BACKEND": "django.core.files.storage.FileSystemStorage", "OPTIONS": {"location": str(tmp_path / "media")}},
    }


@pytest.fixture(scope="session")
def demo_model_dir(tmp_path_factory) -> Path:
    """A tiny random-weights Stable Diffusion pipeline on disk, built once per run."""
    from registry.demo import create_demo_model

    target = tmp_path_factory.mktemp("models") / "demo-model"
    if not (_DEMO_MODEL_CACHE / "model_index.json").exists():
        # Build aside and rename, so parallel runs never see a half-written model.
        staging = _DEMO_MODEL_CACHE.with_name(f"demo-model.{os.getpid()}")
        shutil.rmtree(staging, ignore_errors=True)
        create_demo_model(staging)
        try:
            staging.rename(_DEMO_MODEL_CACHE)
        except OSError:
            shutil.rmtree(staging, ignore_errors=True)
    shutil.copytree(_DEMO_MODEL_CACHE, target)
    return target


@pytest.fixture(scope="session")
def cxr_public_dir() -> Path:
    """The 60 real public chest X-rays (tests/assets/cxr_public, or $CXR_PUBLIC_DIR), used in place.

    They ship with the repository, so a missing folder is a broken checkout or a wrong
    CXR_PUBLIC_DIR: the test fails, it never skips."""
    if not (CXR_PUBLIC / "metadata.csv").is_file() or not (CXR_PUBLIC / "images").is_dir():
        pytest.fail(f"test images missing at {CXR_PUBLIC} (expected metadata.csv and images/; they ship in "
                    f"tests/assets/cxr_public, rebuilt by scripts/make_test_assets.py; CXR_PUBLIC_DIR overrides)",
                    pytrace=False)
    return CXR_PUBLIC
