"""/api/v1/health is a load balancer's question, "can this web process serve?": 503 only when it
cannot (database or storage down); a missing broker or GPU worker is degraded, still 200.

The faults are real: a web process started with production settings whose database or broker is a
closed port on this machine (the shared servers are never touched)."""

import base64
import json
import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from django.db import connections

from tests.fixtures.celery_worker import _database_url, free_port

REPO_ROOT = Path(__file__).resolve().parents[2]
_RUN_SPECIFIC = {"DJANGO_ENV", "DJANGO_SETTINGS_MODULE", "DATABASE_URL", "DATABASE_TEST_NAME", "CELERY_BROKER_URL",
                 "STORAGE_BACKEND", "CXR_VAR_DIR", "DJANGO_DEBUG"}
_ASK_HEALTH = (
    "import django, sys; django.setup(); from django.test import Client;"
    "r = Client().get('/api/v1/health', secure=True, HTTP_HOST='cxr.example.org');"
    "sys.stdout.write(str(r.status_code) + '\\n' + r.content.decode())"
)


def health_of_a_web_process(tmp_path, *, database_url: str, broker_url: str) -> tuple[int, dict]:
    env = {k: v for k, v in os.environ.items() if k not in _RUN_SPECIFIC}
    env.update({
        "DJANGO_ENV": "production", "DJANGO_SETTINGS_MODULE": "cxr_platform.settings",
        "CXR_VAR_DIR": str(tmp_path / "var"), "DJANGO_SECRET_KEY": secrets.token_urlsafe(64),
        "DJANGO_ALLOWED_HOSTS": "cxr.example.org", "SITE_URL": "https://cxr.example.org",
        "DATABASE_URL": database_url, "CELERY_BROKER_URL": broker_url, "MEDIA_ROOT": str(tmp_path / "media"),
        "AUDIT_HMAC_KEY": secrets.token_urlsafe(48), "FILE_ENCRYPTION_KEYS": Fernet.generate_key().decode(),
        "EXPORT_SIGNING_KEY": base64.b64encode(os.urandom(32)).decode(),
    })
    done = subprocess.run([sys.executable, "-c", _ASK_HEALTH], cwd=REPO_ROOT, env=env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    status, body = done.stdout.split("\n", 1)
    return int(status), json.loads(body)


@pytest.mark.postgres
def test_database_down_takes_the_web_process_out_of_rotation(tmp_path, settings):
    status, report = health_of_a_web_process(
        tmp_path, database_url=f"postgres://cxr_app:secret@127.0.0.1:{free_port()}/cxr",
        broker_url=settings.CELERY_BROKER_URL,
    )
    assert status == 503
    assert report["status"] == "unavailable" and report["serving"] is False
    assert report["checks"]["database"]["ok"] is False and report["checks"]["broker"]["ok"] is True
    assert "database" in report["problems"]


@pytest.mark.postgres
@pytest.mark.django_db
def test_broker_down_is_degraded_but_the_web_process_keeps_serving(tmp_path):
    status, report = health_of_a_web_process(
        tmp_path, database_url=_database_url(connections.settings["default"]),
        broker_url=f"redis://127.0.0.1:{free_port()}/0",
    )
    assert status == 200
    assert report["status"] == "degraded" and report["serving"] is True and report["problems"] == ["broker"]
    assert report["checks"]["database"]["ok"] is True and report["checks"]["workers"]["ok"] is True


@pytest.mark.django_db
def test_the_schema_documents_both_answers_and_the_three_states(client):
    schema = client.get("/api/schema/", HTTP_ACCEPT="application/json").json()
    responses = schema["paths"]["/api/v1/health"]["get"]["responses"]
    assert {"200", "503"} <= set(responses)
    body = responses["200"]["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[-1]
    status = schema["components"]["schemas"][body]["properties"]["status"]
    choices = status.get("enum") or schema["components"]["schemas"][status["$ref"].rsplit("/", 1)[-1]]["enum"]
    assert set(choices) == {"ok", "degraded", "unavailable"}
