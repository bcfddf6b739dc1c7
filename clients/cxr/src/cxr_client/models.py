"""cxr models list / download (the Weights tier)."""

from __future__ import annotations

import re
from pathlib import Path

from .api import FORBIDDEN, NOT_FOUND, Api, CliError
from .output import table
from .progress import Progress, human_bytes
from .transfer import download, safe_target

LIST_COLUMNS = [("ID", "id"), ("NAME", "name"), ("VERSION", "version"), ("STATUS", "status"), ("SIZE", "size_text"),
                ("WEIGHTS", "weights")]


def list_(args, out, api: Api) -> int:
    page = api.get("models", params={"limit": 500})
    versions = page.get("results", []) if isinstance(page, dict) else page
    rows = [{**v, "size_text": human_bytes(v.get("total_size") or 0),
             "weights": "downloadable" if v.get("can_download_weights") else "-"} for v in versions]
    out.result(versions, table(rows, LIST_COLUMNS) if rows else ["No model version is open to you."])
    return 0


def _choose(api: Api, wanted: int | None) -> int:
    if wanted is not None:
        return wanted
    page = api.get("models", params={"limit": 500})
    versions = page.get("results", []) if isinstance(page, dict) else page
    downloadable = [v for v in versions if v.get("can_download_weights")]
    if not downloadable:
        raise CliError("Your access does not include downloading model weights: that needs the Weights tier "
                       "(request it on the platform's Access page).", FORBIDDEN)
    return max(downloadable, key=lambda v: v.get("registered_at") or "")["id"]


def _folder_name(files: dict) -> str:
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", f"{files['name']}-{files['version']}").strip("-.")
    return name or f"model-{files['id']}"


def download_command(args, out, api: Api) -> int:
    version_id = _choose(api, args.version)
    try:
        files = api.get(f"models/{version_id}/files")
    except CliError as error:
        if error.exit_code in (FORBIDDEN, NOT_FOUND):
            error.message = f"Model version {version_id}: {error.message}"
        raise
    folder = Path(args.dir) / _folder_name(files)
    total = sum(f["size"] for f in files["files"])
    bar = Progress(f"{files['name']} {files['version']}", total, enabled=not out.quiet, unit="bytes")
    results, base = [], 0
    try:
        for index, entry in enumerate(files["files"], start=1):
            target = safe_target(folder, entry["path"])
            bar.update(base, text=f"file {index}/{len(files['files'])}")
            per_file = _Offset(bar, base)
            results.append(download(api.http, api.same_server(entry["url"]), target, size=entry["size"],
                                    sha256=entry["sha256"], progress=per_file).as_json())
            base += entry["size"]
            bar.update(base)
    finally:
        bar.close()
    (folder / "sha256sums").write_text(files["sha256sums"])
    resumed = [r for r in results if r["resumed_from"] and not r["already_complete"]]
    data = {"id": files["id"], "name": files["name"], "version": files["version"], "directory": str(folder),
            "total_size": total, "files": results}
    text = [f"Downloaded {files['name']} {files['version']}: {len(results)} files, {human_bytes(total)} in {folder}",
            "  every file's SHA-256 matches the manifest (sha256sums beside them)"]
    if resumed:
        text.append(f"  resumed {len(resumed)} partial file(s)")
    out.result(data, text)
    return 0


class _Offset:
    """One file's progress drawn on the whole version's bar."""

    def __init__(self, bar: Progress, base: int):
        self.bar, self.base = bar, base

    def update(self, done: float | None = None, *, total=None, text=None, force=False) -> None:
        self.bar.update(None if done is None else self.base + done, text=text, force=force)
