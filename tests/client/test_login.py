"""cxr login / whoami / logout: the token is checked before it is saved, and saved for its owner only."""

import json
import stat

from .conftest import api_user


def test_login_saves_a_checked_token_readable_only_by_its_owner_until_logout(cxr):
    user, token = api_user()
    # From stdin, so that the token stays out of the process list and the shell history.
    result = cxr("login", stdin=token + "\n")
    assert result.code == 0, result.stderr
    assert f"as {user.username}" in result.stdout
    saved = json.loads(cxr.config.read_text())
    assert (saved["token"], saved["url"], saved["username"]) == (token, cxr.url, user.username)
    assert stat.S_IMODE(cxr.config.stat().st_mode) == 0o600
    assert cxr("whoami", "--json").json()["username"] == user.username
    assert cxr("logout").code == 0
    assert not cxr.config.exists()


def test_a_bad_token_is_refused_clearly_and_nothing_is_saved(cxr):
    result = cxr("login", "--token", "cxr_not-a-real-token")
    assert result.code == 3
    assert "Login failed" in result.stderr and "Invalid or revoked API token" in result.stderr
    assert not cxr.config.exists()


def test_a_command_without_a_login_says_how_to_log_in(offline_cxr):
    result = offline_cxr("cohort", "list", "--json")
    assert result.code == 3
    assert "cxr login" in result.stderr
    assert result.json()["exit_code"] == 3
