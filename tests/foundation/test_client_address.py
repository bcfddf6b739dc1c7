"""Which address an audit event records, directly and behind our reverse proxy."""

import pytest
from django.test import RequestFactory

from cxr_platform.audit.context import client_ip
from cxr_platform.audit.selectors import verify_chain
from cxr_platform.audit.services import record_event


def request_from(remote_addr, forwarded_for=None):
    extra = {"HTTP_X_FORWARDED_FOR": forwarded_for} if forwarded_for else {}
    return RequestFactory().get("/", REMOTE_ADDR=remote_addr, **extra)


def test_without_trusted_proxies_forwarded_for_is_ignored(settings):
    settings.TRUSTED_PROXIES = []
    assert client_ip(request_from("198.51.100.9", "6.6.6.6")) == "198.51.100.9"


def test_behind_a_trusted_proxy_the_forwarded_client_is_recorded(settings):
    settings.TRUSTED_PROXIES = ["127.0.0.1"]
    assert client_ip(request_from("127.0.0.1", "198.51.100.9")) == "198.51.100.9"


def test_addresses_the_client_wrote_itself_are_not_believed(settings):
    settings.TRUSTED_PROXIES = ["127.0.0.1", "10.0.0.0/8"]
    # The client sent "X-Forwarded-For: 6.6.6.6"; our two proxies appended what they saw.
    assert client_ip(request_from("127.0.0.1", "6.6.6.6, 198.51.100.9, 10.1.2.3")) == "198.51.100.9"


def test_forwarded_for_from_an_untrusted_peer_is_ignored(settings):
    settings.TRUSTED_PROXIES = ["127.0.0.1"]
    assert client_ip(request_from("203.0.113.50", "198.51.100.9")) == "203.0.113.50"


def test_garbage_in_forwarded_for_stops_at_the_last_good_hop(settings):
    settings.TRUSTED_PROXIES = ["127.0.0.1"]
    assert client_ip(request_from("127.0.0.1", "not-an-ip")) == "127.0.0.1"


@pytest.mark.django_db
@pytest.mark.parametrize("address", ["2001:DB8:0:0::1", "::ffff:192.0.2.1", "192.0.2.44"])
def test_events_from_any_address_form_still_verify(settings, address):
    settings.TRUSTED_PROXIES = []
    record_event("test.address", request=request_from(address))
    assert verify_chain().intact
