"""loop.sendfile (zero-copy over plain stream transports, the fallback over TLS), loop.sock_sendfile,
and aiohttp's FileResponse, which downloads through loop.sendfile.

With EDGELOOP_TESTS_REFERENCE=asyncio the same tests run on the stdlib loop; the few that check
edgeloop's own choices say so and skip there.
"""
from __future__ import annotations

import asyncio
import contextlib
import hashlib
import io
import os
import socket
import ssl
import threading
import time

import pytest

try:
    from tests._streamutil import REFERENCE, Recorder, short_unix_path
except ModuleNotFoundError:  # tests/ on sys.path rather than a package
    from _streamutil import REFERENCE, Recorder, short_unix_path

pytestmark = pytest.mark.timeout(90)

BIG = 50 << 20


# --------------------------------------------------------------------------------------------
# fixtures and helpers

@pytest.fixture(scope="module")
def big_file(tmp_path_factory):
    """A 50 MB file of random bytes and its digest."""
    path = tmp_path_factory.mktemp("sendfile") / "big.bin"
    data = os.urandom(BIG)
    path.write_bytes(data)
    return path, hashlib.sha256(data).hexdigest(), data


# ca, server_ctx, client_ctx: shared TLS fixtures in conftest.py


def _file(tmp_path, size: int):
    """``size`` random bytes, and a file under ``tmp_path`` that holds them."""
    body = os.urandom(size)
    path = tmp_path / "f"
    path.write_bytes(body)
    return body, path


class Sink(asyncio.Protocol):
    """Hashes what arrives; ``done`` resolves at EOF or connection loss with (bytes, digest)."""

    def __init__(self, keep: bool = False, pause_after: int | None = None):
        loop = asyncio.get_running_loop()
        self.hash = hashlib.sha256()
        self.n = 0
        self.keep = keep
        self.data = bytearray()
        self.made = loop.create_future()
        self.done = loop.create_future()
        self.pause_after = pause_after

    def connection_made(self, transport):
        self.transport = transport
        self.made.set_result(transport)

    def data_received(self, data):
        self.hash.update(data)
        self.n += len(data)
        if self.keep:
            self.data += data
        if self.pause_after is not None and self.n >= self.pause_after:
            self.pause_after = None
            self.transport.pause_reading()

    def eof_received(self):
        self._finish()

    def connection_lost(self, exc):
        self._finish()

    def _finish(self):
        if not self.done.done():
            self.done.set_result((self.n, self.hash.hexdigest()))


@contextlib.asynccontextmanager
async def pair(kind: str = "tcp", server_ctx=None, client_ctx=None, sink_factory=Sink):
    """Yield (client transport, client protocol, server-side Sink)."""
    loop = asyncio.get_running_loop()
    sinks: list[Sink] = []

    def factory():
        sink = sink_factory()
        sinks.append(sink)
        return sink

    tmpdir = path = None
    if kind == "tcp":
        server = await loop.create_server(factory, "127.0.0.1", 0, ssl=server_ctx)
        conn = loop.create_connection(Recorder, "127.0.0.1", server.sockets[0].getsockname()[1],
                                      ssl=client_ctx,
                                      server_hostname="localhost" if client_ctx else None)
    else:
        tmpdir, path = short_unix_path()
        server = await loop.create_unix_server(factory, path, ssl=server_ctx)
        conn = loop.create_unix_connection(Recorder, path, ssl=client_ctx,
                                           server_hostname="localhost" if client_ctx else None)
    tr = None
    try:
        tr, pr = await asyncio.wait_for(conn, 10)
        for _ in range(500):
            if sinks:
                break
            await asyncio.sleep(0.01)
        await asyncio.wait_for(sinks[0].made, 10)
        yield tr, pr, sinks[0]
    finally:
        if tr is not None and not tr.is_closing():
            tr.abort()
        server.close()
        for sink in sinks:
            if hasattr(sink, "transport") and not sink.transport.is_closing():
                sink.transport.abort()
        await asyncio.wait_for(server.wait_closed(), 10)
        if tr is not None:
            await asyncio.wait_for(tr.get_protocol().lost if tr.get_protocol() else
                                   asyncio.sleep(0), 10)
        if tmpdir is not None:
            with contextlib.suppress(OSError):
                os.unlink(path)
            os.rmdir(tmpdir)


async def finish(tr, sink, timeout=30):
    """Close the sending side; return what the sink received (count, digest)."""
    tr.close()
    return await asyncio.wait_for(sink.done, timeout)


# --------------------------------------------------------------------------------------------
# large files

@pytest.mark.asyncio
@pytest.mark.parametrize("kind", ["tcp", "unix"])
async def test_sendfile_large_plain(kind, big_file):
    path, digest, _ = big_file
    loop = asyncio.get_running_loop()
    async with pair(kind) as (tr, pr, sink):
        with open(path, "rb") as f:
            sent = await loop.sendfile(tr, f)
            assert sent == BIG
            assert f.tell() == BIG
        assert await finish(tr, sink) == (BIG, digest)


@pytest.mark.asyncio
@pytest.mark.parametrize("kind", ["tcp", "unix"])
async def test_sendfile_large_tls(kind, big_file, server_ctx, client_ctx):
    path, digest, _ = big_file
    loop = asyncio.get_running_loop()
    async with pair(kind, server_ctx, client_ctx) as (tr, pr, sink):
        with open(path, "rb") as f:
            assert await loop.sendfile(tr, f) == BIG
            assert f.tell() == BIG
        assert await finish(tr, sink) == (BIG, digest)


@pytest.mark.asyncio
@pytest.mark.parametrize("tls", [False, True])
async def test_sendfile_offset_and_count(tls, big_file, server_ctx, client_ctx):
    path, _, data = big_file
    loop = asyncio.get_running_loop()
    ctxs = (server_ctx, client_ctx) if tls else (None, None)
    async with pair("tcp", *ctxs, sink_factory=lambda: Sink(keep=True)) as (tr, pr, sink):
        with open(path, "rb") as f:
            assert await loop.sendfile(tr, f, 1000, 5000) == 5000
            assert f.tell() == 6000
            # count past the end of the file: what is there is sent
            assert await loop.sendfile(tr, f, BIG - 10, 100) == 10
            assert f.tell() == BIG
            assert await loop.sendfile(tr, f, BIG + 5) == 0  # offset past the end
        await finish(tr, sink)
        assert bytes(sink.data) == data[1000:6000] + data[-10:]


@pytest.mark.asyncio
async def test_sendfile_empty_file(tmp_path):
    loop = asyncio.get_running_loop()
    empty = tmp_path / "empty"
    empty.write_bytes(b"")
    async with pair() as (tr, pr, sink):
        with open(empty, "rb") as f:
            assert await loop.sendfile(tr, f) == 0
        tr.write(b"after")
        assert await finish(tr, sink) == (5, hashlib.sha256(b"after").hexdigest())


@pytest.mark.asyncio
@pytest.mark.parametrize("tls", [False, True])
async def test_sendfile_between_writes(tls, tmp_path, server_ctx, client_ctx):
    """Data written before sendfile() goes first, data written after it returns goes after."""
    loop = asyncio.get_running_loop()
    body = os.urandom(3 << 20)
    path = tmp_path / "f"
    path.write_bytes(body)
    ctxs = (server_ctx, client_ctx) if tls else (None, None)
    async with pair("tcp", *ctxs, sink_factory=lambda: Sink(keep=True)) as (tr, pr, sink):
        tr.write(b"HEAD" * 100_000)  # more than a socket buffer: still queued when sendfile starts
        with open(path, "rb") as f:
            assert await loop.sendfile(tr, f) == len(body)
        tr.write(b"TAIL")
        await finish(tr, sink)
        assert bytes(sink.data) == b"HEAD" * 100_000 + body + b"TAIL"


@pytest.mark.asyncio
async def test_sendfile_from_bytesio_falls_back(big_file):
    """A file without a descriptor goes through the fallback (read + write)."""
    loop = asyncio.get_running_loop()
    _, _, data = big_file
    buf = io.BytesIO(data[:10 << 20])
    async with pair() as (tr, pr, sink):
        assert await loop.sendfile(tr, buf, 100) == (10 << 20) - 100
        assert buf.tell() == 10 << 20
        assert await finish(tr, sink) == ((10 << 20) - 100,
                                          hashlib.sha256(data[100:10 << 20]).hexdigest())


# --------------------------------------------------------------------------------------------
# flow control and fairness

@pytest.mark.asyncio
@pytest.mark.parametrize("tls", [False, True])
async def test_sendfile_slow_reader_keeps_loop_responsive(tls, big_file, server_ctx, client_ctx):
    """While a file goes to a slow reader, timers keep firing and the write buffer stays
    bounded (the transfer waits for the peer instead of buffering the file)."""
    path, digest, _ = big_file
    loop = asyncio.get_running_loop()
    count = 32 << 20  # well above what the kernel's socket buffers can absorb
    ctxs = (server_ctx, client_ctx) if tls else (None, None)
    async with pair("tcp", *ctxs, sink_factory=lambda: Sink(pause_after=1 << 20)) as (tr, pr, sink):
        gaps = []
        sizes = []
        stop = False

        async def ticker():
            last = loop.time()
            while not stop:
                await asyncio.sleep(0.005)
                now = loop.time()
                gaps.append(now - last)
                last = now
                sizes.append(tr.get_write_buffer_size())

        async def slow_resume():
            # The reader is paused after 1 MB; let it read in short bursts.
            while not sink.done.done() and not stop:
                await asyncio.sleep(0.02)
                sink.pause_after = sink.n + (1 << 20)
                sink.transport.resume_reading()

        tick = asyncio.ensure_future(ticker())
        reader = asyncio.ensure_future(slow_resume())
        with open(path, "rb") as f:
            t0 = loop.time()
            assert await loop.sendfile(tr, f, 0, count) == count
            elapsed = loop.time() - t0
        stop = True
        await tick
        await reader
        sink.pause_after = None
        sink.transport.resume_reading()
        n, _ = await finish(tr, sink)
        assert n == count
        assert elapsed > 0.1  # the reader really was slow
        assert max(gaps) < 1.0, f"the loop stalled for {max(gaps):.2f} s"
        assert max(sizes) < 4 << 20, f"write buffer grew to {max(sizes)} bytes"


# --------------------------------------------------------------------------------------------
# errors

@pytest.mark.asyncio
async def test_sendfile_argument_errors(big_file, tmp_path):
    path, _, _ = big_file
    loop = asyncio.get_running_loop()
    text = tmp_path / "t.txt"
    text.write_text("hello")
    async with pair() as (tr, pr, sink):
        with open(path, "rb") as f:
            with pytest.raises(ValueError):
                await loop.sendfile(tr, f, -1)
            with pytest.raises(ValueError):
                await loop.sendfile(tr, f, 0, 0)
            with pytest.raises(ValueError):
                await loop.sendfile(tr, f, 0, -5)
            with pytest.raises(TypeError):
                await loop.sendfile(tr, f, "0")
            with pytest.raises(TypeError):
                await loop.sendfile(tr, f, 0, 1.5)
            assert f.tell() == 0
        with open(text, "r") as f:
            with pytest.raises(ValueError, match="binary"):
                await loop.sendfile(tr, f)
        with pytest.raises(asyncio.SendfileNotAvailableError):
            await loop.sendfile(tr, io.BytesIO(b"data"), fallback=False)
        assert not tr.is_closing()
        tr.write(b"still usable")
        assert await finish(tr, sink) == (12, hashlib.sha256(b"still usable").hexdigest())


@pytest.mark.asyncio
async def test_sendfile_closing_transport(big_file):
    path, _, _ = big_file
    loop = asyncio.get_running_loop()
    async with pair() as (tr, pr, sink):
        tr.close()
        with open(path, "rb") as f:
            with pytest.raises(RuntimeError, match="closing"):
                await loop.sendfile(tr, f)
            assert f.tell() == 0


@pytest.mark.asyncio
async def test_sendfile_tls_without_fallback(big_file, server_ctx, client_ctx):
    """TLS needs the fallback: fallback=False is a RuntimeError (SendfileNotAvailableError on
    edgeloop, which is a RuntimeError too)."""
    path, _, _ = big_file
    loop = asyncio.get_running_loop()
    async with pair("tcp", server_ctx, client_ctx) as (tr, pr, sink):
        with open(path, "rb") as f:
            with pytest.raises(RuntimeError):
                await loop.sendfile(tr, f, fallback=False)
            assert f.tell() == 0
        assert await finish(tr, sink) == (0, hashlib.sha256(b"").hexdigest())


@pytest.mark.asyncio
@pytest.mark.parametrize("tls", [False, True])
async def test_sendfile_peer_goes_away(tls, big_file, server_ctx, client_ctx):
    """The receiver aborts in the middle: sendfile raises, the file position says how far it
    got."""
    path, _, _ = big_file
    loop = asyncio.get_running_loop()
    ctxs = (server_ctx, client_ctx) if tls else (None, None)

    class Quitter(Sink):
        def data_received(self, data):
            super().data_received(data)
            if self.n >= (2 << 20):
                self.transport.abort()

    # The stdlib's TLS transport may buffer the rest of the file before it notices the loss.
    lenient = REFERENCE and tls
    async with pair("tcp", *ctxs, sink_factory=Quitter) as (tr, pr, sink):
        with open(path, "rb") as f:
            expect = (contextlib.suppress(ConnectionError, OSError) if lenient
                      else pytest.raises((ConnectionError, OSError)))
            with expect:
                await asyncio.wait_for(loop.sendfile(tr, f), 30)
            assert 0 < f.tell() <= BIG if lenient else 0 < f.tell() < BIG
        await asyncio.wait_for(pr.lost, 10)


@pytest.mark.asyncio
async def test_write_during_sendfile_is_refused(tmp_path):
    """write()/writelines() while the file is being sent raise RuntimeError; afterwards the
    transport writes again."""
    loop = asyncio.get_running_loop()
    body, path = _file(tmp_path, 8 << 20)
    async with pair("tcp", sink_factory=lambda: Sink(keep=True, pause_after=1 << 20)) as (
            tr, pr, sink):
        with open(path, "rb") as f:
            task = asyncio.ensure_future(loop.sendfile(tr, f))
            for _ in range(5):
                await asyncio.sleep(0.01)
            assert not task.done()  # the receiver stopped reading after 1 MB
            assert not tr.is_reading()  # reading is paused for the transfer
            sink.transport.write(b"reply")  # ... so this waits in the kernel for now
            await asyncio.sleep(0.05)
            assert not pr.data
            with pytest.raises(RuntimeError, match="sendfile is in progress"):
                tr.write(b"during")
            if not REFERENCE:  # the stdlib's writelines() does not check in every version
                with pytest.raises(RuntimeError, match="sendfile is in progress"):
                    tr.writelines([b"-", b"more"])
            sink.transport.resume_reading()
            assert await asyncio.wait_for(task, 30) == len(body)
        assert tr.is_reading()
        assert await pr.wait_bytes(5) == b"reply"
        tr.write(b"after")
        await finish(tr, sink)
        assert bytes(sink.data) == body + b"after"


@pytest.mark.asyncio
async def test_close_during_sendfile_waits_for_the_file(tmp_path):
    """edgeloop: close() during the transfer lets the file finish, like buffered data (on the
    stdlib loop it cuts the transfer short)."""
    if REFERENCE:
        pytest.skip("edgeloop behaviour")
    loop = asyncio.get_running_loop()
    body, path = _file(tmp_path, 8 << 20)
    async with pair("tcp", sink_factory=lambda: Sink(keep=True, pause_after=1 << 20)) as (
            tr, pr, sink):
        with open(path, "rb") as f:
            task = asyncio.ensure_future(loop.sendfile(tr, f))
            await asyncio.sleep(0.05)
            assert not task.done()
            tr.close()
            assert tr.is_closing()
            sink.transport.resume_reading()
            assert await asyncio.wait_for(task, 30) == len(body)
        await asyncio.wait_for(sink.done, 30)
        assert bytes(sink.data) == body
        assert await asyncio.wait_for(pr.lost, 10) is None


async def _wait_until_stalled(task, sink, n_min=1 << 20):
    """Let the transfer run until the paused receiver has stopped it (socket buffers full)."""
    for _ in range(500):
        if sink.n >= n_min:
            break
        await asyncio.sleep(0.01)
    for _ in range(5):
        await asyncio.sleep(0.01)
    assert not task.done()


@contextlib.asynccontextmanager
async def _stalled_transfer(tmp_path, *, keep: bool = True, before: bytes = b""):
    """A ``loop.sendfile()`` of 8 MiB to a receiver that paused after 1 MiB, stalled with the
    socket buffers full: yields ``(body, tr, pr, sink, f, task)``."""
    loop = asyncio.get_running_loop()
    body, path = _file(tmp_path, 8 << 20)
    async with pair("tcp", sink_factory=lambda: Sink(keep=keep, pause_after=1 << 20)) as (
            tr, pr, sink):
        if before:
            tr.write(before)  # still queued when sendfile starts: the flush stage
        with open(path, "rb") as f:
            task = asyncio.ensure_future(loop.sendfile(tr, f))
            await _wait_until_stalled(task, sink)
            yield body, tr, pr, sink, f, task


@pytest.mark.asyncio
async def test_writes_from_another_task_during_sendfile(tmp_path):
    """write()/writelines() from another task while the file goes out raise RuntimeError; the
    file still arrives whole, after what was written before, and before what is written after."""
    async with _stalled_transfer(tmp_path, before=b"HEAD" * 100_000) as (
            body, tr, pr, sink, f, task):

        async def intruder():
            errors = []
            calls = [lambda: tr.write(b"during"), lambda: tr.write(bytearray(b"during"))]
            if not REFERENCE:  # the stdlib's writelines() does not check in every version
                calls.append(lambda: tr.writelines([b"-", b"more"]))
            for call in calls:
                try:
                    call()
                except RuntimeError as exc:
                    errors.append(str(exc))
                await asyncio.sleep(0)
            return errors, len(calls)

        errors, ncalls = await asyncio.ensure_future(intruder())  # another task
        assert errors == ["unable to write; sendfile is in progress"] * ncalls
        sink.transport.resume_reading()
        assert await asyncio.wait_for(task, 30) == len(body)
        assert f.tell() == len(body)
        tr.write(b"after")
        tr.writelines([b"-", b"lines"])
        await finish(tr, sink)
        assert bytes(sink.data) == b"HEAD" * 100_000 + body + b"after-lines"


@pytest.mark.asyncio
async def test_close_from_another_task_during_sendfile(tmp_path):
    """edgeloop: close() from another task during the transfer: the whole file goes out, then
    the connection closes, with one connection_lost."""
    if REFERENCE:
        pytest.skip("edgeloop behaviour")
    async with _stalled_transfer(tmp_path) as (body, tr, pr, sink, f, task):

        async def closer():
            tr.close()

        await asyncio.ensure_future(closer())
        assert tr.is_closing()
        await asyncio.sleep(0.05)
        assert not pr.lost.done()  # waits for the file
        assert not task.done()
        sink.transport.resume_reading()
        assert await asyncio.wait_for(task, 30) == len(body)
        assert f.tell() == len(body)
        assert await asyncio.wait_for(pr.lost, 10) is None
        assert await asyncio.wait_for(sink.done, 30) == (len(body),
                                                         hashlib.sha256(body).hexdigest())
        assert bytes(sink.data) == body
        await asyncio.sleep(0.05)
        assert pr.lost_count == 1


@pytest.mark.asyncio
async def test_write_eof_during_sendfile_waits_for_the_file(tmp_path):
    """edgeloop: write_eof() during the transfer shuts the write side down after the file;
    from then on writes are refused as after write_eof()."""
    if REFERENCE:
        pytest.skip("edgeloop behaviour")
    async with _stalled_transfer(tmp_path) as (body, tr, pr, sink, f, task):
        tr.write_eof()
        with pytest.raises(RuntimeError, match="after write_eof"):
            tr.write(b"x")
        sink.transport.resume_reading()
        assert await asyncio.wait_for(task, 30) == len(body)
        assert await asyncio.wait_for(sink.done, 30) == (len(body),
                                                         hashlib.sha256(body).hexdigest())
        with pytest.raises(RuntimeError, match=r"writelines\(\) after write_eof"):
            tr.writelines([b"x"])
        assert not tr.is_closing()


@pytest.mark.asyncio
async def test_abort_during_sendfile_fails_the_transfer(tmp_path):
    """edgeloop: abort() during the transfer fails it with ConnectionError at once; the file
    position says how far it got; connection_lost comes once."""
    if REFERENCE:
        pytest.skip("edgeloop behaviour")
    async with _stalled_transfer(tmp_path, keep=False) as (body, tr, pr, sink, f, task):
        tr.abort()
        with pytest.raises(ConnectionError, match="during sendfile"):
            await asyncio.wait_for(task, 10)
        assert 0 < f.tell() < len(body)
        assert await asyncio.wait_for(pr.lost, 10) is None
        await asyncio.sleep(0.05)
        assert pr.lost_count == 1


@pytest.mark.asyncio
async def test_sendfile_is_transport_state(tmp_path):
    """edgeloop: the transfer is state of the transport: no per-instance write/writelines, the
    poller keeps dispatching the fd to the transport, and add_reader() on it stays refused."""
    if REFERENCE:
        pytest.skip("edgeloop internals")
    loop = asyncio.get_running_loop()
    body, path = _file(tmp_path, 8 << 20)
    async with pair("tcp", sink_factory=lambda: Sink(keep=True, pause_after=1 << 20)) as (
            tr, pr, sink):
        fd = tr.get_extra_info("socket").fileno()
        handlers = loop._poller.handlers
        assert handlers[fd] is tr
        tr.write(b"HEAD" * 100_000)
        seen = []

        def sample():
            seen.append((handlers.get(fd) is tr, "write" in tr.__dict__,
                         "writelines" in tr.__dict__))

        with open(path, "rb") as f:
            task = asyncio.ensure_future(loop.sendfile(tr, f))
            sample()  # the flush stage
            await _wait_until_stalled(task, sink)
            sample()  # the send stage
            with pytest.raises(RuntimeError, match="used by transport"):
                loop.add_reader(fd, lambda: None)
            with pytest.raises(RuntimeError, match="used by transport"):
                loop.add_writer(fd, lambda: None)
            sink.transport.resume_reading()
            while not task.done():
                sample()
                await asyncio.sleep(0)
            assert task.result() == len(body)
        sample()
        wrong = [s for s in seen if s != (True, False, False)]
        assert len(seen) > 2 and not wrong, (len(seen), wrong[:3])
        tr.write(b"after")
        await finish(tr, sink)
        assert bytes(sink.data) == b"HEAD" * 100_000 + body + b"after"


@pytest.mark.asyncio
async def test_sendfile_cancelled(big_file):
    """Cancelling the transfer leaves a usable transport and an honest file position."""
    path, _, _ = big_file
    loop = asyncio.get_running_loop()
    async with pair("tcp", sink_factory=lambda: Sink(pause_after=1 << 20)) as (tr, pr, sink):
        with open(path, "rb") as f:
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(loop.sendfile(tr, f), 0.3)
            if not REFERENCE:  # edgeloop also updates the position when cancelled; asyncio not
                assert 0 < f.tell() < BIG
        assert not tr.is_closing()
        tr.abort()
        await asyncio.wait_for(pr.lost, 10)


# --------------------------------------------------------------------------------------------
# sock_sendfile

@contextlib.contextmanager
def sock_pair():
    a, b = socket.socketpair()
    a.setblocking(False)
    try:
        yield a, b
    finally:
        a.close()
        b.close()


def drain_thread(sock, out: list):
    def run():
        h = hashlib.sha256()
        n = 0
        while True:
            chunk = sock.recv(1 << 20)
            if not chunk:
                break
            h.update(chunk)
            n += len(chunk)
        out.append((n, h.hexdigest()))

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


@pytest.mark.asyncio
async def test_sock_sendfile(big_file):
    path, digest, data = big_file
    loop = asyncio.get_running_loop()
    with sock_pair() as (a, b):
        out: list = []
        t = drain_thread(b, out)
        with open(path, "rb") as f:
            assert await loop.sock_sendfile(a, f) == BIG
            assert f.tell() == BIG
            assert await loop.sock_sendfile(a, f, 10, 90) == 90
            assert f.tell() == 100
        a.shutdown(socket.SHUT_WR)
        await loop.run_in_executor(None, t.join, 30)
        assert out == [(BIG + 90, hashlib.sha256(data + data[10:100]).hexdigest())]


@pytest.mark.asyncio
async def test_sock_sendfile_fallback_and_errors(tmp_path):
    loop = asyncio.get_running_loop()
    text = tmp_path / "t.txt"
    text.write_text("x")
    with sock_pair() as (a, b):
        with pytest.raises(asyncio.SendfileNotAvailableError):
            await loop.sock_sendfile(a, io.BytesIO(b"abc"), fallback=False)
        buf = io.BytesIO(b"0123456789")
        assert await loop.sock_sendfile(a, buf, 2, 5) == 5
        assert buf.tell() == 7
        assert b.recv(100) == b"23456"
        with open(text, "rb") as f:
            with pytest.raises(ValueError):
                await loop.sock_sendfile(a, f, -1)
            with pytest.raises(ValueError):
                await loop.sock_sendfile(a, f, 0, 0)
            with pytest.raises(TypeError):
                await loop.sock_sendfile(a, f, 0, "1")
        with open(text, "r") as f:
            with pytest.raises(ValueError, match="binary"):
                await loop.sock_sendfile(a, f)
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.setblocking(False)
    with udp, open(text, "rb") as f:
        with pytest.raises(ValueError, match="SOCK_STREAM"):
            await loop.sock_sendfile(udp, f)


# --------------------------------------------------------------------------------------------
# aiohttp: web.FileResponse downloads go through loop.sendfile

@pytest.mark.asyncio
@pytest.mark.parametrize("tls", [False, True])
async def test_aiohttp_file_response(tls, big_file, server_ctx, client_ctx):
    aiohttp = pytest.importorskip("aiohttp")
    from aiohttp import web

    path, digest, data = big_file
    calls = []
    loop = asyncio.get_running_loop()
    real_sendfile = loop.sendfile

    async def counting_sendfile(*args, **kwargs):
        calls.append(args[2:])
        return await real_sendfile(*args, **kwargs)

    loop.sendfile = counting_sendfile
    async def handler(request):
        return web.FileResponse(path)

    app = web.Application()
    app.router.add_get("/big", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=server_ctx if tls else None)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]
        scheme = "https" if tls else "http"
        connector = aiohttp.TCPConnector(ssl=client_ctx if tls else False)
        async with aiohttp.ClientSession(connector=connector) as session:
            t0 = time.monotonic()
            async with session.get(f"{scheme}://localhost:{port}/big") as resp:
                assert resp.status == 200
                h = hashlib.sha256()
                n = 0
                async for chunk in resp.content.iter_chunked(1 << 20):
                    h.update(chunk)
                    n += len(chunk)
            assert (n, h.hexdigest()) == (BIG, digest)
            assert time.monotonic() - t0 < 60
            # A range request: offset and count reach loop.sendfile.
            headers = {"Range": "bytes=1000-1999"}
            async with session.get(f"{scheme}://localhost:{port}/big", headers=headers) as resp:
                assert resp.status == 206
                assert await resp.read() == data[1000:2000]
        assert calls, "aiohttp did not use loop.sendfile"
    finally:
        del loop.sendfile
        await runner.cleanup()
        await asyncio.sleep(0.05)
