"""Helpers shared by the stream, server and behaviour tests (not a test module)."""
from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import tempfile
import threading

# Same switch as conftest.REFERENCE (not imported from there: tests/ may or may not be a package).
REFERENCE = os.environ.get("EDGELOOP_TESTS_REFERENCE") == "asyncio"

__all__ = [
    "REFERENCE", "Recorder", "BufferedRecorder", "make_transport", "sock_recv_exactly",
    "sock_recv_until_eof", "short_unix_path", "stats", "ExceptionCatcher", "sock_pair",
    "SenderThread", "ReaderThread", "count_fds",
]


def stats(loop: asyncio.AbstractEventLoop | None = None) -> dict[str, int] | None:
    """edgeloop's counters, or None on the reference loop."""
    loop = loop or asyncio.get_running_loop()
    fn = getattr(loop, "stats", None)
    return fn() if (fn is not None and not REFERENCE) else None


def count_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


class Recorder(asyncio.Protocol):
    """A Protocol that records every callback; awaitable milestones instead of sleeps."""

    def __init__(self, *, eof_result=None, on_data=None, on_eof=None):
        self.loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        self.data = bytearray()
        self.chunks = 0
        self.events: list[str] = []
        self.made = self.loop.create_future()
        self.lost = self.loop.create_future()
        self.eof = self.loop.create_future()
        self.lost_count = 0
        self.eof_count = 0
        self.pauses = 0
        self.resumes = 0
        self.eof_result = eof_result
        self.on_data = on_data
        self.on_eof = on_eof
        self.writing = True
        self._want: list[tuple[int, asyncio.Future]] = []
        self._writable: asyncio.Future | None = None

    # protocol callbacks
    def connection_made(self, transport):
        self.events.append("made")
        self.transport = transport
        self.made.set_result(transport)

    def data_received(self, data):
        assert isinstance(data, (bytes, bytearray)), type(data)
        assert data, "data_received with empty data"
        self.events.append("data")
        self.data += data
        self.chunks += 1
        self._wake()
        if self.on_data is not None:
            self.on_data(self, data)

    def eof_received(self):
        self.events.append("eof")
        self.eof_count += 1
        if not self.eof.done():
            self.eof.set_result(bytes(self.data))
        self._wake()
        if self.on_eof is not None:
            self.on_eof(self)
        return self.eof_result

    def pause_writing(self):
        self.events.append("pause_writing")
        self.pauses += 1
        self.writing = False

    def resume_writing(self):
        self.events.append("resume_writing")
        self.resumes += 1
        self.writing = True
        if self._writable is not None and not self._writable.done():
            self._writable.set_result(None)

    def connection_lost(self, exc):
        self.events.append("lost")
        self.lost_count += 1
        if not self.lost.done():
            self.lost.set_result(exc)
        self._wake()

    # helpers
    def _wake(self):
        for n, fut in list(self._want):
            if fut.done():
                self._want.remove((n, fut))
            elif len(self.data) >= n:
                fut.set_result(None)
                self._want.remove((n, fut))
            elif self.lost.done() or self.eof.done():
                fut.set_exception(AssertionError(
                    f"connection ended after {len(self.data)} of {n} bytes: {self.events[-3:]}"))
                self._want.remove((n, fut))

    async def wait_bytes(self, n: int, timeout: float = 10.0) -> bytes:
        if len(self.data) < n:
            fut = self.loop.create_future()
            self._want.append((n, fut))
            self._wake()
            await asyncio.wait_for(fut, timeout)
        return bytes(self.data[:n])

    async def wait_writable(self, timeout: float = 10.0) -> None:
        if self.writing:
            return
        self._writable = self.loop.create_future()
        await asyncio.wait_for(self._writable, timeout)


class BufferedRecorder(asyncio.BufferedProtocol):
    """A BufferedProtocol handing out buffers of a fixed size (possibly 0)."""

    def __init__(self, size: int):
        self.loop = asyncio.get_running_loop()
        self.size = size
        self.buf = bytearray(max(size, 1))
        self.data = bytearray()
        self.sizes_asked: list[int] = []
        self.updates: list[int] = []
        self.events: list[str] = []
        self.made = self.loop.create_future()
        self.lost = self.loop.create_future()
        self.eof = self.loop.create_future()
        self.lost_count = 0

    def connection_made(self, transport):
        self.transport = transport
        self.events.append("made")
        self.made.set_result(transport)

    def get_buffer(self, sizehint):
        self.sizes_asked.append(sizehint)
        return memoryview(self.buf)[:self.size]

    def buffer_updated(self, nbytes):
        assert 0 < nbytes <= self.size, nbytes
        self.events.append("data")
        self.updates.append(nbytes)
        self.data += self.buf[:nbytes]

    def eof_received(self):
        self.events.append("eof")
        if not self.eof.done():
            self.eof.set_result(bytes(self.data))

    def connection_lost(self, exc):
        self.events.append("lost")
        self.lost_count += 1
        if not self.lost.done():
            self.lost.set_result(exc)


def short_unix_path(name: str = "s") -> tuple[str, str]:
    """A fresh directory and a socket path inside it, short enough for sun_path."""
    d = tempfile.mkdtemp(prefix="el-", dir="/tmp")
    return d, os.path.join(d, name)


def sock_pair(kind: str) -> tuple[socket.socket, socket.socket]:
    """A connected (a, b) pair of blocking sockets: TCP over loopback or Unix stream."""
    if kind == "unix":
        return socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    with socket.create_server(("127.0.0.1", 0)) as lsock:
        a = socket.create_connection(lsock.getsockname())
        b, _ = lsock.accept()
    return a, b


@contextlib.asynccontextmanager
async def make_transport(kind: str, protocol_factory):
    """Yield (transport, protocol, peer): a loop transport and a raw non-blocking peer socket.

    TCP goes through create_connection to a listening socket; Unix through
    create_unix_connection to a path.  Everything is closed on exit.
    """
    loop = asyncio.get_running_loop()
    tmpdir = None
    if kind == "tcp":
        lsock = socket.create_server(("127.0.0.1", 0))
    else:
        tmpdir, path = short_unix_path()
        lsock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        lsock.bind(path)
        lsock.listen()
    lsock.setblocking(False)
    peer = tr = None
    try:
        if kind == "tcp":
            conn = loop.create_connection(protocol_factory, *lsock.getsockname())
        else:
            conn = loop.create_unix_connection(protocol_factory, path)
        (tr, pr), (peer, _) = await asyncio.wait_for(
            asyncio.gather(conn, loop.sock_accept(lsock)), 10)
        peer.setblocking(False)
        if hasattr(pr, "made"):
            await asyncio.wait_for(asyncio.shield(pr.made), 5)
        yield tr, pr, peer
    finally:
        lsock.close()
        if peer is not None:
            peer.close()
        if tr is not None:
            lost = getattr(tr.get_protocol(), "lost", None)
            if not tr.is_closing():
                tr.abort()
            if lost is not None:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(asyncio.shield(lost), 5)
            else:
                await asyncio.sleep(0)
        if tmpdir is not None:
            with contextlib.suppress(OSError):
                os.unlink(path)
            os.rmdir(tmpdir)


async def sock_recv_exactly(sock: socket.socket, n: int, timeout: float = 10.0) -> bytes:
    loop = asyncio.get_running_loop()
    buf = bytearray()

    async def go():
        while len(buf) < n:
            chunk = await loop.sock_recv(sock, min(n - len(buf), 1 << 20))
            if not chunk:
                raise AssertionError(f"EOF after {len(buf)} of {n} bytes")
            buf.extend(chunk)

    await asyncio.wait_for(go(), timeout)
    return bytes(buf)


async def sock_recv_until_eof(sock: socket.socket, timeout: float = 10.0) -> bytes:
    loop = asyncio.get_running_loop()
    buf = bytearray()

    async def go():
        while True:
            chunk = await loop.sock_recv(sock, 1 << 20)
            if not chunk:
                return
            buf.extend(chunk)

    await asyncio.wait_for(go(), timeout)
    return bytes(buf)


class ExceptionCatcher:
    """Install as the loop's exception handler; keeps contexts instead of logging them."""

    def __init__(self, loop: asyncio.AbstractEventLoop):
        self.loop = loop
        self.contexts: list[dict] = []
        self._old = loop.get_exception_handler()

    def __enter__(self):
        self.loop.set_exception_handler(lambda lp, ctx: self.contexts.append(ctx))
        return self

    def __exit__(self, *exc):
        self.loop.set_exception_handler(self._old)


class SenderThread(threading.Thread):
    """Blocking sendall of ``payload`` from another thread; the loop sees only arrivals."""

    def __init__(self, sock: socket.socket, payload: bytes, *, shut_wr: bool = False):
        super().__init__(daemon=True)
        self.sock, self.payload, self.shut_wr = sock, payload, shut_wr
        self.error: BaseException | None = None
        self.done = threading.Event()

    def run(self):
        try:
            self.sock.setblocking(True)
            self.sock.sendall(self.payload)
            if self.shut_wr:
                self.sock.shutdown(socket.SHUT_WR)
        except BaseException as e:  # reported by the test
            self.error = e
        finally:
            self.done.set()


class ReaderThread(threading.Thread):
    """Blocking reader in another thread: reads until EOF, optionally slowly."""

    def __init__(self, sock: socket.socket, *, chunk: int = 1 << 16, pause_every: int = 0,
                 pause: float = 0.0):
        super().__init__(daemon=True)
        self.sock, self.chunk = sock, chunk
        self.pause_every, self.pause = pause_every, pause
        self.total = 0
        self.error: BaseException | None = None
        self.stop = threading.Event()

    def run(self):
        import time
        try:
            self.sock.setblocking(True)
            since_pause = 0
            while not self.stop.is_set():
                chunk = self.sock.recv(self.chunk)
                if not chunk:
                    return
                self.total += len(chunk)
                since_pause += len(chunk)
                if self.pause_every and since_pause >= self.pause_every:
                    since_pause = 0
                    time.sleep(self.pause)
        except BaseException as e:
            self.error = e
