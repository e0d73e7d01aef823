"""Progress of a long `segctl` command: a bar redrawn in place on a terminal, plain lines in a log.

On a terminal (the stream is a TTY) each update redraws one line with a carriage return; when the
output goes to a file or a pipe (CI logs, `segctl ... > log`) there is never a carriage return: a
whole line is written at the start, at most every ``interval`` seconds, and at the end, so a log
shows how the work went without thousands of redraws.

    bar = Progress("customers")
    for n in ...:
        bar.update(n, total, note="1,234/s")
    bar.finish()
"""

from __future__ import annotations

import sys
import threading
import time
from typing import TextIO

WIDTH = 30


class Progress:
    def __init__(self, unit: str, *, stream: TextIO | None = None, interval: float = 5.0,
                 tty: bool | None = None) -> None:
        self.unit = unit
        self.stream = stream if stream is not None else sys.stdout
        isatty = getattr(self.stream, "isatty", None)
        #: redraw in place (a terminal) or write whole lines (a log)
        self.tty = tty if tty is not None else bool(isatty and isatty())
        self.interval = interval
        self._last_line = ""
        self._written = ""  # the last line written to a log
        self._last_time: float | None = None
        self._open = False  # a redrawn line is on the terminal, not ended yet
        self._lock = threading.Lock()  # updates may come from several threads (backfill's segments)

    def text(self, done: int, total: int | None, note: str = "") -> str:
        """The progress line itself, without carriage return or newline."""
        if total:
            filled = int(WIDTH * min(done, total) / total)
            line = f"  [{'#' * filled:<{WIDTH}}] {done:,}/{total:,} {self.unit}"
        else:
            line = f"  {done:,} {self.unit}"
        return line + (f", {note}" if note else "")

    def update(self, done: int, total: int | None = None, note: str = "") -> None:
        self.show(self.text(done, total, note))

    def show(self, line: str, *, final: bool = False) -> None:
        """Show a free-form progress line (a status rather than a count)."""
        with self._lock:
            if self.tty:
                pad = " " * max(0, len(self._last_line) - len(line))  # a shorter line hides the longer one
                self.stream.write(f"\r{line}{pad}" + ("\n" if final else ""))
                self._open = not final
            else:
                now = time.monotonic()
                due = self._last_time is None or now - self._last_time >= self.interval
                if (due or final) and line != self._written:
                    self.stream.write(line + "\n")
                    self._written, self._last_time = line, now
            self._last_line = line
            self.stream.flush()

    def finish(self, line: str | None = None) -> None:
        """End the progress: the last state (or ``line``) stays shown, on a line of its own."""
        with self._lock:
            last = self._last_line
        if line is not None or last:
            self.show(line if line is not None else last, final=True)
        elif self._open:
            self.stream.write("\n")
            self._open = False
