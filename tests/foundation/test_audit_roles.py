"""The application's database role cannot tamper with the audit table (issue 15, item 7):
it owns no table and holds only SELECT and INSERT on the log; TRUNCATE is refused by a
trigger even to a role that holds the privilege."""

import os
import subprocess
import sys

import psycopg
import pytest
from django.core.management import CommandError, call_command
from django.db import connection

from cxr_platform.audit.models import AuditEvent
from cxr_platform.audit.selectors import verify_chain
from cxr_platform.audit.services import record_event
from tests.factories import UserFactory

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def connect_as(role):
    settings = connection.settings_dict
    return psycopg.connect(
        host=settings["HOST"] or "127.0.0.1", port=settings["PORT"] or 5432, dbname=settings["NAME"],
        user=role, autocommit=True,
    )


@pytest.fixture
def make_role(django_db_blocker):
    """A LOGIN role without any ownership (trust authentication on 127.0.0.1, as in CI)."""
    created = []

    def make(suffix):
        name = f"cxr_test_{suffix}_{os.getpid()}"
        with connection.cursor() as cursor:
            cursor.execute(f'DROP ROLE IF EXISTS "{name}"')
            cursor.execute(f'CREATE ROLE "{name}" LOGIN')
        created.append(name)
        return name

    yield make
    with django_db_blocker.unblock(), connection.cursor() as cursor:
        for name in created:
            cursor.execute(f'DROP OWNED BY "{name}"')
            cursor.execute(f'DROP ROLE IF EXISTS "{name}"')


@pytest.mark.postgres
@pytest.mark.db_owner  # creates roles and grants, as the owner does
@pytest.mark.django_db(transaction=True)
def test_the_application_role_cannot_rewrite_empty_or_unguard_the_audit_log(make_role):
    role = make_role("app")
    call_command("grant_app_role", "--role", role)
    user = UserFactory()
    record_event("test.before", actor=user)

    with connect_as(role) as app:
        # What the application needs still works.
        assert app.execute("SELECT count(*) FROM audit_auditevent").fetchone()[0] >= 1
        assert app.execute("SELECT has_table_privilege(current_user, 'audit_auditevent', 'INSERT')").fetchone()[0]
        app.execute("UPDATE access_user SET first_name = 'Grace' WHERE id = %s", [user.pk])
        app.execute("SELECT pg_advisory_xact_lock(1)")
        # What would let it rewrite or hide history is refused by the database.
        for statement in (
            "UPDATE audit_auditevent SET action = 'nothing.happened'",
            "DELETE FROM audit_auditevent",
            "TRUNCATE audit_auditevent",
            "ALTER TABLE audit_auditevent DISABLE TRIGGER audit_event_append_only",
            "ALTER TABLE audit_auditevent DISABLE TRIGGER ALL",
            "DROP TRIGGER audit_event_append_only ON audit_auditevent",
            "DROP TRIGGER audit_event_no_truncate ON audit_auditevent",
            "ALTER TABLE audit_auditevent OWNER TO CURRENT_USER",
            "DROP TABLE audit_auditevent",
        ):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                app.execute(statement)
    assert AuditEvent.objects.filter(action="test.before").exists()
    assert verify_chain().intact


@pytest.mark.postgres
@pytest.mark.db_owner  # creates roles and grants, as the owner does
@pytest.mark.django_db(transaction=True)
def test_truncate_is_refused_even_to_a_role_holding_the_privilege(make_role):
    role = make_role("maint")
    with connection.cursor() as cursor:
        cursor.execute(f'GRANT SELECT, TRUNCATE ON audit_auditevent TO "{role}"')
    record_event("test.kept")
    with connect_as(role) as maintenance, pytest.raises(psycopg.errors.InsufficientPrivilege, match="append-only"):
        maintenance.execute("TRUNCATE audit_auditevent")
    assert AuditEvent.objects.filter(action="test.kept").exists()


@pytest.mark.postgres
@pytest.mark.db_owner  # creates roles and grants, as the owner does
@pytest.mark.django_db(transaction=True)
def test_grant_app_role_refuses_a_role_that_owns_tables_and_the_owner_itself(make_role):
    owner = make_role("owner")
    with connection.cursor() as cursor:
        cursor.execute(f'CREATE TABLE "{owner}_t" (id int)')
        cursor.execute(f'ALTER TABLE "{owner}_t" OWNER TO "{owner}"')
    try:
        with pytest.raises(CommandError, match="owns"):
            call_command("grant_app_role", "--role", owner)
        with connection.cursor() as cursor:
            cursor.execute("SELECT current_user")
            me = cursor.fetchone()[0]
        with pytest.raises(CommandError, match="is the role running the migrations"):
            call_command("grant_app_role", "--role", me)
        with pytest.raises(CommandError, match="no database role"):
            call_command("grant_app_role", "--role", "no_such_role_here")
    finally:
        with connection.cursor() as cursor:
            cursor.execute(f'DROP TABLE "{owner}_t"')


def test_migrate_connects_as_the_owner_and_the_app_as_itself():
    """Settings: DATABASE_URL is the application's role; DATABASE_MIGRATE_URL is used by migrate."""
    probe = (
        "import sys; sys.argv = ['manage.py', sys.argv[1]];"
        "import django, os; os.environ['DJANGO_SETTINGS_MODULE'] = 'cxr_platform.settings';"
        "from django.conf import settings;"
        "print(settings.DATABASES['default']['USER'], settings.DATABASE_APP_ROLE or '-')"
    )
    env = {
        **os.environ, "DJANGO_ENV": "development",
        "DATABASE_URL": "postgres://cxr_app:secret@db.internal:5432/cxr",
        "DATABASE_MIGRATE_URL": "postgres://cxr_owner:other@db.internal:5432/cxr",
    }
    env.pop("DATABASE_APP_ROLE", None)

    def user_for(command):
        return subprocess.run([sys.executable, "-c", probe, command], env=env, cwd=REPO, capture_output=True,
                              text=True, check=True).stdout.split()

    assert user_for("migrate") == ["cxr_owner", "cxr_app"]
    assert user_for("runserver") == ["cxr_app", "-"]
