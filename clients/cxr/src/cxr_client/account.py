"""cxr login / logout / whoami."""

from __future__ import annotations

import getpass
import os
import sys

from . import config
from .api import AUTH, USAGE, Api, CliError


def read_token(option: str | None) -> str:
    token = option or os.environ.get("CXR_TOKEN")
    if not token:
        if sys.stdin.isatty():
            token = getpass.getpass("API token (Settings → API tokens on the platform): ")
        else:  # piped in, so it never shows in the process list or the shell history
            token = sys.stdin.readline()
    token = (token or "").strip()
    if not token:
        raise CliError("No API token given: pass --token, set CXR_TOKEN, or type it when asked.", USAGE)
    return token


def login(args, out) -> int:
    current = config.settings(args.url)
    token = read_token(args.token)
    api = Api(current.url, token)
    try:
        try:
            me = api.get("whoami")
        except CliError as error:
            if error.exit_code == AUTH:
                raise CliError(f"Login failed: the server at {current.url} refused this token "
                               f"({error.payload.get('detail') if isinstance(error.payload, dict) else error.message}). "
                               "Nothing was saved.", AUTH, status=error.status, payload=error.payload) from None
            raise
        data = {**current.source, "url": current.url, "token": token, "username": me["username"]}
        try:
            # Kept so that `cxr export verify` can check packages later without the network.
            key = api.get("exports/signing-key")
            data["signing_key_pem"], data["signing_key_sha256"] = key["public_key_pem"], key["sha256"]
        except (CliError, KeyError, TypeError):
            pass
    finally:
        api.close()
    path = config.save(data)
    out.result({"url": current.url, "username": me["username"], "config": str(path),
                "signing_key_sha256": data.get("signing_key_sha256")},
               f"Logged in to {current.url} as {me['username']}. Token saved in {path} (readable only by you).")
    return 0


def logout(args, out) -> int:
    removed = config.forget()
    out.result({"logged_out": removed, "config": str(config.config_path())},
               "Logged out: the saved token was removed." if removed else "Not logged in: nothing to remove.")
    return 0


def whoami(args, out, api: Api) -> int:
    me = api.get("whoami")
    out.result({**me, "url": api.url}, f"{me['username']} on {api.url} (token {me.get('token_prefix') or '-'}…)")
    return 0
