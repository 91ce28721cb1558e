"""sock_* waits in edge mode: the socket stays registered between calls (``sockets.SockWaits``).

What the design must survive, each with real sockets: waits that cost no ``epoll_ctl``; the
short-read rule and EOF; a socket closed between calls and its number reused, also while a
duplicate keeps the old file (and its epoll entry) alive; a transport or a server taking the
socket over; ``add_reader``/``add_writer``/``remove_*`` on the fd (stdlib behaviour); a
transport's fd refused; ``loop.close()``, garbage collection, ``stats()``/``describe()``; no
reference cycle keeping a socket alive; the exception barrier.  The parity tests run on every
configuration (and on the stdlib loop with EDGELOOP_TESTS_REFERENCE=asyncio); the ones that look
at the registration run in edge mode only.
"""
from __future__ import annotations

import asyncio
import contextlib
import errno
import gc
import os
import socket
import warnings
import weakref

import pytest

try:
    from tests._looputil import REFERENCE, edgeloop_only
except ImportError:  # tests/ itself on sys.path
    from _looputil import REFERENCE, edgeloop_only

def EDGE(fn):
    """Edge mode only (the registration is looked at), and edgeloop only."""
    return edgeloop_only(pytest.mark.asyncio(loop_factories=["edge"])(fn))


@contextlib.contextmanager
def tcp_pair():
    """A connected TCP pair (a, b), both non-blocking."""
    with socket.socket() as lst:
        lst.bind(("127.0.0.1", 0))
        lst.listen(1)
        a = socket.socket()
        a.connect(lst.getsockname())
        b, _ = lst.accept()
    for s in (a, b):
        s.setblocking(False)
    try:
        yield a, b
    finally:
        a.close()
        b.close()


@contextlib.contextmanager
def tcp_listener(backlog: int = 16):
    srv = socket.socket()
    try:
        srv.bind(("127.0.0.1", 0))
        srv.listen(backlog)
        srv.setblocking(False)
        yield srv
    finally:
        srv.close()


def socket_on_number(fd: int) -> socket.socket:
    """A new TCP socket whose descriptor is ``fd`` (free now; lower free numbers are filled
    first, then freed again)."""
    extra = []
    try:
        while True:
            s = socket.socket()
            if s.fileno() == fd:
                return s
            if s.fileno() > fd:
                s.close()
                raise AssertionError(f"descriptor {fd} is not free")
            extra.append(s)
    finally:
        for s in extra:
            s.close()


def reuse_number(fd: int, listener: socket.socket):
    """A TCP socket on descriptor ``fd`` connected to ``listener`` (made before ``fd`` was freed,
    so that it does not take the number), and its accepted peer; both non-blocking."""
    c = socket_on_number(fd)
    c.connect(listener.getsockname())
    listener.settimeout(5)
    peer, _ = listener.accept()
    c.setblocking(False)
    peer.setblocking(False)
    return c, peer


@contextlib.contextmanager
def listening():
    lst = socket.socket()
    try:
        lst.bind(("127.0.0.1", 0))
        lst.listen(4)
        yield lst
    finally:
        lst.close()


async def ticks(n: int = 5) -> None:
    for _ in range(n):
        await asyncio.sleep(0)


@contextlib.asynccontextmanager
async def closed_behind_our_back(loop):
    """A socket ``a`` kept registered by sock_*, a duplicate of its file kept open (``keep``),
    ``a`` closed and its number taken by a new TCP socket ``c``: yields ``(b, keep, c, d)``, with
    ``b`` the old socket's peer and ``d`` the new one's.  The kernel keeps the old file's epoll
    entry: its events arrive under the number."""
    keep = -1
    with listening() as lst:
        a, b = socket.socketpair()
        a.setblocking(False)
        try:
            task = await parked(loop, loop.sock_recv(a, 100))
            b.send(b"registered")
            assert await asyncio.wait_for(task, 5) == b"registered"
            fd = a.fileno()
            keep = os.dup(fd)
            a.close()
            c, d = reuse_number(fd, lst)
            yield b, keep, c, d
        finally:
            if keep >= 0:
                os.close(keep)
            a.close()
            b.close()


async def parked(loop, coro):
    """Start ``coro`` as a task and let it reach its wait."""
    task = loop.create_task(coro)
    await ticks(3)
    assert not task.done()
    return task


def handler(loop, sock):
    return loop.io.handler_of(sock.fileno())


# --------------------------------------------------------------------------------------------
# the registration is kept: no epoll_ctl per wait


@EDGE
@pytest.mark.parametrize("op", ["sock_recv", "sock_recv_into"])
async def test_waits_on_one_socket_cost_no_epoll_ctl(op):
    loop = asyncio.get_running_loop()
    with tcp_pair() as (a, b):
        b.settimeout(5)  # the peer is plain blocking code: only a is the loop's
        buf = bytearray(65536)

        async def one_round(i):
            msg = b"ping %d" % i
            if op == "sock_recv":
                task = await parked(loop, loop.sock_recv(a, 65536))
            else:
                task = await parked(loop, loop.sock_recv_into(a, buf))
            b.send(msg)
            got = await asyncio.wait_for(task, 5)
            assert (got if op == "sock_recv" else bytes(buf[:got])) == msg
            await loop.sock_sendall(a, b"pong")
            assert b.recv(100) == b"pong"

        await one_round(0)  # registers a
        await one_round(1)
        ctl = loop.stats()["ctl"]
        for i in range(2, 40):
            await one_round(i)
        assert loop.stats()["ctl"] == ctl
        row = next(r for r in loop.describe() if r["fd"] == a.fileno())
        assert row["kind"] == "sock" and row["mask"] == "IN|OUT|RDHUP|ET"
        assert row["state"] == ["idle"]


@EDGE
async def test_accept_recvfrom_sendall_waits_cost_no_epoll_ctl():
    loop = asyncio.get_running_loop()
    with tcp_listener() as srv:
        conns = []
        try:
            for i in range(6):
                task = await parked(loop, loop.sock_accept(srv))
                c = socket.socket()
                conns.append(c)
                c.connect(srv.getsockname())
                conn, _ = await asyncio.wait_for(task, 5)
                conns.append(conn)
                if i == 1:
                    ctl = loop.stats()["ctl"]
            assert loop.stats()["ctl"] == ctl
        finally:
            for c in conns:
                c.close()

    a = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    b = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    with a, b:
        for s in (a, b):
            s.bind(("127.0.0.1", 0))
            s.setblocking(False)
        for i in range(6):
            task = await parked(loop, loop.sock_recvfrom(a, 100))
            b.sendto(b"d%d" % i, a.getsockname())
            assert await asyncio.wait_for(task, 5) == (b"d%d" % i, b.getsockname())
            if i == 1:
                ctl = loop.stats()["ctl"]
        assert loop.stats()["ctl"] == ctl

    # a sendall that fills the socket waits for EPOLLOUT, again and again, on one registration
    with tcp_pair() as (a, b):
        a.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        for i in range(4):
            task = loop.create_task(loop.sock_sendall(a, b"x" * (1 << 20)))
            await ticks(3)
            assert not task.done()
            got = 0
            while got < 1 << 20:
                got += len(await asyncio.wait_for(loop.sock_recv(b, 1 << 20), 5))
            await asyncio.wait_for(task, 5)
            if i == 1:
                ctl = loop.stats()["ctl"]
        assert loop.stats()["ctl"] == ctl


@EDGE
async def test_a_short_read_parks_the_next_recv_and_the_next_arrival_wakes_it():
    loop = asyncio.get_running_loop()
    with tcp_pair() as (a, b):
        task = await parked(loop, loop.sock_recv(a, 1000))
        b.send(b"first")
        assert await asyncio.wait_for(task, 5) == b"first"
        waits = handler(loop, a)
        assert waits.readable is False  # the short read emptied the socket
        for i in range(20):
            task = await parked(loop, loop.sock_recv(a, 1000))
            b.send(b"more %d" % i)
            assert await asyncio.wait_for(task, 5) == b"more %d" % i


@pytest.mark.asyncio
async def test_a_burst_read_in_small_pieces_arrives_whole():
    loop = asyncio.get_running_loop()
    with tcp_pair() as (a, b):
        data = os.urandom(200_000)
        task = loop.create_task(loop.sock_sendall(b, data))
        got = bytearray()
        while len(got) < len(data):
            chunk = await asyncio.wait_for(loop.sock_recv(a, 1000), 5)
            assert chunk
            got += chunk
        await asyncio.wait_for(task, 5)
        assert bytes(got) == data


@pytest.mark.asyncio
@pytest.mark.parametrize("parked_first", [True, False], ids=["waiting", "idle"])
async def test_data_and_eof_arriving_together_then_eof_again(parked_first):
    """A FIN queued behind the data raises no further edge: the read stops short in front of it,
    and the next sock_recv must still see EOF (RDHUP suspends the short-read rule)."""
    loop = asyncio.get_running_loop()
    with tcp_pair() as (a, b):
        # one wait first, so that the socket is registered and known to be empty
        task = await parked(loop, loop.sock_recv(a, 65536))
        b.send(b"hello")
        assert await asyncio.wait_for(task, 5) == b"hello"
        if parked_first:
            task = await parked(loop, loop.sock_recv(a, 65536))
        b.send(b"last words")
        b.shutdown(socket.SHUT_WR)
        if parked_first:
            assert await asyncio.wait_for(task, 5) == b"last words"
        else:
            await ticks(3)
            assert await asyncio.wait_for(loop.sock_recv(a, 65536), 5) == b"last words"
        assert await asyncio.wait_for(loop.sock_recv(a, 65536), 5) == b""
        assert await asyncio.wait_for(loop.sock_recv(a, 65536), 5) == b""


@pytest.mark.asyncio
async def test_a_second_concurrent_recv_takes_the_first_ones_place():
    """As the stdlib (and the one-shot path): one reader per descriptor; the newer wait gets the
    data and the older one is never woken, until cancelled."""
    loop = asyncio.get_running_loop()
    with tcp_pair() as (a, b):
        first = await parked(loop, loop.sock_recv(a, 100))
        second = await parked(loop, loop.sock_recv(a, 100))
        b.send(b"data")
        assert await asyncio.wait_for(second, 5) == b"data"
        await ticks(5)
        assert not first.done()
        first.cancel()
        with pytest.raises(asyncio.CancelledError):
            await first
        b.send(b"again")
        assert await asyncio.wait_for(loop.sock_recv(a, 100), 5) == b"again"


# --------------------------------------------------------------------------------------------
# 1. closed between calls, number reused


@pytest.mark.asyncio
async def test_socket_closed_between_calls_and_its_number_reused():
    loop = asyncio.get_running_loop()
    with listening() as lst:
        a, b = socket.socketpair()
        a.setblocking(False)
        with b:
            task = await parked(loop, loop.sock_recv(a, 100))
            b.send(b"old")
            assert await asyncio.wait_for(task, 5) == b"old"
            fd = a.fileno()
            a.close()
            c, peer = reuse_number(fd, lst)
        with c, peer:
            task = await parked(loop, loop.sock_recv(c, 100))
            peer.send(b"new")
            assert await asyncio.wait_for(task, 5) == b"new"
            await asyncio.wait_for(loop.sock_sendall(c, b"back"), 5)
            assert await asyncio.wait_for(loop.sock_recv(peer, 100), 5) == b"back"
            if not REFERENCE and loop.io.edge:
                assert handler(loop, c).owns(c)  # the stale registration was replaced


@pytest.mark.asyncio
async def test_detached_descriptor_and_a_second_socket_object_on_it():
    """After ``detach()`` the number still names the file: a new socket object made on it must
    get a working registration (the old one must be removed, or EPOLL_CTL_ADD fails with
    EEXIST); two live objects on one descriptor share it."""
    loop = asyncio.get_running_loop()
    with tcp_pair() as (a, b):
        task = await parked(loop, loop.sock_recv(a, 100))
        b.send(b"one")
        assert await asyncio.wait_for(task, 5) == b"one"
        fd = a.detach()
        c = socket.socket(fileno=fd)
        with c:
            c.setblocking(False)
            task = await parked(loop, loop.sock_recv(c, 100))
            b.send(b"two")
            assert await asyncio.wait_for(task, 5) == b"two"
            twin = socket.socket(fileno=fd)  # a second live object on the same descriptor
            try:
                twin.setblocking(False)
                task = await parked(loop, loop.sock_recv(twin, 100))
                b.send(b"three")
                assert await asyncio.wait_for(task, 5) == b"three"
                task = await parked(loop, loop.sock_recv(c, 100))
                b.send(b"four")
                assert await asyncio.wait_for(task, 5) == b"four"
            finally:
                twin.detach()


@pytest.mark.asyncio
async def test_number_closed_under_a_live_socket_object_and_reused():
    """``os.close(sock.fileno())`` behind the object's back: the object still answers the number,
    which a new socket gets.  The new socket's waits must be watched on its own file."""
    loop = asyncio.get_running_loop()
    with listening() as lst:
        a, b = socket.socketpair()
        a.setblocking(False)
        with b:
            task = await parked(loop, loop.sock_recv(a, 100))
            b.send(b"old")
            assert await asyncio.wait_for(task, 5) == b"old"
            fd = a.fileno()
            os.close(fd)
            try:
                c, d = reuse_number(fd, lst)
                with c, d:
                    assert a.fileno() == c.fileno()
                    task = await parked(loop, loop.sock_recv(c, 100))
                    d.send(b"new")
                    assert await asyncio.wait_for(task, 5) == b"new"
            finally:
                a.detach()  # its number is gone (or c's): closing it would close someone else's


@EDGE
async def test_a_wait_on_a_socket_closed_under_it_fails_once_the_number_is_reused():
    """The stdlib's would wait forever; ours learns of the close when the number comes back."""
    loop = asyncio.get_running_loop()
    with listening() as lst:
        a, b = socket.socketpair()
        a.setblocking(False)
        with b:
            task = await parked(loop, loop.sock_recv(a, 100))
            fd = a.fileno()
            a.close()
            assert "closed" in next(r for r in loop.describe() if r["fd"] == fd)["state"]
            assert loop.stats()["fds"] == len(loop.describe())  # a wait is parked: counted
            c, d = reuse_number(fd, lst)
        with c, d:
            other = await parked(loop, loop.sock_recv(c, 100))
            with pytest.raises(OSError) as info:
                await asyncio.wait_for(task, 5)
            assert info.value.errno == errno.EBADF
            d.send(b"mine")
            assert await asyncio.wait_for(other, 5) == b"mine"


@pytest.mark.asyncio
async def test_old_file_kept_alive_by_a_dup_delivers_nothing_to_the_new_socket():
    """The kernel keeps the old file's epoll entry (we cannot remove it any more): its events
    arrive under the reused number.  They must not spin the loop, complete the new socket's wait
    with the old file's data, or keep the new socket's own data from arriving."""
    loop = asyncio.get_running_loop()
    async with closed_behind_our_back(loop) as (b, keep, c, d):
        with c, d:
            waiting = await parked(loop, loop.sock_recv(c, 100))
            for i in range(5):
                b.send(b"old file %d" % i)  # readiness of the old file, under the number fd
                await asyncio.sleep(0.01)
            assert not waiting.done()
            # no busy loop on the stale entry
            polls = 0 if REFERENCE else loop.stats()["polls"]
            await asyncio.sleep(0.1)
            if not REFERENCE:
                assert loop.stats()["polls"] - polls < 50
            d.send(b"new file")
            assert await asyncio.wait_for(waiting, 5) == b"new file"
            # the old file's data is still where it was sent
            assert os.read(keep, 1000) == b"".join(b"old file %d" % i for i in range(5))
            # and the new socket goes on working, its waits woken by its own data only
            for i in range(3):
                waiting = await parked(loop, loop.sock_recv(c, 100))
                b.send(b"noise")
                await asyncio.sleep(0.01)
                assert not waiting.done()
                d.send(b"n%d" % i)
                assert await asyncio.wait_for(waiting, 5) == b"n%d" % i
                await loop.sock_sendall(c, b"echo %d" % i)
                assert await asyncio.wait_for(loop.sock_recv(d, 100), 5) == b"echo %d" % i


@pytest.mark.asyncio
async def test_old_file_events_do_not_call_an_add_reader_callback_on_the_reused_number():
    """Behaviour 12 for a socket kept registered by sock_*: closed behind our back while a dup
    keeps its file (and the kernel's epoll entry) alive, its number reused by a descriptor with
    add_reader/add_writer callbacks.  The old file's events must not call them (a callback may
    read a blocking descriptor); the new descriptor's own readiness does, level-triggered."""
    loop = asyncio.get_running_loop()
    async with closed_behind_our_back(loop) as (b, keep, c, d):
        with c, d:
            c.setblocking(True)  # what a careless callback may rely on: it is ready
            got: list[bytes] = []
            loop.add_reader(c.fileno(), lambda: got.append(c.recv(100)))
            try:
                for i in range(5):
                    b.send(b"old file %d" % i)  # the old file's readiness, under the number
                    await asyncio.sleep(0.01)
                assert got == []
                d.send(b"new file")
                for _ in range(100):
                    if got:
                        break
                    await asyncio.sleep(0.01)
                assert got == [b"new file"]
            finally:
                loop.remove_reader(c.fileno())
            wrote: list[int] = []
            loop.add_writer(c.fileno(), lambda: (wrote.append(1), loop.remove_writer(c.fileno())))
            await asyncio.sleep(0.05)
            assert wrote == [1]  # writable for real: called
            assert os.read(keep, 1000) == b"".join(b"old file %d" % i for i in range(5))


@pytest.mark.asyncio
async def test_old_file_events_reaching_a_transport_on_the_reused_number_are_harmless():
    """The same stale entry, when a transport gets the number: its events are hints to read
    and write, which find EAGAIN; the protocol sees its own socket's data only, no EOF."""
    loop = asyncio.get_running_loop()
    transport = None
    async with closed_behind_our_back(loop) as (b, keep, c, d):
        with d:
            transport, proto = await loop.connect_accepted_socket(Collect, sock=c)
            await proto.made
            b.send(b"old data")
            await asyncio.sleep(0.02)
            with socket.socket(fileno=os.dup(keep)) as old:
                old.shutdown(socket.SHUT_RDWR)  # the old file's HUP, under the number
            await asyncio.sleep(0.02)
            assert proto.data == b"" and not proto.closed
            d.send(b"new data")
            await until(lambda: bytes(proto.data) == b"new data")
            transport.write(b"reply")
            assert await asyncio.wait_for(loop.sock_recv(d, 100), 5) == b"reply"
            assert not proto.closed
            transport.close()
            await until(lambda: proto.closed)


@pytest.mark.asyncio
async def test_old_file_events_do_not_complete_a_connect_in_progress():
    """SO_ERROR reads 0 while a connection is still in progress: a wakeup from the old file's
    entry (its HUP here) must not pass for a completed connect."""
    loop = asyncio.get_running_loop()
    a, b = socket.socketpair()
    a.setblocking(False)
    keep = -1
    extra = []
    try:
        task = await parked(loop, loop.sock_recv(a, 100))
        b.send(b"registered")
        assert await asyncio.wait_for(task, 5) == b"registered"
        # A listener with a full backlog: the next connect stays in SYN_SENT.
        lst = socket.socket()
        extra.append(lst)
        lst.bind(("127.0.0.1", 0))
        lst.listen(0)
        filler = socket.socket()
        extra.append(filler)
        filler.connect(lst.getsockname())
        fd = a.fileno()
        keep = os.dup(fd)
        a.close()
        c = socket_on_number(fd)
        extra.append(c)
        c.setblocking(False)
        connecting = await parked(loop, loop.sock_connect(c, lst.getsockname()))
        with pytest.raises(OSError):
            c.getpeername()  # still in progress
        old = socket.socket(fileno=keep)
        keep = -1
        extra.append(old)
        old.shutdown(socket.SHUT_RDWR)  # EPOLLHUP of the old file, under the number fd
        await asyncio.sleep(0.05)
        assert not connecting.done(), connecting
        connecting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await connecting
    finally:
        if keep >= 0:
            os.close(keep)
        a.close()
        b.close()
        for s in extra:
            s.close()


# --------------------------------------------------------------------------------------------
# 2. a transport or a server takes the socket over


class Collect(asyncio.Protocol):
    def __init__(self):
        self.data = bytearray()
        self.transport = None
        self.lost = None
        self.closed = False
        self.made = asyncio.get_running_loop().create_future()

    def connection_made(self, transport):
        self.transport = transport
        self.made.set_result(None)

    def data_received(self, data):
        self.data += data

    def connection_lost(self, exc):
        self.lost = exc
        self.closed = True


async def until(predicate, timeout=5.0):
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        assert loop.time() < deadline, "timed out"
        await asyncio.sleep(0.005)


@pytest.mark.asyncio
@pytest.mark.parametrize("how", ["create_connection", "connect_accepted_socket"])
async def test_transport_takes_over_a_socket_used_with_sock_calls(how):
    loop = asyncio.get_running_loop()
    with tcp_pair() as (a, b):
        task = await parked(loop, loop.sock_recv(a, 100))
        b.send(b"before")
        assert await asyncio.wait_for(task, 5) == b"before"
        await loop.sock_sendall(a, b"sock_sendall")
        assert await asyncio.wait_for(loop.sock_recv(b, 100), 5) == b"sock_sendall"
        b.send(b"queued while idle ")  # readiness the sock_* handler saw; the transport must too
        await ticks(3)
        if how == "create_connection":
            transport, proto = await loop.create_connection(Collect, sock=a)
        else:
            transport, proto = await loop.connect_accepted_socket(Collect, sock=a)
        try:
            b.send(b"after")
            await until(lambda: bytes(proto.data) == b"queued while idle after")
            transport.write(b"from transport")
            assert await asyncio.wait_for(loop.sock_recv(b, 100), 5) == b"from transport"
            with pytest.raises(RuntimeError, match="is used by transport"):
                await asyncio.wait_for(loop.sock_recv(a, 100), 5)  # case 4: as the stdlib
        finally:
            transport.close()
            await until(lambda: proto.closed)


@pytest.mark.asyncio
async def test_server_takes_over_a_listening_socket_used_with_sock_accept():
    loop = asyncio.get_running_loop()
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(16)
    srv.setblocking(False)
    addr = srv.getsockname()
    server = None
    clients = []
    try:
        task = await parked(loop, loop.sock_accept(srv))
        c = socket.socket()
        clients.append(c)
        c.connect(addr)
        conn, _ = await asyncio.wait_for(task, 5)
        conn.close()
        protos = []

        def factory():
            protos.append(Collect())
            return protos[-1]

        server = await loop.create_server(factory, sock=srv)
        for i in range(3):
            c = socket.socket()
            clients.append(c)
            c.connect(addr)
            c.send(b"hi %d" % i)
        await until(lambda: len(protos) == 3 and all(p.data for p in protos))
        assert sorted(bytes(p.data) for p in protos) == [b"hi 0", b"hi 1", b"hi 2"]
    finally:
        for c in clients:
            c.close()
        if server is not None:
            server.close()
            await server.wait_closed()
        else:
            srv.close()


@pytest.mark.asyncio
async def test_datagram_endpoint_takes_over_a_socket_used_with_sock_recvfrom():
    loop = asyncio.get_running_loop()
    a = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    b = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    with b:
        for s in (a, b):
            s.bind(("127.0.0.1", 0))
            s.setblocking(False)
        task = await parked(loop, loop.sock_recvfrom(a, 100))
        b.sendto(b"one", a.getsockname())
        assert (await asyncio.wait_for(task, 5))[0] == b"one"
        got = []

        class Proto(asyncio.DatagramProtocol):
            def datagram_received(self, data, addr):
                got.append(data)

        transport, _ = await loop.create_datagram_endpoint(Proto, sock=a)
        try:
            b.sendto(b"two", a.getsockname())
            await until(lambda: got == [b"two"])
        finally:
            transport.close()
            await ticks(3)


@pytest.mark.asyncio
async def test_taking_over_a_socket_with_a_wait_in_progress_is_refused_as_before():
    """edgeloop refuses (the fd is registered), on every path and before this handler existed;
    the stdlib lets the transport silently replace the wait's callback (never woken)."""
    if REFERENCE:
        pytest.skip("the stdlib accepts it and strands the wait")
    loop = asyncio.get_running_loop()
    with tcp_pair() as (a, b):
        task = await parked(loop, loop.sock_recv(a, 100))
        with pytest.raises(ValueError, match="already registered"):
            await loop.create_connection(Collect, sock=a)
        b.send(b"still mine")
        assert await asyncio.wait_for(task, 5) == b"still mine"


# --------------------------------------------------------------------------------------------
# 3. add_reader / add_writer / remove_* on a socket used with sock_* (the stdlib's behaviour)


@pytest.mark.asyncio
async def test_add_reader_after_sock_calls_is_level_triggered_then_sock_calls_again():
    loop = asyncio.get_running_loop()
    with tcp_pair() as (a, b):
        task = await parked(loop, loop.sock_recv(a, 100))
        b.send(b"x")
        assert await asyncio.wait_for(task, 5) == b"x"
        assert loop.remove_reader(a) is False
        assert loop.remove_writer(a) is False
        calls = []
        loop.add_reader(a, lambda: calls.append(a.recv(1)))
        b.send(b"abc")
        await until(lambda: len(calls) == 3)  # one byte per call: level semantics
        assert calls == [b"a", b"b", b"c"]
        assert loop.remove_reader(a) is True
        assert loop.remove_reader(a) is False
        task = await parked(loop, loop.sock_recv(a, 100))
        b.send(b"sock again")
        assert await asyncio.wait_for(task, 5) == b"sock again"


@pytest.mark.asyncio
async def test_add_writer_while_a_recv_waits_keeps_the_recv():
    loop = asyncio.get_running_loop()
    with tcp_pair() as (a, b):
        await loop.sock_sendall(a, b"registered")  # (sends never wait here)
        task = await parked(loop, loop.sock_recv(a, 100))
        fired = []
        loop.add_writer(a, lambda: fired.append(1))
        await until(lambda: len(fired) >= 3)  # level: writable, again and again
        assert loop.remove_writer(a) is True
        b.send(b"for the recv")
        assert await asyncio.wait_for(task, 5) == b"for the recv"
        assert loop.remove_reader(a) is False
        # a wait moved that way and then cancelled leaves nothing behind
        task = await parked(loop, loop.sock_recv(a, 100))
        loop.add_writer(a, lambda: None)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert loop.remove_reader(a) is False
        assert loop.remove_writer(a) is True
        b.send(b"next")
        assert await asyncio.wait_for(loop.sock_recv(a, 100), 5) == b"next"


@pytest.mark.asyncio
async def test_add_reader_while_a_recv_waits_replaces_it():
    loop = asyncio.get_running_loop()
    with tcp_pair() as (a, b):
        task = await parked(loop, loop.sock_recv(a, 100))
        got = loop.create_future()
        loop.add_reader(a, lambda: got.done() or got.set_result(a.recv(100)))
        b.send(b"reader's")
        assert await asyncio.wait_for(got, 5) == b"reader's"
        await ticks(3)
        assert not task.done()  # never woken, as in the stdlib
        assert loop.remove_reader(a) is True
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


@pytest.mark.asyncio
async def test_remove_reader_while_a_recv_waits():
    loop = asyncio.get_running_loop()
    with tcp_pair() as (a, b):
        task = await parked(loop, loop.sock_recv(a, 100))
        assert loop.remove_reader(a.fileno()) is True  # the wait's callback, in the stdlib
        assert loop.remove_reader(a.fileno()) is False
        b.send(b"unclaimed")
        await asyncio.sleep(0.02)
        assert not task.done()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert await asyncio.wait_for(loop.sock_recv(a, 100), 5) == b"unclaimed"


@pytest.mark.asyncio
async def test_sock_recv_takes_the_place_of_a_user_reader():
    loop = asyncio.get_running_loop()
    with tcp_pair() as (a, b):
        calls = []
        loop.add_reader(a, lambda: calls.append(1))
        task = await parked(loop, loop.sock_recv(a, 100))
        b.send(b"data")
        assert await asyncio.wait_for(task, 5) == b"data"
        assert calls == []
        assert loop.remove_reader(a) is False  # the wait removed the reader when done


# --------------------------------------------------------------------------------------------
# 4. a transport's socket


@pytest.mark.asyncio
@pytest.mark.parametrize("op", ["sock_recv", "sock_recv_into", "sock_sendall"])
async def test_sock_call_on_a_transport_socket_raises_when_it_would_wait(op):
    loop = asyncio.get_running_loop()
    with tcp_pair() as (a, b):
        transport, proto = await loop.connect_accepted_socket(Collect, sock=a)
        try:
            await proto.made
            a.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
            call = {
                "sock_recv": lambda: loop.sock_recv(a, 100),
                "sock_recv_into": lambda: loop.sock_recv_into(a, bytearray(100)),
                "sock_sendall": lambda: loop.sock_sendall(a, b"x" * (8 << 20)),
            }[op]
            with pytest.raises(RuntimeError, match="is used by transport"):
                await asyncio.wait_for(call(), 5)
            b.send(b"still the transport's")
            await until(lambda: bytes(proto.data) == b"still the transport's")
        finally:
            transport.abort()
            await until(lambda: proto.closed)


# --------------------------------------------------------------------------------------------
# 5. loop.close(), garbage collection, stats() and describe()


@edgeloop_only
def test_loop_closed_with_sockets_registered_leaves_nothing_for_the_next_loop(loop_factory):
    import edgeloop

    a, b = socket.socketpair()
    a.setblocking(False)
    b.setblocking(False)
    try:
        loop = loop_factory()

        async def first():
            task = await parked(loop, loop.sock_recv(a, 100))
            b.send(b"one")
            assert await asyncio.wait_for(task, 5) == b"one"
            pending = loop.create_task(loop.sock_recv(b, 100))  # waiting when the loop closes
            pending._log_destroy_pending = False
            await ticks(3)

        loop.run_until_complete(first())
        loop.close()
        assert isinstance(loop, edgeloop.EventLoop)
        second = loop_factory()
        try:
            async def again():
                task = await parked(second, second.sock_recv(a, 100))
                b.send(b"two")
                assert await asyncio.wait_for(task, 5) == b"two"
                a.send(b"three")
                assert await asyncio.wait_for(second.sock_recv(b, 100), 5) == b"three"
            second.run_until_complete(again())
        finally:
            second.close()
    finally:
        a.close()
        b.close()


@EDGE
async def test_describe_and_stats_follow_the_socket_life():
    loop = asyncio.get_running_loop()
    base_fds = loop.stats()["fds"]
    with listening() as lst:
        a, b = socket.socketpair()
        a.setblocking(False)
        with b:
            task = await parked(loop, loop.sock_recv(a, 100))
            fd = a.fileno()
            row = next(r for r in loop.describe() if r["fd"] == fd)
            assert row["kind"] == "sock" and row["state"] == ["reader=sock_recv"]
            assert "reader=sock_recv" in loop.describe_text()
            assert loop.stats()["fds"] == base_fds + 1
            b.send(b"x")
            assert await asyncio.wait_for(task, 5) == b"x"
            row = next(r for r in loop.describe() if r["fd"] == fd)
            assert row["state"] == ["idle"] and row["readable"] is False
            ref = weakref.ref(a)
            del a, task
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ResourceWarning)  # never closed: collected
                gc.collect()
            assert ref() is None
            assert loop.stats()["fds"] == base_fds
            assert all(r["fd"] != fd for r in loop.describe())
            # the number works again, here for a new socket's sock_* waits
            c, d = reuse_number(fd, lst)
        with c, d:
            task = await parked(loop, loop.sock_recv(c, 100))
            d.send(b"y")
            assert await asyncio.wait_for(task, 5) == b"y"
            assert loop.stats()["fds"] == base_fds + 1
            c.close()
            assert loop.stats()["fds"] == base_fds  # closed: left out, without a syscall


# --------------------------------------------------------------------------------------------
# 6. nothing keeps a socket alive


@pytest.mark.asyncio
@pytest.mark.parametrize("how", ["completed", "cancelled", "failed"])
async def test_no_reference_cycle_keeps_a_socket_alive(how):
    if REFERENCE and how == "failed":
        pytest.skip("the stdlib's retry frame keeps the future, and the failed call's exception")
    loop = asyncio.get_running_loop()
    a, b = socket.socketpair()
    a.setblocking(False)
    gc.collect()
    gc.disable()  # freed by reference counting alone, or not at all
    try:
        with b:
            if how == "failed":
                task = await parked(loop, loop.sock_sendall(a, b"x" * (8 << 20)))
                b.close()  # the retry fails (EPIPE/ECONNRESET)
                try:
                    await task  # (no wait_for: its frame, in the traceback, holds the task)
                except OSError:
                    pass
                else:
                    raise AssertionError("sendall to a closed peer succeeded")
            else:
                task = await parked(loop, loop.sock_recv(a, 100))
                if how == "completed":
                    b.send(b"x")
                    assert await asyncio.wait_for(task, 5) == b"x"
                else:
                    task.cancel()
                    with pytest.raises(asyncio.CancelledError):
                        await task
            ref = weakref.ref(a)
            a.close()
            del a, task
            await ticks(3)
            assert ref() is None, gc.get_referrers(ref())
    finally:
        gc.enable()


# --------------------------------------------------------------------------------------------
# the exception barrier


@EDGE
async def test_an_error_escaping_the_handler_is_reported_and_fails_the_waits():
    """Past the operation's own errors (they go to its future) only the handler's bookkeeping
    can fail: made to fail here by an attempt that cancels its own future, so that resolving
    it raises InvalidStateError.  The loop reports it, the handler gives its fd up, and the
    other direction's wait fails with it instead of hanging."""
    loop = asyncio.get_running_loop()
    reported = []
    loop.set_exception_handler(lambda lp, ctx: reported.append(ctx))
    try:
        with tcp_pair() as (a, b):
            a.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
            sending = await parked(loop, loop.sock_sendall(a, b"x" * (8 << 20)))
            receiving = await parked(loop, loop.sock_recv(a, 100))
            waits = handler(loop, a)

            def attempt():
                waits.rfut.cancel()
                return b"?"

            waits.rattempt = attempt
            b.send(b"data")
            with pytest.raises(asyncio.InvalidStateError):
                await asyncio.wait_for(sending, 5)
            with pytest.raises(asyncio.CancelledError):
                await receiving
            assert len(reported) == 1 and reported[0]["fd"] == a.fileno()
            assert isinstance(reported[0]["exception"], asyncio.InvalidStateError)
            assert handler(loop, a) is None  # the registration was given up
            assert await asyncio.wait_for(loop.sock_recv(a, 100), 5) == b"data"
    finally:
        loop.set_exception_handler(None)


@edgeloop_only
def test_keyboard_interrupt_in_a_retry_loses_no_readiness():
    import edgeloop

    loop = edgeloop.new_event_loop(trigger="edge")
    try:
        with tcp_pair() as (a, b):
            async def start():
                return await parked(loop, loop.sock_recv(a, 100))

            task = loop.run_until_complete(start())
            waits = loop.io.handler_of(a.fileno())
            real = waits.rattempt
            calls = []

            def attempt():
                calls.append(1)
                if len(calls) == 1:
                    raise KeyboardInterrupt
                return real()

            waits.rattempt = attempt
            b.send(b"data")
            with pytest.raises(KeyboardInterrupt):
                loop.run_until_complete(asyncio.wait_for(task, 5))
            # no new edge will come for that data: the deferred handler retries
            assert loop.run_until_complete(asyncio.wait_for(task, 5)) == b"data"
            assert len(calls) == 2
    finally:
        loop.close()
