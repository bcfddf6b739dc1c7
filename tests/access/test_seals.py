"""The state access decisions rest on is sealed: an edit made outside the platform (SQL) is
detected by `verify_access_seals`; edits through the platform keep the seals intact."""

from datetime import timedelta

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection
from django.utils import timezone

from access import services
from access.models import AccessGrant, TrainingCertificate
from tests.access.factories import give_certificate, give_credentials, grant_tier

pytestmark = pytest.mark.django_db


def _verify(capsys) -> tuple[bool, str]:
    try:
        call_command("verify_access_seals")
        return True, capsys.readouterr().out
    except CommandError:
        return False, capsys.readouterr().out


def _sql(statement: str, *params) -> None:
    with connection.cursor() as cursor:  # around the ORM's save(), as an intruder would
        cursor.execute(statement, params)


def test_rows_written_by_the_platform_are_intact(credentialed, capsys):
    grant_tier(credentialed, "export")
    ok, out = _verify(capsys)
    assert ok and "Access state intact" in out


def test_a_grant_extended_in_the_database_is_detected(credentialed, capsys):
    grant = grant_tier(credentialed, "export")
    _sql(f"UPDATE {AccessGrant._meta.db_table} SET expires_at = %s WHERE id = %s",
         timezone.now() + timedelta(days=3650), grant.pk)
    ok, out = _verify(capsys)
    assert not ok and f"BROKEN SEAL access.AccessGrant #{grant.pk}" in out


def test_a_certificate_marked_verified_in_the_database_is_detected(researcher, capsys):
    certificate = give_certificate(researcher, verified=False)
    TrainingCertificate.objects.filter(pk=certificate.pk).update(verified_at=timezone.now())  # no save()
    ok, out = _verify(capsys)
    assert not ok and f"access.TrainingCertificate #{certificate.pk}" in out


def test_changes_through_the_platform_keep_the_seals(credentialed, reviewer, capsys):
    grant = grant_tier(credentialed, "export")
    waiting = give_certificate(credentialed, verified=False)
    services.verify_certificate(certificate=waiting, reviewer=reviewer)
    services.revoke_grant(grant=grant, reviewer=reviewer, reason="Study ended.")
    assert AccessGrant.objects.get(pk=grant.pk).status == AccessGrant.Status.REVOKED
    ok, out = _verify(capsys)
    assert ok, out
