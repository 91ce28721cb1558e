"""TLS: ssl= on connections and servers, start_tls, flow control, shutdown, errors.

Certificates come from ``trustme`` (a throw-away CA).  Every test runs on the stdlib loop too with
EDGELOOP_TESTS_REFERENCE=asyncio: what is asserted here is asyncio's behaviour, except where a test
says otherwise.
"""
from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import socket
import ssl
import threading

import pytest

try:
    from tests._streamutil import REFERENCE, BufferedRecorder, Recorder, short_unix_path
except ModuleNotFoundError:  # tests/ on sys.path rather than a package
    from _streamutil import REFERENCE, BufferedRecorder, Recorder, short_unix_path

pytestmark = pytest.mark.timeout(60)

KINDS = ["tcp", "unix"]
FAST = ["edge", "level", "poll", "select"]


# --------------------------------------------------------------------------------------------
# certificates and helpers

# ca, server_ctx, client_ctx: shared TLS fixtures in conftest.py


def pattern(n: int, seed: int = 0) -> bytes:
    out = bytearray()
    i = seed
    while len(out) < n:
        out += hashlib.sha256(i.to_bytes(8, "little")).digest() * 64
        i += 1
    return bytes(out[:n])


class Echo(Recorder):
    """Writes back what it receives; a Recorder, so tests can wait for its milestones."""

    def __init__(self):
        super().__init__(on_data=lambda rec, data: rec.transport.write(data))


class Catcher:
    """Keep the server-side protocol instances a factory made."""

    def __init__(self, factory):
        self.factory = factory
        self.made: list = []
        self.first = asyncio.get_running_loop().create_future()

    def __call__(self):
        proto = self.factory()
        self.made.append(proto)
        if not self.first.done():
            self.first.set_result(proto)
        return proto


@contextlib.asynccontextmanager
async def tls_server(kind, server_ctx, factory, **kwargs):
    """Yield (server, address-kwargs for create_*_connection, Catcher)."""
    loop = asyncio.get_running_loop()
    catcher = Catcher(factory)
    tmpdir = None
    if kind == "tcp":
        server = await loop.create_server(catcher, "127.0.0.1", 0, ssl=server_ctx, **kwargs)
        where = {"host": "127.0.0.1", "port": server.sockets[0].getsockname()[1]}
    else:
        tmpdir, path = short_unix_path()
        server = await loop.create_unix_server(catcher, path, ssl=server_ctx, **kwargs)
        where = {"path": path}
    try:
        yield server, where, catcher
    finally:
        server.close()
        closed = asyncio.ensure_future(server.wait_closed())
        for _ in range(50):
            # A connection still handshaking has no transport yet: try again until all are gone.
            for proto in catcher.made:
                tr = getattr(proto, "transport", None)
                if tr is not None and not tr.is_closing():
                    tr.abort()
            done, _ = await asyncio.wait([closed], timeout=0.2)
            if done:
                break
        else:
            closed.cancel()
            raise AssertionError("the TLS server did not close")
        if tmpdir is not None:
            with contextlib.suppress(OSError):
                os.unlink(where["path"])  # the stdlib loop leaves it before 3.13
            os.rmdir(tmpdir)


async def connect(kind, where, factory, client_ctx, **kwargs):
    loop = asyncio.get_running_loop()
    kwargs.setdefault("server_hostname", "localhost")
    if kind == "tcp":
        return await loop.create_connection(factory, where["host"], where["port"], ssl=client_ctx,
                                            **kwargs)
    return await loop.create_unix_connection(factory, where["path"], ssl=client_ctx, **kwargs)


async def close_and_wait(tr, pr, timeout=10):
    if not tr.is_closing():
        tr.close()
    return await asyncio.wait_for(asyncio.shield(pr.lost), timeout)


# --------------------------------------------------------------------------------------------
# handshake, echo, extra info

@pytest.mark.asyncio
@pytest.mark.parametrize("kind", KINDS)
async def test_handshake_and_echo(kind, server_ctx, client_ctx):
    async with tls_server(kind, server_ctx, Echo) as (server, where, _):
        tr, pr = await connect(kind, where, Recorder, client_ctx)
        assert pr.events == ["made"]
        tr.write(b"hello ")
        tr.writelines([b"tls ", bytearray(b"world"), memoryview(b"!")])
        assert await pr.wait_bytes(16) == b"hello tls world!"
        assert await close_and_wait(tr, pr) is None
        assert pr.lost_count == 1


@pytest.mark.asyncio
async def test_extra_info(server_ctx, client_ctx):
    async with tls_server("tcp", server_ctx, Echo) as (server, where, catcher):
        tr, pr = await connect("tcp", where, Recorder, client_ctx)
        assert tr.get_extra_info("sslcontext") is client_ctx
        sslobj = tr.get_extra_info("ssl_object")
        assert isinstance(sslobj, ssl.SSLObject)
        assert sslobj.server_hostname == "localhost"
        cert = tr.get_extra_info("peercert")
        assert ("DNS", "localhost") in cert["subjectAltName"]
        assert tr.get_extra_info("cipher") == sslobj.cipher()
        assert tr.get_extra_info("compression") == sslobj.compression()
        # Everything the underlying transport knows is there too.
        assert isinstance(tr.get_extra_info("socket"), (socket.socket, object))
        assert tr.get_extra_info("peername") == (where["host"], where["port"])
        assert tr.get_extra_info("sockname")[0] == "127.0.0.1"
        assert tr.get_extra_info("no such key", "dflt") == "dflt"
        srv_proto = await asyncio.wait_for(catcher.first, 5)
        await asyncio.wait_for(srv_proto.made, 5)  # TLS 1.3: the server finishes after us
        assert srv_proto.transport.get_extra_info("sslcontext") is server_ctx
        assert srv_proto.transport.get_extra_info("peercert") is None  # no client certificate
        await close_and_wait(tr, pr)


@pytest.mark.asyncio
async def test_transport_flags(server_ctx, client_ctx):
    async with tls_server("tcp", server_ctx, Echo) as (server, where, _):
        tr, pr = await connect("tcp", where, Recorder, client_ctx)
        assert isinstance(tr, asyncio.Transport)
        assert tr.get_protocol() is pr
        assert not tr.is_closing()
        assert tr.is_reading()
        assert tr.can_write_eof() is False
        with pytest.raises(NotImplementedError):
            tr.write_eof()
        with pytest.raises(TypeError):
            tr.write("text")
        tr.close()
        assert tr.is_closing()
        await asyncio.wait_for(pr.lost, 10)
        tr.write(b"ignored after close")  # no error, like every asyncio transport


@pytest.mark.asyncio
async def test_buffered_protocol_client(server_ctx, client_ctx):
    payload = pattern(1 << 20)
    async with tls_server("tcp", server_ctx, Echo) as (server, where, _):
        tr, pr = await connect("tcp", where, lambda: BufferedRecorder(4096), client_ctx)
        tr.write(payload)
        for _ in range(1000):
            if len(pr.data) >= len(payload):
                break
            await asyncio.sleep(0.01)
        assert bytes(pr.data) == payload
        assert max(pr.updates) <= 4096
        tr.close()
        assert await asyncio.wait_for(pr.lost, 10) is None


@pytest.mark.asyncio
async def test_server_sends_first(server_ctx, client_ctx):
    """Data written in the server's connection_made comes with the end of the handshake."""

    class Greeter(asyncio.Protocol):
        def connection_made(self, transport):
            self.transport = transport
            transport.write(b"220 welcome\r\n")

    async with tls_server("tcp", server_ctx, Greeter) as (server, where, _):
        tr, pr = await connect("tcp", where, Recorder, client_ctx)
        assert await pr.wait_bytes(13) == b"220 welcome\r\n"
        await close_and_wait(tr, pr)


# --------------------------------------------------------------------------------------------
# large transfers and flow control

@pytest.mark.asyncio
@pytest.mark.parametrize("kind", KINDS)
async def test_large_transfer_both_ways(kind, server_ctx, client_ctx):
    """16 MB each way at once through streams: exercises both sides' flow control."""
    size = 16 << 20
    up = pattern(size, 1)
    down = pattern(size, 2)
    got_up = hashlib.sha256()

    async def handle(reader, writer):
        async def send():
            for i in range(0, size, 1 << 20):
                writer.write(down[i:i + (1 << 20)])
                await writer.drain()

        sender = asyncio.ensure_future(send())
        n = 0
        while n < size:
            chunk = await reader.read(1 << 18)
            assert chunk
            got_up.update(chunk)
            n += len(chunk)
        await sender
        writer.close()

    loop = asyncio.get_running_loop()
    tmpdir = None
    if kind == "tcp":
        server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=server_ctx)
        conn = asyncio.open_connection("127.0.0.1", server.sockets[0].getsockname()[1],
                                       ssl=client_ctx, server_hostname="localhost")
    else:
        tmpdir, path = short_unix_path()
        server = await asyncio.start_unix_server(handle, path, ssl=server_ctx)
        conn = asyncio.open_unix_connection(path, ssl=client_ctx, server_hostname="localhost")
    try:
        reader, writer = await conn
        t0 = loop.time()

        async def upload():
            writer.write(up)
            await writer.drain()

        uploader = asyncio.ensure_future(upload())
        data = await asyncio.wait_for(reader.readexactly(size), 40)
        await uploader
        assert data == down
        assert got_up.digest() == hashlib.sha256(up).digest()
        assert await reader.read() == b""  # the server's close_notify
        writer.close()
        await writer.wait_closed()
        assert loop.time() - t0 < 40
    finally:
        server.close()
        await server.wait_closed()
        if tmpdir is not None:
            with contextlib.suppress(OSError):
                os.unlink(path)  # the stdlib loop leaves it before 3.13
            os.rmdir(tmpdir)


@pytest.mark.asyncio
async def test_write_flow_control(server_ctx, client_ctx):
    async with tls_server("tcp", server_ctx, Recorder) as (server, where, catcher):
        tr, pr = await connect("tcp", where, Recorder, client_ctx)
        sink = await asyncio.wait_for(catcher.first, 5)
        await asyncio.wait_for(sink.made, 5)
        sink.transport.pause_reading()
        tr.set_write_buffer_limits(high=256 * 1024)
        low, high = tr.get_write_buffer_limits()
        assert high == 256 * 1024 and low == 64 * 1024
        chunk = b"x" * 65536
        total = 0
        while pr.writing and total < (256 << 20):
            tr.write(chunk)
            total += len(chunk)
            await asyncio.sleep(0)
        assert not pr.writing, "pause_writing() never came"
        assert pr.pauses == 1
        assert tr.get_write_buffer_size() > 256 * 1024
        sink.transport.resume_reading()
        await pr.wait_writable()
        assert pr.resumes == 1
        assert tr.get_write_buffer_size() <= 64 * 1024
        for _ in range(2000):
            if len(sink.data) == total:
                break
            await asyncio.sleep(0.01)
        assert len(sink.data) == total
        await close_and_wait(tr, pr)
        with pytest.raises(ValueError):
            tr.set_write_buffer_limits(high=1, low=2)


@pytest.mark.asyncio
async def test_pause_reading(server_ctx, client_ctx):
    async with tls_server("tcp", server_ctx, Echo) as (server, where, catcher):
        tr, pr = await connect("tcp", where, Recorder, client_ctx)
        tr.write(b"a" * 1000)
        await pr.wait_bytes(1000)
        tr.pause_reading()
        assert not tr.is_reading()
        tr.write(b"b" * 100_000)
        await asyncio.sleep(0.2)
        assert len(pr.data) == 1000  # nothing delivered while paused
        tr.resume_reading()
        assert tr.is_reading()
        assert await pr.wait_bytes(101_000) == b"a" * 1000 + b"b" * 100_000
        await close_and_wait(tr, pr)


@pytest.mark.asyncio
async def test_pause_reading_inside_data_received(server_ctx, client_ctx):
    """A protocol that pauses in data_received gets no more calls until it resumes."""
    calls_while_paused = []

    def on_data(rec, data):
        if not rec.transport.is_reading():
            calls_while_paused.append(len(data))
        rec.transport.pause_reading()

    async with tls_server("tcp", server_ctx, Echo) as (server, where, _):
        tr, pr = await connect("tcp", where, lambda: Recorder(on_data=on_data), client_ctx)
        payload = pattern(2 << 20)
        tr.write(payload)
        while len(pr.data) < len(payload):
            n = pr.chunks
            for _ in range(500):
                if pr.chunks > n:
                    break
                await asyncio.sleep(0.01)
            assert pr.chunks == n + 1
            await asyncio.sleep(0.01)
            assert pr.chunks == n + 1  # paused: nothing came
            tr.resume_reading()
        assert bytes(pr.data) == payload
        assert not calls_while_paused
        await close_and_wait(tr, pr)


# --------------------------------------------------------------------------------------------
# closing: close_notify, EOF, abort

@pytest.mark.asyncio
@pytest.mark.parametrize("kind", KINDS)
async def test_peer_close_notify_gives_eof_received(kind, server_ctx, client_ctx):
    class SayAndClose(asyncio.Protocol):
        def connection_made(self, transport):
            self.transport = transport
            transport.write(b"bye")
            transport.close()

    async with tls_server(kind, server_ctx, SayAndClose) as (server, where, _):
        tr, pr = await connect(kind, where, Recorder, client_ctx)
        assert await asyncio.wait_for(pr.lost, 10) is None
        assert bytes(pr.data) == b"bye"
        assert pr.events[-2:] == ["eof", "lost"]
        assert pr.eof_count == 1 and pr.lost_count == 1
        assert tr.is_closing()


@pytest.mark.asyncio
async def test_eof_received_true_cannot_keep_tls_open(server_ctx, client_ctx, caplog):
    """Half-close does not exist over TLS: returning True from eof_received() only warns."""

    class Closer(asyncio.Protocol):
        def connection_made(self, transport):
            transport.close()

    async with tls_server("tcp", server_ctx, Closer) as (server, where, _):
        tr, pr = await connect("tcp", where, lambda: Recorder(eof_result=True), client_ctx)
        assert await asyncio.wait_for(pr.lost, 10) is None
        assert pr.events[-2:] == ["eof", "lost"]
    assert "eof_received() has no effect" in caplog.text


@pytest.mark.asyncio
async def test_client_close_gives_server_eof_then_lost(server_ctx, client_ctx):
    async with tls_server("tcp", server_ctx, Recorder) as (server, where, catcher):
        tr, pr = await connect("tcp", where, Recorder, client_ctx)
        srv = await asyncio.wait_for(catcher.first, 5)
        await asyncio.wait_for(srv.made, 5)
        tr.write(b"last words")
        tr.close()
        assert await asyncio.wait_for(srv.lost, 10) is None
        assert bytes(srv.data) == b"last words"
        assert srv.events == ["made", "data", "eof", "lost"]
        assert await asyncio.wait_for(pr.lost, 10) is None
        # The peer's answering close_notify still reaches eof_received, as in asyncio.
        assert pr.events == ["made", "eof", "lost"]


@pytest.mark.asyncio
async def test_abort(server_ctx, client_ctx):
    async with tls_server("tcp", server_ctx, Recorder) as (server, where, catcher):
        tr, pr = await connect("tcp", where, Recorder, client_ctx)
        srv = await asyncio.wait_for(catcher.first, 5)
        await asyncio.wait_for(srv.made, 5)
        tr.write(b"x" * 1000)
        tr.abort()
        assert tr.is_closing()
        assert await asyncio.wait_for(pr.lost, 10) is None
        await asyncio.sleep(0.05)
        assert pr.lost_count == 1
        await asyncio.wait_for(srv.lost, 10)  # the server notices, one way or another
        assert srv.lost_count == 1


@pytest.mark.asyncio
async def test_raw_eof_without_close_notify(server_ctx, client_ctx):
    """The peer's TCP FIN without close_notify: eof_received, then connection_lost."""
    loop = asyncio.get_running_loop()
    async with tls_server("tcp", server_ctx, Recorder) as (server, where, catcher):
        tr, pr = await connect("tcp", where, Recorder, client_ctx)
        srv = await asyncio.wait_for(catcher.first, 5)
        await asyncio.wait_for(srv.made, 5)
        srv.transport.get_extra_info("socket").shutdown(socket.SHUT_WR)
        assert await asyncio.wait_for(pr.lost, 10) is None
        assert pr.events == ["made", "eof", "lost"]
    del loop


@pytest.mark.asyncio
async def test_shutdown_timeout(ca, client_ctx):
    """A peer that never answers our close_notify (nor closes) is cut off after
    ssl_shutdown_timeout; connection_lost gets TimeoutError."""
    lsock = socket.create_server(("127.0.0.1", 0))
    release = threading.Event()
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost").configure_cert(ctx)

    def peer():
        conn, _ = lsock.accept()
        with ctx.wrap_socket(conn, server_side=True) as tls:
            tls.sendall(b"hi")
            release.wait(20)  # hold the connection, never read

    thread = threading.Thread(target=peer, daemon=True)
    thread.start()
    try:
        loop = asyncio.get_running_loop()
        tr, pr = await loop.create_connection(Recorder, *lsock.getsockname(), ssl=client_ctx,
                                              server_hostname="localhost",
                                              ssl_shutdown_timeout=0.3)
        await pr.wait_bytes(2)
        t0 = loop.time()
        tr.close()
        exc = await asyncio.wait_for(pr.lost, 10)
        assert isinstance(exc, TimeoutError)
        assert 0.2 < loop.time() - t0 < 5
    finally:
        release.set()
        thread.join(10)
        lsock.close()


# --------------------------------------------------------------------------------------------
# start_tls

@pytest.mark.asyncio
async def test_start_tls_both_sides(server_ctx, client_ctx):
    """A STARTTLS-style upgrade: plain greeting, then both ends switch to TLS."""
    loop = asyncio.get_running_loop()
    server_done = loop.create_future()

    class Server(asyncio.Protocol):
        def connection_made(self, transport):
            self.transport = transport
            self.buf = b""

        def data_received(self, data):
            self.buf += data
            if self.buf == b"STARTTLS\n":
                self.buf = b""
                self.transport.write(b"GO\n")
                asyncio.ensure_future(self.upgrade())
            elif self.buf.endswith(b"\n"):
                self.tls.write(b"secure:" + self.buf)
                self.buf = b""

        async def upgrade(self):
            try:
                old = self.transport
                self.tls = await loop.start_tls(old, self, server_ctx, server_side=True)
                assert old.get_protocol() is not self  # the TLS layer now reads the socket
                assert self.tls.get_protocol() is self
                server_done.set_result(self.tls)
            except BaseException as exc:
                server_done.set_exception(exc)

        def connection_lost(self, exc):
            pass

    server = await loop.create_server(Server, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        tr, pr = await loop.create_connection(Recorder, "127.0.0.1", port)
        tr.write(b"STARTTLS\n")
        assert await pr.wait_bytes(3) == b"GO\n"
        tls = await loop.start_tls(tr, pr, client_ctx, server_hostname="localhost")
        assert tls.get_extra_info("ssl_object") is not None
        assert tls.get_extra_info("sslcontext") is client_ctx
        assert tls.get_protocol() is pr
        assert pr.events == ["made", "data"]  # no second connection_made
        srv_tls = await asyncio.wait_for(server_done, 10)
        tls.write(b"ping\n")
        assert await pr.wait_bytes(3 + 12) == b"GO\nsecure:ping\n"
        tls.close()
        assert await asyncio.wait_for(pr.lost, 10) is None
        assert pr.lost_count == 1
        assert srv_tls.is_closing() or True
    finally:
        server.close()
        await server.wait_closed()


@pytest.mark.asyncio
async def test_start_tls_server_side_then_echo(server_ctx, client_ctx):
    """start_tls(server_side=True) on an accepted plain connection, against a TLS client."""
    loop = asyncio.get_running_loop()
    upgraded = loop.create_future()

    class Upgrader(asyncio.Protocol):
        def connection_made(self, transport):
            async def go():
                try:
                    tls = await loop.start_tls(transport, Echo(), server_ctx, server_side=True)
                    tls.get_protocol().connection_made(tls)
                    upgraded.set_result(tls)
                except BaseException as exc:
                    upgraded.set_exception(exc)
            asyncio.ensure_future(go())

        def connection_lost(self, exc):
            pass

    server = await loop.create_server(Upgrader, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        tr, pr = await loop.create_connection(Recorder, "127.0.0.1", port, ssl=client_ctx,
                                              server_hostname="localhost")
        await asyncio.wait_for(upgraded, 10)
        tr.write(b"echo me")
        assert await pr.wait_bytes(7) == b"echo me"
        await close_and_wait(tr, pr)
    finally:
        server.close()
        await server.wait_closed()


@pytest.mark.asyncio
async def test_start_tls_over_tls(server_ctx, client_ctx):
    """start_tls on a TLS transport: TLS inside TLS, both ends."""
    loop = asyncio.get_running_loop()
    inner_server = loop.create_future()

    class Server(asyncio.Protocol):
        def connection_made(self, transport):
            transport.pause_reading()  # nothing may reach us before the inner TLS takes over
            self.pending = b""
            self.inner = None
            asyncio.ensure_future(self.upgrade(transport))

        async def upgrade(self, transport):
            try:
                self.inner = await loop.start_tls(transport, self, server_ctx, server_side=True)
                inner_server.set_result(self.inner)
                if self.pending:
                    self.inner.write(self.pending.upper())
            except BaseException as exc:
                inner_server.set_exception(exc)

        def data_received(self, data):
            if self.inner is None:
                self.pending += data  # arrived with the end of the inner handshake
            else:
                self.inner.write(data.upper())

        def connection_lost(self, exc):
            pass

    server = await loop.create_server(Server, "127.0.0.1", 0, ssl=server_ctx)
    try:
        tr, pr = await loop.create_connection(Recorder, *server.sockets[0].getsockname(),
                                              ssl=client_ctx, server_hostname="localhost")
        inner = await loop.start_tls(tr, pr, client_ctx, server_hostname="localhost")
        assert inner.get_extra_info("ssl_object") is not tr.get_extra_info("ssl_object")
        inner.write(b"nested")
        assert await pr.wait_bytes(6) == b"NESTED"
        await asyncio.wait_for(inner_server, 10)
        inner.close()
        assert await asyncio.wait_for(pr.lost, 10) is None
        assert pr.lost_count == 1
    finally:
        server.close()
        await server.wait_closed()


@pytest.mark.asyncio
async def test_start_tls_errors(client_ctx):
    loop = asyncio.get_running_loop()
    server = await loop.create_server(asyncio.Protocol, "127.0.0.1", 0)
    try:
        tr, pr = await loop.create_connection(Recorder, *server.sockets[0].getsockname())
        with pytest.raises(TypeError):
            await loop.start_tls(tr, pr, object())
        with pytest.raises(TypeError):
            await loop.start_tls(tr, pr, None)
        with pytest.raises(TypeError):
            await loop.start_tls(object(), pr, client_ctx)
        with pytest.raises(ValueError):
            await loop.start_tls(tr, pr, client_ctx, server_hostname="localhost",
                                 ssl_handshake_timeout=-1)
        assert not tr.is_closing()
        tr.close()
        await asyncio.wait_for(pr.lost, 5)
    finally:
        server.close()
        await server.wait_closed()


@pytest.mark.asyncio
async def test_start_tls_bad_certificate(server_ctx):
    loop = asyncio.get_running_loop()

    tasks = []

    class Upgrader(asyncio.Protocol):
        def connection_made(self, transport):
            tasks.append(asyncio.ensure_future(
                loop.start_tls(transport, self, server_ctx, server_side=True)))

        def connection_lost(self, exc):
            pass

    server = await loop.create_server(Upgrader, "127.0.0.1", 0)
    try:
        tr, pr = await loop.create_connection(Recorder, *server.sockets[0].getsockname())
        untrusting = ssl.create_default_context()
        with pytest.raises(ssl.SSLCertVerificationError):
            await loop.start_tls(tr, pr, untrusting, server_hostname="localhost")
        assert tr.is_closing()
        await asyncio.wait_for(pr.lost, 5)
        # The server's side of the handshake fails too: the client's alert, or the lost connection.
        with pytest.raises((ssl.SSLError, ConnectionError)):
            await asyncio.wait_for(tasks[0], 5)
    finally:
        server.close()
        await server.wait_closed()


# --------------------------------------------------------------------------------------------
# handshake failures

@pytest.mark.asyncio
@pytest.mark.parametrize("kind", KINDS)
async def test_bad_certificate(kind, server_ctx):
    """An untrusted certificate fails create_connection with SSLCertVerificationError; nothing
    stays open (the fd-leak check of conftest)."""
    untrusting = ssl.create_default_context()
    async with tls_server(kind, server_ctx, Recorder) as (server, where, catcher):
        for _ in range(3):
            with pytest.raises(ssl.SSLCertVerificationError) as info:
                await connect(kind, where, Recorder, untrusting)
            assert info.value.verify_code  # e.g. 20: unable to get local issuer certificate
        await asyncio.sleep(0.05)
        assert not [p for p in catcher.made if getattr(p, "made", None) and p.made.done()], \
            "the server's protocol must not see a connection whose handshake failed"


@pytest.mark.asyncio
async def test_wrong_hostname(server_ctx, client_ctx):
    async with tls_server("tcp", server_ctx, Recorder) as (server, where, _):
        with pytest.raises(ssl.SSLCertVerificationError, match="[Hh]ostname"):
            await connect("tcp", where, Recorder, client_ctx, server_hostname="other.example")


@pytest.mark.asyncio
async def test_ssl_true_uses_a_verifying_default_context(server_ctx):
    async with tls_server("tcp", server_ctx, Recorder) as (server, where, _):
        loop = asyncio.get_running_loop()
        with pytest.raises(ssl.SSLCertVerificationError):
            await loop.create_connection(Recorder, where["host"], where["port"], ssl=True,
                                         server_hostname="localhost")


@pytest.mark.asyncio
async def test_server_hostname_empty_disables_name_check(server_ctx, ca):
    ctx = ssl.create_default_context()
    ca.configure_trust(ctx)
    ctx.check_hostname = False
    async with tls_server("tcp", server_ctx, Echo) as (server, where, _):
        tr, pr = await connect("tcp", where, Recorder, ctx, server_hostname="")
        assert tr.get_extra_info("ssl_object").server_hostname is None
        tr.write(b"x")
        await pr.wait_bytes(1)
        await close_and_wait(tr, pr)


@pytest.mark.asyncio
async def test_handshake_timeout_client(client_ctx):
    """A server that accepts and never answers: ConnectionAbortedError after the timeout."""
    loop = asyncio.get_running_loop()
    lsock = socket.create_server(("127.0.0.1", 0))
    lsock.setblocking(False)
    try:
        t0 = loop.time()
        with pytest.raises(ConnectionAbortedError, match="handshake"):
            await loop.create_connection(Recorder, *lsock.getsockname(), ssl=client_ctx,
                                         server_hostname="localhost", ssl_handshake_timeout=0.3)
        assert 0.2 < loop.time() - t0 < 5
        conn, _ = await loop.sock_accept(lsock)
        with conn:
            conn.setblocking(False)
            # The client sent its hello and then gave up: the server side sees the end.
            data = b""
            while True:
                chunk = await asyncio.wait_for(loop.sock_recv(conn, 65536), 5)
                if not chunk:
                    break
                data += chunk
            assert data[:1] == b"\x16"  # a TLS handshake record
    finally:
        lsock.close()


@pytest.mark.asyncio
async def test_handshake_timeout_server(server_ctx):
    """A client that connects and says nothing is dropped by the server after the timeout."""
    loop = asyncio.get_running_loop()
    async with tls_server("tcp", server_ctx, Recorder, ssl_handshake_timeout=0.3) as (
            server, where, catcher):
        sock = socket.socket()
        sock.setblocking(False)
        with sock:
            await loop.sock_connect(sock, (where["host"], where["port"]))
            t0 = loop.time()
            try:
                data = await asyncio.wait_for(loop.sock_recv(sock, 100), 10)
            except ConnectionResetError:
                data = b""
            assert data == b""
            assert 0.2 < loop.time() - t0 < 5
        assert all(not p.made.done() for p in catcher.made)


@pytest.mark.asyncio
async def test_handshake_peer_closes(client_ctx):
    """The server closes during the handshake: ConnectionResetError (or another OSError)."""
    loop = asyncio.get_running_loop()
    lsock = socket.create_server(("127.0.0.1", 0))
    lsock.setblocking(False)

    async def closer():
        conn, _ = await loop.sock_accept(lsock)
        await loop.sock_recv(conn, 65536)  # the ClientHello
        conn.close()

    task = asyncio.ensure_future(closer())
    try:
        with pytest.raises(ConnectionResetError):
            await loop.create_connection(Recorder, *lsock.getsockname(), ssl=client_ctx,
                                         server_hostname="localhost")
        await task
    finally:
        lsock.close()


@pytest.mark.asyncio
async def test_handshake_cancelled_leaves_nothing_open(client_ctx):
    loop = asyncio.get_running_loop()
    lsock = socket.create_server(("127.0.0.1", 0))
    lsock.setblocking(False)
    try:
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(
                loop.create_connection(Recorder, *lsock.getsockname(), ssl=client_ctx,
                                       server_hostname="localhost"), 0.2)
        await asyncio.sleep(0.05)
        conn, _ = await loop.sock_accept(lsock)
        conn.close()
    finally:
        lsock.close()


# --------------------------------------------------------------------------------------------
# argument checking

@pytest.mark.asyncio
async def test_ssl_argument_errors(server_ctx, client_ctx):
    loop = asyncio.get_running_loop()
    with pytest.raises(ValueError, match="server_hostname is only meaningful with ssl"):
        await loop.create_connection(asyncio.Protocol, "127.0.0.1", 1, server_hostname="x")
    with pytest.raises(ValueError, match="ssl_handshake_timeout is only meaningful with ssl"):
        await loop.create_connection(asyncio.Protocol, "127.0.0.1", 1, ssl_handshake_timeout=1)
    with pytest.raises(ValueError, match="ssl_shutdown_timeout is only meaningful with ssl"):
        await loop.create_connection(asyncio.Protocol, "127.0.0.1", 1, ssl_shutdown_timeout=1)
    with pytest.raises(ValueError, match="ssl_handshake_timeout is only meaningful with ssl"):
        await loop.create_server(asyncio.Protocol, "127.0.0.1", 0, ssl_handshake_timeout=1)
    with pytest.raises(TypeError):
        await loop.create_server(asyncio.Protocol, "127.0.0.1", 0, ssl=True)
    with pytest.raises(TypeError):
        await loop.create_unix_server(asyncio.Protocol, "/tmp/never-bound", ssl=True)
    with pytest.raises(ValueError, match="server_hostname"):
        await loop.create_unix_connection(asyncio.Protocol, "/nonexistent", ssl=client_ctx)
    a, b = socket.socketpair()
    with a, b:
        with pytest.raises(ValueError, match="server_hostname"):
            await loop.create_connection(asyncio.Protocol, sock=a, ssl=client_ctx)


@pytest.mark.asyncio
async def test_non_positive_timeouts(server_ctx, client_ctx):
    async with tls_server("tcp", server_ctx, Echo) as (server, where, _):
        for kwargs in ({"ssl_handshake_timeout": 0}, {"ssl_shutdown_timeout": -1}):
            with pytest.raises(ValueError):
                await connect("tcp", where, Recorder, client_ctx, **kwargs)


@pytest.mark.asyncio
async def test_connect_accepted_socket_tls(server_ctx, client_ctx):
    loop = asyncio.get_running_loop()
    lsock = socket.create_server(("127.0.0.1", 0))
    lsock.setblocking(False)
    try:
        client = asyncio.ensure_future(loop.create_connection(
            Recorder, *lsock.getsockname(), ssl=client_ctx, server_hostname="localhost"))
        conn, _ = await loop.sock_accept(lsock)
        srv_tr, srv_pr = await loop.connect_accepted_socket(Echo, conn, ssl=server_ctx,
                                                            ssl_handshake_timeout=10)
        assert srv_tr.get_extra_info("sslcontext") is server_ctx
        tr, pr = await client
        tr.write(b"accepted")
        assert await pr.wait_bytes(8) == b"accepted"
        await close_and_wait(tr, pr)
        srv_tr.close()
        await asyncio.sleep(0.05)
    finally:
        lsock.close()


@pytest.mark.asyncio
async def test_server_side_needs_a_context():
    loop = asyncio.get_running_loop()
    a, b = socket.socketpair()
    with b:
        with pytest.raises((ValueError, TypeError)):
            await loop.connect_accepted_socket(asyncio.Protocol, a, ssl=True)
        a.close()
