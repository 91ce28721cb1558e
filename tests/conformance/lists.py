"""The two hand-kept lists: ``exclusions.txt`` and ``pending.txt``.

Both hold one entry a line: a glob over short test ids (``test_events.EventLoopTests.test_x``,
``*`` matches anything including dots), whitespace, then the reason.  ``#`` starts a comment line.
A reason may start with a Python condition such as ``[python<3.13]`` (operators ``<``, ``<=``,
``==``, ``>=``, ``>``; major.minor): the entry then applies only to those interpreters.

* exclusions.txt - tests that cannot apply to a loop that is not a ``BaseSelectorEventLoop``
  (they mock or inspect its internals).  They are not run on any loop.
* pending.txt - tests of features edgeloop does not have yet.  They run and count like any
  other test; the pytest gate does not fail on them, and the CI subset deselects them.
"""
from __future__ import annotations

import fnmatch
import operator
import re
import sys
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
EXCLUSIONS_FILE = HERE / "exclusions.txt"
PENDING_FILE = HERE / "pending.txt"

_CONDITION = re.compile(r"\[python\s*(<=|>=|==|<|>)\s*(\d+)\.(\d+)\]\s*")
_OPERATORS = {"<": operator.lt, "<=": operator.le, "==": operator.eq, ">=": operator.ge,
              ">": operator.gt}


def _applies(condition: str, version: tuple[int, int]) -> bool:
    match = _CONDITION.fullmatch(condition)
    if match is None:
        raise ValueError(f"bad condition {condition!r}")
    op, major, minor = match.groups()
    return _OPERATORS[op](version, (int(major), int(minor)))


@dataclass(frozen=True)
class Entry:
    """One line of a list file."""

    pattern: str
    reason: str
    line: int

    def matches(self, test_id: str) -> bool:
        return fnmatch.fnmatchcase(test_id, self.pattern)


def load(path: Path, version: tuple[int, int] | None = None) -> list[Entry]:
    """Parse a list file, keeping the entries for ``version`` (default: this interpreter).

    A line without a reason is an error.
    """
    if version is None:
        version = sys.version_info[:2]
    entries = []
    for number, raw in enumerate(path.read_text().splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split(None, 1)
        if len(parts) != 2:
            raise ValueError(f"{path.name}:{number}: entry without a reason: {line!r}")
        reason = parts[1].strip()
        condition = _CONDITION.match(reason)
        if condition is not None:
            reason = reason[condition.end():].strip()
            if not reason:
                raise ValueError(f"{path.name}:{number}: entry without a reason: {line!r}")
            if not _applies(condition.group(0).strip(), version):
                continue
        entries.append(Entry(parts[0], reason, number))
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
