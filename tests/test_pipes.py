"""Pipe transports: connect_read_pipe / connect_write_pipe over pipes, FIFOs, sockets and ptys.

The other end is usually a raw descriptor written or read with ``os.write``/``os.read``, so what
the test observes is what the kernel carried.  Every test runs on the four loop configurations and,
with ``EDGELOOP_TESTS_REFERENCE=asyncio``, on the stdlib loop.
"""
from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import socket
import tempfile

import pytest

try:
    from tests._streamutil import REFERENCE, ExceptionCatcher, Recorder, stats
except ModuleNotFoundError:  # tests/ on sys.path rather than a package
    from _streamutil import REFERENCE, ExceptionCatcher, Recorder, stats

pytestmark = pytest.mark.timeout(30)


class WriteRecorder(asyncio.BaseProtocol):
    """Protocol of a write pipe: records connection_lost and flow control."""

    def __init__(self):
        self.loop = asyncio.get_running_loop()
        self.events: list[str] = []
        self.made = self.loop.create_future()
        self.lost = self.loop.create_future()
        self.lost_count = 0
        self.paused = False
        self._resumed: asyncio.Future | None = None

    def connection_made(self, transport):
        self.events.append("made")
        self.transport = transport
        self.made.set_result(transport)

    def pause_writing(self):
        self.events.append("pause_writing")
        self.paused = True

    def resume_writing(self):
        self.events.append("resume_writing")
        self.paused = False
        if self._resumed is not None and not self._resumed.done():
            self._resumed.set_result(None)

    def connection_lost(self, exc):
        self.events.append("lost")
        self.lost_count += 1
        if not self.lost.done():
            self.lost.set_result(exc)

    async def wait_resumed(self, timeout: float = 10.0) -> None:
        if self.paused:
            self._resumed = self.loop.create_future()
            await asyncio.wait_for(self._resumed, timeout)


def pipe_files() -> tuple:
    """An os.pipe() as unbuffered file objects (what connect_*_pipe usually gets)."""
    r, w = os.pipe()
    return open(r, "rb", buffering=0), open(w, "wb", buffering=0)


async def lost(proto, timeout: float = 5.0):
    return await asyncio.wait_for(asyncio.shield(proto.lost), timeout)


async def read_all(fd: int, n: int, timeout: float = 10.0) -> bytes:
    """Read n bytes from a raw non-blocking fd while the loop runs."""
    os.set_blocking(fd, False)
    out = bytearray()
    deadline = asyncio.get_running_loop().time() + timeout
    while len(out) < n:
        try:
            chunk = os.read(fd, 1 << 20)
        except BlockingIOError:
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"read {len(out)} of {n} bytes") from None
            await asyncio.sleep(0.001)
            continue
        if not chunk:
            raise AssertionError(f"EOF after {len(out)} of {n} bytes")
        out += chunk
    return bytes(out)


def pattern(n: int) -> bytes:
    block = bytes(range(256)) * 64
    return (block * (n // len(block) + 1))[:n]


# --------------------------------------------------------------------------------------------
# read pipes

@pytest.mark.asyncio
async def test_read_pipe_data_then_eof_then_connection_lost():
    loop = asyncio.get_running_loop()
    rfile, wfile = pipe_files()
    try:
        tr, pr = await loop.connect_read_pipe(Recorder, rfile)
        assert tr.get_extra_info("pipe") is rfile
        assert tr.is_reading() and not tr.is_closing()
        wfile.write(b"hello ")
        wfile.write(b"pipe")
        await pr.wait_bytes(10)
        wfile.close()
        assert await lost(pr) is None
        assert bytes(pr.data) == b"hello pipe"
        assert pr.events[0] == "made" and pr.events[-2:] == ["eof", "lost"]
        assert pr.eof_count == 1 and pr.lost_count == 1
        assert tr.is_closing()
        assert rfile.closed  # the transport owned it
    finally:
        wfile.close()
        rfile.close()


@pytest.mark.asyncio
async def test_read_pipe_burst_then_silence():
    """4 MiB written by a thread while the loop reads: every byte, then EOF (edge mode must keep
    draining the pipe by itself once the budget runs out)."""
    loop = asyncio.get_running_loop()
    rfile, wfile = pipe_files()
    payload = pattern(4 << 20)
    try:
        tr, pr = await loop.connect_read_pipe(Recorder, rfile)

        def writer():
            wfile.write(payload)
            wfile.close()

        await asyncio.gather(loop.run_in_executor(None, writer), lost(pr, 20))
        assert bytes(pr.data) == payload
        assert pr.events[-2:] == ["eof", "lost"]
    finally:
        wfile.close()
        rfile.close()


@pytest.mark.asyncio
async def test_read_pipe_eof_while_paused():
    """Data and EOF arrive while paused: nothing is delivered (and the loop does not spin on the
    hang-up); resume_reading() delivers the data, then EOF."""
    loop = asyncio.get_running_loop()
    rfile, wfile = pipe_files()
    try:
        tr, pr = await loop.connect_read_pipe(Recorder, rfile)
        tr.pause_reading()
        assert not tr.is_reading()
        tr.pause_reading()  # no-op
        wfile.write(b"x" * 50_000)  # fits in the pipe: the writer does not block
        wfile.close()
        before = stats()
        await asyncio.sleep(0.1)
        after = stats()
        assert pr.data == b"" and not pr.lost.done()
        if before is not None:
            assert after["iterations"] - before["iterations"] < 50, "the loop spins"
        tr.resume_reading()
        assert tr.is_reading()
        assert await lost(pr) is None
        assert len(pr.data) == 50_000 and pr.events[-2:] == ["eof", "lost"]
    finally:
        wfile.close()
        rfile.close()


@pytest.mark.asyncio
async def test_read_pipe_pause_mid_stream_and_resume_without_new_data():
    loop = asyncio.get_running_loop()
    rfile, wfile = pipe_files()

    def pause_on_first(proto, data):
        if proto.chunks == 1:
            proto.transport.pause_reading()

    try:
        tr, pr = await loop.connect_read_pipe(lambda: Recorder(on_data=pause_on_first), rfile)
        wfile.write(b"a" * 1000)
        await pr.wait_bytes(1)
        wfile.write(b"b" * 1000)  # arrives while paused
        await asyncio.sleep(0.05)
        assert pr.data == b"a" * 1000
        tr.resume_reading()  # no new data will come: the transport must go and read it
        await pr.wait_bytes(2000)
        assert pr.data == b"a" * 1000 + b"b" * 1000
        tr.close()
        assert await lost(pr) is None
        assert "eof" not in pr.events
        tr.resume_reading()  # no-op once closing
    finally:
        wfile.close()
        rfile.close()


@pytest.mark.asyncio
async def test_read_pipe_close_and_exception_in_data_received():
    loop = asyncio.get_running_loop()
    rfile, wfile = pipe_files()

    def boom(proto, data):
        if data.startswith(b"boom"):
            raise RuntimeError("boom")

    try:
        with ExceptionCatcher(loop) as catcher:
            tr, pr = await loop.connect_read_pipe(lambda: Recorder(on_data=boom), rfile)
            wfile.write(b"boom")
            await pr.wait_bytes(4)
            await asyncio.sleep(0.01)
            wfile.write(b"more")  # the pipe survives the protocol's exception
            await pr.wait_bytes(8)
        assert [type(c.get("exception")) for c in catcher.contexts] == [RuntimeError]
        tr.close()
        tr.close()
        assert tr.is_closing()
        assert await lost(pr) is None
        await asyncio.sleep(0.01)
        assert pr.lost_count == 1 and "eof" not in pr.events
    finally:
        wfile.close()
        rfile.close()


# --------------------------------------------------------------------------------------------
# write pipes

@pytest.mark.asyncio
async def test_write_pipe_writes_and_close_flushes():
    loop = asyncio.get_running_loop()
    rfile, wfile = pipe_files()
    payload = pattern(1 << 20)  # far more than the pipe holds
    try:
        tr, pr = await loop.connect_write_pipe(WriteRecorder, wfile)
        assert tr.get_extra_info("pipe") is wfile
        assert tr.can_write_eof()
        tr.write(b"")
        tr.write(bytearray(payload[:10]))
        tr.write(memoryview(payload)[10:])
        assert tr.get_write_buffer_size() > 0
        tr.close()
        assert tr.is_closing()
        tr.write(b"ignored after close")
        got = await read_all(rfile.fileno(), len(payload))
        assert got == payload
        assert await lost(pr) is None
        assert rfile.read() == b""  # write end closed by the transport: EOF
        assert wfile.closed and pr.lost_count == 1
    finally:
        wfile.close()
        rfile.close()


@pytest.mark.asyncio
async def test_write_pipe_flow_control():
    loop = asyncio.get_running_loop()
    rfile, wfile = pipe_files()
    try:
        tr, pr = await loop.connect_write_pipe(WriteRecorder, wfile)
        assert tr.get_write_buffer_limits() == (16384, 65536)
        tr.set_write_buffer_limits(high=100_000)
        assert tr.get_write_buffer_limits() == (25_000, 100_000)
        with pytest.raises(ValueError):
            tr.set_write_buffer_limits(high=1, low=2)
        total = 0
        while not pr.paused:
            tr.write(b"z" * 10_000)
            total += 10_000
            assert total < 10_000_000, "pause_writing() never came"
        assert tr.get_write_buffer_size() > 100_000
        got = asyncio.ensure_future(read_all(rfile.fileno(), total))
        await pr.wait_resumed()
        assert tr.get_write_buffer_size() <= 25_000
        assert len(await got) == total
        assert pr.events.count("pause_writing") == 1 and pr.events.count("resume_writing") == 1
        tr.close()
        assert await lost(pr) is None
    finally:
        wfile.close()
        rfile.close()


@pytest.mark.asyncio
async def test_write_pipe_reader_closes_with_nothing_buffered():
    """The read end closed while nothing is pending: connection_lost(None), without a write."""
    loop = asyncio.get_running_loop()
    rfile, wfile = pipe_files()
    try:
        tr, pr = await loop.connect_write_pipe(WriteRecorder, wfile)
        rfile.close()
        assert await lost(pr) is None
        assert tr.is_closing()
        tr.write(b"dropped")  # silently ignored, like the stdlib
        await asyncio.sleep(0.01)
        assert pr.lost_count == 1
    finally:
        wfile.close()


@pytest.mark.asyncio
async def test_write_pipe_reader_closes_with_data_buffered():
    """The read end closed while data waits in the buffer: connection_lost(BrokenPipeError)."""
    loop = asyncio.get_running_loop()
    rfile, wfile = pipe_files()
    try:
        tr, pr = await loop.connect_write_pipe(WriteRecorder, wfile)
        tr.write(b"q" * 1_000_000)  # the pipe takes 64 KiB; the rest waits
        assert tr.get_write_buffer_size() > 0
        rfile.close()
        assert isinstance(await lost(pr), BrokenPipeError)
        assert pr.lost_count == 1
    finally:
        wfile.close()


@pytest.mark.asyncio
async def test_write_pipe_epipe_on_write():
    """The reader is gone before the first write: the write fails with EPIPE (SIGPIPE is ignored
    by Python) and the transport ends with BrokenPipeError, or None if the close was seen first."""
    loop = asyncio.get_running_loop()
    rfile, wfile = pipe_files()
    try:
        tr, pr = await loop.connect_write_pipe(WriteRecorder, wfile)
        rfile.close()
        tr.write(b"nobody reads this")
        exc = await lost(pr)
        assert exc is None or isinstance(exc, BrokenPipeError)
        assert pr.lost_count == 1
    finally:
        wfile.close()


@pytest.mark.asyncio
async def test_write_pipe_abort_and_write_eof():
    loop = asyncio.get_running_loop()
    rfile, wfile = pipe_files()
    rfile2, wfile2 = pipe_files()
    try:
        tr, pr = await loop.connect_write_pipe(WriteRecorder, wfile)
        tr.write(b"a" * 1_000_000)
        tr.abort()
        assert tr.is_closing()
        assert await lost(pr) is None
        assert tr.get_write_buffer_size() == 0

        tr2, pr2 = await loop.connect_write_pipe(WriteRecorder, wfile2)
        tr2.write(b"last words")
        tr2.write_eof()
        tr2.write_eof()
        assert await lost(pr2) is None
        assert rfile2.read() == b"last words"
        assert rfile2.read() == b""
    finally:
        for f in (rfile, wfile, rfile2, wfile2):
            f.close()


@pytest.mark.asyncio
async def test_write_pipe_rejects_non_bytes():
    loop = asyncio.get_running_loop()
    rfile, wfile = pipe_files()
    try:
        tr, pr = await loop.connect_write_pipe(WriteRecorder, wfile)
        # edgeloop raises TypeError like every other transport; the stdlib asserts.
        with pytest.raises((TypeError, AssertionError)):
            tr.write("text")
        tr.close()
        await lost(pr)
    finally:
        wfile.close()
        rfile.close()


# --------------------------------------------------------------------------------------------
# what counts as a pipe

@pytest.mark.asyncio
async def test_regular_file_is_refused_with_value_error():
    loop = asyncio.get_running_loop()
    with tempfile.TemporaryFile() as f:
        with pytest.raises(ValueError, match="Pipe transport is"):
            await loop.connect_read_pipe(Recorder, f)
        with pytest.raises(ValueError, match="Pipe transport is"):
            await loop.connect_write_pipe(WriteRecorder, f)
        assert not f.closed  # still the caller's
        f.write(b"usable")


@pytest.mark.asyncio
async def test_fifo_both_directions():
    loop = asyncio.get_running_loop()
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "fifo")
        os.mkfifo(path)
        rfd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
        wfd = os.open(path, os.O_WRONLY | os.O_NONBLOCK)
        rtr, rpr = await loop.connect_read_pipe(Recorder, open(rfd, "rb", buffering=0))
        wtr, wpr = await loop.connect_write_pipe(WriteRecorder, open(wfd, "wb", buffering=0))
        payload = pattern(300_000)
        wtr.write(payload)
        wtr.close()
        assert await lost(wpr) is None
        assert await lost(rpr) is None
        assert bytes(rpr.data) == payload and rpr.events[-2:] == ["eof", "lost"]


@pytest.mark.asyncio
async def test_socket_as_read_and_write_pipe():
    loop = asyncio.get_running_loop()
    a, b = socket.socketpair()
    c, d = socket.socketpair()
    try:
        rtr, rpr = await loop.connect_read_pipe(Recorder, a)
        b.sendall(b"over a socket")
        b.shutdown(socket.SHUT_WR)
        assert await lost(rpr) is None
        assert rpr.data == b"over a socket" and rpr.events[-2:] == ["eof", "lost"]

        wtr, wpr = await loop.connect_write_pipe(WriteRecorder, c)
        wtr.write(b"to the peer")
        d.setblocking(False)
        assert await loop.sock_recv(d, 100) == b"to the peer"
        d.close()  # the peer goes away: the write pipe notices without writing
        assert await lost(wpr) is None
    finally:
        for s in (a, b, c, d):
            s.close()


@pytest.mark.asyncio
async def test_pty_read_and_write():
    """A pty: write to the slave side through a write pipe, read it on the master through a read
    pipe.  Closing the slave makes the master's read fail with EIO: connection_lost(OSError) with
    errno EIO, reported quietly (the normal end of a terminal session)."""
    loop = asyncio.get_running_loop()
    master, slave = os.openpty()
    import tty
    tty.setraw(slave)  # no echo, no newline translation
    slave_dup = os.dup(slave)
    mfile = open(master, "rb", buffering=0)
    sfile = open(slave, "wb", buffering=0)
    try:
        with ExceptionCatcher(loop) as catcher:
            rtr, rpr = await loop.connect_read_pipe(Recorder, mfile)
            wtr, wpr = await loop.connect_write_pipe(WriteRecorder, sfile)
            wtr.write(b"through the pty\n")
            await rpr.wait_bytes(16)
            assert rpr.data == b"through the pty\n"
            wtr.close()
            assert await lost(wpr) is None
            os.close(slave_dup)
            slave_dup = -1
            exc = await lost(rpr)
        assert isinstance(exc, OSError) and exc.errno == errno.EIO
        assert catcher.contexts == []
    finally:
        if slave_dup >= 0:
            os.close(slave_dup)
        mfile.close()
        sfile.close()


@pytest.mark.skipif(REFERENCE, reason="the stdlib raises 'Event loop is closed' here")
def test_closing_pipes_after_the_loop_is_closed(loop_factory):
    """close() or abort() after the loop is closed releases the descriptor at once, without
    callbacks and without raising."""
    loop = loop_factory()
    rfile, wfile = os.pipe()
    rfile, wfile = open(rfile, "rb", buffering=0), open(wfile, "wb", buffering=0)

    async def connect():
        rtr, _ = await loop.connect_read_pipe(asyncio.Protocol, rfile)
        wtr, _ = await loop.connect_write_pipe(asyncio.BaseProtocol, wfile)
        return rtr, wtr

    rtr, wtr = loop.run_until_complete(connect())
    loop.close()
    rtr.close()
    wtr.abort()
    assert rfile.closed and wfile.closed
