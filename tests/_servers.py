"""Run a server program as a child process and follow what it prints.

``Child`` starts a command in its own session (so that a pre-fork server's workers can be killed
with it), merges stderr into stdout, and reads the output on a thread, so that a chatty child never
blocks on a full pipe and a test can wait for a readiness line (``expect``) instead of sleeping.
``close()`` (also on ``with`` exit) kills the whole process group if anything is still running,
reaps the child and closes the pipe: nothing outlives the test.
"""
from __future__ import annotations

import asyncio
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Sequence

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Child:
    def __init__(self, args: Sequence[str], *, cwd: Path = ROOT, env: dict[str, str] | None = None):
        self.args = list(args)
        self.lines: list[str] = []       # everything printed so far
        self._queue: queue.Queue[str | None] = queue.Queue()
        self.proc = subprocess.Popen(
            self.args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            text=True, cwd=cwd, start_new_session=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    @classmethod
    def python(cls, *args: str, **kw) -> "Child":
        return cls([sys.executable, *args], **kw)

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line)
            self._queue.put(line)
        self._queue.put(None)

    def output(self) -> str:
        return "".join(self.lines)[-4000:]

    def expect(self, pattern: str, timeout: float = 20.0) -> re.Match:
        """Wait for the next line (not yet consumed by ``expect``) that matches ``pattern``."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no line matching {pattern!r} within {timeout}s:\n"
                                     f"{self.output()}")
            try:
                line = self._queue.get(timeout=left)
            except queue.Empty:
                continue
            if line is None:
                self._queue.put(None)  # stay at EOF for later calls
                raise AssertionError(f"child exited ({self.proc.wait(5)}) before a line matching "
                                     f"{pattern!r}:\n{self.output()}")
            m = re.search(pattern, line)
            if m:
                return m

    def signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def wait(self, timeout: float = 20.0) -> int:
        """Wait for the child to exit by itself; its output is then complete."""
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"child still running after {timeout}s:\n{self.output()}")
        self._reader.join(10)
        return rc

    def close(self) -> None:
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)  # the child and anything it forked
        except (ProcessLookupError, PermissionError):
            pass
        self.proc.wait(10)
        self._reader.join(10)
        if self.proc.stdout is not None:
            self.proc.stdout.close()

    def __enter__(self) -> "Child":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


async def http_get(port: int, path: str = "/", host: str = "127.0.0.1") -> tuple[int, bytes]:
    """One HTTP/1.1 GET on a new connection (``Connection: close``), on the running loop.

    Deliberately small (no client library): status and body of a plain, non-chunked answer, read
    until the server closes.  Cheaper than a full client when a test makes thousands of requests.
    """
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: close\r\n\r\n"
                     .encode())
        data = await reader.read()
    finally:
        writer.close()
        await writer.wait_closed()
    head, _, body = data.partition(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1."):
        raise AssertionError(f"not an HTTP answer: {data[:200]!r}")
    return int(head.split(b" ", 2)[1]), body
