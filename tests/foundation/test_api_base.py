"""The API's common ground: health, schema and self-hosted docs."""

import re

import pytest
from django.contrib.staticfiles import finders
from django.urls import reverse

pytestmark = pytest.mark.django_db


def test_health_reports_database_broker_storage_and_workers(client, settings):
    response = client.get(reverse("api-health"))
    assert response.status_code == 200
    report = response.json()
    assert report["status"] == "ok" and report["serving"] is True and report["problems"] == []
    assert set(report["checks"]) == {"database", "broker", "storage", "workers"}
    assert report["checks"]["database"] == {"ok": True, "vendor": "postgresql" if settings.DATABASE_IS_POSTGRES else "sqlite"}
    assert report["checks"]["broker"]["ok"] is True
    assert report["checks"]["storage"] == {"ok": True, "backend": "FileSystemStorage"}


def test_health_takes_the_node_out_of_rotation_when_storage_is_unwritable(client, settings, tmp_path):
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("a file where the media directory should be")
    settings.STORAGES = {**settings.STORAGES, "default": {
        "BACKEND": "django.core.files.storage.FileSystemStorage", "OPTIONS": {"location": str(blocker)},
    }}
    response = client.get(reverse("api-health"))
    assert response.status_code == 503
    report = response.json()
    assert report["status"] == "unavailable" and report["serving"] is False and report["problems"] == ["storage"]
    assert report["checks"]["storage"]["ok"] is False
    assert report["checks"]["database"]["ok"] is True


def test_health_needs_no_login(client):
    assert client.get(reverse("api-health")).status_code == 200


def test_api_refuses_anonymous_requests(client):
    response = client.get(reverse("api-whoami"))
    assert response.status_code == 401


def test_api_accepts_the_session(client):
    from tests.factories import UserFactory

    client.force_login(UserFactory(username="webuser"))
    assert client.get(reverse("api-whoami")).json()["authenticated_with"] == "session"


def test_openapi_schema_renders(client):
    response = client.get(reverse("api-schema"), {"format": "json"})
    assert response.status_code == 200
    schema = response.json()
    assert schema["info"]["title"] == "cxr-platform API"
    assert "/api/v1/health" in schema["paths"]
    assert "apiToken" in schema["components"]["securitySchemes"]


def test_api_docs_render_from_our_own_static_files(client):
    response = client.get(reverse("api-docs"))
    assert response.status_code == 200
    page = response.content.decode()
    assert "swagger-ui" in page
    external = [url for url in re.findall(r'(?:src|href)="([^"]+)"', page) if url.startswith(("http:", "https:", "//"))]
    assert external == []
    bundle = re.search(r'src="/static/([^"]*swagger-ui-bundle\.js)"', page).group(1)
    # Shipped by drf-spectacular-sidecar, so collectstatic serves it from our own host.
    assert finders.find(bundle) is not None
