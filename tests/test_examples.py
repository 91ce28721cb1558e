"""The programs in examples/ run, serve, and stop cleanly on SIGINT/SIGTERM."""
from __future__ import annotations

import os
import re
import select
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

pytestmark = pytest.mark.timeout(60)

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
REFERENCE = os.environ.get("EDGELOOP_TESTS_REFERENCE") == "asyncio"
LOOP_ARGS = ["--loop", "asyncio"] if REFERENCE else []


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(script: str, *args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, str(EXAMPLES / script), *args, *LOOP_ARGS],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        cwd=EXAMPLES.parent, env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


def wait_for_line(proc: subprocess.Popen, pattern: str, timeout: float = 20.0) -> re.Match:
    """Read the child's stdout until a line matches (the child says it is listening)."""
    deadline = time.monotonic() + timeout
    seen = []
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"no line matching {pattern!r} in {seen!r}")
        ready, _, _ = select.select([proc.stdout], [], [], left)
        if not ready:
            continue
        line = proc.stdout.readline()
        if not line:
            raise AssertionError(f"child exited ({proc.wait(5)}) before {pattern!r}: "
                                 f"{seen!r} {proc.stderr.read()[-2000:]}")
        seen.append(line)
        m = re.search(pattern, line)
        if m:
            return m


def stop(proc: subprocess.Popen, sig: int) -> tuple[int, str, str]:
    proc.send_signal(sig)
    try:
        out, err = proc.communicate(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        raise AssertionError(f"child ignored {signal.Signals(sig).name}: {err[-2000:]}")
    return proc.returncode, out, err


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_aiohttp_hello(sig):
    port = free_port()
    with start("aiohttp_hello.py", "--port", str(port)) as proc:
        try:
            wait_for_line(proc, r"Running on http://")
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10) as resp:
                assert resp.status == 200
                assert resp.read() == b"Hello, World!"
            rc, out, err = stop(proc, sig)
        finally:
            if proc.poll() is None:
                proc.kill()
    assert rc == 0, err[-2000:]
    assert "Traceback" not in err, err[-2000:]


@pytest.mark.parametrize("trigger,sig", [("edge", signal.SIGINT), ("level", signal.SIGTERM)],
                         ids=["edge-SIGINT", "level-SIGTERM"])
def test_echo_server(trigger, sig):
    with start("echo_server.py", "--port", "0", "--trigger", trigger) as proc:
        try:
            m = wait_for_line(proc, r"listening on ([\d.]+):(\d+)")
            addr = (m.group(1), int(m.group(2)))
            payload = os.urandom(1 << 20)
            with socket.create_connection(addr, timeout=10) as c:
                c.sendall(b"hello\n")
                assert c.recv(100) == b"hello\n"
                c.sendall(payload)
                c.shutdown(socket.SHUT_WR)
                got = bytearray()
                while chunk := c.recv(1 << 16):
                    got += chunk
                assert got == payload
            idle = socket.create_connection(addr, timeout=10)  # open while the server stops
            rc, out, err = stop(proc, sig)
            assert idle.recv(10) == b""  # the server closed it on the way out
            idle.close()
        finally:
            if proc.poll() is None:
                proc.kill()
    assert rc == 0, err[-2000:]
    assert "echo server stopped" in out
    assert "Traceback" not in err, err[-2000:]


def test_aiohttp_client_fetches():
    port = free_port()
    with start("aiohttp_hello.py", "--port", str(port)) as server:
        try:
            wait_for_line(server, r"Running on http://")
            client = subprocess.run(
                [sys.executable, str(EXAMPLES / "aiohttp_client.py"),
                 f"http://127.0.0.1:{port}/", *LOOP_ARGS],
                capture_output=True, text=True, timeout=30, cwd=EXAMPLES.parent)
            assert client.returncode == 0, client.stderr[-2000:]
            assert client.stdout.splitlines()[:2] == ["HTTP 200 OK", "Hello, World!"]
            missing = subprocess.run(
                [sys.executable, str(EXAMPLES / "aiohttp_client.py"),
                 f"http://127.0.0.1:{port}/nope", *LOOP_ARGS],
                capture_output=True, text=True, timeout=30, cwd=EXAMPLES.parent)
            assert missing.returncode == 1
            assert missing.stdout.startswith("HTTP 404")
            rc, _, err = stop(server, signal.SIGINT)
            assert rc == 0, err[-2000:]
        finally:
            if server.poll() is None:
                server.kill()
    refused = subprocess.run(
        [sys.executable, str(EXAMPLES / "aiohttp_client.py"), f"http://127.0.0.1:{port}/",
         "--timeout", "5", *LOOP_ARGS],
        capture_output=True, text=True, timeout=30, cwd=EXAMPLES.parent)
    assert refused.returncode == 2
    assert "request failed" in refused.stderr
