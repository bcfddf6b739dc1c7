"""cxr cohort create / list / show / wait / cancel."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import yaml

from .api import FAILED, USAGE, Api, CliError
from .output import table
from .progress import Progress

LIST_COLUMNS = [("ID", "id"), ("STATUS", "status"), ("SIZE", "size"), ("DONE", "done"), ("CREATED", "created"),
                ("NAME", "name")]


def read_spec(path: Path) -> dict:
    """The cohort specification: the API's create-call body, written as YAML (or JSON, which is YAML too)."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise CliError(f"No such specification file: {path}", USAGE) from None
    except (OSError, UnicodeDecodeError) as error:
        raise CliError(f"Cannot read {path}: {error}", USAGE) from None
    try:
        spec = yaml.safe_load(text)
    except yaml.YAMLError as error:
        where = getattr(error, "problem_mark", None)
        at = f" at line {where.line + 1}, column {where.column + 1}" if where is not None else ""
        raise CliError(f"{path} is not valid YAML{at}: {getattr(error, 'problem', None) or error}", USAGE) from None
    if not isinstance(spec, dict):
        raise CliError(f"{path} must describe one cohort as a mapping (name: …, size: …, findings: …), "
                       f"not a {type(spec).__name__}.", USAGE)
    return spec


def summary(cohort: dict) -> str:
    progress = cohort.get("progress") or {}
    done = f"{progress.get('passed', 0)}/{cohort['size']} passed"
    return f"Cohort {cohort['id']} “{cohort['name']}”: {cohort['status']}, {done}"


def details(cohort: dict) -> list[str]:
    progress = cohort.get("progress") or {}
    lines = [summary(cohort),
             f"  model version: {cohort.get('model_version')}   seed: {cohort.get('seed')}",
             f"  created: {cohort.get('created_at')}   finished: {cohort.get('finished_at') or '-'}",
             f"  images: {progress.get('passed', 0)} passed, {progress.get('failed', 0)} failed, "
             f"{progress.get('flagged', 0)} flagged by screening and replaced ({progress.get('percent', 0)}% done)"]
    if cohort.get("notice"):
        lines.append(f"  notice: {cohort['notice']}")
    if cohort.get("error"):
        lines.append(f"  error: {cohort['error']}")
    return lines


def wait(api: Api, cohort: dict, out, *, interval: float, timeout: float | None) -> dict:
    """Poll until the cohort is completed, failed or cancelled, with a live bar on stderr."""
    bar = Progress(f"Cohort {cohort['id']}", cohort["size"], enabled=not out.quiet)
    deadline = None if timeout is None else time.monotonic() + timeout
    notice = None
    try:
        while True:
            progress = cohort.get("progress") or {}
            if cohort.get("notice") and cohort["notice"] != notice:
                notice = cohort["notice"]
                bar.note(f"Cohort {cohort['id']}: {notice}")
            done = progress.get("passed", 0) + progress.get("failed", 0)
            eta = progress.get("eta_seconds")
            text = cohort["status"] + (f", about {eta} s left" if eta else "")
            bar.update(done, text=text)
            if progress.get("finished") or cohort["status"] in ("completed", "failed", "cancelled"):
                return cohort
            if deadline is not None and time.monotonic() >= deadline:
                raise CliError(f"Cohort {cohort['id']} is still {cohort['status']} after {timeout:g} s; "
                               f"`cxr cohort wait {cohort['id']}` goes on waiting.", FAILED)
            time.sleep(interval)
            cohort = api.get(f"cohorts/{cohort['id']}")
    finally:
        bar.close()


def finished(cohort: dict, out) -> int:
    out.result(cohort, details(cohort))
    if cohort["status"] == "completed":
        return 0
    reason = cohort.get("error") or ("cancelled" if cohort["status"] == "cancelled" else "no reason given")
    out.failed(f"Cohort {cohort['id']} {cohort['status']}: {reason}")
    return FAILED


def create(args, out, api: Api) -> int:
    spec = read_spec(Path(args.spec))
    # A key per call lets the POST be retried after a dropped connection without making a second cohort.
    key = args.idempotency_key or str(uuid.uuid4())
    cohort = api.post("cohorts", json=spec, headers={"Idempotency-Key": key}, retry=True)
    out.info(f"Cohort {cohort['id']} “{cohort['name']}” {cohort['status']} ({cohort['size']} images).")
    if not args.wait:
        out.result(cohort, details(cohort))
        return 0
    return finished(wait(api, cohort, out, interval=args.interval, timeout=args.timeout), out)


def list_(args, out, api: Api) -> int:
    page = api.get("cohorts", params={"limit": args.limit, "offset": args.offset})
    cohorts = page.get("results", []) if isinstance(page, dict) else page
    rows = [{"id": c["id"], "status": c["status"], "size": c["size"], "name": c["name"],
             "done": f"{(c.get('progress') or {}).get('percent', 0):g}%", "created": (c.get("created_at") or "")[:16]}
            for c in cohorts]
    text = table(rows, LIST_COLUMNS) if rows else ["No cohorts yet: `cxr cohort create SPEC.yaml` makes one."]
    if isinstance(page, dict) and page.get("next"):
        text.append(f"… {page['count']} in all: --offset {args.offset + args.limit} shows the next page.")
    out.result(cohorts, text)
    return 0


def show(args, out, api: Api) -> int:
    cohort = api.get(f"cohorts/{args.id}")
    out.result(cohort, details(cohort))
    return 0


def wait_command(args, out, api: Api) -> int:
    cohort = api.get(f"cohorts/{args.id}")
    return finished(wait(api, cohort, out, interval=args.interval, timeout=args.timeout), out)


def cancel(args, out, api: Api) -> int:
    cohort = api.post(f"cohorts/{args.id}/cancel")
    out.result(cohort, summary(cohort))
    return 0
