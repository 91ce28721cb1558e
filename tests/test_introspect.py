"""Looking inside the loop: ``loop.describe()``, the stall detector, the operator's snapshot."""
from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import sys
import tempfile
import time
import urllib.request

import pytest

import edgeloop
from tests._looputil import edgeloop_only
from tests._servers import EXAMPLES, Child, free_port

pytestmark = edgeloop_only


def _by_fd(rows):
    return {row["fd"]: row for row in rows}


def _rows_of_kind(loop, kind):
    return [row for row in loop.describe() if row["kind"] == kind]


class Echo(asyncio.Protocol):
    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        self.transport.write(data)


@pytest.mark.asyncio
async def test_describe_lists_every_kind_of_descriptor(loop_config):
    loop = asyncio.get_running_loop()
    edge = loop_config == "edge"
    server = await loop.create_server(Echo, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"ping" * 100)
    assert await reader.readexactly(400) == b"ping" * 100

    udp, _ = await loop.create_datagram_endpoint(asyncio.DatagramProtocol,
                                                 local_addr=("127.0.0.1", 0))
    rfd, wfd = os.pipe()
    rpipe, _ = await loop.connect_read_pipe(asyncio.Protocol, os.fdopen(rfd, "rb", 0))
    wpipe, _ = await loop.connect_write_pipe(asyncio.Protocol, os.fdopen(wfd, "wb", 0))
    master, slave = os.openpty()
    pty, _ = await loop.connect_read_pipe(asyncio.Protocol, os.fdopen(master, "rb", 0))
    a, b = socket.socketpair()
    loop.add_reader(a, lambda: None)
    loop.add_signal_handler(signal.SIGUSR1, lambda: None)
    proc = await asyncio.create_subprocess_exec(sys.executable, "-c", "import time; time.sleep(5)")
    try:
        rows = loop.describe()
        kinds = [row["kind"] for row in rows]
        for kind in ("waker", "listener", "tcp", "udp", "pipe-read", "pipe-write", "pty-read",
                     "reader", "signal-wakeup"):
            assert kind in kinds, (kind, kinds)
        if proc.pid and hasattr(os, "pidfd_open"):
            assert "pidfd" in kinds
        assert kinds.count("tcp") == 2
        fds = [row["fd"] for row in rows]
        assert fds == sorted(fds) and len(set(fds)) == len(fds)

        listener = _rows_of_kind(loop, "listener")[0]
        assert listener["local"] == ("127.0.0.1", port)
        assert listener["accepted"] == 1
        client_side = [r for r in _rows_of_kind(loop, "tcp") if r["peer"] == ("127.0.0.1", port)]
        server_side = [r for r in _rows_of_kind(loop, "tcp") if r["local"] == ("127.0.0.1", port)]
        assert len(client_side) == len(server_side) == 1
        srv = server_side[0]
        assert srv["bytes_in"] == 400 and srv["bytes_out"] == 400
        assert srv["reads"] >= 1 and srv["writes"] >= 1
        assert srv["state"] == ["reading"] and srv["protocol"] == "Echo"
        assert srv["age"] >= 0
        assert ("ET" in srv["mask"]) == edge
        reader_row = _rows_of_kind(loop, "reader")[0]
        assert reader_row["fd"] == a.fileno()
        assert any("lambda" in s for s in reader_row["state"])
        assert _rows_of_kind(loop, "signal-wakeup")[0]["state"] == ["SIGUSR1"]

        # State changes show: paused reading, closing.
        srv_transport = next(iter(server._clients))
        srv_transport.pause_reading()
        assert _by_fd(loop.describe())[srv["fd"]]["state"] == ["paused"]
        srv_transport.resume_reading()

        text = loop.describe_text()
        lines = text.splitlines()
        assert lines[0].split()[:3] == ["fd", "kind", "local"]
        assert len(lines) == len(rows) + 1
        assert f"127.0.0.1:{port}" in text
    finally:
        proc.kill()
        await proc.wait()
        loop.remove_signal_handler(signal.SIGUSR1)
        loop.remove_reader(a)
        a.close()
        b.close()
        for tr in (udp, rpipe, wpipe, pty):
            tr.close()
        os.close(slave)
        writer.close()
        await writer.wait_closed()
        server.close()
        await server.wait_closed()
        await asyncio.sleep(0)


@pytest.mark.asyncio
async def test_describe_shows_a_full_write_buffer_and_a_sendfile_transfer():
    loop = asyncio.get_running_loop()
    a, b = socket.socketpair()
    b.setblocking(False)
    tr, _ = await loop.connect_accepted_socket(asyncio.Protocol, a)
    try:
        tr.write(b"x" * (8 << 20))  # the peer does not read: most of it stays buffered
        row = _by_fd(loop.describe())[a.fileno()]
        assert row["write_buffer"] > 0 and "writing-paused" in row["state"]
        while tr.get_write_buffer_size():
            try:
                b.recv(1 << 20)
            except BlockingIOError:
                await asyncio.sleep(0.001)
        with tempfile.TemporaryFile() as f:
            f.write(b"y" * (16 << 20))
            f.flush()
            f.seek(0)
            transfer = loop.create_task(loop.sendfile(tr, f))
            for _ in range(100):
                await asyncio.sleep(0.001)
                state = _by_fd(loop.describe())[a.fileno()]["state"]
                if any(s.startswith("sendfile(") for s in state):
                    break
            else:
                raise AssertionError(f"no sendfile state seen: {state}")
            got = 0
            while not transfer.done():
                try:
                    got += len(b.recv(1 << 20))
                except BlockingIOError:
                    await asyncio.sleep(0.001)
            assert await transfer == 16 << 20
        row = _by_fd(loop.describe())[a.fileno()]
        assert not any(s.startswith("sendfile(") for s in row["state"])
        assert row["bytes_out"] >= (8 << 20) + (16 << 20) - 1
    finally:
        tr.close()
        await asyncio.sleep(0)
        b.close()


@pytest.mark.asyncio
async def test_stats_add_up_the_transports_counters():
    loop = asyncio.get_running_loop()
    before = loop.stats()
    a, b = socket.socketpair()
    tr, _ = await loop.connect_accepted_socket(asyncio.Protocol, a)
    for _ in range(5):
        tr.write(b"z")
    mid = loop.stats()
    assert mid["writes"] - before["writes"] == 5
    tr.close()
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    after = loop.stats()
    assert after["writes"] - before["writes"] == 5  # folded into the totals when it closed
    b.close()


# ---------------------------------------------------------------------- stalls

def _stall_warnings(caplog):
    return [r.getMessage() for r in caplog.records
            if r.name == "edgeloop" and "iteration took" in r.getMessage()]


def test_stall_report_names_what_ran_then_times_it(loop_factory, caplog):
    caplog.set_level(logging.WARNING, logger="edgeloop")
    factory = loop_factory
    loop = factory.func(**factory.keywords, stall_threshold=0.1)

    def blocking_callback():
        time.sleep(0.2)

    async def blocking_task():
        time.sleep(0.15)

    class Slow(asyncio.Protocol):
        def connection_made(self, transport):
            self.transport = transport

        def data_received(self, data):
            time.sleep(0.12)

    async def main():
        # Quick iterations: nothing reported.
        for _ in range(50):
            await asyncio.sleep(0)
        assert _stall_warnings(caplog) == []
        loop.call_soon(blocking_callback)
        await asyncio.sleep(0.3)
        await loop.create_task(blocking_task(), name="the-blocker")
        a, b = socket.socketpair()
        tr, _ = await loop.connect_accepted_socket(Slow, a)
        b.send(b"x")
        await asyncio.sleep(0.3)
        tr.close()
        await asyncio.sleep(0)
        b.close()

    try:
        loop.run_until_complete(main())
    finally:
        loop.close()
    reports = _stall_warnings(caplog)
    assert len(reports) == 3, reports
    first, second, third = reports
    # The first names everything that ran in the slow iteration (no times yet).
    assert "took 0.2" in first and "blocking_callback" in first and "test_introspect.py" in first
    # From then on each callback is timed: the task with its name and coroutine...
    assert "task 'the-blocker'" in second and "blocking_task()" in second
    assert "0.15" in second.split("slowest first:")[1].splitlines()[1]
    # ... and a descriptor's handler with its kind and protocol.
    line = third.split("slowest first:")[1].splitlines()[1]
    assert "fd " in line and " unix " in line and "Slow]" in line and "0.1" in line


def test_stall_threshold_from_the_environment_and_bad_values(monkeypatch):
    monkeypatch.setenv("EDGELOOP_STALL_MS", "50")
    loop = edgeloop.new_event_loop()
    try:
        assert loop._stall is not None and loop._stall.threshold == pytest.approx(0.05)
    finally:
        loop.close()
    monkeypatch.setenv("EDGELOOP_STALL_MS", "soon")
    with pytest.raises(ValueError, match="EDGELOOP_STALL_MS"):
        edgeloop.new_event_loop()
    monkeypatch.delenv("EDGELOOP_STALL_MS")
    with pytest.raises(ValueError):
        edgeloop.new_event_loop(stall_threshold=-1)
    with pytest.raises(TypeError):
        edgeloop.new_event_loop(stall_threshold="1")
    loop = edgeloop.new_event_loop()
    try:
        assert loop._stall is None  # off unless asked for
    finally:
        loop.close()


# ---------------------------------------------------------------------- the operator's snapshot

def test_dump_signal_logs_stats_and_descriptors_of_a_running_aiohttp_server():
    pytest.importorskip("aiohttp")
    port = free_port()
    with Child.python(str(EXAMPLES / "aiohttp_hello.py"), "--port", str(port),
                      env={"EDGELOOP_DUMP_SIGNAL": "SIGUSR2"}) as child:
        child.expect(r"Running on http://")
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10) as resp:
            assert resp.read() == b"Hello, World!"
        child.signal(signal.SIGUSR2)
        child.expect(r"edgeloop snapshot of <EventLoop")
        child.expect(r"stats: iterations=\d+ polls=\d+")
        child.expect(r"signal-wakeup\s+.*SIGUSR2")  # rows come in fd order
        child.expect(rf"\d+\s+listener\s+127\.0\.0\.1:{port}\s")
        child.signal(signal.SIGINT)
        assert child.wait() == 0


def test_bad_dump_signal_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("EDGELOOP_DUMP_SIGNAL", "SIGNOPE")
    with pytest.raises(ValueError, match="EDGELOOP_DUMP_SIGNAL"):
        edgeloop.new_event_loop()
