"""The exception barrier of the loop's dispatch (edgeloop.descriptors, EventLoop._dispatch).

An exception escaping a handler goes to the loop's exception handler (with the handler and the fd),
the transport concerned is aborted with ``connection_lost(exc)``, and the rest of the batch and the
deferred list are still served in the same iteration.  SystemExit/KeyboardInterrupt propagate out
of ``run_forever`` with nothing lost: a second run serves the rest of the batch.  A connection the
server cannot set up (the poller refuses its socket) is closed and reported; the server keeps
serving and ``wait_closed()`` does not wait for it.
"""
from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import socket
import sys
import time

import pytest

from edgeloop.transports.stream import StreamTransport
from tests._looputil import edgeloop_only
from tests._streamutil import stats

pytestmark = edgeloop_only

N = 10


class Peer(asyncio.Protocol):
    """Server side of one connection: records the data and the poll count at which it came."""

    def __init__(self, registry: list["Peer"], fail_with: BaseException | None = None) -> None:
        self.registry = registry
        self.fail_with = fail_with
        self.data = b""
        self.polls: list[int] = []
        self.lost: list[BaseException | None] = []
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.registry.append(self)

    def data_received(self, data: bytes) -> None:
        self.data += data
        self.polls.append(stats()["polls"])
        if self.fail_with is not None:
            exc, self.fail_with = self.fail_with, None
            raise exc

    def connection_lost(self, exc: BaseException | None) -> None:
        self.lost.append(exc)


async def _wait_for(predicate, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.005)


async def _server_with_clients(n: int, factory):
    loop = asyncio.get_running_loop()
    server = await loop.create_server(factory, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    clients = [socket.create_connection(("127.0.0.1", port)) for _ in range(n)]
    return server, clients


def _send_all_at_once(clients: list[socket.socket], payload: bytes) -> None:
    """Queue data on every connection, then block the loop so that one poll sees them all."""
    for c in clients:
        c.sendall(payload)
    time.sleep(0.05)


def _catch(loop: asyncio.AbstractEventLoop) -> list[dict]:
    seen: list[dict] = []
    loop.set_exception_handler(lambda lp, ctx: seen.append(ctx))
    return seen


@pytest.mark.asyncio
async def test_failing_handler_in_a_batch_of_ten():
    """``_on_events`` of one of ten ready transports raises: reported with handler and fd, that
    transport is aborted with connection_lost(exc), the other nine are served in the same poll."""
    loop = asyncio.get_running_loop()
    seen = _catch(loop)
    peers: list[Peer] = []
    server, clients = await _server_with_clients(N, lambda: Peer(peers))
    try:
        await _wait_for(lambda: len(peers) == N)
        victim = peers[4]
        boom = RuntimeError("handler bug")

        def broken(mask: int) -> None:
            raise boom

        victim.transport._on_events = broken  # type: ignore[union-attr]
        victim_fd = victim.transport.get_extra_info("socket").fileno()
        _send_all_at_once(clients, b"ping")
        others = [p for p in peers if p is not victim]
        await _wait_for(lambda: all(p.data == b"ping" for p in others) and victim.lost)

        assert victim.data == b""
        assert victim.lost == [boom]
        assert len({p.polls[0] for p in others}) == 1, "the nine were not served in one batch"
        assert [ctx["exception"] for ctx in seen] == [boom]
        ctx = seen[0]
        assert ctx["fd"] == victim_fd
        assert ctx["handler"] is victim.transport and ctx["transport"] is victim.transport
        assert ctx["protocol"] is victim
        # The loop is still usable: the nine answer again.
        for p in others:
            p.transport.write(b"pong")
        for c in clients:
            if c is not clients[4]:
                assert c.recv(16) == b"pong"
    finally:
        for c in clients:
            c.close()
        server.close()
        await asyncio.wait_for(server.wait_closed(), 5)


@pytest.mark.asyncio
async def test_failing_protocol_in_a_batch_of_ten():
    """A protocol's data_received raises for one of ten ready connections: that connection ends
    with connection_lost(exc) and the error is reported; the other nine are served in one poll."""
    loop = asyncio.get_running_loop()
    seen = _catch(loop)
    peers: list[Peer] = []
    boom = ZeroDivisionError("protocol bug")
    made = 0

    def factory() -> Peer:
        nonlocal made
        made += 1
        return Peer(peers, fail_with=boom if made == 5 else None)

    server, clients = await _server_with_clients(N, factory)
    try:
        await _wait_for(lambda: len(peers) == N)
        _send_all_at_once(clients, b"ping")
        await _wait_for(lambda: all(p.data == b"ping" for p in peers) and any(p.lost for p in peers))
        victims = [p for p in peers if p.lost]
        assert [v.lost for v in victims] == [[boom]]
        assert len({p.polls[0] for p in peers}) == 1
        assert [ctx["exception"] for ctx in seen] == [boom]
    finally:
        for c in clients:
            c.close()
        server.close()
        await asyncio.wait_for(server.wait_closed(), 5)


class _Deferred:
    """A minimal handler (the descriptors.Handler protocol) for the deferred list."""

    _is_transport = False

    def __init__(self, log: list[str], name: str, fail: bool = False) -> None:
        self._deferred = False
        self.log = log
        self.name = name
        self.fail = fail
        self.errors: list[BaseException] = []

    def _on_events(self, mask: int) -> None:  # never registered
        raise AssertionError("not registered")

    def _on_deferred(self) -> None:
        if self.fail:
            raise ValueError(self.name)
        self._deferred = False
        self.log.append(self.name)

    def _on_handler_error(self, exc: BaseException) -> None:
        self.errors.append(exc)


@pytest.mark.asyncio
async def test_failing_on_deferred_does_not_strand_the_others():
    loop = asyncio.get_running_loop()
    seen = _catch(loop)
    log: list[str] = []
    a = _Deferred(log, "a", fail=True)
    b = _Deferred(log, "b")
    c = _Deferred(log, "c")
    for h in (a, b, c):
        loop.io.defer(h)
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert log == ["b", "c"]
    assert [type(ctx["exception"]) for ctx in seen] == [ValueError]
    assert seen[0]["handler"] is a
    assert len(a.errors) == 1
    # None of them is left marked as deferred: each can be deferred again.
    assert not (a._deferred or b._deferred or c._deferred)
    a.fail = False
    loop.io.defer(a)
    loop.io.defer(b)
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert log == ["b", "c", "a", "b"]


def _echo_factory(peers: list):
    class Echo(asyncio.Protocol):
        def connection_made(self, transport):
            self.transport = transport
            peers.append(self)

        def data_received(self, data):
            self.transport.write(data)

    return Echo


async def _check_server_still_serves(port: int) -> None:
    loop = asyncio.get_running_loop()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"still here")
    assert await asyncio.wait_for(reader.readexactly(10), 5) == b"still here"
    writer.close()
    await writer.wait_closed()
    del loop


async def _refused_connection_is_closed(port: int) -> None:
    """A client of a connection the server could not set up sees it closed (EOF or reset)."""
    loop = asyncio.get_running_loop()
    c = socket.create_connection(("127.0.0.1", port))
    c.setblocking(False)
    try:
        data = await asyncio.wait_for(loop.sock_recv(c, 16), 5)
        assert data == b""
    except ConnectionResetError:
        pass
    finally:
        c.close()


@pytest.mark.asyncio(loop_factories=["edge", "level", "poll"])
async def test_registration_failure_during_accept(loop_config):
    """The poller refuses an accepted socket (ENOSPC, as from max_user_watches): that socket is
    closed and reported, the server keeps serving, wait_closed() returns."""
    loop = asyncio.get_running_loop()
    seen = _catch(loop)
    peers: list = []
    server = await loop.create_server(_echo_factory(peers), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    poller = loop._poller
    real_register, real_kernel = poller.register, poller._register
    refused: list[int] = []

    def kernel_refuses(fd: int, events: int) -> None:
        refused.append(fd)
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def register(fd, handler, events, edge=False):
        # Only the first accepted connection's socket is refused, by the "kernel" call.
        poller._register = kernel_refuses if isinstance(handler, StreamTransport) and not refused \
            else real_kernel
        try:
            return real_register(fd, handler, events, edge)
        finally:
            poller._register = real_kernel

    poller.register = register
    try:
        await _refused_connection_is_closed(port)
        assert refused and not peers
        assert len(seen) == 1 and isinstance(seen[0]["exception"], OSError)
        assert seen[0]["exception"].errno == errno.ENOSPC
        assert refused[0] not in poller.handlers
        assert not server._clients
        await _check_server_still_serves(port)
    finally:
        del poller.register
        server.close()
        await asyncio.wait_for(server.wait_closed(), 5)


@contextlib.contextmanager
def _accepted_gets_1024():
    """Numbers below 1023 taken (1023 is left for the client socket), so that the next accepted
    socket gets 1024, past select's FD_SETSIZE."""
    fillers = [os.open(os.devnull, os.O_RDONLY)]
    try:
        while fillers[-1] < 1022:
            fillers.append(os.dup(fillers[0]))
        yield
    finally:
        for fd in fillers:
            os.close(fd)


@pytest.mark.asyncio(loop_factories=["select"])
@pytest.mark.usefixtures("high_fd_limit")
async def test_select_serves_an_accepted_socket_over_1024():
    """On the select backend an accepted socket numbered >= FD_SETSIZE is served (libc's select
    through ctypes).  Where ctypes is missing it cannot be watched: it is closed and reported
    (ValueError), and the server serves the next connection."""
    from edgeloop import cselect

    loop = asyncio.get_running_loop()
    seen = _catch(loop)
    peers: list = []
    server = await loop.create_server(_echo_factory(peers), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        with _accepted_gets_1024():
            with pytest.MonkeyPatch.context() as mp:  # ctypes missing
                mp.setattr(cselect, "_loaded", None)
                mp.setitem(sys.modules, "ctypes", None)
                mp.setattr(loop._poller, "_libc", None, raising=False)
                await _refused_connection_is_closed(port)
            assert not peers
            assert len(seen) == 1 and isinstance(seen[0]["exception"], ValueError)
            assert "out of range for select" in str(seen[0]["exception"])
            assert not server._clients
            seen.clear()

            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            try:
                await _wait_for(lambda: len(peers) == 1)
                assert peers[0].transport.get_extra_info("socket").fileno() == 1024
                payload = os.urandom(1 << 20)
                writer.write(payload)
                assert await asyncio.wait_for(reader.readexactly(len(payload)), 10) == payload
            finally:
                writer.close()
                await writer.wait_closed()
        assert not seen
        await _check_server_still_serves(port)
        assert len(peers) == 2
    finally:
        server.close()
        await asyncio.wait_for(server.wait_closed(), 5)


def test_keyboard_interrupt_from_a_protocol_loses_nothing(loop_factory):
    """KeyboardInterrupt from data_received leaves run_forever; a second run serves the rest of
    the batch (edge-triggered, nothing would ever report those descriptors again)."""
    loop = loop_factory()
    pairs = [socket.socketpair() for _ in range(N + 1)]
    try:
        received: dict[int, bytes] = {}

        class Proto(asyncio.Protocol):
            def __init__(self, index: int) -> None:
                self.index = index

            def data_received(self, data: bytes) -> None:
                received[self.index] = received.get(self.index, b"") + data
                if self.index == 0:
                    raise KeyboardInterrupt

        async def connect():
            out = []
            for i, (ours, _) in enumerate(pairs):
                tr, _ = await loop.connect_accepted_socket(lambda i=i: Proto(i), ours)
                out.append(tr)
            return out

        transports = loop.run_until_complete(connect())
        for i, (_, theirs) in enumerate(pairs):
            theirs.sendall(b"x%d" % i)
        time.sleep(0.02)
        loop.call_later(2, loop.stop)  # the test's own safety net
        with pytest.raises(KeyboardInterrupt):
            loop.run_forever()
        assert received[0] == b"x0"
        assert loop._leftover or len(received) == N + 1
        loop.call_soon(loop.stop)
        loop.run_forever()  # one iteration: the rest of the interrupted batch
        assert received == {i: b"x%d" % i for i in range(N + 1)}
        for tr in transports:
            tr.close()
        loop.call_soon(loop.stop)
        loop.run_forever()
    finally:
        for a, b in pairs:
            a.close()
            b.close()
        loop.close()


# ---------------------------------------------------------------------- interrupts, more paths

def _connect_all(loop, factories):
    pairs = [socket.socketpair() for _ in factories]

    async def connect():
        return [(await loop.connect_accepted_socket(f, a))[0]
                for f, (a, _) in zip(factories, pairs)]

    return pairs, loop.run_until_complete(connect())


def _close_all(loop, pairs, transports):
    for tr in transports:
        tr.close()
    loop.call_soon(loop.stop)
    loop.run_forever()
    for a, b in pairs:
        a.close()
        b.close()
    loop.close()


def _run_a_little(loop, seconds=0.2):
    loop.call_later(seconds, loop.stop)
    loop.run_forever()


def test_keyboard_interrupt_from_a_callback_keeps_the_polls_events(loop_factory):
    """A ready callback raising KeyboardInterrupt in the iteration whose poll found data: the
    data still reaches the protocol on the next run (edge-triggered, nothing reports it again)."""
    loop = loop_factory()
    got: list[bytes] = []

    class P(asyncio.Protocol):
        def data_received(self, data):
            got.append(data)

    pairs, transports = _connect_all(loop, [P])

    def interrupt():
        raise KeyboardInterrupt

    pairs[0][1].send(b"hello")
    loop.call_soon(interrupt)
    with pytest.raises(KeyboardInterrupt):
        loop.run_forever()
    _run_a_little(loop)
    assert got == [b"hello"]
    _close_all(loop, pairs, transports)


def test_keyboard_interrupt_mid_drain_delivers_the_rest_next_run(loop_factory):
    """data_received raises KeyboardInterrupt on the first chunk of a long drain: the rest of
    the queued bytes are delivered by the next run."""
    loop = loop_factory()
    sizes: list[int] = []

    class P(asyncio.Protocol):
        def data_received(self, data):
            sizes.append(len(data))
            if len(sizes) == 1:
                raise KeyboardInterrupt

    pairs, transports = _connect_all(loop, [P])
    sender = pairs[0][1]
    sender.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
    sender.sendall(b"x" * 150_000)
    with pytest.raises(KeyboardInterrupt):
        loop.run_forever()
    _run_a_little(loop, 0.3)
    assert sum(sizes) == 150_000
    _close_all(loop, pairs, transports)


def test_system_exit_from_the_exception_handler_loses_nothing(loop_factory):
    """The exception handler itself raises SystemExit while a failing handler is reported: the
    failing transport is still aborted, and the rest of the batch is served by the next run."""
    loop = loop_factory()
    got: dict[int, list] = {1: [], 2: []}
    lost: dict[int, list] = {1: [], 2: []}

    def factory(i):
        class P(asyncio.Protocol):
            def data_received(self, data):
                got[i].append(data)

            def connection_lost(self, exc):
                lost[i].append(exc)
        return P

    pairs, (t1, t2) = _connect_all(loop, [factory(1), factory(2)])
    boom = RuntimeError("handler bug")
    order: list[int] = []

    def first_fails(which, real):
        def on_events(mask):
            order.append(which)
            if len(order) == 1:
                raise boom
            real(mask)
        return on_events

    t1._on_events = first_fails(1, t1._on_events)
    t2._on_events = first_fails(2, t2._on_events)

    def handler(loop, context):
        raise SystemExit(3)

    loop.set_exception_handler(handler)
    pairs[0][1].send(b"x")
    pairs[1][1].send(b"y")
    time.sleep(0.02)
    with pytest.raises(SystemExit):
        loop.run_forever()
    loop.set_exception_handler(None)
    _run_a_little(loop)
    failed, other = order[0], 3 - order[0]
    assert got[other] == [b"x" if other == 1 else b"y"]
    assert lost[failed] == [boom]  # aborted although the exception handler raised
    _close_all(loop, pairs, [t1, t2])


def test_system_exit_while_serving_the_deferred_list_keeps_the_others_deferred(loop_factory):
    loop = loop_factory()
    log: list[str] = []
    a = _Deferred(log, "a", fail=True)
    b = _Deferred(log, "b")

    def handler(loop, context):
        raise SystemExit(3)

    loop.set_exception_handler(handler)
    loop.io.defer(a)
    loop.io.defer(b)
    loop.call_soon(loop.stop)
    with pytest.raises(SystemExit):
        loop.run_forever()
    assert b._deferred and b in loop._deferred  # still on the list, with its flag
    loop.set_exception_handler(None)
    a.fail = False
    loop.call_soon(loop.stop)
    loop.run_forever()
    loop.call_soon(loop.stop)
    loop.run_forever()
    assert "b" in log
    loop.close()
