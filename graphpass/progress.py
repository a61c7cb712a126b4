"""Progress of long rewrites on a terminal: one line, rewritten in place; silent elsewhere."""

from __future__ import annotations

import sys
import time
from typing import TextIO


class Progress:
    """`update(stage, done, total)` redraws one status line at most every `interval` seconds."""

    def __init__(self, stream: TextIO | None = None, enabled: bool = False, interval: float = 0.1):
        self.stream = stream or sys.stderr
        self.enabled = enabled
        self.interval = interval
        self._last = 0.0
        self._width = 0

    @classmethod
    def for_terminal(cls, quiet: bool = False) -> Progress:
        return cls(sys.stderr, enabled=not quiet and sys.stderr.isatty())

    def update(self, stage: str, done: int, total: int) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if done < total and now - self._last < self.interval:
            return
        self._last = now
        text = f"graphpass: {stage} {done}/{total}"
        self.stream.write("\r" + text.ljust(self._width))
        self.stream.flush()
        self._width = len(text)

    def finish(self) -> None:
        if self.enabled and self._width:
            self.stream.write("\r" + " " * self._width + "\r")
            self.stream.flush()
            self._width = 0


SILENT = Progress()
