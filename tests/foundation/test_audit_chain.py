"""The audit log's chain: verify_audit_log catches each kind of tampering."""

import threading

import pytest
from django.core.management import call_command, execute_from_command_line
from django.core.management.base import CommandError
from django.db import DatabaseError, connection, transaction

from cxr_platform.audit.models import AuditEvent
from cxr_platform.audit.selectors import verify_chain
from cxr_platform.audit.services import compute_mac, record_event
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def chain():
    """Five events written the normal way."""
    user = UserFactory()
    return [
        record_event("test.step", actor=user, target=("thing", i), details={"step": i, "note": f"step {i}"})
        for i in range(1, 6)
    ]


@pytest.fixture
def tamper():
    """Run raw SQL as someone with write access to the database but not the audit key."""

    def run(sql, params=()):
        with connection.cursor() as cursor:
            if connection.vendor == "postgresql":
                # Rolled back with the test's transaction.
                cursor.execute("ALTER TABLE audit_auditevent DISABLE TRIGGER audit_event_append_only")
            cursor.execute(sql, params)
            if connection.vendor == "postgresql":
                cursor.execute("ALTER TABLE audit_auditevent ENABLE TRIGGER audit_event_append_only")

    return run


def verify_exit(capsys):
    """Run verify_audit_log as from the shell; return (exit status, stdout + stderr)."""
    try:
        execute_from_command_line(["manage.py", "verify_audit_log"])
        status = 0
    except SystemExit as exit_:
        status = exit_.code
    out = capsys.readouterr()
    return status, out.out + out.err


def test_intact_log_exits_zero(chain, capsys):
    status, output = verify_exit(capsys)
    assert status == 0
    assert "Audit log intact: 5 events verified." in output


def test_empty_log_is_intact(capsys):
    status, output = verify_exit(capsys)
    assert status == 0
    assert "0 events verified" in output


@pytest.mark.db_owner  # tampers as the tables' owner would
def test_edited_event_is_reported_with_non_zero_exit(chain, tamper, capsys):
    tamper("UPDATE audit_auditevent SET actor_username = %s WHERE sequence = 3", ["someone-else"])
    status, output = verify_exit(capsys)
    assert status == 1
    assert "event #3 (test.step) does not match its seal: its content was edited" in output
    assert "2 events before it verified" in output


@pytest.mark.db_owner  # tampers as the tables' owner would
def test_edited_details_are_caught(chain, tamper):
    details_sql = (
        "UPDATE audit_auditevent SET details = '{\"step\": 4, \"note\": \"nothing happened\"}'"
        + ("::jsonb" if connection.vendor == "postgresql" else "")
        + " WHERE sequence = 4"
    )
    tamper(details_sql)
    with pytest.raises(CommandError, match=r"event #4 \(test.step\) does not match its seal"):
        call_command("verify_audit_log")


@pytest.mark.db_owner  # tampers as the tables' owner would
def test_deleted_event_is_reported(chain, tamper, capsys):
    tamper("DELETE FROM audit_auditevent WHERE sequence = 2")
    status, output = verify_exit(capsys)
    assert status == 1
    assert "event #2 is missing (the log jumps from #1 to #3): an event was deleted" in output


@pytest.mark.db_owner  # tampers as the tables' owner would
def test_inserted_event_forged_without_the_key_is_reported(chain, tamper, capsys):
    # Make room after #2 and slip in an event sealed with a guessed key.
    tamper("UPDATE audit_auditevent SET sequence = sequence + 1000 WHERE sequence > 2")
    tamper("UPDATE audit_auditevent SET sequence = sequence - 999 WHERE sequence > 1000")
    forged = AuditEvent(
        sequence=3, occurred_at=chain[1].occurred_at, actor_username="intruder", action="access_request.approved",
        target_type="thing", target_id="x", details={}, previous_mac=chain[1].mac,
    )
    forged.mac = compute_mac(forged, forged.previous_mac, key="a-guessed-key")
    tamper(
        "INSERT INTO audit_auditevent (sequence, occurred_at, actor_username, action, target_type, target_id, "
        "user_agent, details, previous_mac, mac) VALUES (%s, %s, %s, %s, %s, %s, '', '{}', %s, %s)",
        [3, forged.occurred_at, "intruder", forged.action, "thing", "x", forged.previous_mac, forged.mac],
    )
    status, output = verify_exit(capsys)
    assert status == 1
    assert "event #3 (access_request.approved) does not match its seal" in output
    assert "inserted by someone without the audit key" in output


@pytest.mark.db_owner  # tampers as the tables' owner would
def test_reordered_events_are_reported(chain, tamper, capsys):
    tamper("UPDATE audit_auditevent SET sequence = -1 WHERE sequence = 2")
    tamper("UPDATE audit_auditevent SET sequence = 2 WHERE sequence = 3")
    tamper("UPDATE audit_auditevent SET sequence = 3 WHERE sequence = -1")
    status, output = verify_exit(capsys)
    assert status == 1
    assert "event #2 does not follow the event before it" in output
    assert "deleted, inserted or reordered" in output


@pytest.mark.db_owner  # tampers as the tables' owner would
def test_events_cut_from_the_end_are_caught_with_an_anchor(chain, tamper):
    anchor = f"{chain[-1].sequence}:{chain[-1].mac}"
    tamper("DELETE FROM audit_auditevent WHERE sequence >= 4")
    with pytest.raises(CommandError, match=r"ends at #3 but the anchor recorded #5: events #4 to #5 were deleted"):
        call_command("verify_audit_log", anchor=anchor)


def test_intact_log_prints_an_anchor_that_verifies(chain, capsys):
    call_command("verify_audit_log")
    printed = capsys.readouterr().out
    assert f"5:{chain[-1].mac}" in printed
    call_command("verify_audit_log", anchor=f"5:{chain[-1].mac}")


def test_a_different_key_does_not_verify(chain):
    report = verify_chain(key="not-the-audit-key")
    assert not report.intact
    assert report.problem.sequence == 1


@pytest.mark.postgres
@pytest.mark.db_owner  # the trigger, against a role holding the privilege (the app role lacks it)
def test_database_refuses_update_of_audit_rows(chain):
    with pytest.raises(DatabaseError, match="append-only: UPDATE"), transaction.atomic():
        AuditEvent.objects.filter(sequence=2).update(action="nothing.happened")
    assert AuditEvent.objects.get(sequence=2).action == "test.step"


@pytest.mark.postgres
@pytest.mark.db_owner  # the trigger, against a role holding the privilege (the app role lacks it)
def test_database_refuses_delete_of_audit_rows(chain):
    with pytest.raises(DatabaseError, match="append-only: DELETE"), transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute("DELETE FROM audit_auditevent WHERE sequence = 2")
    assert AuditEvent.objects.count() == 5


def test_deleting_an_account_keeps_its_events_and_the_chain(chain):
    user = chain[0].actor
    user_id = user.pk
    user.delete()
    assert AuditEvent.objects.filter(actor_id=user_id, actor_username=user.username).count() == 5
    assert verify_chain().intact


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_writers_keep_one_gapless_chain():
    threads_count, per_thread = 8, 50
    start = threading.Barrier(threads_count)
    errors = []

    def writer(n):
        try:
            start.wait()
            for i in range(per_thread):
                record_event("test.concurrent", target=("writer", n), details={"i": i})
        except Exception as exc:  # surfaced by the assertion below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(threads_count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    sequences = list(AuditEvent.objects.order_by("sequence").values_list("sequence", flat=True))
    assert sequences == list(range(1, threads_count * per_thread + 1))
    report = verify_chain()
    assert report.intact, report.problem
    assert report.checked == threads_count * per_thread
