import pytest

from cxr_platform.audit.models import AuditEvent
from registry import services
from registry.models import ModelVersion
from tests.factories import StaffFactory

Status = ModelVersion.Status


@pytest.fixture
def admin_user(db):
    return StaffFactory(is_superuser=True)


def test_deprecation_is_audited_with_actor_and_reason(version, admin_user):
    services.change_status(model_version=version, status=Status.DEPRECATED, actor=admin_user, reason="v3 is out")
    version.refresh_from_db()
    assert version.status == Status.DEPRECATED and version.status_changed_at is not None
    event = AuditEvent.objects.get(action="model_version.deprecated")
    assert event.actor == admin_user and event.details == {"from": "active", "to": "deprecated", "reason": "v3 is out"}


def test_deprecated_version_can_be_reactivated(version, admin_user):
    services.change_status(model_version=version, status=Status.DEPRECATED, actor=admin_user)
    services.change_status(model_version=version, status=Status.ACTIVE, actor=admin_user)
    assert AuditEvent.objects.filter(action="model_version.reactivated").count() == 1


def test_withdrawal_is_final(version, admin_user):
    services.change_status(model_version=version, status=Status.WITHDRAWN, actor=admin_user)
    for status in (Status.ACTIVE, Status.DEPRECATED):
        with pytest.raises(services.StatusChangeError, match="is withdrawn; it cannot become"):
            services.change_status(model_version=version, status=status, actor=admin_user)
    version.refresh_from_db()
    assert version.status == Status.WITHDRAWN


def test_unknown_status_is_refused(version, admin_user):
    with pytest.raises(services.StatusChangeError, match="not a model version status"):
        services.change_status(model_version=version, status="archived", actor=admin_user)


def test_admin_action_changes_status_through_the_service(client, version, admin_user, settings):
    settings.REQUIRE_STAFF_2FA = False
    client.force_login(admin_user)
    response = client.post(
        "/admin/registry/modelversion/", {"action": "make_deprecated", "_selected_action": [version.pk]}, follow=True
    )
    assert response.status_code == 200
    version.refresh_from_db()
    assert version.status == Status.DEPRECATED
    assert AuditEvent.objects.filter(action="model_version.deprecated", actor=admin_user).exists()


def test_admin_page_shows_manifest_and_covering_tiers(client, version, admin_user, settings, holder):
    settings.REQUIRE_STAFF_2FA = False
    client.force_login(admin_user)
    page = client.get(f"/admin/registry/modelversion/{version.pk}/change/").content.decode()
    weights = version.files.get(path="unet/diffusion_pytorch_model.safetensors")
    assert weights.sha256 in page
    assert "Weights (download_weights)" in page
