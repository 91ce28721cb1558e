"""The two hand-kept lists: ``exclusions.txt`` and ``pending.txt``.

Both hold one entry a line: a glob over short test ids (``test_events.EventLoopTests.test_x``,
``*`` matches anything including dots), whitespace, then the reason.  ``#`` starts a comment line.

* exclusions.txt - tests that cannot apply to a loop that is not a ``BaseSelectorEventLoop``
  (they mock or inspect its internals).  They are not run on any loop.
* pending.txt - tests of features edgeloop does not have yet.  They run and count like any
  other test; the pytest gate does not fail on them, and the CI subset deselects them.
"""
from __future__ import annotations

import fnmatch
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
EXCLUSIONS_FILE = HERE / "exclusions.txt"
PENDING_FILE = HERE / "pending.txt"


@dataclass(frozen=True)
class Entry:
    """One line of a list file."""

    pattern: str
    reason: str
    line: int

    def matches(self, test_id: str) -> bool:
        return fnmatch.fnmatchcase(test_id, self.pattern)


def load(path: Path) -> list[Entry]:
    """Parse a list file; a line without a reason is an error."""
    entries = []
    for number, raw in enumerate(path.read_text().splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split(None, 1)
        if len(parts) != 2:
            raise ValueError(f"{path.name}:{number}: entry without a reason: {line!r}")
        entries.append(Entry(parts[0], parts[1].strip(), number))
    return entries


def find(entries: list[Entry], test_id: str) -> Entry | None:
    """The first entry matching ``test_id``, if any."""
    for entry in entries:
        if entry.matches(test_id):
            return entry
    return None


def k_matches(patterns: list[str], test_id: str) -> bool:
    """unittest's ``-k`` rule: a pattern without ``*`` matches as a substring, else as a glob."""
    for pattern in patterns:
        glob = pattern if "*" in pattern else f"*{pattern}*"
        if fnmatch.fnmatchcase(test_id, glob):
            return True
    return False
