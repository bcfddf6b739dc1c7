"""Staff must pass TOTP before review, audit and admin pages."""

import pytest
from django.urls import reverse
from django_otp.oath import totp
from django_otp.plugins.otp_totp.models import TOTPDevice

from tests.access.factories import login_verified
from tests.factories import StaffFactory, UserFactory

pytestmark = pytest.mark.django_db
STAFF_PAGES = ["/review/", "/audit/", "/admin/"]


def current_code(device) -> str:
    return f"{totp(device.bin_key, step=device.step, t0=device.t0, digits=device.digits):0{device.digits}d}"


@pytest.mark.parametrize("url", STAFF_PAGES)
def test_staff_without_a_device_are_sent_to_set_one_up(client, url):
    client.force_login(StaffFactory())
    response = client.get(url)
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("otp-setup"))


@pytest.mark.parametrize("url", STAFF_PAGES)
def test_staff_with_a_device_but_not_verified_are_asked_for_a_code(client, url):
    staff = StaffFactory()
    TOTPDevice.objects.create(user=staff, name="phone", confirmed=True)
    client.force_login(staff)
    response = client.get(url)
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("otp-verify"))


@pytest.mark.parametrize("url", STAFF_PAGES)
def test_verified_staff_get_in(client, url):
    login_verified(client, StaffFactory(is_superuser=True))
    assert client.get(url).status_code == 200


def test_researchers_never_reach_the_review_queue(client):
    client.force_login(UserFactory())
    response = client.get("/review/")
    assert response.status_code == 403 and "Not allowed" in response.content.decode()


def test_setting_up_a_device_with_a_correct_code_lets_the_reviewer_in(client, settings):
    settings.OTP_TOTP_THROTTLE_FACTOR = 0  # no waiting after the deliberate wrong code
    staff = StaffFactory()
    client.force_login(staff)
    page = client.get(reverse("otp-setup") + "?next=/review/")
    assert page.status_code == 200 and "data:image/svg+xml;base64," in page.content.decode()
    device = TOTPDevice.objects.get(user=staff, confirmed=False)
    wrong = client.post(reverse("otp-setup"), {"token": "000000" if current_code(device) != "000000" else "111111", "next": "/review/"})
    assert wrong.status_code == 200 and "not right" in wrong.content.decode()
    ok = client.post(reverse("otp-setup"), {"token": current_code(device), "next": "/review/"})
    assert ok.status_code == 302 and ok["Location"] == "/review/"
    assert client.get("/review/").status_code == 200


def test_verifying_with_a_code_from_an_existing_device(client):
    staff = StaffFactory()
    device = TOTPDevice.objects.create(user=staff, name="phone", confirmed=True)
    client.force_login(staff)
    response = client.post(reverse("otp-verify"), {"token": current_code(device), "next": "/audit/"})
    assert response.status_code == 302 and response["Location"] == "/audit/"
    assert client.get("/audit/").status_code == 200


def test_verify_refuses_a_wrong_code_and_an_offsite_next(client):
    staff = StaffFactory()
    device = TOTPDevice.objects.create(user=staff, name="phone", confirmed=True)
    client.force_login(staff)
    bad = client.post(reverse("otp-verify"), {"token": "12ab"})
    assert bad.status_code == 200 and "digits" in bad.content.decode()
    response = client.post(reverse("otp-verify"), {"token": current_code(device), "next": "https://evil.example/"})
    assert response["Location"] == "/review/"


def test_the_check_can_be_relaxed_for_development(client, settings):
    settings.REQUIRE_STAFF_2FA = False
    client.force_login(StaffFactory())
    assert client.get("/review/").status_code == 200
