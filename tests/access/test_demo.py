"""seed_demo: three tiers, demo accounts, and a researcher whose Generate and Export grants work."""

from io import StringIO

import pytest

from access import capabilities as caps
from access.demo import seed_demo
from access.models import AccessRequest, User
from access.policy import access_policy

pytestmark = pytest.mark.django_db


def test_seed_demo_is_complete_and_idempotent():
    out = StringIO()
    seed_demo(out)
    printed = out.getvalue()
    for account in ("researcher", "reviewer", "admin"):
        assert f"Demo account '{account}' created with password: " in printed
    researcher = User.objects.get(username="researcher")
    policy = access_policy(researcher)
    assert {caps.GENERATE, caps.EXPORT_DICOM, caps.API} <= policy.capabilities
    assert policy.daily_image_quota == 20000
    assert AccessRequest.objects.filter(user=researcher, status="approved").count() == 2
    assert User.objects.get(username="reviewer").is_staff and User.objects.get(username="admin").is_superuser

    again = StringIO()
    seed_demo(again)
    assert "created with password" not in again.getvalue()
    assert AccessRequest.objects.filter(user=researcher).count() == 2
    assert researcher.training_certificates.count() == 1


def test_seed_demo_sends_no_e_mail(django_capture_on_commit_callbacks):
    from django.core import mail

    with django_capture_on_commit_callbacks(execute=True):
        seed_demo(StringIO())
    assert mail.outbox == []


def test_seed_demo_renews_a_lapsed_demo_grant():
    from datetime import timedelta

    from django.utils import timezone

    from access.models import AccessGrant

    seed_demo(StringIO())
    researcher = User.objects.get(username="researcher")
    AccessGrant.objects.filter(user=researcher, tier__slug="export").update(expires_at=timezone.now() - timedelta(days=1))
    seed_demo(StringIO())
    assert access_policy(researcher).can(caps.EXPORT_DICOM)
    assert AccessRequest.objects.filter(user=researcher, tier__slug="export", status="expired").count() == 1
