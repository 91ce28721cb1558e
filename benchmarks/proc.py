"""Child processes: where the repository is, how to run a benchmark module, and CPU pinning.

Subjects (the server or the in-process workload, running the loop under test) are pinned to one
core and load generators to another with ``taskset``, so that the loop under test never competes
with its client for a CPU.  With a single usable core, or without ``taskset``, nothing is pinned
and the report says so.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os
import shutil
import signal
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
# Set for a ``--baseline`` subject: the directory of another checkout whose ``edgeloop`` package
# :func:`benchmarks.loops.new_loop` imports instead of this tree's (``benchmarks`` stays ours).
IMPORT_FROM_ENV = "EDGELOOP_BENCH_IMPORT_FROM"


def child_env(import_from: Path | None = None) -> dict[str, str]:
    """The environment for child Pythons: the repository importable, no bytecode surprises;
    with ``import_from``, edgeloop is imported from that checkout instead of this one."""
    env = dict(os.environ)
    if import_from is None:
        env.pop(IMPORT_FROM_ENV, None)
    else:
        env[IMPORT_FROM_ENV] = str(import_from)
    parts = [str(REPO_ROOT)] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    env["PYTHONPATH"] = os.pathsep.join(parts)
    env.pop("PYTHONASYNCIODEBUG", None)
    env["PYTHONUNBUFFERED"] = "1"
    env["EDGELOOP_BENCH_PARENT"] = str(os.getpid())
    return env


def build_c(name: str) -> tuple[Path | None, str]:
    """Compile ``benchmarks/NAME.c`` with ``cc -O2`` into ``benchmarks/bin/NAME`` when the binary
    is missing or older than the source (the C echo client and the ``raw-c`` server are built
    this way on first use).  Returns (binary, "") or (None, the reason it could not be built).
    The compiler writes a temporary file that is renamed into place, so concurrent builds never
    run a half-written binary."""
    source = BENCH_DIR / f"{name}.c"
    binary = BENCH_DIR / "bin" / name
    if binary.exists() and binary.stat().st_mtime >= source.stat().st_mtime:
        return binary, ""
    cc = shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    if cc is None:
        return None, "no C compiler (cc) found"
    binary.parent.mkdir(exist_ok=True)
    tmp = binary.with_name(f".{name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        out = subprocess.run([cc, "-O2", "-Wall", "-o", str(tmp), str(source)],
                             capture_output=True, text=True)
        if out.returncode != 0:
            return None, f"cc failed: {out.stderr.strip()[:300]}"
        os.replace(tmp, binary)
    finally:
        tmp.unlink(missing_ok=True)
    return binary, ""


def python_module(module: str, *args: str) -> list[str]:
    return [sys.executable, "-m", module, *args]


@dataclass(frozen=True)
class Pinning:
    """Which CPU the subject and the load generator run on (None: not pinned)."""

    subject_cpu: int | None
    load_cpu: int | None

    @classmethod
    def detect(cls, enabled: bool = True) -> "Pinning":
        cpus = sorted(os.sched_getaffinity(0))
        if not enabled or len(cpus) < 2 or shutil.which("taskset") is None:
            return cls(None, None)
        return cls(cpus[0], cpus[1])

    @property
    def pinned(self) -> bool:
        return self.subject_cpu is not None

    def subject(self, argv: list[str]) -> list[str]:
        return _taskset(self.subject_cpu, argv)

    def load(self, argv: list[str]) -> list[str]:
        return _taskset(self.load_cpu, argv)

    def describe(self) -> str:
        if not self.pinned:
            return "not pinned (fewer than 2 usable CPUs, taskset missing, or --no-pin)"
        return f"subject on CPU {self.subject_cpu}, load generator on CPU {self.load_cpu}"


def _taskset(cpu: int | None, argv: list[str]) -> list[str]:
    return argv if cpu is None else ["taskset", "-c", str(cpu), *argv]


def die_with_parent() -> None:
    """Ask the kernel to SIGTERM this process when its parent dies (prctl PR_SET_PDEATHSIG), so
    a harness that is killed leaves no server running on a shared machine."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
        libc.prctl(1, signal.SIGTERM, 0, 0, 0)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
    parent = os.environ.get("EDGELOOP_BENCH_PARENT")
    if parent and os.getppid() != int(parent):  # the parent died before prctl took effect
        os._exit(1)
