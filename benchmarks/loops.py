"""The event loops under comparison, how to build each one, and whether it is installed here.

A loop is named by a short key used on the command line and in the server subprocess:
``asyncio`` (the stdlib selector loop), ``uvloop``, ``edge`` and ``level`` (edgeloop on epoll,
edge- or level-triggered), and ``rloop`` when that package is installed.  Availability is checked
by importing in a child process, so a broken import never takes the harness down.

Two reference subjects run beside the loops in the echo workloads: ``raw-python``
(:mod:`benchmarks.rawecho`, a minimal edge-triggered ``select.epoll`` echo server with no asyncio)
and ``raw-c`` (``rawecho.c``, the same in C, compiled on first use).  They are the ceilings: no
pure-Python loop can beat ``raw-python``, and no native loop ``raw-c``.  They run in the echo cells
of kind ``protocol`` only (:func:`runs_workload`).

With ``--baseline DIR`` every edgeloop key also runs as ``KEY@base`` (``edge@base``): the same
configuration, in a child whose ``edgeloop`` package is imported from ``DIR/edgeloop`` (another
checkout) while ``benchmarks`` still comes from this tree.  The child learns DIR from the
environment variable ``EDGELOOP_BENCH_IMPORT_FROM``; see :func:`import_edgeloop`.
"""
from __future__ import annotations

import asyncio
import importlib
import importlib.util
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, Callable

from benchmarks.proc import IMPORT_FROM_ENV, build_c, child_env

ALL_LOOPS = ("asyncio", "uvloop", "edge", "level", "rloop", "edge-eagain")
# ``edge-eagain`` (edge-triggered, reads drain until EAGAIN instead of stopping at a short read)
# is the alternative read policy, compared on request: ``--loops edge,edge-eagain``.
# The reference servers (not event loops): subjects of the echo workloads only.
REFERENCE_SERVERS = ("raw-python", "raw-c")
# Every subject key ``--loops`` accepts.
ALL_SUBJECTS = ALL_LOOPS + REFERENCE_SERVERS
DEFAULT_LOOPS = ("asyncio", "uvloop", "edge", "level", "rloop", "raw-python", "raw-c")
EDGELOOP_CONFIGS: dict[str, dict[str, str]] = {
    "edge": {"backend": "epoll", "trigger": "edge"},
    "level": {"backend": "epoll", "trigger": "level"},
    "edge-eagain": {"backend": "epoll", "trigger": "edge", "read_policy": "eagain"},
}
BASELINE_SUFFIX = "@base"


def baseline_name(key: str) -> str:
    """The subject name of an edgeloop key run from the baseline checkout: ``edge@base``."""
    return key + BASELINE_SUFFIX


def loop_key(subject: str) -> str:
    """The loop key a subject runs: ``edge`` for both ``edge`` and ``edge@base``."""
    return subject.removesuffix(BASELINE_SUFFIX)


def is_baseline(subject: str) -> bool:
    return subject.endswith(BASELINE_SUFFIX)


def is_reference(subject: str) -> bool:
    """True for the reference servers ``raw-python`` and ``raw-c``."""
    return subject in REFERENCE_SERVERS


def runs_workload(subject: str, family: str, kind: str) -> bool:
    """Whether a subject takes part in a workload.  The reference servers run in the echo cells
    of kind ``protocol`` (``tcp-protocol``, ``unix-protocol``): a raw server is the same program
    whatever asyncio API the loops use, so the ``streams`` and ``sock`` cells take their ceilings
    from the ``protocol`` cell of the same transport, size and connection count rather than run
    it again.  Elsewhere (HTTP, in-process) they are absent, not failed."""
    if is_reference(subject):
        return family == "echo" and kind == "protocol"
    return True


def check_baseline(path: str) -> Path:
    """The baseline checkout as an absolute path; ValueError unless it holds an edgeloop package."""
    root = Path(path).expanduser().resolve()
    if not (root / "edgeloop" / "__init__.py").is_file():
        raise ValueError(f"--baseline {path}: {root / 'edgeloop' / '__init__.py'} does not exist "
                         "(DIR must be a checkout of edgeloop, e.g. made with "
                         "`git worktree add DIR COMMIT`)")
    return root


def import_edgeloop() -> ModuleType:
    """``import edgeloop``, from ``$EDGELOOP_BENCH_IMPORT_FROM/edgeloop`` when that is set.

    The baseline package is loaded from its own ``__init__.py`` (its submodules follow through
    the package's ``__path__``), so nothing else in that checkout can shadow this tree's
    modules.  Raises when the module that ends up imported is not the one asked for.
    """
    root = os.environ.get(IMPORT_FROM_ENV)
    if not root:
        import edgeloop
        return edgeloop
    pkg = Path(root).resolve() / "edgeloop"
    module = sys.modules.get("edgeloop")
    if module is None:
        spec = importlib.util.spec_from_file_location(
            "edgeloop", pkg / "__init__.py", submodule_search_locations=[str(pkg)])
        if spec is None or spec.loader is None:
            raise ImportError(f"cannot load edgeloop from {pkg}")
        module = importlib.util.module_from_spec(spec)
        sys.modules["edgeloop"] = module
        try:
            spec.loader.exec_module(module)
        except BaseException:
            del sys.modules["edgeloop"]
            raise
    where = Path(module.__file__ or "").resolve()
    if where.parent != pkg:
        raise ImportError(f"edgeloop was imported from {where}, not from {pkg}")
    return module


def edgeloop_file(key: str) -> str | None:
    """Where the given loop's edgeloop comes from (None for loops that are not edgeloop)."""
    if loop_key(key) not in EDGELOOP_CONFIGS:
        return None
    return str(Path(import_edgeloop().__file__ or "").resolve())


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
        return import_edgeloop().new_event_loop(**EDGELOOP_CONFIGS[name])
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
_PROBE_RAW = "import select, benchmarks.rawecho; select.epoll().close()"


def probe(name: str, python: str = sys.executable, timeout: float = 30.0,
          baseline: Path | None = None) -> LoopStatus:
    """Check in a child process that the loop imports and runs a trivial coroutine.

    A ``KEY@base`` name is probed as KEY with edgeloop imported from ``baseline``.  ``raw-c`` is
    probed by building it; ``raw-python`` by importing its module next to ``select.epoll``."""
    if name == "raw-c":
        binary, reason = build_c("rawecho")
        return LoopStatus(name, binary is not None, reason)
    # Only a baseline probe carries the import variable (as in :func:`benchmarks.proc.child_env`).
    env = child_env() if IMPORT_FROM_ENV in os.environ else None
    if is_baseline(name):
        if baseline is None or loop_key(name) not in EDGELOOP_CONFIGS:
            return LoopStatus(name, False, "not an edgeloop loop with a --baseline checkout")
        env = child_env(baseline)
    argv = ([python, "-c", _PROBE_RAW] if name == "raw-python"
            else [python, "-c", _PROBE, loop_key(name)])
    try:
        out = subprocess.run(argv, capture_output=True,
                             text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        return LoopStatus(name, False, "probe timed out")
    if out.returncode == 0:
        return LoopStatus(name, True)
    lines = [ln for ln in out.stderr.strip().splitlines() if ln.strip()]
    return LoopStatus(name, False, lines[-1] if lines else f"exit status {out.returncode}")
