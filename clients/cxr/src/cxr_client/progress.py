"""Progress on stderr, so stdout stays clean for --json: a redrawn bar on a terminal, and on a log
(a batch job's output file) one line whenever something changes, at most once a second."""

from __future__ import annotations

import sys
import time

WIDTH = 30


def human_bytes(count: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if count < 1000 or unit == "GB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1000
    return f"{count:.1f} GB"


class Progress:
    def __init__(self, label: str, total: float | None = None, *, enabled: bool = True, stream=None, unit: str = ""):
        self.label, self.total, self.unit = label, total, unit
        self.stream = stream or sys.stderr
        self.enabled = enabled
        self.tty = enabled and getattr(self.stream, "isatty", lambda: False)()
        self.done: float = 0
        self.text = ""
        self._last_line = None
        self._last_time = 0.0
        self._open = False

    def _line(self) -> str:
        if self.total:
            fraction = min(1.0, self.done / self.total)
            filled = int(WIDTH * fraction)
            amount = (f"{human_bytes(self.done)}/{human_bytes(self.total)}" if self.unit == "bytes"
                      else f"{self.done:g}/{self.total:g}")
            bar = f"[{'#' * filled}{'.' * (WIDTH - filled)}] {fraction * 100:5.1f}% {amount}"
        else:
            bar = human_bytes(self.done) if self.unit == "bytes" else ""
        return " ".join(part for part in (self.label, bar, self.text) if part)

    def update(self, done: float | None = None, *, total: float | None = None, text: str | None = None,
               force: bool = False) -> None:
        if done is not None:
            self.done = done
        if total is not None:
            self.total = total
        if text is not None:
            self.text = text
        if not self.enabled:
            return
        now = time.monotonic()
        line = self._line()
        if self.tty:
            if force or now - self._last_time >= 0.1:
                self.stream.write("\r\033[K" + line)
                self.stream.flush()
                self._open = True
                self._last_time = now
        elif line != self._last_line and (force or now - self._last_time >= 1.0 or self.unit != "bytes"):
            self.stream.write(line + "\n")
            self.stream.flush()
            self._last_line, self._last_time = line, now

    def advance(self, amount: float) -> None:
        self.update(self.done + amount)

    def close(self, text: str | None = None) -> None:
        self.update(text=text, force=True)
        if self.tty and self._open:
            self.stream.write("\n")
            self.stream.flush()

    def note(self, message: str) -> None:
        """A line of its own (e.g. a notice from the server) without breaking the bar."""
        if not self.enabled:
            return
        if self.tty and self._open:
            self.stream.write("\r\033[K")
        self.stream.write(message + "\n")
        self.stream.flush()
        self._last_time = 0.0
