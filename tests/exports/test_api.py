"""/api/v1/cohorts/{id}/exports and /api/v1/exports/{id}: create, list, status, per-user link with Range."""

import time

import pytest
from rest_framework.test import APIClient

from cxr_platform.audit.models import AuditEvent
from exports import signing
from exports.models import Export
from tests.access.factories import grant_tier
from tests.factories import UserFactory

from .factories import array_pngs, make_cohort


def token_client(user) -> APIClient:
    """A client sending a personal API token, as curl would (works for the download view too)."""
    from cxr_platform.api.services import create_api_token

    _, raw = create_api_token(user=user, name="cli")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    return client


@pytest.fixture
def api(exporter):
    return token_client(exporter)


def _ready_export(api, cohort, eager_celery, django_capture_on_commit_callbacks, **body):
    with django_capture_on_commit_callbacks(execute=True):
        response = api.post(f"/api/v1/cohorts/{cohort.pk}/exports", body, format="json")
    assert response.status_code == 202, response.json()
    return response.json()


def test_create_list_and_status_with_download_link(api, small_cohort, eager_celery, django_capture_on_commit_callbacks):
    created = _ready_export(api, small_cohort, eager_celery, django_capture_on_commit_callbacks, include_png=True)
    assert created["status"] == "queued" and created["progress_total"] == 3
    listed = api.get(f"/api/v1/cohorts/{small_cohort.pk}/exports").json()
    assert [e["id"] for e in listed["results"]] == [created["id"]]
    detail = api.get(f"/api/v1/exports/{created['id']}").json()
    assert detail["status"] == "ready" and detail["percent"] == 100 and detail["image_count"] == 3
    assert detail["download"]["url"].startswith("http://testserver/exports/download/")
    assert detail["download"]["sha256"] == Export.objects.get().sha256


def test_download_streams_with_range_and_is_audited(api, exporter, small_cohort, eager_celery,
                                                    django_capture_on_commit_callbacks, tmp_path):
    created = _ready_export(api, small_cohort, eager_celery, django_capture_on_commit_callbacks)
    url = api.get(f"/api/v1/exports/{created['id']}").json()["download"]["url"]
    whole = api.get(url)
    assert whole.status_code == 200 and whole["Content-Type"] == "application/zip"
    body = b"".join(whole.streaming_content)
    (tmp_path / "download.zip").write_bytes(body)
    assert signing.verify_package(tmp_path / "download.zip").ok
    part = api.get(url, HTTP_RANGE="bytes=10-19")
    assert part.status_code == 206 and b"".join(part.streaming_content) == body[10:20]
    assert part["Content-Range"] == f"bytes 10-19/{len(body)}"
    events = AuditEvent.objects.filter(action="export.download_started", actor=exporter)
    assert events.count() == 2


def test_someone_elses_link_and_export_are_refused(api, small_cohort, eager_celery, django_capture_on_commit_callbacks,
                                                   demo_model_version):
    created = _ready_export(api, small_cohort, eager_celery, django_capture_on_commit_callbacks)
    url = api.get(f"/api/v1/exports/{created['id']}").json()["download"]["url"]
    other = UserFactory()
    grant_tier(other, "export")
    client = token_client(other)
    assert client.get(url).status_code == 403
    assert client.get(f"/api/v1/exports/{created['id']}").status_code == 404
    assert client.get(f"/api/v1/cohorts/{small_cohort.pk}/exports").status_code == 404
    assert client.post(f"/api/v1/cohorts/{small_cohort.pk}/exports", {}, format="json").status_code == 404


def test_expired_link_is_gone(api, small_cohort, eager_celery, django_capture_on_commit_callbacks, settings):
    settings.DOWNLOAD_LINK_TTL_SECONDS = 1
    created = _ready_export(api, small_cohort, eager_celery, django_capture_on_commit_callbacks)
    url = api.get(f"/api/v1/exports/{created['id']}").json()["download"]["url"]
    time.sleep(2.1)
    assert api.get(url).status_code == 410


def test_expired_export_cannot_be_downloaded(api, small_cohort, eager_celery, django_capture_on_commit_callbacks):
    created = _ready_export(api, small_cohort, eager_celery, django_capture_on_commit_callbacks)
    url = api.get(f"/api/v1/exports/{created['id']}").json()["download"]["url"]
    from exports import services

    services.expire_exports(now=Export.objects.get().expires_at)
    assert api.get(url).status_code == 410
    assert api.get(f"/api/v1/exports/{created['id']}").json()["download"] is None


def test_generate_tier_cannot_use_the_export_api(demo_model_version):
    user = UserFactory()
    grant_tier(user, "generate")
    cohort = make_cohort(user, demo_model_version, pngs=array_pngs(1))
    client = APIClient()
    client.force_authenticate(user)
    response = client.post(f"/api/v1/cohorts/{cohort.pk}/exports", {}, format="json")
    assert response.status_code == 403 and "DICOM export" in response.json()["detail"]


def test_bad_input_is_a_400_not_a_500(api, small_cohort):
    response = api.post(f"/api/v1/cohorts/{small_cohort.pk}/exports", {"transfer_syntax": "jpeg2000"}, format="json")
    assert response.status_code == 400 and "transfer_syntax" in response.json()


def test_public_key_is_published(small_cohort):
    response = APIClient().get("/api/v1/exports/signing-key")
    assert response.status_code == 200
    assert response.json()["public_key_pem"] == signing.public_key_pem()
    assert response.json()["sha256"] == signing.key_fingerprint()
    page = APIClient().get("/exports/signing-key.pem")
    assert page.status_code == 200 and page.content.decode() == signing.public_key_pem()


def test_download_can_be_handed_to_nginx(api, small_cohort, eager_celery, django_capture_on_commit_callbacks, settings):
    settings.DOWNLOAD_OFFLOAD = "nginx"
    settings.DOWNLOAD_OFFLOAD_PREFIX = "/protected/"
    created = _ready_export(api, small_cohort, eager_celery, django_capture_on_commit_callbacks)
    url = api.get(f"/api/v1/exports/{created['id']}").json()["download"]["url"]
    response = api.get(url)
    export = Export.objects.get()
    assert response.status_code == 200 and response["X-Accel-Redirect"] == f"/protected/{export.file_name}"
    assert response.content == b""


def test_a_repeated_post_with_the_same_idempotency_key_returns_the_first_export(api, small_cohort):
    url = f"/api/v1/cohorts/{small_cohort.pk}/exports"
    first = api.post(url, {"transfer_syntax": "jpegls"}, format="json", HTTP_IDEMPOTENCY_KEY="k-1")
    again = api.post(url, {"transfer_syntax": "jpegls"}, format="json", HTTP_IDEMPOTENCY_KEY="k-1")
    assert first.status_code == again.status_code == 202
    assert again.json()["id"] == first.json()["id"] and again["Idempotent-Replayed"] == "true"
    assert Export.objects.filter(cohort=small_cohort).count() == 1
    other = api.post(url, {"transfer_syntax": "rle"}, format="json", HTTP_IDEMPOTENCY_KEY="k-1")
    assert other.status_code == 422 and str(first.json()["id"]) in other.json()["detail"]
    assert api.post(url, {}, format="json", HTTP_IDEMPOTENCY_KEY="bad key").status_code == 400


@pytest.mark.django_db(transaction=True)
def test_two_concurrent_posts_with_one_key_make_one_export(exporter, demo_model_version):
    """Two requests racing (a client retrying on a timeout): the database's constraint lets one win."""
    import threading

    from django.db import connection

    cohort = make_cohort(exporter, demo_model_version, pngs=array_pngs(2, size=32))
    from exports import services

    barrier, answers = threading.Barrier(2), []

    def post():
        try:
            barrier.wait()
            export, created = services.request_export_once(user=exporter, cohort=cohort, idempotency_key="race",
                                                           enqueue=False)
            answers.append((export.pk, created))
        finally:
            connection.close()

    threads = [threading.Thread(target=post) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert Export.objects.filter(cohort=cohort).count() == 1
    assert len(answers) == 2 and {pk for pk, _ in answers} == {Export.objects.get(cohort=cohort).pk}
    assert sorted(created for _, created in answers) == [False, True]
