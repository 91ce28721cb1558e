"""The event loops under comparison, how to build each one, and whether it is installed here.

A loop is named by a short key used on the command line and in the server subprocess:
``asyncio`` (the stdlib selector loop), ``uvloop``, ``edge`` and ``level`` (edgeloop on epoll,
edge- or level-triggered), and ``rloop`` when that package is installed.  Availability is checked
by importing in a child process, so a broken import never takes the harness down.
"""
from __future__ import annotations

import asyncio
import importlib
import subprocess
import sys
from dataclasses import dataclass
from typing import Any, Callable

ALL_LOOPS = ("asyncio", "uvloop", "edge", "level", "rloop", "edge-eagain")
# ``edge-eagain`` (edge-triggered, reads drain until EAGAIN instead of stopping at a short read)
# is the alternative read policy, compared on request: ``--loops edge,edge-eagain``.
DEFAULT_LOOPS = ("asyncio", "uvloop", "edge", "level", "rloop")
EDGELOOP_CONFIGS: dict[str, dict[str, str]] = {
    "edge": {"backend": "epoll", "trigger": "edge"},
    "level": {"backend": "epoll", "trigger": "level"},
    "edge-eagain": {"backend": "epoll", "trigger": "edge", "read_policy": "eagain"},
}


@dataclass
class LoopStatus:
    name: str
    available: bool
    reason: str = ""


def new_loop(name: str) -> asyncio.AbstractEventLoop:
    """Build a fresh event loop of the named kind (in the current process)."""
    if name == "asyncio":
        return asyncio.SelectorEventLoop()
    if name == "uvloop":
        import uvloop
        return uvloop.new_event_loop()
    if name in EDGELOOP_CONFIGS:
        import edgeloop
        return edgeloop.new_event_loop(**EDGELOOP_CONFIGS[name])
    if name == "rloop":
        rloop: Any = importlib.import_module("rloop")
        return rloop.new_event_loop()
    raise ValueError(f"unknown loop {name!r}; choose from {', '.join(ALL_LOOPS)}")


def loop_stats(loop: asyncio.AbstractEventLoop) -> dict[str, int] | None:
    """edgeloop's counters (``loop.stats()``), or None for loops that have none."""
    stats: Callable[[], dict[str, int]] | None = getattr(loop, "stats", None)
    if stats is None:
        return None
    try:
        return {k: int(v) for k, v in stats().items()}
    except Exception:  # a counter API in flux must not break a benchmark
        return None


_PROBE = """
import sys, asyncio
from benchmarks.loops import new_loop
loop = new_loop(sys.argv[1])
async def main():
    await asyncio.sleep(0)
    return 42
assert loop.run_until_complete(main()) == 42
loop.close()
"""


def probe(name: str, python: str = sys.executable, timeout: float = 30.0) -> LoopStatus:
    """Check in a child process that the loop imports and runs a trivial coroutine."""
    try:
        out = subprocess.run([python, "-c", _PROBE, name], capture_output=True, text=True,
                             timeout=timeout)
    except subprocess.TimeoutExpired:
        return LoopStatus(name, False, "probe timed out")
    if out.returncode == 0:
        return LoopStatus(name, True)
    lines = [ln for ln in out.stderr.strip().splitlines() if ln.strip()]
    return LoopStatus(name, False, lines[-1] if lines else f"exit status {out.returncode}")
