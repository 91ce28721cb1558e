"""Subjects: the processes that run the loop under test, one per loop, kept alive for a workload.

A :class:`ServerSubject` is ``python -m benchmarks.server`` (echo or HTTP) pinned to the subject
CPU; :class:`MicroSubject` is ``python -m benchmarks.micro``, a worker that runs in-process
workloads on command.  Both start once per workload and loop, so interleaved rounds across loops
cost no interpreter start-up, and both can report edgeloop's ``loop.stats()`` counters.

A subject is named by its loop key, or ``KEY@base`` for an edgeloop key run from the
``--baseline`` checkout: the child then gets ``--loop KEY`` and the directory in its environment.
Each subject records which ``edgeloop/__init__.py`` its child imported (``edgeloop_file``).
"""
from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import IO, Any

from benchmarks.loops import is_baseline, loop_key
from benchmarks.proc import Pinning, child_env, python_module


class SubjectError(RuntimeError):
    """The subject process died, timed out or answered nonsense."""


def _read_line(proc: subprocess.Popen[str], stream: IO[str], timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise SubjectError(f"no answer within {timeout:.0f}s")
        ready, _, _ = select.select([stream], [], [], min(left, 0.5))
        if ready:
            line = stream.readline()
            if line:
                return line
            raise SubjectError(f"exited with status {proc.wait()}: {_stderr_tail(proc)}")
        if proc.poll() is not None:
            raise SubjectError(f"exited with status {proc.returncode}: {_stderr_tail(proc)}")


def _stderr_tail(proc: subprocess.Popen[str]) -> str:
    if proc.stderr is None:
        return ""
    try:
        proc.wait(timeout=2)
        lines = [ln for ln in proc.stderr.read().strip().splitlines() if ln.strip()]
    except (OSError, ValueError, subprocess.TimeoutExpired):
        return ""
    return " | ".join(lines[-3:])


def _env(loop: str, baseline: Path | None) -> dict[str, str]:
    if is_baseline(loop):
        if baseline is None:
            raise SubjectError(f"{loop}: no --baseline checkout given")
        return child_env(baseline)
    return child_env()


class ServerSubject:
    def __init__(self, loop: str, kind: str, transport: str, pinning: Pinning,
                 workdir: Path, baseline: Path | None = None) -> None:
        self.loop = loop
        self.stats_file = workdir / f"stats-{loop}-{kind}-{os.getpid()}.json"
        self.unix = str(workdir / f"{loop}-{kind}.sock") if transport == "unix" else None
        args = ["--loop", loop_key(loop), "--kind", kind, "--stats-file", str(self.stats_file)]
        if self.unix:
            args += ["--unix", self.unix]
        self.proc = subprocess.Popen(pinning.subject(python_module("benchmarks.server", *args)),
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                     env=_env(loop, baseline))
        self.port = 0
        self.pid = 0
        self.edgeloop_file: str | None = None
        self._seq = 0

    def wait_ready(self, timeout: float = 30.0) -> None:
        assert self.proc.stdout is not None
        line = _read_line(self.proc, self.proc.stdout, timeout)
        try:
            info = json.loads(line)
        except ValueError as exc:
            raise SubjectError(f"unexpected output {line!r}") from exc
        self.port = int(info["port"])
        self.pid = int(info["pid"])
        self.edgeloop_file = info.get("edgeloop")

    def snapshot(self, timeout: float = 3.0) -> dict[str, int] | None:
        """Ask the server for its counters (SIGUSR1) and wait for the file to be rewritten."""
        if self.proc.poll() is not None:
            raise SubjectError(f"server exited with status {self.proc.returncode}: "
                               f"{_stderr_tail(self.proc)}")
        os.kill(self.pid, signal.SIGUSR1)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                data = json.loads(self.stats_file.read_text())
            except (OSError, ValueError):
                data = None
            if data and data["seq"] > self._seq:
                self._seq = data["seq"]
                stats: dict[str, int] | None = data["stats"]
                return stats
            time.sleep(0.005)
        raise SubjectError("server did not write its counters")

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream:
                stream.close()
        for path in (self.stats_file, Path(self.unix) if self.unix else None):
            if path and path.exists():
                path.unlink()


class MicroSubject:
    def __init__(self, loop: str, pinning: Pinning, baseline: Path | None = None) -> None:
        self.loop = loop
        self.edgeloop_file: str | None = None
        self.proc = subprocess.Popen(pinning.subject(python_module("benchmarks.micro", "--loop",
                                                                   loop_key(loop))),
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True,
                                     env=_env(loop, baseline))

    def wait_ready(self, timeout: float = 30.0) -> None:
        assert self.proc.stdout is not None
        line = _read_line(self.proc, self.proc.stdout, timeout)
        try:
            self.edgeloop_file = json.loads(line).get("edgeloop")
        except (ValueError, AttributeError) as exc:
            raise SubjectError(f"unexpected output {line!r}") from exc

    def run(self, kind: str, duration: float) -> dict[str, Any]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        try:
            self.proc.stdin.write(json.dumps({"kind": kind, "duration": duration}) + "\n")
            self.proc.stdin.flush()
        except BrokenPipeError as exc:
            raise SubjectError(f"worker exited: {_stderr_tail(self.proc)}") from exc
        result: dict[str, Any] = json.loads(_read_line(self.proc, self.proc.stdout,
                                                       duration * 10 + 30))
        if "error" in result:
            raise SubjectError(result["error"])
        return result

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> None:
        if self.proc.stdin:
            try:
                self.proc.stdin.close()
            except BrokenPipeError:
                pass
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream:
                stream.close()


def workdir() -> Path:
    return Path(tempfile.mkdtemp(prefix="edgeloop-bench-"))
