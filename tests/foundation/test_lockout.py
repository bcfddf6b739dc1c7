"""Login lockout is keyed on the account *and* the real client address behind our trusted
proxies (issue 15, item 11): an attacker elsewhere cannot lock someone else out."""

import pytest
from django.urls import reverse

from tests.factories import DEFAULT_PASSWORD, UserFactory

pytestmark = pytest.mark.django_db

PROXY = "127.0.0.1"
ATTACKER = "203.0.113.66"
VICTIM = "198.51.100.20"


def login(client, username, password, *, forwarded_for):
    return client.post(
        reverse("login"),
        {"username": username, "password": password},
        REMOTE_ADDR=PROXY,
        HTTP_X_FORWARDED_FOR=forwarded_for,
    )


@pytest.fixture
def behind_nginx(settings):
    settings.TRUSTED_PROXIES = [PROXY]


def test_failures_from_one_address_do_not_lock_the_account_elsewhere(client, behind_nginx, settings):
    user = UserFactory(username="reviewer-x")
    for _ in range(settings.AXES_FAILURE_LIMIT * 3):
        login(client, "reviewer-x", "wrong", forwarded_for=ATTACKER)
    response = login(client, "reviewer-x", DEFAULT_PASSWORD, forwarded_for=VICTIM)
    assert response.status_code == 302, response.status_code
    assert int(client.session["_auth_user_id"]) == user.pk


def test_the_forwarded_address_that_failed_is_locked(client, behind_nginx, settings):
    UserFactory(username="reviewer-y")
    for _ in range(settings.AXES_FAILURE_LIMIT):
        login(client, "reviewer-y", "wrong", forwarded_for=ATTACKER)
    locked = login(client, "reviewer-y", DEFAULT_PASSWORD, forwarded_for=ATTACKER)
    assert locked.status_code == 429
    assert "_auth_user_id" not in client.session


def test_a_client_cannot_dodge_the_lock_by_writing_its_own_forwarded_for(client, behind_nginx, settings):
    """nginx appends the address it saw; whatever the client wrote to the left is not believed."""
    UserFactory(username="reviewer-z")
    for n in range(settings.AXES_FAILURE_LIMIT):
        login(client, "reviewer-z", "wrong", forwarded_for=f"10.9.9.{n}, {ATTACKER}")
    locked = login(client, "reviewer-z", DEFAULT_PASSWORD, forwarded_for=f"10.9.9.200, {ATTACKER}")
    assert locked.status_code == 429


def test_forwarded_for_from_an_untrusted_peer_is_ignored(client, settings):
    settings.TRUSTED_PROXIES = [PROXY]
    UserFactory(username="reviewer-w")
    for n in range(settings.AXES_FAILURE_LIMIT):
        client.post(reverse("login"), {"username": "reviewer-w", "password": "wrong"},
                    REMOTE_ADDR=ATTACKER, HTTP_X_FORWARDED_FOR=f"192.0.2.{n}")
    locked = client.post(reverse("login"), {"username": "reviewer-w", "password": DEFAULT_PASSWORD},
                         REMOTE_ADDR=ATTACKER, HTTP_X_FORWARDED_FOR="192.0.2.99")
    assert locked.status_code == 429


def test_the_lockout_records_the_client_address(client, behind_nginx, settings):
    from axes.models import AccessAttempt

    UserFactory(username="reviewer-v")
    login(client, "reviewer-v", "wrong", forwarded_for=ATTACKER)
    assert list(AccessAttempt.objects.filter(username="reviewer-v").values_list("ip_address", flat=True)) == [ATTACKER]
