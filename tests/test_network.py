"""create_connection, create_server, the Unix variants, connect_accepted_socket, Server objects."""
from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import pathlib
import socket
import time

import pytest

try:
    from tests._streamutil import REFERENCE, Recorder, short_unix_path
except ModuleNotFoundError:  # tests/ on sys.path rather than a package
    from _streamutil import REFERENCE, Recorder, short_unix_path

pytestmark = pytest.mark.timeout(30)

HAS_IPV6 = socket.has_ipv6
if HAS_IPV6:
    try:
        with socket.socket(socket.AF_INET6) as _s:
            _s.bind(("::1", 0))
    except OSError:
        HAS_IPV6 = False
needs_ipv6 = pytest.mark.skipif(not HAS_IPV6, reason="no IPv6 loopback")

# Tests of API surface (arguments, attributes) rather than of the I/O path run on the two epoll
# modes only: the poll and select backends share the level-triggered transports.
EDGE_LEVEL = pytest.mark.asyncio(loop_factories=["edge", "level"])


class Echo(asyncio.Protocol):
    """Server side: echoes, and registers itself so tests can close what the server accepted."""

    def __init__(self, registry: list | None = None):
        self.registry = registry
        self.loop = asyncio.get_running_loop()
        self.lost = self.loop.create_future()

    def connection_made(self, transport):
        self.transport = transport
        if self.registry is not None:
            self.registry.append(self)

    def data_received(self, data):
        self.transport.write(data)

    def connection_lost(self, exc):
        self.lost.set_result(exc)


@contextlib.asynccontextmanager
async def echo_server(*args, **kwargs):
    loop = asyncio.get_running_loop()
    accepted: list[Echo] = []
    server = await loop.create_server(lambda: Echo(accepted), *args, **kwargs)
    try:
        yield server, accepted
    finally:
        server.close()
        for p in accepted:
            p.transport.abort()
        await asyncio.wait_for(asyncio.gather(*(p.lost for p in accepted)), 5)
        await asyncio.wait_for(server.wait_closed(), 5)


async def roundtrip(tr, pr, msg: bytes = b"hello") -> None:
    start = len(pr.data)
    tr.write(msg)
    assert (await pr.wait_bytes(start + len(msg)))[start:] == msg


async def close(tr, pr) -> None:
    tr.close()
    await asyncio.wait_for(pr.lost, 5)


def refused_or_not_accepted(addr, family=socket.AF_INET) -> bool:
    """True if nothing accepts at addr (connect refused)."""
    with socket.socket(family) as s:
        s.settimeout(2)
        return s.connect_ex(addr) == errno.ECONNREFUSED


# --------------------------------------------------------------------------------------------
# create_connection

@pytest.mark.asyncio
async def test_create_connection_host_port():
    loop = asyncio.get_running_loop()
    async with echo_server("127.0.0.1", 0) as (server, _):
        addr = server.sockets[0].getsockname()
        tr, pr = await loop.create_connection(Recorder, *addr)
        assert isinstance(tr, asyncio.Transport)
        assert tr.get_extra_info("peername") == addr
        await roundtrip(tr, pr)
        await close(tr, pr)


@EDGE_LEVEL
async def test_create_connection_by_name_and_family():
    loop = asyncio.get_running_loop()
    async with echo_server("127.0.0.1", 0) as (server, _):
        port = server.sockets[0].getsockname()[1]
        tr, pr = await loop.create_connection(Recorder, "localhost", port,
                                              family=socket.AF_INET)
        assert tr.get_extra_info("socket").family == socket.AF_INET
        assert tr.get_extra_info("peername") == ("127.0.0.1", port)
        await roundtrip(tr, pr)
        await close(tr, pr)
        with pytest.raises(OSError):  # no IPv6 address for 127.0.0.1
            await loop.create_connection(Recorder, "127.0.0.1", port, family=socket.AF_INET6)


@needs_ipv6
@pytest.mark.asyncio
async def test_create_connection_ipv6():
    loop = asyncio.get_running_loop()
    async with echo_server("::1", 0) as (server, _):
        addr = server.sockets[0].getsockname()
        tr, pr = await loop.create_connection(Recorder, "::1", addr[1])
        assert tr.get_extra_info("socket").family == socket.AF_INET6
        assert tr.get_extra_info("peername")[:2] == addr[:2]
        await roundtrip(tr, pr)
        await close(tr, pr)


@pytest.mark.asyncio
async def test_create_connection_sock():
    loop = asyncio.get_running_loop()
    async with echo_server("127.0.0.1", 0) as (server, _):
        sock = socket.create_connection(server.sockets[0].getsockname())
        fd = sock.fileno()
        tr, pr = await loop.create_connection(Recorder, sock=sock)
        assert tr.get_extra_info("socket").fileno() == fd
        assert sock.getblocking() is False  # the loop made it non-blocking
        await roundtrip(tr, pr, b"through sock=")
        await close(tr, pr)
        assert sock.fileno() == -1  # the transport owned and closed it


@EDGE_LEVEL
async def test_create_connection_argument_errors():
    loop = asyncio.get_running_loop()
    async with echo_server("127.0.0.1", 0) as (server, _):
        addr = server.sockets[0].getsockname()
        with socket.create_connection(addr) as sock:
            with pytest.raises(ValueError):
                await loop.create_connection(Recorder, *addr, sock=sock)
            with pytest.raises(ValueError):
                await loop.create_connection(Recorder, addr[0], sock=sock)
        with pytest.raises(ValueError):
            await loop.create_connection(Recorder)  # neither host/port nor sock
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            with pytest.raises(ValueError):
                await loop.create_connection(Recorder, sock=udp)
        with pytest.raises(ValueError):  # server_hostname / ssl_handshake_timeout need ssl
            await loop.create_connection(Recorder, *addr, server_hostname="example.org")
        with pytest.raises(ValueError):
            await loop.create_connection(Recorder, *addr, ssl_handshake_timeout=1.0)


@EDGE_LEVEL
async def test_create_connection_bad_host():
    loop = asyncio.get_running_loop()
    with pytest.raises(OSError) as info:
        await asyncio.wait_for(loop.create_connection(Recorder, "nonexistent.invalid", 80), 15)
    assert isinstance(info.value, (socket.gaierror, OSError))


@EDGE_LEVEL
async def test_create_connection_local_addr():
    loop = asyncio.get_running_loop()
    async with echo_server("127.0.0.1", 0) as (server, accepted):
        addr = server.sockets[0].getsockname()
        tr, pr = await loop.create_connection(Recorder, *addr, local_addr=("127.0.0.2", 0))
        sockname = tr.get_extra_info("sockname")
        assert sockname[0] == "127.0.0.2" and sockname[1] != 0
        await roundtrip(tr, pr)
        assert accepted[0].transport.get_extra_info("peername") == sockname
        await close(tr, pr)

        with socket.socket() as taken:  # a local address already in use
            taken.bind(("127.0.0.1", 0))
            taken.listen()
            with pytest.raises(OSError) as info:
                await loop.create_connection(Recorder, *addr, local_addr=taken.getsockname())
            assert info.value.errno == errno.EADDRINUSE


@pytest.mark.asyncio
async def test_create_connection_refused_releases_socket():
    loop = asyncio.get_running_loop()
    with socket.socket() as bound:
        bound.bind(("127.0.0.1", 0))
        with pytest.raises(ConnectionRefusedError):
            await loop.create_connection(Recorder, *bound.getsockname())


def _fake_resolver(monkeypatch, name: str, addrs: list[tuple]):
    """Make ``name`` resolve to ``addrs`` (sockaddrs, in that order) through socket.getaddrinfo."""
    real = socket.getaddrinfo

    def fake(host, port, family=0, type=0, proto=0, flags=0):
        if host != name:
            return real(host, port, family, type, proto, flags)
        if flags & socket.AI_NUMERICHOST:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        out = []
        for sa in addrs:
            fam = socket.AF_INET6 if ":" in sa[0] else socket.AF_INET
            if family in (0, fam):
                out.append((fam, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", sa))
        if not out:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return out

    monkeypatch.setattr(socket, "getaddrinfo", fake)


@needs_ipv6
@pytest.mark.asyncio
async def test_create_connection_falls_back_to_next_address(monkeypatch):
    loop = asyncio.get_running_loop()
    async with echo_server("127.0.0.1", 0) as (server, _):
        port = server.sockets[0].getsockname()[1]
        with socket.socket(socket.AF_INET6) as dead:  # bound, not listening: refused
            dead.bind(("::1", 0))
            _fake_resolver(monkeypatch, "dual.test",
                           [dead.getsockname()[:2] + (0, 0), ("127.0.0.1", port)])
            tr, pr = await asyncio.wait_for(
                loop.create_connection(Recorder, "dual.test", port), 10)
            assert tr.get_extra_info("peername") == ("127.0.0.1", port)
            await roundtrip(tr, pr)
            await close(tr, pr)


@needs_ipv6
@EDGE_LEVEL
@pytest.mark.parametrize("interleave", [None, 1, 2])
async def test_happy_eyeballs_skips_blackholed_address(monkeypatch, interleave):
    """The first address never answers (SYN dropped): the next attempt starts after the delay."""
    loop = asyncio.get_running_loop()
    async with echo_server("127.0.0.1", 0) as (server, _):
        port = server.sockets[0].getsockname()[1]
        black = socket.socket(socket.AF_INET6)
        fillers = []
        try:
            black.bind(("::1", 0))
            black.listen(0)
            baddr = black.getsockname()
            for _ in range(2):  # fill the accept queue: further SYNs are dropped
                f = socket.socket(socket.AF_INET6)
                f.setblocking(False)
                f.connect_ex(baddr)
                fillers.append(f)
            await asyncio.sleep(0.05)
            _fake_resolver(monkeypatch, "dual.test", [baddr, ("127.0.0.1", port)])
            t0 = time.monotonic()
            tr, pr = await asyncio.wait_for(
                loop.create_connection(Recorder, "dual.test", port,
                                       happy_eyeballs_delay=0.05, interleave=interleave), 10)
            took = time.monotonic() - t0
            assert tr.get_extra_info("peername") == ("127.0.0.1", port)
            assert took < 0.9, f"took {took:.2f}s: the second attempt waited for the first"
            await roundtrip(tr, pr)
            await close(tr, pr)
        finally:
            for f in fillers:
                f.close()
            black.close()


@EDGE_LEVEL
async def test_create_connection_all_addresses_fail(monkeypatch):
    loop = asyncio.get_running_loop()
    with socket.socket() as d1, socket.socket() as d2:
        d1.bind(("127.0.0.1", 0))
        d2.bind(("127.0.0.2", 0))
        _fake_resolver(monkeypatch, "dead.test", [d1.getsockname(), d2.getsockname()])
        with pytest.raises(OSError):
            await asyncio.wait_for(loop.create_connection(Recorder, "dead.test", 1), 10)
        with pytest.raises(OSError):
            await asyncio.wait_for(loop.create_connection(
                Recorder, "dead.test", 1, happy_eyeballs_delay=0.01), 10)


# --------------------------------------------------------------------------------------------
# create_server

@needs_ipv6
@pytest.mark.asyncio
async def test_create_server_several_hosts_port_zero():
    loop = asyncio.get_running_loop()
    async with echo_server(["127.0.0.1", "::1"], 0) as (server, accepted):
        socks = server.sockets
        assert len(socks) == 2
        assert {s.family for s in socks} == {socket.AF_INET, socket.AF_INET6}
        for s in socks:
            host, port = s.getsockname()[:2]
            assert port != 0
            tr, pr = await loop.create_connection(Recorder, host, port)
            await roundtrip(tr, pr, host.encode())
            await close(tr, pr)
        assert len(accepted) == 2


@pytest.mark.asyncio
async def test_create_server_all_interfaces():
    loop = asyncio.get_running_loop()
    async with echo_server(None, 0) as (server, _):
        assert len(server.sockets) >= 1
        v4 = [s for s in server.sockets if s.family == socket.AF_INET]
        assert v4, server.sockets
        assert v4[0].getsockname()[0] == "0.0.0.0"
        tr, pr = await loop.create_connection(Recorder, "127.0.0.1", v4[0].getsockname()[1])
        await roundtrip(tr, pr)
        await close(tr, pr)


@EDGE_LEVEL
async def test_create_server_port_in_use():
    loop = asyncio.get_running_loop()
    async with echo_server("127.0.0.1", 0) as (server, _):
        port = server.sockets[0].getsockname()[1]
        with pytest.raises(OSError) as info:
            await loop.create_server(Echo, "127.0.0.1", port)
        assert info.value.errno == errno.EADDRINUSE


@pytest.mark.asyncio
async def test_create_server_reuse_port():
    loop = asyncio.get_running_loop()
    async with echo_server("127.0.0.1", 0, reuse_port=True) as (first, acc1):
        port = first.sockets[0].getsockname()[1]
        assert first.sockets[0].getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT)
        async with echo_server("127.0.0.1", port, reuse_port=True) as (second, acc2):
            assert second.sockets[0].getsockname()[1] == port
            conns = [await loop.create_connection(Recorder, "127.0.0.1", port)
                     for _ in range(20)]
            for tr, pr in conns:
                await roundtrip(tr, pr)
                await close(tr, pr)
            assert len(acc1) + len(acc2) == 20


@EDGE_LEVEL
async def test_create_server_reuse_address_after_time_wait():
    loop = asyncio.get_running_loop()
    server = await loop.create_server(Echo, "127.0.0.1", 0, reuse_address=True)
    port = server.sockets[0].getsockname()[1]
    assert server.sockets[0].getsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR)
    accepted = []

    class Closer(asyncio.Protocol):  # the server closes first: its side goes to TIME_WAIT
        def connection_made(self, transport):
            accepted.append(transport)
            transport.close()

    server.close()
    await server.wait_closed()
    server = await loop.create_server(Closer, "127.0.0.1", port, reuse_address=True)
    tr, pr = await loop.create_connection(Recorder, "127.0.0.1", port)
    await asyncio.wait_for(pr.lost, 5)  # the server closed on us
    server.close()
    await server.wait_closed()
    server = await loop.create_server(Echo, "127.0.0.1", port, reuse_address=True)
    assert server.sockets[0].getsockname()[1] == port
    server.close()
    await server.wait_closed()


@pytest.mark.asyncio
async def test_create_server_backlog():
    loop = asyncio.get_running_loop()
    async with echo_server("127.0.0.1", 0, backlog=1) as (server, accepted):
        addr = server.sockets[0].getsockname()
        for _ in range(5):  # one at a time: a full backlog of 1 would drop SYNs (1 s retry)
            tr, pr = await loop.create_connection(Recorder, *addr)
            await roundtrip(tr, pr)
            await close(tr, pr)
        assert len(accepted) == 5


@EDGE_LEVEL
async def test_create_server_sock_and_argument_errors():
    loop = asyncio.get_running_loop()
    lsock = socket.create_server(("127.0.0.1", 0))
    async with echo_server(sock=lsock) as (server, _):
        assert server.sockets[0].fileno() == lsock.fileno()
        tr, pr = await loop.create_connection(Recorder, *lsock.getsockname())
        await roundtrip(tr, pr)
        await close(tr, pr)
    with socket.create_server(("127.0.0.1", 0)) as other:
        with pytest.raises(ValueError):
            await loop.create_server(Echo, "127.0.0.1", 0, sock=other)
    with pytest.raises(ValueError):
        await loop.create_server(Echo)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        with pytest.raises(ValueError):
            await loop.create_server(Echo, sock=udp)
    with pytest.raises(ValueError):
        await loop.create_server(Echo, "127.0.0.1", 0, ssl_handshake_timeout=1.0)


@pytest.mark.asyncio
async def test_server_start_serving_false():
    loop = asyncio.get_running_loop()
    made = []
    server = await loop.create_server(lambda: Echo(made), "127.0.0.1", 0, start_serving=False)
    try:
        assert not server.is_serving()
        addr = server.sockets[0].getsockname()
        early = socket.socket()
        early.setblocking(False)
        early.connect_ex(addr)  # refused, or left in a backlog no one accepts yet
        await asyncio.sleep(0.1)
        assert made == []
        await server.start_serving()
        assert server.is_serving()
        await server.start_serving()  # idempotent
        tr, pr = await loop.create_connection(Recorder, *addr)
        await roundtrip(tr, pr)
        await close(tr, pr)
        early.close()
    finally:
        server.close()
        for p in made:
            p.transport.abort()
        await server.wait_closed()


@pytest.mark.asyncio
async def test_server_serve_forever_and_cancel():
    loop = asyncio.get_running_loop()
    made = []
    server = await loop.create_server(lambda: Echo(made), "127.0.0.1", 0, start_serving=False)
    addr = server.sockets[0].getsockname()
    task = asyncio.ensure_future(server.serve_forever())
    await asyncio.sleep(0)
    assert server.is_serving()
    with pytest.raises(RuntimeError):
        await server.serve_forever()  # only one serve_forever at a time
    tr, pr = await loop.create_connection(Recorder, *addr)
    await roundtrip(tr, pr)
    await close(tr, pr)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert not server.is_serving()
    assert refused_or_not_accepted(addr)
    for p in made:
        p.transport.abort()
    await asyncio.wait_for(asyncio.gather(*(p.lost for p in made)), 5)
    await asyncio.wait_for(server.wait_closed(), 5)


@EDGE_LEVEL
async def test_server_async_with_and_attributes():
    loop = asyncio.get_running_loop()
    server = await loop.create_server(Echo, "127.0.0.1", 0)
    async with server as s:
        assert s is server
        assert server.is_serving()
        assert server.get_loop() is loop
        socks = server.sockets
        assert isinstance(socks, tuple) and len(socks) == 1
        addr = socks[0].getsockname()
    assert not server.is_serving()
    assert tuple(server.sockets) == ()
    assert refused_or_not_accepted(addr)
    await asyncio.wait_for(server.wait_closed(), 5)


@pytest.mark.asyncio
async def test_server_close_keeps_existing_connections():
    loop = asyncio.get_running_loop()
    made = []
    server = await loop.create_server(lambda: Echo(made), "127.0.0.1", 0)
    addr = server.sockets[0].getsockname()
    tr, pr = await loop.create_connection(Recorder, *addr)
    await roundtrip(tr, pr)
    server.close()
    server.close()  # idempotent
    assert not server.is_serving()
    assert refused_or_not_accepted(addr)
    await roundtrip(tr, pr, b"still connected")  # close() stops listening only
    await close(tr, pr)
    await asyncio.wait_for(made[0].lost, 5)
    await asyncio.wait_for(server.wait_closed(), 5)


@pytest.mark.asyncio
async def test_server_wait_closed_waits_for_connections():
    """Python 3.12+ semantics: wait_closed() returns once the server's connections are gone."""
    loop = asyncio.get_running_loop()
    server = await loop.create_server(Echo, "127.0.0.1", 0)
    if not hasattr(server, "close_clients"):
        server.close()
        await server.wait_closed()
        pytest.skip("this Server predates 3.12/3.13 semantics")
    tr, pr = await loop.create_connection(Recorder, *server.sockets[0].getsockname())
    await roundtrip(tr, pr)
    server.close()
    waiter = asyncio.ensure_future(server.wait_closed())
    await asyncio.sleep(0.05)
    assert not waiter.done()
    await close(tr, pr)
    await asyncio.wait_for(waiter, 5)


@pytest.mark.asyncio
@pytest.mark.parametrize("how", ["close_clients", "abort_clients"])
async def test_server_close_or_abort_clients(how):
    loop = asyncio.get_running_loop()
    made = []
    server = await loop.create_server(lambda: Echo(made), "127.0.0.1", 0)
    if not hasattr(server, how):
        server.close()
        await server.wait_closed()
        pytest.skip(f"Server.{how} is new in Python 3.13")
    addr = server.sockets[0].getsockname()
    clients = [await loop.create_connection(Recorder, *addr) for _ in range(3)]
    for tr, pr in clients:
        await roundtrip(tr, pr)
    server.close()
    getattr(server, how)()
    server_side = await asyncio.wait_for(asyncio.gather(*(p.lost for p in made)), 5)
    assert server_side == [None, None, None]
    for tr, pr in clients:
        exc = await asyncio.wait_for(pr.lost, 5)  # the peer went away: EOF (or reset on abort)
        assert exc is None or isinstance(exc, ConnectionResetError)
        assert pr.lost_count == 1
    await asyncio.wait_for(server.wait_closed(), 5)


# --------------------------------------------------------------------------------------------
# Unix sockets

@pytest.fixture
def unix_path():
    d, path = short_unix_path("sock")
    yield path
    if os.path.lexists(path):
        os.unlink(path)
    os.rmdir(d)


@contextlib.asynccontextmanager
async def unix_echo_server(*args, **kwargs):
    loop = asyncio.get_running_loop()
    accepted: list[Echo] = []
    server = await loop.create_unix_server(lambda: Echo(accepted), *args, **kwargs)
    try:
        yield server, accepted
    finally:
        server.close()
        for p in accepted:
            p.transport.abort()
        await asyncio.wait_for(asyncio.gather(*(p.lost for p in accepted)), 5)
        await asyncio.wait_for(server.wait_closed(), 5)


@pytest.mark.asyncio
async def test_unix_server_and_connection_by_path(unix_path):
    loop = asyncio.get_running_loop()
    async with unix_echo_server(unix_path) as (server, accepted):
        assert server.sockets[0].getsockname() == unix_path
        assert server.sockets[0].family == socket.AF_UNIX
        tr, pr = await loop.create_unix_connection(Recorder, unix_path)
        assert tr.get_extra_info("peername") == unix_path
        await roundtrip(tr, pr, b"over a unix socket")
        await close(tr, pr)
        tr, pr = await loop.create_unix_connection(Recorder, pathlib.Path(unix_path))
        await roundtrip(tr, pr, b"path-like")
        await close(tr, pr)
        assert len(accepted) == 2


@pytest.mark.asyncio
async def test_unix_server_replaces_stale_socket_file(unix_path):
    loop = asyncio.get_running_loop()
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(unix_path)
    stale.close()  # the socket file stays behind
    assert os.path.exists(unix_path)
    with pytest.raises(ConnectionRefusedError):
        await loop.create_unix_connection(Recorder, unix_path)
    async with unix_echo_server(unix_path):
        tr, pr = await loop.create_unix_connection(Recorder, unix_path)
        await roundtrip(tr, pr)
        await close(tr, pr)


@EDGE_LEVEL
async def test_unix_server_refuses_to_replace_regular_file(unix_path):
    loop = asyncio.get_running_loop()
    with open(unix_path, "w") as f:
        f.write("not a socket")
    with pytest.raises(OSError) as info:
        await loop.create_unix_server(Echo, unix_path)
    assert info.value.errno == errno.EADDRINUSE
    with open(unix_path) as f:
        assert f.read() == "not a socket"


@EDGE_LEVEL
async def test_unix_sock_arguments(unix_path):
    loop = asyncio.get_running_loop()
    lsock = socket.socket(socket.AF_UNIX)
    lsock.bind(unix_path)
    async with unix_echo_server(sock=lsock) as (server, _):
        assert server.sockets[0].fileno() == lsock.fileno()
        csock = socket.socket(socket.AF_UNIX)
        csock.connect(unix_path)
        tr, pr = await loop.create_unix_connection(Recorder, sock=csock)
        assert tr.get_extra_info("socket").fileno() == csock.fileno()
        await roundtrip(tr, pr)
        await close(tr, pr)
        with socket.socket(socket.AF_UNIX) as other:
            with pytest.raises(ValueError):
                await loop.create_unix_connection(Recorder, unix_path, sock=other)
            with pytest.raises(ValueError):
                await loop.create_unix_server(Echo, unix_path, sock=other)
    with pytest.raises(ValueError):
        await loop.create_unix_connection(Recorder)
    with pytest.raises(ValueError):
        await loop.create_unix_server(Echo)
    with socket.socket(socket.AF_INET) as tcp:
        with pytest.raises(ValueError):
            await loop.create_unix_server(Echo, sock=tcp)


@EDGE_LEVEL
async def test_unix_connection_errors(unix_path):
    loop = asyncio.get_running_loop()
    with pytest.raises(FileNotFoundError):
        await loop.create_unix_connection(Recorder, unix_path)


@pytest.mark.asyncio
async def test_unix_abstract_namespace():
    loop = asyncio.get_running_loop()
    name = f"\0edgeloop-test-{os.getpid()}-{time.monotonic_ns()}"
    async with unix_echo_server(name) as (server, _):
        tr, pr = await loop.create_unix_connection(Recorder, name)
        await roundtrip(tr, pr, b"abstract")
        await close(tr, pr)


# --------------------------------------------------------------------------------------------
# connect_accepted_socket

@pytest.mark.asyncio
@pytest.mark.parametrize("kind", ["tcp", "unix"])
async def test_connect_accepted_socket(kind, unix_path):
    loop = asyncio.get_running_loop()
    if kind == "tcp":
        lsock = socket.create_server(("127.0.0.1", 0))
        client = socket.create_connection(lsock.getsockname())
    else:
        lsock = socket.socket(socket.AF_UNIX)
        lsock.bind(unix_path)
        lsock.listen()
        client = socket.socket(socket.AF_UNIX)
        client.connect(unix_path)
    try:
        accepted, _ = lsock.accept()
        tr, pr = await loop.connect_accepted_socket(Recorder, accepted)
        assert tr.get_extra_info("socket").fileno() == accepted.fileno()
        client.sendall(b"from the client")
        assert await pr.wait_bytes(15) == b"from the client"
        tr.write(b"from the server")
        client.settimeout(5)
        assert client.recv(100) == b"from the server"
        client.shutdown(socket.SHUT_WR)
        await asyncio.wait_for(pr.eof, 5)
        assert await asyncio.wait_for(pr.lost, 5) is None
    finally:
        client.close()
        lsock.close()


@EDGE_LEVEL
async def test_connect_accepted_socket_rejects_datagram():
    loop = asyncio.get_running_loop()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        with pytest.raises(ValueError):
            await loop.connect_accepted_socket(Recorder, udp)
