"""One "not allowed" page for the browser (issue 18): every staff page, and the admin, answer a
signed-in user without staff rights with the same 403 page, which says what the page needs and
where to get it. Anonymous visitors still go to log in; under /api/v1/ errors stay JSON."""

import json

import pytest
from django.urls import reverse
from django_otp.plugins.otp_totp.models import TOTPDevice

from tests.access.factories import login_verified
from tests.factories import StaffFactory, UserFactory

pytestmark = pytest.mark.django_db

STAFF_PAGES = ["/review/", "/review/certificates/", "/audit/", "/audit/export.csv", "/admin/",
               "/admin/access/tier/", "/screening/", "/screening/indexes/", "/screening/records/1/"]


@pytest.mark.parametrize("url", STAFF_PAGES)
def test_a_researcher_gets_the_not_allowed_page(client, url):
    client.force_login(UserFactory(username="rita"))
    response = client.get(url)
    assert response.status_code == 403
    assert [t.name for t in response.templates][0] == "errors/403.html"
    body = response.content.decode()
    assert "Not allowed" in body
    assert "needs a staff account (reviewer or administrator) that has passed two-factor authentication" in body
    assert f'href="{reverse("access-dashboard")}"' in body  # where their own access is
    assert "rita" in body
    assert 'name="password"' not in body  # not a login form, neither ours nor the admin's


@pytest.mark.parametrize("url, name", [("/review/", "The review queue"), ("/audit/", "The audit log"),
                                       ("/screening/", "The privacy quarantine"), ("/admin/", "The admin")])
def test_the_page_names_what_was_refused(client, url, name):
    client.force_login(UserFactory())
    assert f"<strong>{name}</strong> needs" in client.get(url).content.decode()


def test_a_post_to_a_staff_page_is_refused_the_same_way(client):
    client.force_login(UserFactory())
    response = client.post("/screening/records/1/confirm", {"reason": "x"})
    assert response.status_code == 403 and "Not allowed" in response.content.decode()


@pytest.mark.parametrize("url", ["/review/", "/audit/", "/screening/"])
def test_anonymous_visitors_are_sent_to_log_in(client, url):
    response = client.get(url)
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login")) and "next=" in response["Location"]


def test_anonymous_visitors_to_the_admin_get_a_login_page(client):
    response = client.get("/admin/")
    assert response.status_code == 302 and "login" in response["Location"]


def test_staff_still_go_through_two_factor_rather_than_the_403(client):
    client.force_login(StaffFactory())
    assert client.get("/review/")["Location"].startswith(reverse("otp-setup"))


def test_verified_staff_get_in(client):
    login_verified(client, StaffFactory(is_superuser=True))
    for url in ("/review/", "/audit/", "/screening/", "/admin/"):
        assert client.get(url).status_code == 200, url


def test_staff_without_two_factor_refused_elsewhere_are_pointed_at_it(rf, settings):
    """The page explains 2FA to staff who have not passed it (a PermissionDenied from any view)."""
    from django.contrib.sessions.middleware import SessionMiddleware
    from django.core.exceptions import PermissionDenied

    from cxr_platform.views import permission_denied

    settings.REQUIRE_STAFF_2FA = True
    staff = StaffFactory()
    request = rf.get("/review/requests/1/")
    SessionMiddleware(lambda r: None).process_request(request)
    request.user = staff
    staff.is_verified = lambda: False
    body = permission_denied(request, PermissionDenied()).content.decode()
    assert f"{reverse('otp-setup')}?next=" in body and "Set up two-factor authentication" in body
    TOTPDevice.objects.create(user=staff, name="phone", confirmed=True)
    body = permission_denied(request, PermissionDenied()).content.decode()
    assert f"{reverse('otp-verify')}?next=" in body


def test_a_missing_capability_points_at_the_access_page(rf):
    from django.contrib.sessions.middleware import SessionMiddleware

    from access.policy import AccessDenied
    from cxr_platform.views import permission_denied

    request = rf.get("/cohorts/new/")
    SessionMiddleware(lambda r: None).process_request(request)
    request.user = UserFactory()
    response = permission_denied(request, AccessDenied("You need an approved, current access grant that allows: x."))
    body = response.content.decode()
    assert response.status_code == 403
    assert "You need an approved, current access grant that allows: x." in body
    assert f'href="{reverse("access-dashboard")}"' in body


def test_staff_without_an_admin_permission_are_told_so(client):
    login_verified(client, StaffFactory())  # staff, not superuser: no model permissions
    response = client.get("/admin/access/tier/")
    assert response.status_code == 403
    assert "admin permission your account does not have" in response.content.decode()


@pytest.mark.parametrize("url, status", [("/api/v1/no-such-endpoint/", 404), ("/api/v1/me", 401)])
def test_the_api_still_answers_in_json(client, url, status):
    response = client.get(url)
    assert response.status_code == status
    assert response["Content-Type"].startswith("application/json")
    assert "detail" in response.json()


def test_a_403_under_the_api_is_json(rf):
    """A browser-style 403 raised under /api/v1/ comes back as the API's JSON error."""
    from django.http import HttpResponseForbidden

    from cxr_platform.api.middleware import ApiGuardMiddleware

    response = ApiGuardMiddleware(lambda request: HttpResponseForbidden("<html>Not allowed</html>"))(
        rf.get("/api/v1/cohorts/")
    )
    assert response.status_code == 403 and json.loads(response.content) == {"detail": "Forbidden."}
