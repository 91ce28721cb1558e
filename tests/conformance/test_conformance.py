"""CI gate: the bounded subset of CPython's asyncio tests, on edgeloop and on the stdlib loop.

Fails when a test that passes on the stdlib loop fails on edgeloop (edge or level trigger),
leaving aside pending.txt features and tests that pass when re-run once.  All the work happens
in child processes (``python -m tests.conformance --subset --check``); skip it with
``pytest -m "not conformance"``.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conformance import lists, selection
from tests.conformance.driver import REPO_ROOT

pytestmark = pytest.mark.conformance

#: Wall-clock budget for the whole subset (it takes about 2.5 minutes on 2 cores).
BUDGET_SECONDS = 280


@pytest.mark.parametrize("version", [(3, 11), (3, 12), (3, 13)])
def test_list_files_parse(version: tuple[int, int]) -> None:
    """Both hand-kept lists parse for every supported Python, and every line has a reason."""
    for path in (lists.EXCLUSIONS_FILE, lists.PENDING_FILE):
        for entry in lists.load(path, version):
            assert entry.reason and " " not in entry.pattern


def test_subset_modules_are_selected() -> None:
    """The CI subset only names modules of the selection."""
    for entry in selection.SUBSET:
        assert entry.module in selection.BY_NAME, entry.module


@pytest.mark.timeout(BUDGET_SECONDS + 30)
def test_stdlib_asyncio_subset(tmp_path: Path) -> None:
    """No test that passes on the stdlib loop fails on edgeloop (edge, level)."""
    report = tmp_path / "conformance.json"
    cmd = [sys.executable, "-m", "tests.conformance", "--subset", "--check",
           "--loop", "edge", "--loop", "level", "--loop", "asyncio",
           "--module-timeout", "120", "--json", str(report)]
    proc = subprocess.run(cmd, cwd=REPO_ROOT, capture_output=True, text=True,
                          timeout=BUDGET_SECONDS, stdin=subprocess.DEVNULL)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-6000:]
    data = json.loads(report.read_text())
    for loop in ("edge", "level", "asyncio"):
        assert loop in data["results"], f"loop {loop} did not run:\n{output[-3000:]}"
        assert data["results"][loop]["total"]["run"] > 300, output[-3000:]
    reference = data["results"]["asyncio"]["total"]
    assert reference["passed"] > 300, f"the stdlib loop itself fails the subset:\n{output[-3000:]}"
