"""Anchors kept outside the database catch what the chain alone cannot: the end of the log cut
off, or the whole log emptied (issue 15, item 8)."""

import io

import pytest
from django.conf import settings as django_settings
from django.core.management import CommandError, call_command
from django.db import connection
from django.utils import timezone

from cxr_platform.audit import anchors
from cxr_platform.audit.models import AuditEvent
from cxr_platform.audit.services import record_event
from cxr_platform.audit.tasks import write_audit_anchor
from tests.factories import UserFactory

# delete_as_owner: what the tables' owner can do behind the application's back.
pytestmark = [pytest.mark.django_db, pytest.mark.db_owner]


@pytest.fixture
def anchor_file(settings, tmp_path):
    settings.AUDIT_ANCHOR_FILE = str(tmp_path / "anchors" / "audit-anchors.log")
    return tmp_path / "anchors" / "audit-anchors.log"


@pytest.fixture
def events():
    user = UserFactory()
    return [record_event("test.step", actor=user, target=("thing", i)) for i in range(1, 7)]


def delete_as_owner(where: str, params=()):
    """What the database owner can do behind the application's back (the trigger switched off)."""
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("ALTER TABLE audit_auditevent DISABLE TRIGGER audit_event_append_only")
        cursor.execute(f"DELETE FROM audit_auditevent WHERE {where}", params)
        if connection.vendor == "postgresql":
            cursor.execute("ALTER TABLE audit_auditevent ENABLE TRIGGER audit_event_append_only")


def verify(capsys, *args):
    """verify_audit_log's exit status and output (call_command: the shell's entry point would close
    the test's database connection; test_audit_chain.py covers the real exit code)."""
    out = io.StringIO()
    try:
        call_command("verify_audit_log", *args, stdout=out, stderr=out)
        status = 0
    except CommandError as error:
        out.write(str(error))
        status = 1
    return status, out.getvalue()


def test_write_anchor_appends_the_newest_event_with_the_time(anchor_file, events, capsys):
    status, output = verify(capsys, "--write-anchor")
    assert status == 0, output
    line = anchor_file.read_text().strip()
    written_at, anchor = line.split(" ")
    assert anchor == f"6:{events[-1].mac}"
    assert abs((timezone.now() - timezone.datetime.fromisoformat(written_at)).total_seconds()) < 60
    assert f"Anchor written to {anchor_file}" in output
    record_event("test.more")
    status, output = verify(capsys, "--write-anchor")
    assert status == 0
    assert [line.split(" ")[1].split(":")[0] for line in anchor_file.read_text().splitlines()] == ["6", "7"]
    assert "Checked against the anchor file's last anchor #6" in output


def test_the_tail_cut_after_an_anchor_is_detected(anchor_file, events, capsys):
    assert verify(capsys, "--write-anchor")[0] == 0
    delete_as_owner("sequence >= %s", [5])
    assert AuditEvent.objects.count() == 4
    status, output = verify(capsys)
    assert status == 1
    assert "the log ends at #4 but the anchor recorded #6: events #5 to #6 were deleted from the end" in output


def test_an_emptied_log_with_an_anchor_is_detected(anchor_file, events, capsys):
    assert verify(capsys, "--write-anchor")[0] == 0
    delete_as_owner("1 = 1")
    status, output = verify(capsys)
    assert status == 1
    assert "the log is empty but the anchor recorded #6: every event was deleted" in output


def test_an_emptied_log_is_detected_without_an_anchor_once_anyone_has_logged_in(client, capsys):
    client.force_login(UserFactory(username="rita"))  # records auth.login, sets last_login
    assert verify(capsys)[0] == 0
    delete_as_owner("1 = 1")
    status, output = verify(capsys)
    assert status == 1
    assert "the log is empty, but account 'rita' logged in" in output


def test_a_fresh_installation_with_an_empty_log_is_fine(anchor_file, capsys):
    status, output = verify(capsys)
    assert status == 0 and "0 events verified" in output


def test_an_anchored_event_that_was_rewritten_is_detected(anchor_file, events, capsys):
    """Re-sealing the last events needs the key; without it the anchor still disagrees."""
    assert verify(capsys, "--write-anchor")[0] == 0
    anchors.append_anchor(anchor_file, 6, "f" * 64)  # as if the log had been rebuilt since
    status, output = verify(capsys)
    assert status == 1
    assert "event #6 is not the event the anchor recorded" in output


@pytest.mark.parametrize(
    "content, message",
    [
        ("2026-01-01T00:00:00+00:00 not-an-anchor\n", "line 1 of the anchor file"),
        (f"t 9:{'a' * 64}\nt 4:{'b' * 64}\n", "goes backwards at line 2"),
    ],
)
def test_a_damaged_anchor_file_fails_loudly(anchor_file, events, capsys, content, message):
    anchor_file.parent.mkdir(parents=True)
    anchor_file.write_text(content)
    status, output = verify(capsys)
    assert status == 1
    assert message in output


def test_an_explicit_anchor_file_and_no_anchor_file(tmp_path, events, capsys, settings):
    settings.AUDIT_ANCHOR_FILE = ""
    elsewhere = tmp_path / "elsewhere.log"
    assert verify(capsys, "--write-anchor")[0] == 1  # nowhere to write
    assert verify(capsys, "--anchor-file", str(elsewhere), "--write-anchor")[0] == 0
    delete_as_owner("sequence = %s", [6])
    assert verify(capsys, "--anchor-file", str(elsewhere))[0] == 1
    assert verify(capsys, "--no-anchor-file")[0] == 0  # the chain alone cannot tell


def test_the_beat_task_anchors_only_what_it_verified(anchor_file, events):
    assert "cxr_platform.audit.tasks.write_audit_anchor" in {
        entry["task"] for entry in django_settings.CELERY_BEAT_SCHEDULE.values()
    }
    assert write_audit_anchor.apply().get() == f"6:{events[-1].mac}"
    assert write_audit_anchor.apply().get() is None  # nothing new: no new line
    record_event("test.more")
    assert write_audit_anchor.apply().get().startswith("7:")
    delete_as_owner("sequence >= %s", [6])
    result = write_audit_anchor.apply()
    assert result.failed()
    assert "deleted from the end of the log" in str(result.result)
    assert [line.split(" ")[1][:2] for line in anchor_file.read_text().splitlines()] == ["6:", "7:"]


def test_the_beat_task_checks_only_events_after_the_last_anchor(anchor_file, events, monkeypatch):
    write_audit_anchor.apply().get()
    record_event("test.more")
    seen = []
    original = anchors.verify_chain
    monkeypatch.setattr(anchors, "verify_chain", lambda **kw: seen.append(original(**kw)) or seen[-1])
    assert write_audit_anchor.apply().get().startswith("7:")
    assert seen[-1].checked == 1


def test_from_the_shell_an_emptied_log_exits_non_zero(anchor_file, events, capsys):
    from django.core.management import execute_from_command_line

    anchors.append_anchor(anchor_file, events[-1].sequence, events[-1].mac)
    delete_as_owner("1 = 1")
    with pytest.raises(SystemExit) as exit_:
        execute_from_command_line(["manage.py", "verify_audit_log"])  # closes the connection: last
    assert exit_.value.code == 1
    assert "Audit log is NOT intact: the log is empty but the anchor recorded #6" in capsys.readouterr().err
