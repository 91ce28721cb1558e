"""Syscalls per request for any loop, counted by ``strace -c -f`` attached to a running server.

strace is attached only after the server is up and warmed (``-p PID``), so start-up and import
syscalls are not counted; a fixed client run follows, then strace is interrupted (SIGINT), detaches
and writes its summary.  The total ``calls`` column divided by the requests served gives syscalls
per request.  Tracing slows the server many times over, so these runs are separate from the timed
ones and their throughput is ignored.
"""
from __future__ import annotations

import re
import select
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Any


def available() -> bool:
    return shutil.which("strace") is not None


def parse_summary(text: str) -> dict[str, Any]:
    """Total calls, errors and the per-syscall call counts from ``strace -c`` output."""
    calls: dict[str, int] = {}
    total = errors = 0
    for line in text.splitlines():
        parts = line.split()
        if len(parts) < 5 or not re.fullmatch(r"[\d.]+", parts[0]):
            if parts and parts[-1] == "total" and len(parts) >= 4:
                nums = [p for p in parts[:-1] if p.isdigit()]
                if nums:
                    total = int(nums[0])
                    errors = int(nums[1]) if len(nums) > 1 else 0
            continue
        name = parts[-1]
        if name == "total":
            continue
        # columns: %time seconds usecs/call calls [errors] syscall
        calls[name] = int(parts[3])
    if not total:
        total = sum(calls.values())
    return {"total": total, "errors": errors, "calls": calls}


class Tracer:
    """``strace -c -f -p PID`` for the duration of a ``with`` block."""

    def __init__(self, pid: int, out: Path) -> None:
        self.pid = pid
        self.out = out
        self.proc: subprocess.Popen[str] | None = None

    def __enter__(self) -> "Tracer":
        self.proc = subprocess.Popen(["strace", "-c", "-f", "-p", str(self.pid), "-o",
                                      str(self.out)], stderr=subprocess.PIPE, text=True)
        assert self.proc.stderr is not None
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:  # wait for "Process N attached"
            ready, _, _ = select.select([self.proc.stderr], [], [], 0.5)
            if ready:
                line = self.proc.stderr.readline()
                if "attached" in line:
                    break
                if not line:
                    raise RuntimeError("strace exited before attaching")
            if self.proc.poll() is not None:
                raise RuntimeError(f"strace failed to attach (status {self.proc.returncode})")
        time.sleep(0.1)
        return self

    def __exit__(self, *exc: object) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        if self.proc.stderr:
            self.proc.stderr.close()

    def result(self) -> dict[str, Any]:
        return parse_summary(self.out.read_text())
