"""The loop.sock_* coroutines: recv, recv_into, recvfrom, recvfrom_into, sendall, sendto, connect,
accept; argument checks; cancellation leaving nothing registered; refused connections."""
from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import socket
import ssl

import pytest


@contextlib.contextmanager
def socketpair():
    a, b = socket.socketpair()
    a.setblocking(False)
    b.setblocking(False)
    try:
        yield a, b
    finally:
        a.close()
        b.close()


@contextlib.contextmanager
def udp_pair():
    a = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    b = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        for s in (a, b):
            s.setblocking(False)
            s.bind(("127.0.0.1", 0))
        yield a, b
    finally:
        a.close()
        b.close()


@contextlib.contextmanager
def tcp_listener():
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        srv.bind(("127.0.0.1", 0))
        srv.listen(16)
        srv.setblocking(False)
        yield srv
    finally:
        srv.close()


def closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


# --------------------------------------------------------------------------------------------
# receive


@pytest.mark.asyncio
async def test_sock_recv_waits_for_data():
    loop = asyncio.get_running_loop()
    with socketpair() as (a, b):
        task = asyncio.ensure_future(loop.sock_recv(a, 100))
        await asyncio.sleep(0)
        assert not task.done()
        b.send(b"hello")
        assert await asyncio.wait_for(task, 5) == b"hello"


@pytest.mark.asyncio
async def test_sock_recv_data_already_there_and_limit():
    loop = asyncio.get_running_loop()
    with socketpair() as (a, b):
        b.send(b"0123456789")
        assert await loop.sock_recv(a, 4) == b"0123"
        assert await loop.sock_recv(a, 100) == b"456789"


@pytest.mark.asyncio
async def test_sock_recv_eof():
    loop = asyncio.get_running_loop()
    with socketpair() as (a, b):
        task = asyncio.ensure_future(loop.sock_recv(a, 100))
        await asyncio.sleep(0)
        b.send(b"last")
        b.shutdown(socket.SHUT_WR)
        assert await asyncio.wait_for(task, 5) == b"last"
        assert await asyncio.wait_for(loop.sock_recv(a, 100), 5) == b""


@pytest.mark.asyncio
async def test_sock_recv_into():
    loop = asyncio.get_running_loop()
    with socketpair() as (a, b):
        buf = bytearray(8)
        task = asyncio.ensure_future(loop.sock_recv_into(a, buf))
        await asyncio.sleep(0)
        b.send(b"abc")
        assert await asyncio.wait_for(task, 5) == 3
        assert buf[:3] == b"abc"
        b.send(b"0123456789")
        view = memoryview(buf)[2:6]
        assert await loop.sock_recv_into(a, view) == 4
        assert bytes(buf[2:6]) == b"0123"


@pytest.mark.asyncio
async def test_sock_recvfrom_and_sendto():
    loop = asyncio.get_running_loop()
    with udp_pair() as (a, b):
        task = asyncio.ensure_future(loop.sock_recvfrom(a, 100))
        await asyncio.sleep(0)
        assert not task.done()
        sent = await loop.sock_sendto(b, b"datagram", a.getsockname())
        assert sent == len(b"datagram")
        data, addr = await asyncio.wait_for(task, 5)
        assert data == b"datagram"
        assert addr == b.getsockname()
        # an empty datagram is a datagram
        await loop.sock_sendto(b, b"", a.getsockname())
        assert await asyncio.wait_for(loop.sock_recvfrom(a, 100), 5) == (b"", b.getsockname())


@pytest.mark.asyncio
async def test_sock_recvfrom_into():
    loop = asyncio.get_running_loop()
    with udp_pair() as (a, b):
        buf = bytearray(16)
        task = asyncio.ensure_future(loop.sock_recvfrom_into(a, buf))
        await asyncio.sleep(0)
        await loop.sock_sendto(b, b"first", a.getsockname())
        n, addr = await asyncio.wait_for(task, 5)
        assert (n, bytes(buf[:n]), addr) == (5, b"first", b.getsockname())
        # nbytes limits the read (the rest of the datagram is discarded)
        await loop.sock_sendto(b, b"0123456789", a.getsockname())
        n, addr = await asyncio.wait_for(loop.sock_recvfrom_into(a, buf, 4), 5)
        assert (n, bytes(buf[:4])) == (4, b"0123")


@pytest.mark.asyncio
async def test_many_datagrams_in_order():
    loop = asyncio.get_running_loop()
    with udp_pair() as (a, b):
        for i in range(200):
            await loop.sock_sendto(b, b"%d" % i, a.getsockname())
        got = [int((await asyncio.wait_for(loop.sock_recvfrom(a, 100), 5))[0])
               for _ in range(200)]
        assert got == list(range(200))


# --------------------------------------------------------------------------------------------
# send


@pytest.mark.asyncio
@pytest.mark.timeout(30)
async def test_sock_sendall_10mb_to_a_slow_reader():
    loop = asyncio.get_running_loop()
    payload = os.urandom(1 << 20) * 10
    with socketpair() as (a, b):
        sender = asyncio.ensure_future(loop.sock_sendall(a, payload))
        await asyncio.sleep(0.05)  # the reader is late: the kernel buffers fill up meanwhile
        assert not sender.done()
        digest = hashlib.sha256()
        received = 0
        reads = 0
        while received < len(payload):
            chunk = await asyncio.wait_for(loop.sock_recv(b, 65536), 10)
            assert chunk, "EOF before all data arrived"
            digest.update(chunk)
            received += len(chunk)
            reads += 1
            if reads % 8 == 0:
                await asyncio.sleep(0.001)  # slow
        assert await asyncio.wait_for(sender, 10) is None
        assert received == len(payload)
        assert digest.digest() == hashlib.sha256(payload).digest()


@pytest.mark.asyncio
async def test_sock_sendall_small_and_empty():
    loop = asyncio.get_running_loop()
    with socketpair() as (a, b):
        assert await loop.sock_sendall(a, b"") is None
        assert await loop.sock_sendall(a, b"abc") is None
        assert await loop.sock_sendall(a, memoryview(b"defg")) is None
        assert await loop.sock_sendall(a, bytearray(b"h")) is None
        got = b""
        while len(got) < 8:
            got += await asyncio.wait_for(loop.sock_recv(b, 100), 5)
        assert got == b"abcdefgh"


@pytest.mark.asyncio
async def test_sock_sendall_to_closed_peer_raises():
    loop = asyncio.get_running_loop()
    with socketpair() as (a, b):
        b.close()
        with pytest.raises((BrokenPipeError, ConnectionResetError)):
            await asyncio.wait_for(loop.sock_sendall(a, b"x" * (1 << 20)), 5)


# --------------------------------------------------------------------------------------------
# connect / accept


@pytest.mark.asyncio
@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
async def test_sock_connect_and_accept(host):
    loop = asyncio.get_running_loop()
    with tcp_listener() as srv:
        port = srv.getsockname()[1]
        client = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        client.setblocking(False)
        try:
            accept = asyncio.ensure_future(loop.sock_accept(srv))
            await asyncio.sleep(0)
            assert not accept.done()
            assert await asyncio.wait_for(loop.sock_connect(client, (host, port)), 5) is None
            conn, addr = await asyncio.wait_for(accept, 5)
            with conn:
                assert addr == client.getsockname()
                assert client.getpeername() == ("127.0.0.1", port)
                assert conn.gettimeout() == 0  # accepted sockets come back non-blocking
                await loop.sock_sendall(client, b"ping")
                assert await asyncio.wait_for(loop.sock_recv(conn, 10), 5) == b"ping"
                await loop.sock_sendall(conn, b"pong")
                assert await asyncio.wait_for(loop.sock_recv(client, 10), 5) == b"pong"
        finally:
            client.close()


@pytest.mark.asyncio
async def test_sock_accept_backlog():
    loop = asyncio.get_running_loop()
    with tcp_listener() as srv:
        clients = []
        try:
            for _ in range(5):
                c = socket.socket()
                c.setblocking(False)
                clients.append(c)
                await asyncio.wait_for(loop.sock_connect(c, srv.getsockname()), 5)
            names = set()
            for _ in range(5):
                conn, addr = await asyncio.wait_for(loop.sock_accept(srv), 5)
                conn.close()
                names.add(addr)
            assert names == {c.getsockname() for c in clients}
        finally:
            for c in clients:
                c.close()


@pytest.mark.asyncio
async def test_sock_connect_unix(tmp_path):
    loop = asyncio.get_running_loop()
    path = str(tmp_path / "sock")
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        srv.bind(path)
        srv.listen(1)
        srv.setblocking(False)
        client.setblocking(False)
        await asyncio.wait_for(loop.sock_connect(client, path), 5)
        conn, _ = await asyncio.wait_for(loop.sock_accept(srv), 5)
        with conn:
            await loop.sock_sendall(client, b"unix")
            assert await asyncio.wait_for(loop.sock_recv(conn, 10), 5) == b"unix"
    finally:
        client.close()
        srv.close()


@pytest.mark.asyncio
async def test_sock_connect_refused():
    loop = asyncio.get_running_loop()
    port = closed_port()
    s = socket.socket()
    s.setblocking(False)
    try:
        with pytest.raises(ConnectionRefusedError):
            await asyncio.wait_for(loop.sock_connect(s, ("127.0.0.1", port)), 5)
        await asyncio.sleep(0)
        # nothing is left watching the socket
        assert loop.remove_writer(s.fileno()) is False
        assert loop.remove_reader(s.fileno()) is False
    finally:
        s.close()


# --------------------------------------------------------------------------------------------
# argument checks


def _blocking_cases(loop, a, udp):
    return {
        "sock_recv": lambda: loop.sock_recv(a, 10),
        "sock_recv_into": lambda: loop.sock_recv_into(a, bytearray(10)),
        "sock_recvfrom": lambda: loop.sock_recvfrom(udp, 10),
        "sock_recvfrom_into": lambda: loop.sock_recvfrom_into(udp, bytearray(10)),
        "sock_sendall": lambda: loop.sock_sendall(a, b"x"),
        "sock_sendto": lambda: loop.sock_sendto(udp, b"x", udp.getsockname()),
        "sock_connect": lambda: loop.sock_connect(a, ("127.0.0.1", 9)),
        "sock_accept": lambda: loop.sock_accept(a),
    }


METHODS = ["sock_recv", "sock_recv_into", "sock_recvfrom", "sock_recvfrom_into", "sock_sendall",
           "sock_sendto", "sock_connect", "sock_accept"]


@pytest.mark.asyncio
@pytest.mark.parametrize("method", METHODS)
async def test_blocking_socket_raises_value_error_in_debug_mode(method):
    # asyncio checks this in debug mode (outside it, a blocking socket would block the loop)
    loop = asyncio.get_running_loop()
    loop.set_debug(True)
    a = socket.socket()
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        udp.bind(("127.0.0.1", 0))
        assert a.gettimeout() is None and udp.gettimeout() is None  # blocking
        with pytest.raises(ValueError):
            await _blocking_cases(loop, a, udp)[method]()
    finally:
        loop.set_debug(False)
        a.close()
        udp.close()


@pytest.mark.asyncio
@pytest.mark.parametrize("method", METHODS)
async def test_ssl_socket_raises_type_error(method):
    loop = asyncio.get_running_loop()
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # no CA loading: fast
    raw = socket.socket()
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sslsock = ctx.wrap_socket(raw, server_hostname="example.invalid", do_handshake_on_connect=False)
    try:
        udp.bind(("127.0.0.1", 0))
        sslsock.setblocking(False)
        with pytest.raises(TypeError):
            await _blocking_cases(loop, sslsock, sslsock)[method]()
    finally:
        sslsock.close()
        raw.close()
        udp.close()


# --------------------------------------------------------------------------------------------
# cancellation


@pytest.mark.asyncio
@pytest.mark.parametrize("method", ["sock_recv", "sock_recv_into"])
async def test_cancelled_sock_recv_leaves_nothing_registered(method):
    loop = asyncio.get_running_loop()
    with socketpair() as (a, b):
        op = (loop.sock_recv(a, 100) if method == "sock_recv"
              else loop.sock_recv_into(a, bytearray(100)))
        task = asyncio.ensure_future(op)
        await asyncio.sleep(0)
        assert not task.done()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert loop.remove_reader(a.fileno()) is False

        # data sent now is not swallowed by the cancelled operation
        b.send(b"after-cancel")
        assert await asyncio.wait_for(loop.sock_recv(a, 100), 5) == b"after-cancel"

        # a reader can be added on the same fd and fires
        fired = loop.create_future()
        loop.add_reader(a.fileno(), lambda: fired.done() or fired.set_result(a.recv(100)))
        b.send(b"reader")
        try:
            assert await asyncio.wait_for(fired, 5) == b"reader"
        finally:
            assert loop.remove_reader(a.fileno()) is True

        # and another sock_recv works after that
        b.send(b"again")
        assert await asyncio.wait_for(loop.sock_recv(a, 100), 5) == b"again"


@pytest.mark.asyncio
async def test_sock_recv_started_right_after_a_cancel_gets_the_data():
    """The cancelled wait's cleanup must not remove the registration of the next wait."""
    loop = asyncio.get_running_loop()
    with socketpair() as (a, b):
        first = asyncio.ensure_future(loop.sock_recv(a, 100))
        await asyncio.sleep(0)
        first.cancel()
        second = asyncio.ensure_future(loop.sock_recv(a, 100))
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        b.send(b"for-second")
        assert await asyncio.wait_for(second, 5) == b"for-second"
        with pytest.raises(asyncio.CancelledError):
            await first


@pytest.mark.asyncio
async def test_cancelled_sock_accept_leaves_nothing_registered():
    loop = asyncio.get_running_loop()
    with tcp_listener() as srv:
        task = asyncio.ensure_future(loop.sock_accept(srv))
        await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert loop.remove_reader(srv.fileno()) is False
        c = socket.socket()
        c.setblocking(False)
        try:
            await asyncio.wait_for(loop.sock_connect(c, srv.getsockname()), 5)
            conn, addr = await asyncio.wait_for(loop.sock_accept(srv), 5)
            conn.close()
            assert addr == c.getsockname()
        finally:
            c.close()


@pytest.mark.asyncio
async def test_cancelled_sock_sendall_leaves_nothing_registered():
    loop = asyncio.get_running_loop()
    with socketpair() as (a, b):
        task = asyncio.ensure_future(loop.sock_sendall(a, b"x" * (8 << 20)))
        await asyncio.sleep(0.01)
        assert not task.done()  # blocked: nobody reads
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert loop.remove_writer(a.fileno()) is False
        # the socket is still usable for a writer callback
        fired = loop.create_future()

        b.setblocking(False)
        with contextlib.suppress(BlockingIOError):
            while b.recv(1 << 20):
                pass
        loop.add_writer(a.fileno(), lambda: fired.done() or fired.set_result("writable"))
        try:
            assert await asyncio.wait_for(fired, 5) == "writable"
        finally:
            assert loop.remove_writer(a.fileno()) is True


@pytest.mark.asyncio
async def test_cancelling_one_sock_recv_does_not_disturb_another():
    """Two sockets waiting at once, one cancelled: the other still completes."""
    loop = asyncio.get_running_loop()
    with socketpair() as (a, b), socketpair() as (c, d):
        t1 = asyncio.ensure_future(loop.sock_recv(a, 10))
        t2 = asyncio.ensure_future(loop.sock_recv(c, 10))
        await asyncio.sleep(0)
        t1.cancel()
        d.send(b"second")
        assert await asyncio.wait_for(t2, 5) == b"second"
        with pytest.raises(asyncio.CancelledError):
            await t1

