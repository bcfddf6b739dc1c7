"""Settings from the environment: production passes the deployment checks, and the
embedded default (SQLite, filesystem broker, local files) works from nothing."""

import base64
import os
import secrets
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

REPO_ROOT = Path(__file__).resolve().parents[2]
# Variables of the test run that must not leak into a child meant to see a clean environment.
_RUN_SPECIFIC = {
    "DJANGO_ENV", "DJANGO_SETTINGS_MODULE", "DATABASE_URL", "DATABASE_TEST_NAME", "TEST_REDIS_DB",
    "TEST_USE_SQLITE", "TEST_POSTGRES_URL", "TEST_REDIS_HOST", "TEST_REDIS_PORT", "CELERY_BROKER_URL",
    "STORAGE_BACKEND", "CXR_VAR_DIR", "DJANGO_DEBUG", "CI",
}


def manage(*args, env: dict, timeout: int = 300) -> subprocess.CompletedProcess:
    child_env = {k: v for k, v in os.environ.items() if k not in _RUN_SPECIFIC}
    child_env.update(env)
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=REPO_ROOT, env=child_env, capture_output=True, text=True,
        timeout=timeout,
    )


@pytest.fixture
def production_env(tmp_path):
    """The production example of docs/foundation.md, with fresh secrets."""
    return {
        "DJANGO_ENV": "production",
        "CXR_VAR_DIR": str(tmp_path / "var"),
        "DJANGO_SECRET_KEY": secrets.token_urlsafe(64),
        "DJANGO_ALLOWED_HOSTS": "cxr.example.org",
        "DJANGO_CSRF_TRUSTED_ORIGINS": "https://cxr.example.org",
        "SITE_URL": "https://cxr.example.org",
        "DATABASE_URL": "postgres://cxr:secret@db.internal:5432/cxr",
        "CELERY_BROKER_URL": "redis://redis.internal:6379/0",
        "MEDIA_ROOT": str(tmp_path / "shared" / "media"),
        "MODEL_ROOT": str(tmp_path / "shared" / "models"),
        "TRUSTED_PROXIES": "127.0.0.1",
        "AUDIT_HMAC_KEY": secrets.token_urlsafe(48),
        "FILE_ENCRYPTION_KEYS": Fernet.generate_key().decode(),
        "EXPORT_SIGNING_KEY": base64.b64encode(os.urandom(32)).decode(),
        "DOWNLOAD_OFFLOAD": "nginx",
    }


def test_production_settings_pass_the_deployment_checks(production_env):
    result = manage("check", "--deploy", "--fail-level", "WARNING", env=production_env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout


def test_production_settings_with_s3_storage_pass_the_deployment_checks(production_env):
    production_env.update({
        "STORAGE_BACKEND": "s3",
        "S3_BUCKET": "cxr-platform",
        "S3_ENDPOINT_URL": "https://s3.example.org",
        "S3_REGION": "eu-west-1",
        "S3_ACCESS_KEY_ID": "AKIAEXAMPLE",
        "S3_SECRET_ACCESS_KEY": secrets.token_urlsafe(30),
        "DOWNLOAD_OFFLOAD": "django",
    })
    result = manage(
        "shell", "--no-imports", "-c", "from django.core.files.storage import storages; print(type(storages['default']).__name__)",
        env=production_env,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "S3Storage"
    result = manage("check", "--deploy", "--fail-level", "WARNING", env=production_env)
    assert result.returncode == 0, result.stdout + result.stderr


def test_production_hashes_passwords_with_argon2(production_env):
    result = manage(
        "shell", "--no-imports", "-c",
        "from django.contrib.auth.hashers import get_hasher; print(get_hasher().algorithm)",
        env=production_env,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "argon2"


def test_production_refuses_to_start_without_its_secrets(production_env):
    del production_env["AUDIT_HMAC_KEY"]
    result = manage("check", env=production_env)
    assert result.returncode != 0
    assert "AUDIT_HMAC_KEY must be set in the environment in production" in result.stderr


def test_deployment_checks_reject_a_short_audit_key(production_env):
    production_env["AUDIT_HMAC_KEY"] = "short"
    result = manage("check", "--deploy", "--fail-level", "WARNING", env=production_env)
    assert result.returncode != 0
    assert "audit.W001" in result.stderr + result.stdout


@pytest.fixture
def embedded_env(tmp_path):
    return {"DJANGO_ENV": "development", "CXR_VAR_DIR": str(tmp_path / "var")}


def test_embedded_default_uses_sqlite_filesystem_broker_and_local_files(embedded_env, tmp_path):
    result = manage(
        "shell", "--no-imports", "-c",
        "from django.conf import settings as s; print(s.DATABASES['default']['ENGINE'], s.DATABASES['default']['NAME'],"
        " s.CELERY_BROKER_URL, s.STORAGES['default']['BACKEND'])",
        env=embedded_env,
    )
    assert result.returncode == 0, result.stderr
    engine, name, broker, storage = result.stdout.split()
    assert engine == "django.db.backends.sqlite3"
    assert name == str(tmp_path / "var" / "db.sqlite3")
    assert broker == "filesystem://"
    assert storage == "django.core.files.storage.FileSystemStorage"


def test_embedded_default_migrates_and_seeds_from_nothing(embedded_env):
    assert manage("migrate", "--no-input", env=embedded_env).returncode == 0
    seeded = manage("seed_demo", env=embedded_env)
    assert seeded.returncode == 0, seeded.stderr
    for account in ("researcher", "reviewer", "admin"):
        assert f"Demo account '{account}' created with password: " in seeded.stdout
    again = manage("seed_demo", env=embedded_env)
    assert again.returncode == 0, again.stderr
    assert "created with password" not in again.stdout
    checked = manage("check", env=embedded_env)
    assert checked.returncode == 0, checked.stderr
    verified = manage("verify_audit_log", env=embedded_env)
    assert verified.returncode == 0, verified.stderr
    assert "Audit log intact" in verified.stdout


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]  # nothing listens once the socket is closed


def test_ci_fails_rather_than_skips_without_postgresql(tmp_path):
    env = {"DJANGO_ENV": "test", "CI": "true", "CXR_VAR_DIR": str(tmp_path),
           "TEST_POSTGRES_URL": f"postgres://postgres@127.0.0.1:{closed_port()}/postgres"}
    result = manage("check", env=env)
    assert result.returncode != 0
    assert "CI=true requires PostgreSQL on 127.0.0.1:" in result.stderr


def test_ci_fails_rather_than_skips_without_redis(tmp_path):
    env = {"DJANGO_ENV": "test", "CI": "true", "CXR_VAR_DIR": str(tmp_path), "TEST_USE_SQLITE": "1",
           "TEST_REDIS_PORT": str(closed_port())}
    result = manage("check", env=env)
    assert result.returncode != 0
    assert "CI=true requires Redis on 127.0.0.1:" in result.stderr


def test_without_ci_tests_fall_back_to_the_embedded_default(tmp_path):
    env = {"DJANGO_ENV": "test", "CI": "false", "CXR_VAR_DIR": str(tmp_path),
           "TEST_POSTGRES_URL": f"postgres://postgres@127.0.0.1:{closed_port()}/postgres",
           "TEST_REDIS_PORT": str(closed_port())}
    result = manage(
        "shell", "--no-imports", "-c",
        "from django.conf import settings as s; print(s.DATABASES['default']['ENGINE'], s.CELERY_BROKER_URL)",
        env=env,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["django.db.backends.sqlite3", "filesystem://"]
