"""Datagram transports: create_datagram_endpoint over UDP and Unix datagram sockets.

The peer is usually a raw non-blocking socket driven with ``loop.sock_*``, so what it observes is
what the kernel carried.  Every test runs on the four loop configurations (edge, level, poll,
select) and, with ``EDGELOOP_TESTS_REFERENCE=asyncio``, on the stdlib loop.
"""
from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import socket
import sys

import pytest

try:
    from tests._streamutil import REFERENCE, ExceptionCatcher, short_unix_path, stats
except ModuleNotFoundError:  # tests/ on sys.path rather than a package
    from _streamutil import REFERENCE, ExceptionCatcher, short_unix_path, stats

pytestmark = pytest.mark.timeout(30)

LOOPBACK = ("127.0.0.1", 0)
# edgeloop sends empty datagrams (as Python 3.13 does); the stdlib drops them before 3.13.
SENDS_EMPTY = not REFERENCE or sys.version_info >= (3, 13)


class DatagramRecorder(asyncio.DatagramProtocol):
    """Records every callback; ``wait_count(n)`` waits for n datagrams."""

    def __init__(self):
        self.loop = asyncio.get_running_loop()
        self.transport = None
        self.datagrams: list[tuple[bytes, object]] = []
        self.errors: list[BaseException] = []
        self.events: list[str] = []
        self.made = self.loop.create_future()
        self.lost = self.loop.create_future()
        self.lost_count = 0
        self.pauses = 0
        self.resumes = 0
        self._want: list[tuple[int, asyncio.Future]] = []
        self._error: asyncio.Future | None = None

    def connection_made(self, transport):
        self.events.append("made")
        self.transport = transport
        self.made.set_result(transport)

    def datagram_received(self, data, addr):
        assert type(data) is bytes
        self.events.append("datagram")
        self.datagrams.append((data, addr))
        for item in list(self._want):
            n, fut = item
            if len(self.datagrams) >= n and not fut.done():
                fut.set_result(None)
                self._want.remove(item)

    def error_received(self, exc):
        self.events.append("error")
        self.errors.append(exc)
        if self._error is not None and not self._error.done():
            self._error.set_result(exc)

    def pause_writing(self):
        self.events.append("pause_writing")
        self.pauses += 1

    def resume_writing(self):
        self.events.append("resume_writing")
        self.resumes += 1

    def connection_lost(self, exc):
        self.events.append("lost")
        self.lost_count += 1
        if not self.lost.done():
            self.lost.set_result(exc)

    async def wait_count(self, n: int, timeout: float = 10.0) -> None:
        if len(self.datagrams) < n:
            fut = self.loop.create_future()
            self._want.append((n, fut))
            await asyncio.wait_for(fut, timeout)

    async def wait_error(self, timeout: float = 5.0) -> BaseException:
        if self.errors:
            return self.errors[0]
        self._error = self.loop.create_future()
        return await asyncio.wait_for(self._error, timeout)


def raw_udp(bind: bool = True) -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setblocking(False)
    if bind:
        s.bind(LOOPBACK)
    return s


async def recv_datagram(sock: socket.socket, timeout: float = 5.0) -> tuple[bytes, object]:
    return await asyncio.wait_for(asyncio.get_running_loop().sock_recvfrom(sock, 65536), timeout)


async def closed(transport: asyncio.BaseTransport, timeout: float = 5.0) -> None:
    """Close (if needed) and wait for connection_lost."""
    proto = transport.get_protocol()
    if not transport.is_closing():
        transport.close()
    await asyncio.wait_for(asyncio.shield(proto.lost), timeout)


def closed_udp_port() -> int:
    """A loopback UDP port nobody listens on (bound, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(LOOPBACK)
        return s.getsockname()[1]


# --------------------------------------------------------------------------------------------
# basics

@pytest.mark.asyncio
async def test_udp_echo_and_extra_info():
    loop = asyncio.get_running_loop()
    server, sp = await loop.create_datagram_endpoint(DatagramRecorder, local_addr=LOOPBACK)
    addr = server.get_extra_info("sockname")
    client, cp = await loop.create_datagram_endpoint(DatagramRecorder, remote_addr=addr)
    try:
        assert isinstance(server, asyncio.BaseTransport)  # (a DatagramTransport from 3.13 on)
        assert sp.events == ["made"] and cp.events == ["made"]
        assert server.get_extra_info("peername") is None
        assert client.get_extra_info("peername") == addr
        csock = client.get_extra_info("socket")
        assert csock.fileno() >= 0 and csock.type == socket.SOCK_DGRAM
        assert client.get_extra_info("sockname") == csock.getsockname()
        assert client.get_extra_info("nonexistent", "dflt") == "dflt"

        client.sendto(b"ping")
        await sp.wait_count(1)
        data, caddr = sp.datagrams[0]
        assert data == b"ping" and caddr == client.get_extra_info("sockname")
        server.sendto(b"pong", caddr)
        await cp.wait_count(1)
        assert cp.datagrams[0] == (b"pong", addr)
        # A connected endpoint also accepts its own address explicitly.
        client.sendto(bytearray(b"again"), addr)
        client.sendto(memoryview(b"xxmemxx")[2:5])
        await sp.wait_count(3)
        assert [d for d, _ in sp.datagrams] == [b"ping", b"again", b"mem"]
        assert server.get_write_buffer_size() == 0
        assert not server.is_closing()
    finally:
        await closed(client)
        await closed(server)
    assert sp.events[-1] == "lost" and sp.lost_count == 1 and sp.lost.result() is None
    assert cp.lost_count == 1


@pytest.mark.asyncio
async def test_burst_of_1000_datagrams_is_delivered_whole():
    """A burst queued in the kernel before the loop looks: one edge, then silence.  Every datagram
    must still arrive (edge mode drains under a budget and continues from the I/O ready list)."""
    loop = asyncio.get_running_loop()
    tr, pr = await loop.create_datagram_endpoint(DatagramRecorder, local_addr=LOOPBACK)
    sender = raw_udp()
    try:
        rsock = tr.get_extra_info("socket")
        rsock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
        if rsock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF) < 4 << 20:
            pytest.skip("net.core.rmem_max too small to queue the burst")
        addr = tr.get_extra_info("sockname")
        before = stats()
        payloads = [i.to_bytes(4, "big") * 128 for i in range(1000)]
        for p in payloads:
            sender.sendto(p, addr)  # all queued before the loop runs again
        await pr.wait_count(1000)
        await asyncio.sleep(0.02)
        assert [d for d, _ in pr.datagrams] == payloads  # loopback keeps the order
        assert {a for _, a in pr.datagrams} == {sender.getsockname()}
        after = stats()
        if before is not None and loop.trigger == "edge":
            assert after["cutoffs"] - before["cutoffs"] >= 1000 // 64 - 1
    finally:
        sender.close()
        await closed(tr)


@pytest.mark.asyncio
async def test_empty_datagram_is_a_datagram_not_eof():
    loop = asyncio.get_running_loop()
    tr, pr = await loop.create_datagram_endpoint(DatagramRecorder, local_addr=LOOPBACK)
    sender = raw_udp()
    try:
        addr = tr.get_extra_info("sockname")
        sender.sendto(b"", addr)
        sender.sendto(b"after", addr)
        sender.sendto(b"", addr)
        await pr.wait_count(3)
        assert [d for d, _ in pr.datagrams] == [b"", b"after", b""]
        assert not tr.is_closing() and not pr.lost.done()
        sender.sendto(b"still open", addr)
        await pr.wait_count(4)
    finally:
        sender.close()
        await closed(tr)


@pytest.mark.asyncio
@pytest.mark.skipif(not SENDS_EMPTY, reason="the stdlib drops empty datagrams before 3.13")
async def test_sendto_empty_datagram():
    loop = asyncio.get_running_loop()
    peer = raw_udp()
    tr, pr = await loop.create_datagram_endpoint(DatagramRecorder,
                                                 remote_addr=peer.getsockname())
    try:
        tr.sendto(b"")
        tr.sendto(b"x")
        assert await recv_datagram(peer) == (b"", tr.get_extra_info("sockname"))
        assert (await recv_datagram(peer))[0] == b"x"
    finally:
        peer.close()
        await closed(tr)


# --------------------------------------------------------------------------------------------
# errors

@pytest.mark.asyncio
async def test_icmp_port_unreachable_goes_to_error_received():
    """A connected UDP socket sending to a closed port gets ICMP port unreachable back; the kernel
    reports it as ConnectionRefusedError on the socket: error_received, not a closed transport."""
    loop = asyncio.get_running_loop()
    port = closed_udp_port()
    tr, pr = await loop.create_datagram_endpoint(DatagramRecorder,
                                                 remote_addr=("127.0.0.1", port))
    try:
        tr.sendto(b"anyone?")
        exc = await pr.wait_error()
        assert isinstance(exc, ConnectionRefusedError)
        assert not tr.is_closing() and not pr.lost.done()
        # Still usable: the next error is reported too, nothing was torn down.
        pr.errors.clear()
        tr.sendto(b"anyone now?")
        assert isinstance(await pr.wait_error(), ConnectionRefusedError)
        assert pr.datagrams == []
    finally:
        await closed(tr)
    assert pr.lost.result() is None


@pytest.mark.asyncio
async def test_datagrams_queued_behind_an_error_are_delivered():
    """An ICMP error and datagrams queued together: the error is reported and the drain goes on
    (edge mode must not stop at the error, or the datagrams would wait for a new edge)."""
    loop = asyncio.get_running_loop()
    peer = raw_udp()
    tr, pr = await loop.create_datagram_endpoint(DatagramRecorder,
                                                 remote_addr=peer.getsockname())
    try:
        addr = tr.get_extra_info("sockname")
        port = peer.getsockname()
        peer.close()
        tr.sendto(b"x")                  # ICMP error queued on our socket
        await pr.wait_error()
        peer = raw_udp(bind=False)
        peer.bind(port)                  # the port is open again
        tr.sendto(b"y")
        assert (await recv_datagram(peer))[0] == b"y"
        for i in range(3):
            peer.sendto(b"%d" % i, addr)
        await pr.wait_count(3)
        assert [d for d, _ in pr.datagrams] == [b"0", b"1", b"2"]
    finally:
        peer.close()
        await closed(tr)


@pytest.mark.asyncio
async def test_sendto_argument_errors():
    loop = asyncio.get_running_loop()
    peer = raw_udp()
    tr, pr = await loop.create_datagram_endpoint(DatagramRecorder,
                                                 remote_addr=peer.getsockname())
    try:
        with pytest.raises(TypeError):
            tr.sendto("text")
        with pytest.raises(TypeError):
            tr.sendto(12)
        other = ("127.0.0.1", peer.getsockname()[1] + 1)
        with pytest.raises(ValueError, match="Invalid address"):
            tr.sendto(b"x", other)
        assert not tr.is_closing()
        tr.sendto(b"ok", peer.getsockname())
        assert (await recv_datagram(peer))[0] == b"ok"
    finally:
        peer.close()
        await closed(tr)


@pytest.mark.asyncio
async def test_sendto_without_address_on_unconnected_endpoint_is_fatal():
    """Like the stdlib: the socket refuses the missing address with TypeError, which closes the
    transport and goes to the exception handler."""
    loop = asyncio.get_running_loop()
    tr, pr = await loop.create_datagram_endpoint(DatagramRecorder, local_addr=LOOPBACK)
    with ExceptionCatcher(loop) as catcher:
        tr.sendto(b"where to?")
        exc = await asyncio.wait_for(asyncio.shield(pr.lost), 5)
    assert isinstance(exc, TypeError)
    assert tr.is_closing() and pr.lost_count == 1
    assert [type(c.get("exception")) for c in catcher.contexts] == [TypeError]


@pytest.mark.asyncio
async def test_protocol_exception_does_not_close_the_transport():
    loop = asyncio.get_running_loop()

    class Fussy(DatagramRecorder):
        def datagram_received(self, data, addr):
            super().datagram_received(data, addr)
            if data == b"boom":
                raise RuntimeError("boom")

    tr, pr = await loop.create_datagram_endpoint(Fussy, local_addr=LOOPBACK)
    sender = raw_udp()
    try:
        with ExceptionCatcher(loop) as catcher:
            for d in (b"boom", b"after"):
                sender.sendto(d, tr.get_extra_info("sockname"))
            await pr.wait_count(2)
            await asyncio.sleep(0.01)
        assert [d for d, _ in pr.datagrams] == [b"boom", b"after"]
        assert not tr.is_closing()
        assert [type(c.get("exception")) for c in catcher.contexts] == [RuntimeError]
    finally:
        sender.close()
        await closed(tr)


# --------------------------------------------------------------------------------------------
# create_datagram_endpoint arguments

@pytest.mark.asyncio
async def test_endpoint_argument_errors():
    loop = asyncio.get_running_loop()
    with pytest.raises(ValueError, match="unexpected address family"):
        await loop.create_datagram_endpoint(DatagramRecorder)
    with pytest.raises(TypeError):
        await loop.create_datagram_endpoint(DatagramRecorder, local_addr=LOOPBACK,
                                            reuse_address=True)
    with pytest.raises(TypeError, match="2-tuple"):
        await loop.create_datagram_endpoint(DatagramRecorder, local_addr="127.0.0.1")
    with pytest.raises(TypeError, match="2-tuple"):
        await loop.create_datagram_endpoint(DatagramRecorder, remote_addr=("127.0.0.1", 1, 2))
    with pytest.raises(TypeError, match="string is expected"):
        await loop.create_datagram_endpoint(DatagramRecorder, family=socket.AF_UNIX,
                                            local_addr=("x", 1))
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as stream:
        with pytest.raises(ValueError):
            await loop.create_datagram_endpoint(DatagramRecorder, sock=stream)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as dgram:
        with pytest.raises(ValueError, match="socket modifier"):
            await loop.create_datagram_endpoint(DatagramRecorder, sock=dgram,
                                                local_addr=LOOPBACK)
        with pytest.raises(ValueError, match="socket modifier"):
            await loop.create_datagram_endpoint(DatagramRecorder, sock=dgram, reuse_port=True)
    # A port in use: the OSError of bind() comes out unchanged.
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind(LOOPBACK)
        with pytest.raises(OSError) as info:
            await loop.create_datagram_endpoint(DatagramRecorder,
                                                local_addr=taken.getsockname())
        assert info.value.errno == errno.EADDRINUSE


@pytest.mark.asyncio
async def test_endpoint_from_socket_and_family_only():
    loop = asyncio.get_running_loop()
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(LOOPBACK)
    tr, pr = await loop.create_datagram_endpoint(DatagramRecorder, sock=sock)
    tr2, pr2 = await loop.create_datagram_endpoint(DatagramRecorder, family=socket.AF_INET)
    try:
        assert tr.get_extra_info("socket").fileno() == sock.fileno()
        assert not sock.getblocking()
        tr2.sendto(b"hi", sock.getsockname())  # unconnected: an address each time
        await pr.wait_count(1)
        assert pr.datagrams[0][0] == b"hi"
    finally:
        await closed(tr)
        await closed(tr2)
    assert sock.fileno() == -1  # the transport owned it


@pytest.mark.asyncio
async def test_reuse_port_and_allow_broadcast():
    loop = asyncio.get_running_loop()
    tr, pr = await loop.create_datagram_endpoint(DatagramRecorder, local_addr=LOOPBACK,
                                                 reuse_port=True)
    peer = raw_udp()
    # allow_broadcast: SO_BROADCAST, and the remote address is a default, not a connection.
    btr, bpr = await loop.create_datagram_endpoint(
        DatagramRecorder, remote_addr=peer.getsockname(), allow_broadcast=True)
    try:
        sock = tr.get_extra_info("socket")
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT)
        bsock = btr.get_extra_info("socket")
        assert bsock.getsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST)
        assert btr.get_extra_info("peername") is None
        btr.sendto(b"default address")
        assert (await recv_datagram(peer))[0] == b"default address"
    finally:
        peer.close()
        await closed(tr)
        await closed(btr)


# --------------------------------------------------------------------------------------------
# Unix datagram sockets

@pytest.mark.asyncio
async def test_unix_datagram_endpoints_by_path():
    loop = asyncio.get_running_loop()
    tmpdir, spath = short_unix_path("srv")
    cpath = os.path.join(tmpdir, "cli")
    try:
        server, sp = await loop.create_datagram_endpoint(
            DatagramRecorder, local_addr=spath, family=socket.AF_UNIX)
        client, cp = await loop.create_datagram_endpoint(
            DatagramRecorder, local_addr=cpath, remote_addr=spath, family=socket.AF_UNIX)
        try:
            assert server.get_extra_info("sockname") == spath
            assert client.get_extra_info("peername") == spath
            client.sendto(b"hello unix")
            client.sendto(b"")
            client.sendto(b"end")
            await sp.wait_count(2 + SENDS_EMPTY)
            expected = [b"hello unix", b""] if SENDS_EMPTY else [b"hello unix"]
            assert sp.datagrams == [(d, cpath) for d in expected + [b"end"]]
            server.sendto(b"reply", cpath)
            await cp.wait_count(1)
            assert cp.datagrams == [(b"reply", spath)]
        finally:
            await closed(client)
            await closed(server)
        # The socket files stay (as in the stdlib); a new endpoint replaces a stale one.
        assert os.path.exists(spath)
        server, sp = await loop.create_datagram_endpoint(
            DatagramRecorder, local_addr=spath, family=socket.AF_UNIX)
        await closed(server)
    finally:
        for p in (spath, cpath):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(p)
        os.rmdir(tmpdir)


# --------------------------------------------------------------------------------------------
# write buffer, flow control, close and abort
#
# A Unix datagram socket makes the sender block (EAGAIN) once the receiver's queue is full, which
# UDP over loopback never does: the datagrams would be dropped instead.  (The peer is bound to a
# path rather than made with socketpair(): the stdlib takes an unnamed peer, whose name is "", for
# an unconnected socket.)

@contextlib.asynccontextmanager
async def unix_sender(protocol_factory=None):
    """Yield (transport, protocol, peer): a transport connected to a raw bound Unix datagram
    socket that does not read until told to."""
    loop = asyncio.get_running_loop()
    tmpdir, path = short_unix_path("peer")
    peer = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    peer.setblocking(False)
    try:
        peer.bind(path)
        tr, pr = await loop.create_datagram_endpoint(protocol_factory or DatagramRecorder,
                                                     remote_addr=path, family=socket.AF_UNIX)
        try:
            yield tr, pr, peer
        finally:
            if not tr.is_closing():
                tr.abort()
            await asyncio.wait_for(asyncio.shield(pr.lost), 5)
    finally:
        peer.close()
        os.unlink(path)
        os.rmdir(tmpdir)


async def _fill(tr: asyncio.DatagramTransport, size: int = 1024, limit: int = 10_000) -> list[bytes]:
    """sendto() until the transport buffers; returns what was sent, in order."""
    sent = []
    for i in range(limit):
        d = i.to_bytes(4, "big") * (size // 4)
        tr.sendto(d)
        sent.append(d)
        if tr.get_write_buffer_size() > 0:
            return sent
    raise AssertionError("the kernel never refused a datagram")


async def _drain_peer(peer: socket.socket, count: int, timeout: float = 10.0) -> list[bytes]:
    loop = asyncio.get_running_loop()
    got = []

    async def go():
        while len(got) < count:
            got.append(await loop.sock_recv(peer, 65536))

    await asyncio.wait_for(go(), timeout)
    return got


@pytest.mark.asyncio
async def test_flow_control_pause_and_resume_writing():
    async with unix_sender() as (tr, pr, peer):
        assert tr.get_write_buffer_limits() == (16384, 65536)
        tr.set_write_buffer_limits(high=8192, low=2048)
        assert tr.get_write_buffer_limits() == (2048, 8192)
        with pytest.raises(ValueError):
            tr.set_write_buffer_limits(high=10, low=20)
        sent = await _fill(tr)
        assert pr.pauses == 0
        while pr.pauses == 0:
            d = len(sent).to_bytes(4, "big") * 256
            tr.sendto(d)
            sent.append(d)
        assert tr.get_write_buffer_size() > 8192
        assert pr.events.count("pause_writing") == 1
        got = await _drain_peer(peer, len(sent))
        assert got == sent
        for _ in range(100):
            if pr.resumes:
                break
            await asyncio.sleep(0.01)
        assert pr.resumes == 1
        if not REFERENCE:  # Python 3.13.0 adds 8 bytes per buffered datagram, removes 0
            assert tr.get_write_buffer_size() == 0
        assert pr.events.index("pause_writing") < pr.events.index("resume_writing")


@pytest.mark.asyncio
async def test_close_flushes_the_buffer_then_connection_lost():
    async with unix_sender() as (tr, pr, peer):
        sent = await _fill(tr)
        sent.append(b"last")
        tr.sendto(b"last")
        tr.close()
        assert tr.is_closing()
        await asyncio.sleep(0.02)
        assert not pr.lost.done()  # waits for the buffer
        got = await _drain_peer(peer, len(sent))
        assert got == sent
        assert await asyncio.wait_for(asyncio.shield(pr.lost), 5) is None
        assert pr.lost_count == 1


@pytest.mark.asyncio
async def test_abort_drops_the_buffer():
    async with unix_sender() as (tr, pr, peer):
        await _fill(tr)
        tr.abort()
        assert tr.is_closing()
        assert await asyncio.wait_for(asyncio.shield(pr.lost), 5) is None
        if not REFERENCE:  # the stdlib empties its buffer but forgets to zero the size
            assert tr.get_write_buffer_size() == 0
        tr.abort()
        tr.close()
        tr.sendto(b"after the end")  # ignored
        await asyncio.sleep(0.01)
        assert pr.lost_count == 1


@pytest.mark.asyncio
async def test_close_twice_and_sendto_after_close():
    loop = asyncio.get_running_loop()
    peer = raw_udp()
    tr, pr = await loop.create_datagram_endpoint(DatagramRecorder,
                                                 remote_addr=peer.getsockname())
    try:
        tr.close()
        tr.close()
        await asyncio.wait_for(asyncio.shield(pr.lost), 5)
        tr.sendto(b"too late")
        await asyncio.sleep(0.01)
        assert pr.lost_count == 1 and pr.events == ["made", "lost"]
        with pytest.raises(BlockingIOError):
            peer.recv(10)
    finally:
        peer.close()


@pytest.mark.asyncio
async def test_close_from_datagram_received_stops_delivery():
    loop = asyncio.get_running_loop()

    class CloseOnFirst(DatagramRecorder):
        def datagram_received(self, data, addr):
            super().datagram_received(data, addr)
            self.transport.close()

    tr, pr = await loop.create_datagram_endpoint(CloseOnFirst, local_addr=LOOPBACK)
    sender = raw_udp()
    try:
        for i in range(10):
            sender.sendto(b"%d" % i, tr.get_extra_info("sockname"))
        await asyncio.wait_for(asyncio.shield(pr.lost), 5)
        assert len(pr.datagrams) == 1 and pr.lost_count == 1
    finally:
        sender.close()


@pytest.mark.asyncio
async def test_callbacks_scheduled_before_arrival_run_before_datagram_received():
    """The stdlib order: a datagram that arrives while callbacks are queued is delivered after
    them.  Code that sends and then (in a new task) creates the future datagram_received
    resolves depends on it (CPython's test_datagram_send_to_non_listening_address does)."""
    loop = asyncio.get_running_loop()

    class Waiting(DatagramRecorder):
        expecting: asyncio.Future | None = None

        def datagram_received(self, data, addr):
            super().datagram_received(data, addr)
            self.expecting.set_result(data)  # AttributeError if the task has not run yet

    tr, pr = await loop.create_datagram_endpoint(Waiting, local_addr=LOOPBACK)
    sender = raw_udp()

    async def expect():
        pr.expecting = loop.create_future()
        return await asyncio.wait_for(pr.expecting, 5)

    try:
        with ExceptionCatcher(loop) as catcher:
            for i in range(5):
                sender.sendto(b"%d" % i, tr.get_extra_info("sockname"))  # queued at once
                assert await loop.create_task(expect()) == b"%d" % i
        assert catcher.contexts == []
    finally:
        sender.close()
        await closed(tr)


@pytest.mark.skipif(REFERENCE, reason="the stdlib raises when its loop is closed")
def test_closing_after_the_loop_is_closed(loop_factory):
    loop = loop_factory()
    tr, pr = loop.run_until_complete(
        loop.create_datagram_endpoint(asyncio.DatagramProtocol, local_addr=LOOPBACK))
    sock = tr.get_extra_info("socket")
    loop.close()
    tr.close()
    assert sock.fileno() == -1 and tr.is_closing()
