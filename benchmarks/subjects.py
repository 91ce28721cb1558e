"""Subjects: the processes that run the loop under test, one per loop, kept alive for a workload.

A :class:`ServerSubject` is ``python -m benchmarks.server`` (echo or HTTP) pinned to the subject
CPU; :class:`MicroSubject` is ``python -m benchmarks.micro``, a worker that runs in-process
workloads on command.  Both start once per workload and loop, so interleaved rounds across loops
cost no interpreter start-up, and both can report edgeloop's ``loop.stats()`` counters.

A subject is named by its loop key, or ``KEY@base`` for an edgeloop key run from the
``--baseline`` checkout: the child then gets ``--loop KEY`` and the directory in its environment.
Each subject records which ``edgeloop/__init__.py`` its child imported (``edgeloop_file``).

The reference servers ``raw-python`` (``python -m benchmarks.rawecho``) and ``raw-c`` (the
``rawecho`` binary built from ``rawecho.c``) are server subjects too, started, pinned and warmed
up the same way; they keep no counters, so their snapshots are None.

Before its timed warm-up every server subject serves :meth:`ServerSubject.warm_eof`: a few
connections, each making one request and then closing, so that the server reads EOF (see the
warm-up note in benchmarks/README.md: glibc's malloc only becomes fast for CPython's large reads
after the first large buffer is freed whole, which first happens at an EOF read).
"""
from __future__ import annotations

import json
import os
import re
import select
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import IO, Any

from benchmarks.loops import is_baseline, is_reference, loop_key
from benchmarks.proc import Pinning, build_c, child_env, python_module

EOF_WARMUP_CONNS = 3   # connections that end in EOF before a server subject's timed warm-up
HTTP_REQUEST = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"


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


def _server_argv(loop: str, kind: str, stats_file: Path, unix: str | None) -> list[str]:
    """The command line of a server subject (the reference servers take ``-u PATH`` or port 0)."""
    if is_reference(loop):
        where = ["-u", unix] if unix else ["-p", "0"]
        if loop == "raw-python":
            return python_module("benchmarks.rawecho", *where)
        binary, reason = build_c("rawecho")
        if binary is None:
            raise SubjectError(f"raw-c cannot be built: {reason}")
        return [str(binary), *where]
    args = ["--loop", loop_key(loop), "--kind", kind, "--stats-file", str(stats_file)]
    if unix:
        args += ["--unix", unix]
    return python_module("benchmarks.server", *args)


class ServerSubject:
    def __init__(self, loop: str, kind: str, transport: str, pinning: Pinning,
                 workdir: Path, baseline: Path | None = None) -> None:
        self.loop = loop
        self.stats_file = workdir / f"stats-{loop}-{kind}-{os.getpid()}.json"
        self.unix = str(workdir / f"{loop}-{kind}.sock") if transport == "unix" else None
        self.counts = not is_reference(loop)  # the reference servers keep no counters
        self.proc = subprocess.Popen(pinning.subject(_server_argv(loop, kind, self.stats_file,
                                                                  self.unix)),
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
        if not self.counts:
            return None
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

    def connect(self, timeout: float = 5.0) -> socket.socket:
        """A blocking client socket connected to the server (TCP or Unix), with a timeout."""
        if self.unix:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                sock.settimeout(timeout)
                sock.connect(self.unix)
            except BaseException:
                sock.close()
                raise
            return sock
        return socket.create_connection(("127.0.0.1", self.port), timeout=timeout)

    def warm_eof(self, http: bool, size: int, conns: int = EOF_WARMUP_CONNS,
                 timeout: float = 5.0, close_wait: float = 1.0) -> None:
        """Open ``conns`` connections; on each make one request (an echo of ``size`` bytes, or an
        HTTP GET) and read the whole answer; then shut down the writing side of all of them and
        wait for the server to close each: so the server has read EOF on each before measuring.

        A connection the server resets or does not answer within ``timeout`` raises SubjectError
        (this is also the clearest reason when a loop cannot serve a workload at all).  A server
        that keeps half-closed connections open (rloop does) is let be: the wait for the closes
        is ``close_wait`` seconds for all the connections together."""
        socks: list[socket.socket] = []
        i = 0
        try:
            for i in range(conns):
                sock = self.connect(timeout)
                socks.append(sock)
                if http:
                    sock.sendall(HTTP_REQUEST)
                    _read_http_response(sock)
                else:
                    sock.sendall(b"e" * size)
                    got = 0
                    while got < size:
                        chunk = sock.recv(65536)
                        if not chunk:
                            raise ConnectionError("closed before echoing the message")
                        got += len(chunk)
            for i, sock in enumerate(socks):
                sock.shutdown(socket.SHUT_WR)
        except (OSError, ValueError) as exc:
            for sock in socks:
                sock.close()
            raise SubjectError(f"EOF warm-up connection {i + 1}/{conns}: "
                               f"{type(exc).__name__}: {exc}") from exc
        deadline = time.monotonic() + close_wait
        for sock in socks:
            with sock:
                try:
                    while True:  # until the server, having read EOF, closes
                        sock.settimeout(max(deadline - time.monotonic(), 0.001))
                        if not sock.recv(65536):
                            break
                except OSError:  # timed out (half-closed kept open), or reset
                    pass

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


def _read_http_response(sock: socket.socket) -> None:
    """Read one HTTP/1.1 response with a Content-Length body (what aiohttp sends here)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed before a complete HTTP response")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    m = re.search(rb"(?im)^content-length:\s*(\d+)", head)
    want = int(m.group(1)) if m else 0
    while len(body) < want:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed before the end of the HTTP body")
        body += chunk


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
