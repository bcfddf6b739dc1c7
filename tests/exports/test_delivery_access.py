"""Who may push an export to a PACS, through the API, the browser, the admin and the command line:
other people's exports and deliveries are 404, closed destinations and missing capabilities are
refused with a clear message, every POST needs CSRF, and the password never shows."""

import pytest
from django.core.management import call_command
from django.db import connection
from django.test import Client
from rest_framework.test import APIClient

from access import encryption
from cxr_platform.audit.models import AuditEvent
from exports import delivery, services
from exports.models import Delivery, Destination, Export
from tests.access.factories import grant_tier
from tests.factories import StaffFactory, UserFactory

from .conftest import free_port, make_destination
from .factories import array_pngs, make_cohort
from .test_api import token_client


@pytest.fixture
def scp_destination(exporter, recording_scp):
    return make_destination(name="Research PACS", kind="dimse", host="127.0.0.1", port=recording_scp.port,
                            called_ae_title=recording_scp.ae_title, users=[exporter])


@pytest.fixture
def other_exporter(db):
    user = UserFactory()
    grant_tier(user, "export")
    return user


def test_api_lists_sends_polls_and_retries(exporter, ready_export, scp_destination, recording_scp, eager_celery,
                                           django_capture_on_commit_callbacks):
    make_destination(name="Closed PACS", kind="dimse", host="127.0.0.1", port=104, called_ae_title="CLOSED")
    api = token_client(exporter)
    listed = api.get("/api/v1/destinations").json()
    assert [d["name"] for d in listed["results"]] == ["Research PACS"]
    assert set(listed["results"][0]) == {"id", "name", "kind", "description"}  # no address, no credentials

    recording_scp.refuse_every_second = True
    with django_capture_on_commit_callbacks(execute=True):
        response = api.post(f"/api/v1/exports/{ready_export.pk}/deliveries", {"destination": scp_destination.pk},
                            format="json")
    assert response.status_code == 202, response.json()
    assert response.json()["status"] == "queued" and response.json()["instance_count"] == 4
    detail = api.get(f"/api/v1/deliveries/{response.json()['id']}").json()
    assert detail["status"] == "partial" and (detail["sent_count"], detail["failed_count"]) == (2, 2)
    assert detail["reasons"] == [{"reason": detail["failures"][0]["reason"], "count": 2}]
    assert "0xA700" in detail["failures"][0]["reason"] and len(detail["failures"]) == 2
    assert detail["failures_truncated"] is False

    recording_scp.refuse_every_second = False
    with django_capture_on_commit_callbacks(execute=True):
        retried = api.post(f"/api/v1/deliveries/{detail['id']}/retry")
    assert retried.status_code == 202
    detail = api.get(f"/api/v1/deliveries/{detail['id']}").json()
    assert detail["status"] == "sent" and detail["failures"] == [] and detail["runs"] == 2
    assert api.post(f"/api/v1/deliveries/{detail['id']}/retry").status_code == 409
    assert [d["id"] for d in api.get(f"/api/v1/exports/{ready_export.pk}/deliveries").json()["results"]] == [
        detail["id"]]


def test_api_errors_are_clear(exporter, ready_export, scp_destination, demo_model_version):
    api = token_client(exporter)
    closed = make_destination(name="Closed", kind="dimse", host="127.0.0.1", port=104, called_ae_title="CLOSED")
    for destination_id in (closed.pk, 99999):
        response = api.post(f"/api/v1/exports/{ready_export.pk}/deliveries", {"destination": destination_id},
                            format="json")
        assert response.status_code == 403 and "not open to you" in response.json()["detail"]
    bad = api.post(f"/api/v1/exports/{ready_export.pk}/deliveries", {"destination": "x"}, format="json")
    assert bad.status_code == 400 and "destination" in bad.json()
    queued = services.request_export(user=exporter, cohort=ready_export.cohort, enqueue=False)
    response = api.post(f"/api/v1/exports/{queued.pk}/deliveries", {"destination": scp_destination.pk}, format="json")
    assert response.status_code == 409 and "not ready" in response.json()["detail"]
    assert not Delivery.objects.exists()


def test_other_users_get_404_everywhere(exporter, other_exporter, ready_export, scp_destination):
    scp_destination.allowed_users.add(other_exporter)
    mine = delivery.request_delivery(user=exporter, export=ready_export, destination=scp_destination, enqueue=False)
    delivery.deliver(mine.pk)
    api = token_client(other_exporter)
    assert api.get(f"/api/v1/deliveries/{mine.pk}").status_code == 404
    assert api.post(f"/api/v1/deliveries/{mine.pk}/retry").status_code == 404
    assert api.get(f"/api/v1/exports/{ready_export.pk}/deliveries").status_code == 404
    response = api.post(f"/api/v1/exports/{ready_export.pk}/deliveries", {"destination": scp_destination.pk},
                        format="json")
    assert response.status_code == 404
    browser = Client()
    browser.force_login(other_exporter)
    assert browser.get(f"/exports/deliveries/{mine.pk}/progress.json").status_code == 404
    assert browser.post(f"/exports/deliveries/{mine.pk}/retry").status_code == 404
    response = browser.post(f"/exports/{ready_export.pk}/deliveries", {"destination": scp_destination.pk})
    assert response.status_code == 404
    with pytest.raises(delivery.DeliveryRefused) as refused:
        delivery.retry_delivery(user=other_exporter, delivery=mine, enqueue=False)
    assert refused.value.status == 404
    assert Delivery.objects.count() == 1


def test_without_the_export_capability_nothing_is_sent(demo_model_version, scp_destination):
    generator = UserFactory()
    grant_tier(generator, "generate")
    scp_destination.allowed_users.add(generator)
    cohort = make_cohort(generator, demo_model_version, pngs=array_pngs(1))
    export = Export.objects.create(cohort=cohort, owner=generator, status=Export.Status.READY, image_count=1)
    with pytest.raises(delivery.DeliveryRefused) as refused:
        delivery.request_delivery(user=generator, export=export, destination=scp_destination, enqueue=False)
    assert refused.value.status == 403 and "export" in refused.value.message.lower()
    client = APIClient()
    client.force_authenticate(generator)
    assert client.get("/api/v1/destinations").status_code == 403
    response = client.post(f"/api/v1/exports/{export.pk}/deliveries", {"destination": scp_destination.pk},
                           format="json")
    assert response.status_code == 403 and "DICOM export" in response.json()["detail"]
    assert not Delivery.objects.exists()


def test_open_to_all_exporters(other_exporter, exporter, ready_export):
    open_one = make_destination(name="Shared", kind="dimse", host="127.0.0.1", port=104, called_ae_title="SHARED",
                                open_to_all_exporters=True)
    inactive = make_destination(name="Old", kind="dimse", host="127.0.0.1", port=104, called_ae_title="OLD",
                                open_to_all_exporters=True, is_active=False)
    names = [d["name"] for d in token_client(other_exporter).get("/api/v1/destinations").json()["results"]]
    assert names == ["Shared"]
    assert delivery.request_delivery(user=exporter, export=ready_export, destination=open_one, enqueue=False)
    with pytest.raises(delivery.DeliveryRefused, match="not open to you"):
        delivery.request_delivery(user=exporter, export=ready_export, destination=inactive, enqueue=False)


def test_browser_sends_shows_progress_and_retries(exporter, ready_export, scp_destination, recording_scp,
                                                  eager_celery, django_capture_on_commit_callbacks):
    browser = Client()
    browser.force_login(exporter)
    page = browser.get(f"/exports/cohorts/{ready_export.cohort_id}/").content.decode()
    assert 'class="deliver-form"' in page and f'<option value="{scp_destination.pk}">Research PACS' in page

    recording_scp.refuse_every_second = True
    with django_capture_on_commit_callbacks(execute=True):
        response = browser.post(f"/exports/{ready_export.pk}/deliveries", {"destination": scp_destination.pk})
    assert response.status_code == 302
    sent = Delivery.objects.get()
    progress = browser.get(f"/exports/deliveries/{sent.pk}/progress.json").json()
    assert progress["status"] == "partial"
    assert (progress["sent"], progress["failed"], progress["percent"]) == (2, 2, 100)
    assert progress["retry_url"] == f"/exports/deliveries/{sent.pk}/retry" and len(progress["failures"]) == 2
    page = browser.get(f"/exports/cohorts/{ready_export.cohort_id}/").content.decode()
    assert f'id="delivery-{sent.pk}"' in page and "Partly sent" in page
    assert page.count('class="delivery-failed-instance"') == 2 and "Out of Resources" in page
    assert 'class="delivery-retry"' in page

    recording_scp.refuse_every_second = False
    with django_capture_on_commit_callbacks(execute=True):
        assert browser.post(progress["retry_url"]).status_code == 302
    progress = browser.get(f"/exports/deliveries/{sent.pk}/progress.json").json()
    assert progress["status"] == "sent" and progress["retry_url"] is None


def test_browser_refuses_a_closed_destination_with_a_message(exporter, ready_export):
    closed = make_destination(name="Closed", kind="dimse", host="127.0.0.1", port=104, called_ae_title="CLOSED")
    browser = Client()
    browser.force_login(exporter)
    response = browser.post(f"/exports/{ready_export.pk}/deliveries", {"destination": closed.pk}, follow=True)
    assert "not open to you" in response.content.decode() and not Delivery.objects.exists()
    page = browser.get(f"/exports/cohorts/{ready_export.cohort_id}/").content.decode()
    assert 'class="deliver-form"' not in page  # no destination open to this user: no form


def test_every_post_needs_csrf(exporter, ready_export, scp_destination):
    queued = delivery.request_delivery(user=exporter, export=ready_export, destination=scp_destination, enqueue=False)
    Delivery.objects.filter(pk=queued.pk).update(status=Delivery.Status.FAILED)
    client = Client(enforce_csrf_checks=True)
    client.force_login(exporter)
    assert client.post(f"/exports/{ready_export.pk}/deliveries", {"destination": scp_destination.pk}).status_code == 403
    assert client.post(f"/exports/deliveries/{queued.pk}/retry").status_code == 403
    assert Delivery.objects.get().status == Delivery.Status.FAILED and Delivery.objects.count() == 1


def test_admin_stores_the_password_encrypted_and_never_shows_it(client, settings, exporter):
    settings.REQUIRE_STAFF_2FA = False
    admin_user = StaffFactory(is_superuser=True)
    client.force_login(admin_user)
    form = {"name": "Cloud archive", "description": "", "kind": "stow", "called_ae_title": "", "host": "",
            "port": "", "calling_ae_title": "CXRPLATFORM", "base_url": "https://pacs.example.org/dicom-web",
            "username": "cxr", "password": "Tr0ub4dor&3-secret", "allowed_users": [exporter.pk], "is_active": "on"}
    response = client.post("/admin/exports/destination/add/", form)
    assert response.status_code == 302, response.content.decode()[:2000]
    destination = Destination.objects.get()
    with connection.cursor() as cursor:
        cursor.execute("SELECT password_encrypted FROM exports_destination WHERE id = %s", [destination.pk])
        raw = bytes(cursor.fetchone()[0])
    assert b"Tr0ub4dor" not in raw and encryption.decrypt(raw) == b"Tr0ub4dor&3-secret"
    assert list(destination.allowed_users.all()) == [exporter]
    page = client.get(f"/admin/exports/destination/{destination.pk}/change/").content.decode()
    assert "Tr0ub4dor" not in page and raw.decode() not in page
    # Saving again without a password keeps the stored one.
    client.post(f"/admin/exports/destination/{destination.pk}/change/", {**form, "password": ""})
    assert delivery.destination_password(Destination.objects.get()) == "Tr0ub4dor&3-secret"
    event = AuditEvent.objects.get(action="pacs_destination.created")
    assert event.actor == admin_user and "Tr0ub4dor" not in str(event.details)
    bad = client.post("/admin/exports/destination/add/", {**form, "name": "DIMSE", "kind": "dimse", "host": "pacs",
                                                            "port": "104", "called_ae_title": "BAD\\AE"})
    assert bad.status_code == 200 and "backslash" in bad.content.decode()
    assert not Destination.objects.filter(name="DIMSE").exists()


def test_command_registers_a_destination_with_the_password_from_the_environment(exporter, monkeypatch):
    monkeypatch.setenv("PACS_PASSWORD", "from-the-env-42")
    call_command("add_pacs_destination", "Cloud", "--stow", "--url", "https://pacs.example.org/dicom-web",
                 "--username", "cxr", "--password-env", "PACS_PASSWORD", "--allow-user", exporter.username)
    destination = Destination.objects.get(name="Cloud")
    assert destination.kind == "stow" and list(destination.allowed_users.all()) == [exporter]
    assert b"from-the-env" not in bytes(destination.password_encrypted)
    assert delivery.destination_password(destination) == "from-the-env-42"
    call_command("add_pacs_destination", "Local", "--dimse", "--host", "127.0.0.1", "--port", str(free_port()),
                 "--called-ae", "LOCAL", "--open-to-all")
    assert Destination.objects.get(name="Local").open_to_all_exporters
    from django.core.management.base import CommandError

    with pytest.raises(CommandError, match="called_ae_title"):
        call_command("add_pacs_destination", "Broken", "--dimse", "--host", "h", "--port", "104")
