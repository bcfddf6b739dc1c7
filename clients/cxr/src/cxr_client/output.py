"""What a command prints: a JSON document on stdout with --json (for scripts), else lines for a person."""

from __future__ import annotations

import json
import sys


class Output:
    def __init__(self, *, as_json: bool, quiet: bool):
        self.as_json, self.quiet = as_json, quiet

    def result(self, data, text: str | list[str] | None = None) -> None:
        """The command's result: ``data`` as JSON, or ``text`` for a person."""
        if self.as_json:
            json.dump(data, sys.stdout, indent=2, sort_keys=True, default=str)
            sys.stdout.write("\n")
        elif text is not None:
            lines = [text] if isinstance(text, str) else text
            for line in lines:
                print(line)
        sys.stdout.flush()

    def info(self, message: str) -> None:
        """A remark along the way: stderr, so it never mixes into the JSON."""
        if not self.quiet:
            print(message, file=sys.stderr, flush=True)

    def failed(self, message: str) -> None:
        """The command ran but its outcome is a failure, already printed as the result: stderr only."""
        print(f"cxr: error: {message}", file=sys.stderr, flush=True)

    def error(self, message: str, *, exit_code: int, status: int | None = None, payload=None) -> None:
        print(f"cxr: error: {message}", file=sys.stderr, flush=True)
        if self.as_json:
            json.dump({"error": message, "exit_code": exit_code, "status": status, "detail": payload}, sys.stdout,
                      indent=2, sort_keys=True, default=str)
            sys.stdout.write("\n")
            sys.stdout.flush()


def table(rows: list[dict], columns: list[tuple[str, str]]) -> list[str]:
    """Fixed-width columns: ``columns`` is (heading, key) pairs."""
    cells = [[heading for heading, _ in columns]] + [[str(row.get(key, "") if row.get(key) is not None else "")
                                                      for _, key in columns] for row in rows]
    widths = [max(len(line[i]) for line in cells) for i in range(len(columns))]
    return ["  ".join(value.ljust(width) for value, width in zip(line, widths)).rstrip() for line in cells]
