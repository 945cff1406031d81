"""Progress shown on stderr while a long command runs: a bar when the whole is known, a counter
otherwise. On a terminal one line is redrawn; elsewhere (logs, CI) nothing is drawn but the
final line, so captured output stays short."""

from __future__ import annotations

import sys
import time
from typing import TextIO


def progress_bar(done: float, whole: float, label: str, width: int = 30) -> str:
    """``label [#####.....] 50.0% (5/10)`` after a carriage return."""
    fraction = 0.0 if whole <= 0 else min(1.0, done / whole)
    filled = int(fraction * width)
    return f"\r{label:<10} [{'#' * filled}{'.' * (width - filled)}] {fraction * 100:5.1f}% ({int(done)}/{int(whole)})"


class Progress:
    """Redraws at most every ``interval`` seconds; :meth:`finish` prints the last state once."""

    def __init__(self, label: str, stream: TextIO | None = None, interval: float = 0.2):
        self.label = label
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.interval = interval
        self._drawn_at = 0.0
        self._line = ""

    def update(self, done: float, whole: float | None = None, unit: str = "") -> None:
        self._line = (progress_bar(done, whole, self.label) if whole else f"\r{self.label} {int(done)}{unit}")
        now = time.monotonic()
        if self.tty and now - self._drawn_at >= self.interval:
            self._drawn_at = now
            self.stream.write(self._line)
            self.stream.flush()

    def finish(self) -> None:
        if self._line:
            self.stream.write(self._line + "\n" if self.tty else self._line.lstrip("\r") + "\n")
            self.stream.flush()
