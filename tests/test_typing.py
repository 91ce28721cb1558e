"""The package type-checks: ``mypy`` with the configuration of pyproject.toml (``[tool.mypy]``) is clean.

mypy is in the ``test`` extra, so in CI this runs; it is skipped only where mypy is not installed.
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.timeout(180)
def test_mypy_clean(tmp_path: Path) -> None:
    pytest.importorskip("mypy")
    # A cache of our own: a cold run takes seconds, and no stale cache can hide or invent errors.
    proc = subprocess.run(
        [sys.executable, "-m", "mypy", "--config-file", str(ROOT / "pyproject.toml"),
         "--cache-dir", str(tmp_path / "mypy_cache")],
        cwd=ROOT, capture_output=True, text=True, timeout=170,
    )
    assert proc.returncode == 0, f"mypy failed:\n{proc.stdout}{proc.stderr}"
