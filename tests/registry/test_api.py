import hashlib

import pytest

from cxr_platform.audit.models import AuditEvent
from registry import services
from registry.models import ModelVersion
from tests.access.factories import grant_tier
from tests.factories import UserFactory


@pytest.fixture
def researcher(db):
    user = UserFactory()
    grant_tier(user, "generate")
    return user


def test_models_lists_usable_versions_with_defaults(client, researcher, version):
    client.force_login(researcher)
    body = client.get("/api/v1/models").json()
    (item,) = body["results"]
    assert item["id"] == version.pk and item["defaults"] == version.defaults
    assert item["can_download_weights"] is False and item["files_url"] is None


def test_models_hides_withdrawn_versions(client, researcher, version):
    services.change_status(model_version=version, status=ModelVersion.Status.WITHDRAWN, actor=None)
    client.force_login(researcher)
    assert client.get("/api/v1/models").json()["results"] == []


def test_models_is_empty_without_a_grant(client, db, version):
    client.force_login(UserFactory())
    assert client.get("/api/v1/models").json()["results"] == []


def test_files_give_each_file_a_working_link(client, holder, version):
    client.force_login(holder)
    body = client.get(f"/api/v1/models/{version.pk}/files").json()
    assert len(body["files"]) == version.files.count()
    assert body["sha256sums"] == services.sha256sums(version.files.all())
    entry = next(f for f in body["files"] if f["path"] == "vae/diffusion_pytorch_model.safetensors")
    download = client.get(entry["url"])
    assert hashlib.sha256(b"".join(download.streaming_content)).hexdigest() == entry["sha256"]
    assert AuditEvent.objects.filter(action="weights.link_issued").count() == version.files.count()


def test_files_refused_to_a_tier_without_weights(client, researcher, version):
    client.force_login(researcher)
    response = client.get(f"/api/v1/models/{version.pk}/files")
    assert response.status_code == 403 and "weights" in response.json()["detail"]


def test_files_of_a_version_outside_the_grants_is_404(client, db, version):
    client.force_login(UserFactory())
    assert client.get(f"/api/v1/models/{version.pk}/files").status_code == 404
