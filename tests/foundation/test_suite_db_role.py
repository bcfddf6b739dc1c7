"""The suite's own connections are the application's role, not the tables' owner (issue 15, item 7):
what passes here passes for a deployment whose application owns nothing (tests/fixtures/db_roles.py)."""

import time

import psycopg
import pytest
from django.core.management import CommandError, call_command
from django.db import DatabaseError, connection, connections, transaction

from cxr_platform.audit.services import record_event
from tests.fixtures.db_roles import app_role

pytestmark = [pytest.mark.postgres, pytest.mark.django_db]


def _refused(statement: str) -> psycopg.Error:
    with pytest.raises(DatabaseError) as refused, transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(statement)
    return refused.value.__cause__


def test_the_suite_connects_as_a_role_that_owns_nothing_and_is_no_superuser():
    with connection.cursor() as cursor:
        cursor.execute("SELECT current_user, rolsuper, rolcreaterole, rolcreatedb FROM pg_roles WHERE rolname = current_user")
        user, superuser, createrole, createdb = cursor.fetchone()
        cursor.execute("SELECT count(*) FROM pg_tables WHERE tableowner = current_user")
        owned = cursor.fetchone()[0]
        cursor.execute("SELECT tableowner FROM pg_tables WHERE tablename = 'audit_auditevent'")
        audit_owner = cursor.fetchone()[0]
    assert user == app_role() and user != audit_owner
    assert (superuser, createrole, createdb, owned) == (False, False, False, 0)


@pytest.mark.parametrize("statement", [
    "TRUNCATE audit_auditevent",
    "ALTER TABLE audit_auditevent DISABLE TRIGGER audit_event_append_only",
    "ALTER TABLE audit_auditevent DISABLE TRIGGER ALL",
    "DROP TRIGGER audit_event_no_truncate ON audit_auditevent",
    "UPDATE audit_auditevent SET action = 'nothing.happened'",
    "DELETE FROM audit_auditevent",
    "TRUNCATE access_user CASCADE",
])
def test_the_suite_connection_cannot_empty_or_unguard_the_audit_log(statement):
    record_event("test.kept")
    assert isinstance(_refused(statement), psycopg.errors.InsufficientPrivilege)


def test_grant_app_role_run_by_the_application_role_says_so_instead_of_doing_nothing():
    with pytest.raises(CommandError, match="does not own the tables"):
        call_command("grant_app_role", "--role", "postgres")


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_worker_processes_connect_as_the_application_role_and_need_no_more(celery_worker_process, tmp_path):
    """A real worker writes its heartbeat row and runs the audit anchor task (reads the whole log)."""
    from cxr_platform.audit.tasks import write_audit_anchor
    from generation.models import WorkerHeartbeat
    from tests.fixtures.celery_worker import _database_url

    assert _database_url(connections.settings["default"]).startswith(f"postgres://{app_role()}:")
    record_event("test.before-the-worker")
    anchors = tmp_path / "anchors.log"
    worker = celery_worker_process(queues="default", AUDIT_ANCHOR_FILE=str(anchors))
    assert WorkerHeartbeat.objects.filter(queues__contains=["default"]).exists(), worker.output()[-2000:]
    write_audit_anchor.delay()
    deadline = time.monotonic() + 60
    while not (anchors.exists() and anchors.read_text().strip()) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert anchors.read_text().strip(), worker.output()[-3000:]
    assert "InsufficientPrivilege" not in worker.output()


@pytest.mark.db_owner
def test_db_owner_tests_act_as_the_owner_on_their_thread_only():
    with connection.cursor() as cursor:
        cursor.execute("SELECT tableowner = current_user FROM pg_tables WHERE tablename = 'audit_auditevent'")
        assert cursor.fetchone()[0]
    assert connections.settings["default"]["USER"] == app_role()
