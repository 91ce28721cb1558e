"""A plain-text progress bar on stderr, with no dependency.

On a terminal the bar is redrawn in place with a carriage return; when stderr is not a terminal
(CI logs, files) one line is printed per step so the log stays readable.
"""
from __future__ import annotations

import shutil
import sys
import time
from typing import TextIO


class Progress:
    def __init__(self, total: int, *, width: int = 30, stream: TextIO | None = None) -> None:
        self.total = max(total, 1)
        self.done = 0
        self.width = width
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.started = time.monotonic()
        self.label = ""

    def _eta(self) -> str:
        if not self.done:
            return "?"
        elapsed = time.monotonic() - self.started
        left = elapsed / self.done * (self.total - self.done)
        return f"{left:4.0f}s"

    def step(self, label: str, advance: int = 1) -> None:
        """Record ``advance`` finished steps; ``label`` names the step running or just done."""
        self.done = min(self.done + advance, self.total)
        self.label = label
        if self.tty or advance:  # in a log, one line per finished step
            self.draw()

    def draw(self) -> None:
        filled = int(self.width * self.done / self.total)
        bar = "#" * filled + "." * (self.width - filled)
        elapsed = time.monotonic() - self.started
        line = (f"[{bar}] {self.done:3d}/{self.total} {elapsed:4.0f}s eta {self._eta()}  "
                f"{self.label}")
        if self.tty:
            cols = max(20, shutil.get_terminal_size((100, 24)).columns - 1)
            self.stream.write("\r" + line[:cols].ljust(cols))
        else:
            self.stream.write(line + "\n")
        self.stream.flush()

    def note(self, message: str) -> None:
        """Print a message above the bar without breaking it."""
        if self.tty:
            cols = max(20, shutil.get_terminal_size((100, 24)).columns - 1)
            self.stream.write("\r" + " " * cols + "\r")
        self.stream.write(message + "\n")
        self.stream.flush()
        if self.tty:
            self.draw()

    def close(self) -> None:
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()
