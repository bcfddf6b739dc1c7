"""cxr export create / list / show / download / verify / signing-key."""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from urllib.parse import unquote, urlsplit

from . import config, recipient_verify
from .api import FAILED, NOT_FOUND, USAGE, Api, CliError
from .output import table
from .progress import Progress, human_bytes
from .transfer import download, safe_target

FINAL = ("ready", "failed", "expired")
LIST_COLUMNS = [("ID", "id"), ("STATUS", "status"), ("IMAGES", "image_count"), ("SIZE", "size_text"),
                ("CREATED", "created"), ("EXPIRES", "expires")]


def summary(export: dict) -> str:
    size = f", {human_bytes(export['size'])}" if export.get("size") else ""
    return f"Export {export['id']} of cohort {export['cohort']}: {export['status']} ({export.get('image_count') or 0} images{size})"


def wait(api: Api, export: dict, out, *, interval: float, timeout: float | None) -> dict:
    bar = Progress(f"Export {export['id']}", enabled=not out.quiet)
    deadline = None if timeout is None else time.monotonic() + timeout
    try:
        while True:
            bar.update(export.get("progress_done") or 0, total=export.get("progress_total") or None,
                       text=export["status"])
            if export["status"] in FINAL:
                return export
            if deadline is not None and time.monotonic() >= deadline:
                raise CliError(f"Export {export['id']} is still {export['status']} after {timeout:g} s; "
                               f"`cxr export download {export['id']}` fetches it once it is ready.", FAILED)
            time.sleep(interval)
            export = api.get(f"exports/{export['id']}")
    finally:
        bar.close()


def fetch_package(api: Api, export: dict, directory: Path, out) -> dict:
    """Download a ready export into ``directory`` (resuming a ``.part`` left there), checksum verified."""
    if export["status"] != "ready":
        raise CliError(f"Export {export['id']} is {export['status']}"
                       + (f": {export['error']}" if export.get("error") else "") + "; nothing to download.",
                       NOT_FOUND if export["status"] == "expired" else FAILED, payload=export)
    link = export.get("download") or {}
    if not link.get("url"):
        raise CliError(f"Export {export['id']} is ready but the server gave no download link.", FAILED)
    url = api.same_server(link["url"])
    target = safe_target(directory, unquote(urlsplit(url).path.rsplit("/", 1)[-1]))
    bar = Progress(target.name, link["size"], enabled=not out.quiet, unit="bytes")
    try:
        result = download(api.http, url, target, size=link["size"], sha256=link["sha256"], progress=bar)
    finally:
        bar.close()
    if result.skipped:
        out.info(f"{target} is already complete; its SHA-256 matches.")
    elif result.resumed_from:
        out.info(f"Resumed {target.name} at byte {result.resumed_from} of {result.size}.")
    return {**result.as_json(), "export": export["id"]}


def create(args, out, api: Api) -> int:
    body = {"include_png": args.png}
    if args.transfer_syntax:
        body["transfer_syntax"] = args.transfer_syntax
    key = args.idempotency_key or str(uuid.uuid4())
    export = api.post(f"cohorts/{args.cohort}/exports", json=body, headers={"Idempotency-Key": key}, retry=True)
    out.info(f"Export {export['id']} of cohort {args.cohort} {export['status']}.")
    if not (args.wait or args.download):
        out.result(export, summary(export))
        return 0
    export = wait(api, export, out, interval=args.interval, timeout=args.timeout)
    if export["status"] != "ready":
        out.result(export, summary(export))
        out.failed(f"Export {export['id']} {export['status']}: {export.get('error') or 'no reason given'}")
        return FAILED
    if not args.download:
        out.result(export, [summary(export), f"  download: cxr export download {export['id']} --dir DIR"])
        return 0
    fetched = fetch_package(api, export, Path(args.download), out)
    out.result({**export, "downloaded": fetched},
               [summary(export), f"  saved {fetched['path']} (SHA-256 {fetched['sha256']} verified)"])
    return 0


def list_(args, out, api: Api) -> int:
    page = api.get(f"cohorts/{args.cohort}/exports", params={"limit": args.limit})
    exports = page.get("results", []) if isinstance(page, dict) else page
    rows = [{**e, "size_text": human_bytes(e["size"]) if e.get("size") else "",
             "created": (e.get("created_at") or "")[:16], "expires": (e.get("expires_at") or "")[:16]} for e in exports]
    out.result(exports, table(rows, LIST_COLUMNS) if rows else [f"Cohort {args.cohort} has no exports yet."])
    return 0


def show(args, out, api: Api) -> int:
    export = api.get(f"exports/{args.id}")
    lines = [summary(export)]
    if export.get("sha256"):
        lines.append(f"  sha256: {export['sha256']}")
    if export.get("expires_at"):
        lines.append(f"  expires: {export['expires_at']}")
    if export.get("error"):
        lines.append(f"  error: {export['error']}")
    out.result(export, lines)
    return 0


def download_command(args, out, api: Api) -> int:
    export = api.get(f"exports/{args.id}")
    if args.wait and export["status"] not in FINAL:
        export = wait(api, export, out, interval=args.interval, timeout=args.timeout)
    fetched = fetch_package(api, export, Path(args.dir), out)
    out.result(fetched, f"Saved {fetched['path']} (SHA-256 {fetched['sha256']} verified).")
    return 0


# --- verify: offline, with the published key ----------------------------------------------------------


def _published_key(args, out) -> tuple[bytes | None, str | None, str]:
    """(PEM, fingerprint, where it came from). Without --public-key or --fingerprint: the key saved at
    `cxr login`, else the server's published key (saved for next time)."""
    if args.public_key:
        try:
            return Path(args.public_key).read_bytes(), None, str(args.public_key)
        except OSError as error:
            raise CliError(f"Cannot read the public key {args.public_key}: {error}", USAGE) from None
    if args.fingerprint:
        return None, args.fingerprint, "--fingerprint"
    saved = config.load()
    if saved.get("signing_key_pem"):
        return saved["signing_key_pem"].encode(), saved.get("signing_key_sha256"), f"saved at login ({config.config_path()})"
    current = config.settings(args.url)
    api = Api(current.url, None)
    try:
        key = api.get("exports/signing-key")
    except CliError as error:
        raise CliError(f"No published key to check against: give --public-key KEY.pem or --fingerprint HEX "
                       f"(or `cxr login` once, which saves the key). Fetching it failed: {error.message}",
                       USAGE) from None
    finally:
        api.close()
    if current.source:
        config.save({**current.source, "signing_key_pem": key["public_key_pem"], "signing_key_sha256": key["sha256"]})
    return key["public_key_pem"].encode(), key["sha256"], f"{current.url}/api/v1/exports/signing-key"


def verify(args, out) -> int:
    path = Path(args.path)
    if not path.exists():
        raise CliError(f"No such package: {path}", USAGE)
    pem, fingerprint, source = _published_key(args, out)
    report = recipient_verify.verify(path, public_key_pem=pem, expected_fingerprint=fingerprint)
    data = {"path": str(path), "ok": report.ok, "signature_ok": report.signature_ok, "checked": report.checked,
            "problems": report.problems, "key": source}
    if report.ok:
        out.result(data, f"OK: signature valid (key {source}), {report.checked} files match the manifest, "
                         "no file added")
        return 0
    out.result(data, [*report.problems, f"FAILED: {len(report.problems)} problem(s), {report.checked} file(s) checked"])
    return FAILED


def signing_key(args, out, api: Api) -> int:
    key = api.get("exports/signing-key")
    pem = key["public_key_pem"]
    if recipient_verify.fingerprint(recipient_verify.load_key(pem.encode())) != key["sha256"]:
        raise CliError("The server's signing key does not match its own fingerprint.", FAILED)
    if args.output:
        Path(args.output).write_text(pem)
        out.info(f"Saved the public key to {args.output}.")
    out.result(key, pem.rstrip("\n") if not args.output else f"SHA-256 fingerprint: {key['sha256']}")
    return 0
