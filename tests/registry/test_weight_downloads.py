"""Weight downloads through per-user signed links: the happy path, every refusal, Range."""

import hashlib

import pytest
from django.urls import reverse

from access.models import AccessGrant
from cxr_platform.audit.models import AuditEvent
from registry import services
from registry.models import ModelVersion
from tests.access.factories import grant_tier
from tests.factories import UserFactory

WEIGHTS = "unet/diffusion_pytorch_model.safetensors"


@pytest.fixture
def weights(version):
    return version.files.get(path=WEIGHTS)


def link_for(user, model_file, **kwargs):
    link = services.issue_download_link(user=user, model_file=model_file, **kwargs)
    return reverse("model-download", args=[link.token, model_file.path])


def content(response):
    return b"".join(response.streaming_content)


# --- listing -----------------------------------------------------------------------------------


def test_holder_sees_each_file_with_size_and_sha256(holder_client, version, weights):
    page = holder_client.get(reverse("model-detail", args=[version.pk])).content.decode()
    assert WEIGHTS in page and weights.sha256 in page
    assert reverse("model-file-link", args=[version.pk, weights.pk]) in page


def test_sha256sums_lists_every_file(holder_client, version, weights):
    response = holder_client.get(reverse("model-sha256sums", args=[version.pk]))
    assert response.status_code == 200
    assert f"{weights.sha256}  {WEIGHTS}\n" in response.content.decode()
    assert len(response.content.decode().splitlines()) == version.files.count()


def test_version_outside_the_grant_is_not_listed(client, holder, version, model_dir, demo_model_dir):
    other = services.register_model_version(name="RoentGen-other", version="1", directory=demo_model_dir)
    AccessGrant.objects.filter(user=holder).first().tier.model_versions.set([version])
    client.force_login(holder)
    page = client.get(reverse("model-list")).content.decode()
    assert "RoentGen-demo 1.0" in page and "RoentGen-other" not in page
    assert client.get(reverse("model-detail", args=[other.pk])).status_code == 404


# --- the happy path ------------------------------------------------------------------------------


def test_holder_downloads_the_registered_bytes(holder_client, version, weights, model_dir):
    response = holder_client.post(reverse("model-file-link", args=[version.pk, weights.pk]))
    assert response.status_code == 302
    download = holder_client.get(response["Location"])
    assert download.status_code == 200 and download["ETag"] == f'"{weights.sha256}"'
    assert hashlib.sha256(content(download)).hexdigest() == weights.sha256


def test_link_issued_and_download_started_are_audited_with_bytes_and_ip(holder_client, holder, version, weights):
    url = link_for(holder, weights)
    holder_client.get(url, HTTP_RANGE="bytes=100-199", REMOTE_ADDR="203.0.113.9")
    issued = AuditEvent.objects.get(action="weights.link_issued")
    started = AuditEvent.objects.get(action="weights.download_started")
    assert issued.actor == holder and issued.details["file"] == WEIGHTS
    assert started.actor == holder and started.target_id == str(version.pk)
    assert started.details["file"] == WEIGHTS and started.details["bytes_requested"] == 100
    assert started.ip_address == "203.0.113.9"


def test_api_token_holder_can_download_with_curl(client, holder, weights):
    from cxr_platform.api.services import create_api_token

    _, raw = create_api_token(user=holder, name="cli")
    response = client.get(link_for(holder, weights), HTTP_AUTHORIZATION=f"Bearer {raw}")
    assert response.status_code == 200 and len(content(response)) == weights.size


# --- ranges through the real view --------------------------------------------------------------


def test_resume_from_the_middle(holder_client, holder, weights, model_dir):
    data = (model_dir / WEIGHTS).read_bytes()
    response = holder_client.get(link_for(holder, weights), HTTP_RANGE="bytes=1000-")
    assert response.status_code == 206 and response["Content-Range"] == f"bytes 1000-{len(data) - 1}/{len(data)}"
    assert content(response) == data[1000:]


def test_suffix_range(holder_client, holder, weights, model_dir):
    response = holder_client.get(link_for(holder, weights), HTTP_RANGE="bytes=-64")
    assert response.status_code == 206 and content(response) == (model_dir / WEIGHTS).read_bytes()[-64:]


def test_invalid_range_is_416_and_not_audited_as_a_start(holder_client, holder, weights):
    response = holder_client.get(link_for(holder, weights), HTTP_RANGE=f"bytes={weights.size}-")
    assert response.status_code == 416 and response["Content-Range"] == f"bytes */{weights.size}"
    assert not AuditEvent.objects.filter(action="weights.download_started").exists()


# --- refusals ----------------------------------------------------------------------------------


def assert_refused(response, status, words):
    assert response.status_code == status
    assert not response.streaming
    assert words in response.content.decode()


def test_link_is_useless_to_another_user(client, holder, weights):
    url = link_for(holder, weights)
    other = UserFactory()
    grant_tier(other, "weights")
    client.force_login(other)
    assert_refused(client.get(url), 403, "issued to another account")
    assert AuditEvent.objects.get(action="weights.download_refused").details["reason"] == "WrongUser"


def test_expired_link_is_refused(holder_client, holder, weights):
    url = link_for(holder, weights, ttl_seconds=0)
    assert_refused(holder_client.get(url), 410, "expired")


def test_default_link_lifetime_comes_from_settings(holder, weights, settings):
    settings.DOWNLOAD_LINK_TTL_SECONDS = 0
    link = services.issue_download_link(user=holder, model_file=weights)
    from cxr_platform import downloads

    with pytest.raises(downloads.ExpiredLink):
        downloads.verify_link(link.token, purpose=services.WEIGHTS_LINK_PURPOSE, user=holder)


def test_link_is_useless_after_the_grant_is_revoked(holder_client, holder, weights):
    url = link_for(holder, weights)
    AccessGrant.objects.filter(user=holder).update(status=AccessGrant.Status.REVOKED)
    assert_refused(holder_client.get(url), 403, "no longer covers")


def test_link_is_useless_once_the_version_is_withdrawn(holder_client, holder, version, weights):
    url = link_for(holder, weights)
    services.change_status(model_version=version, status=ModelVersion.Status.WITHDRAWN, actor=None)
    assert_refused(holder_client.get(url), 410, "withdrawn")


def test_tier_without_weights_gets_no_link(client, version, weights):
    researcher = UserFactory()
    grant_tier(researcher, "generate")
    client.force_login(researcher)
    assert_refused(client.post(reverse("model-file-link", args=[version.pk, weights.pk])), 403, "download model weights")
    assert not AuditEvent.objects.filter(action="weights.link_issued").exists()


def test_tier_without_weights_cannot_use_a_link_either(client, holder, weights):
    url = link_for(holder, weights)
    AccessGrant.objects.filter(user=holder).update(status=AccessGrant.Status.REVOKED)
    grant_tier(holder, "generate")
    client.force_login(holder)
    assert_refused(client.get(url), 403, "no longer covers")


def test_tier_without_weights_sees_no_files_or_sums(client, version, weights):
    researcher = UserFactory()
    grant_tier(researcher, "generate")
    client.force_login(researcher)
    assert weights.sha256 not in client.get(reverse("model-detail", args=[version.pk])).content.decode()
    assert client.get(reverse("model-sha256sums", args=[version.pk])).status_code == 403


def test_anonymous_user_is_sent_to_log_in(client, holder, weights):
    response = client.get(link_for(holder, weights))
    assert response.status_code == 302 and response["Location"].startswith(reverse("login"))


def test_tampered_link_is_not_found(holder_client, holder, weights):
    url = link_for(holder, weights)
    token = url.split("/")[3]
    assert_refused(holder_client.get(url.replace(token, token[:-1] + ("A" if token[-1] != "A" else "B"))), 404, "not valid")


def test_link_cannot_be_pointed_at_another_file(holder_client, holder, weights):
    url = link_for(holder, weights)
    assert_refused(holder_client.get(url.replace(WEIGHTS, "vae/diffusion_pytorch_model.safetensors")), 404, "not valid")


def test_file_changed_on_disk_is_not_served(holder_client, holder, weights, model_dir):
    url = link_for(holder, weights)
    with (model_dir / WEIGHTS).open("ab") as handle:
        handle.write(b"tampered")
    assert_refused(holder_client.get(url), 503, "no longer matches its registration")


def test_nginx_offload_for_versions_under_model_root(holder_client, holder, version, weights, settings, model_dir):
    settings.DOWNLOAD_OFFLOAD = "nginx"
    settings.MODEL_ROOT = model_dir.parent
    response = holder_client.get(link_for(holder, weights))
    assert response["X-Accel-Redirect"] == f"/protected/models/{model_dir.name}/{WEIGHTS}"
    assert AuditEvent.objects.filter(action="weights.download_started").exists()
