"""Where applications can tell the loop apart: the context protocol callbacks run in, a protocol
switched inside data_received, and timers that follow a patched ``loop.time``.

Every test here runs on edgeloop's four configurations and passes on the stdlib loop too
(``EDGELOOP_TESTS_REFERENCE=asyncio``).
"""
from __future__ import annotations

import asyncio
import contextvars
import os
import signal
import socket
import sys

import pytest

from tests._streamutil import REFERENCE

var: contextvars.ContextVar[str] = contextvars.ContextVar("var", default="default")


class Seen(asyncio.Protocol):
    """Records the value of ``var`` in every callback; a connection can set ``var`` itself."""

    def __init__(self, log: list[tuple[str, str]], set_to: str | None = None,
                 echo: bool = True) -> None:
        log.append(("factory", var.get()))
        self.log = log
        self.set_to = set_to
        self.echo = echo
        self.transport: asyncio.Transport | None = None
        self.done = asyncio.get_running_loop().create_future()

    def connection_made(self, transport):
        self.transport = transport
        self.log.append(("made", var.get()))

    def data_received(self, data):
        self.log.append(("data", var.get()))
        if self.set_to is not None:
            var.set(self.set_to)
        if self.echo:
            self.transport.write(data)

    def eof_received(self):
        self.log.append(("eof", var.get()))

    def connection_lost(self, exc):
        self.log.append(("lost", var.get()))
        if not self.done.done():
            self.done.set_result(None)


async def _in_empty_context(coro):
    """Run ``coro`` in a task with a fresh, empty context (as a client started elsewhere)."""
    return await asyncio.get_running_loop().create_task(coro, context=contextvars.Context())


async def _roundtrip(port: int, payload: bytes = b"hello") -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(payload)
    data = await reader.readexactly(len(payload))
    writer.close()
    await writer.wait_closed()
    return data


@pytest.mark.asyncio
async def test_server_callbacks_run_in_a_copy_of_the_create_server_context():
    loop = asyncio.get_running_loop()
    logs: list[list[tuple[str, str]]] = []
    protos: list[Seen] = []

    def factory():
        log: list[tuple[str, str]] = []
        logs.append(log)
        # The first connection sets the variable in its own callbacks.
        proto = Seen(log, set_to="set by connection 1" if not protos else None)
        protos.append(proto)
        return proto

    token = var.set("server")
    server = await loop.create_server(factory, "127.0.0.1", 0)
    var.reset(token)  # later changes of the caller's context are not seen by the server
    port = server.sockets[0].getsockname()[1]
    try:
        for _ in range(2):
            assert await _in_empty_context(_roundtrip(port)) == b"hello"
        await asyncio.wait_for(asyncio.gather(*(p.done for p in protos)), 5)
    finally:
        server.close()
        await server.wait_closed()
    for log in logs:
        assert set(value for _, value in log if _ in ("factory", "made", "data")) == {"server"}
    # What connection 1 set stays in connection 1: connection 2 still sees the server's value.
    assert ("data", "server") in logs[1]
    assert var.get() == "default"


@pytest.mark.asyncio
async def test_aiohttp_handler_sees_the_context_of_main():
    """The issue's reproduction: a ContextVar set before the AppRunner starts is what the handler
    reads, even for a request made by a client task running in an empty context."""
    aiohttp = pytest.importorskip("aiohttp")
    from aiohttp import web

    async def handler(request):
        return web.Response(text=var.get())

    app = web.Application()
    app.router.add_get("/", handler)
    var.set("main")
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]

    async def client():
        async with aiohttp.ClientSession() as session:
            async with session.get(f"http://127.0.0.1:{port}/") as resp:
                return await resp.text()

    try:
        assert await _in_empty_context(client()) == "main"
    finally:
        await runner.cleanup()


@pytest.mark.asyncio
async def test_connection_callbacks_run_in_a_copy_of_the_callers_context():
    loop = asyncio.get_running_loop()
    server_log: list[tuple[str, str]] = []
    server = await loop.create_server(lambda: Seen(server_log), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    log: list[tuple[str, str]] = []

    async def connect():
        var.set("caller")
        tr, proto = await loop.create_connection(lambda: Seen(log, set_to="protocol"),
                                                 "127.0.0.1", port)
        tr.write(b"x")
        await asyncio.sleep(0.05)
        tr.close()
        await proto.done
        return var.get()

    try:
        # The protocol's own var.set() does not leak into the caller's context.
        assert await _in_empty_context(connect()) == "caller"
    finally:
        server.close()
        await server.wait_closed()
    assert log[0] == ("factory", "caller") and ("made", "caller") in log
    assert ("data", "caller") in log


@pytest.mark.asyncio
async def test_accepted_socket_and_datagram_and_pipe_callbacks_see_the_callers_context():
    loop = asyncio.get_running_loop()
    var.set("caller")

    # connect_accepted_socket
    a, b = socket.socketpair()
    log: list[tuple[str, str]] = []
    tr, proto = await loop.connect_accepted_socket(lambda: Seen(log), a)
    var.set("changed after")
    b.sendall(b"ping")
    await asyncio.sleep(0.05)
    tr.close()
    await proto.done
    b.close()
    assert {value for kind, value in log if kind != "lost"} == {"caller"}
    # asyncio runs connection_lost in a copy of the context of whoever called close();
    # edgeloop keeps every callback in the connection's context (README: differences).
    if not REFERENCE:
        assert ("lost", "caller") in log

    # create_datagram_endpoint
    var.set("udp caller")
    got = loop.create_future()

    class Udp(asyncio.DatagramProtocol):
        def datagram_received(self, data, addr):
            if not got.done():
                got.set_result(var.get())

    udp, _ = await loop.create_datagram_endpoint(Udp, local_addr=("127.0.0.1", 0))
    var.set("changed after")
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sender.sendto(b"d", udp.get_extra_info("sockname"))
    try:
        assert await asyncio.wait_for(got, 5) == "udp caller"
    finally:
        sender.close()
        udp.close()

    # connect_read_pipe
    var.set("pipe caller")
    rfd, wfd = os.pipe()
    pipe_log: list[tuple[str, str]] = []
    rtr, rproto = await loop.connect_read_pipe(lambda: Seen(pipe_log, echo=False),
                                               os.fdopen(rfd, "rb", 0))
    var.set("changed after")
    os.write(wfd, b"x")
    os.close(wfd)
    await asyncio.wait_for(rproto.done, 5)
    assert {value for _, value in pipe_log} == {"pipe caller"}


@pytest.mark.asyncio
async def test_subprocess_protocol_sees_the_callers_context():
    loop = asyncio.get_running_loop()
    seen: list[tuple[str, str]] = []
    done = loop.create_future()

    class Proto(asyncio.SubprocessProtocol):
        def connection_made(self, transport):
            seen.append(("made", var.get()))

        def pipe_data_received(self, fd, data):
            seen.append(("data", var.get()))

        def process_exited(self):
            seen.append(("exited", var.get()))

        def connection_lost(self, exc):
            seen.append(("lost", var.get()))
            done.set_result(None)

    var.set("spawner")
    tr, _ = await loop.subprocess_exec(Proto, sys.executable, "-c", "print('hi')",
                                       stdin=None, stderr=None)
    var.set("changed after")
    try:
        await asyncio.wait_for(done, 10)
    finally:
        tr.close()
    kinds = {k for k, _ in seen}
    assert {"made", "data", "exited", "lost"} <= kinds
    assert {value for kind, value in seen if kind in ("made", "data")} == {"spawner"}
    # asyncio (3.11/3.12) reports the exit from its child watcher, in the watcher's context;
    # edgeloop sees the exit through a pidfd in its poller and keeps the caller's context.
    if not REFERENCE:
        assert {value for _, value in seen} == {"spawner"}


@pytest.mark.asyncio
async def test_reader_and_signal_callbacks_keep_the_context_they_were_added_in():
    loop = asyncio.get_running_loop()
    a, b = socket.socketpair()
    got = loop.create_future()

    def on_readable():
        loop.remove_reader(a)
        got.set_result(var.get())

    var.set("at add_reader")
    loop.add_reader(a, on_readable)
    var.set("later")
    b.send(b"x")
    try:
        assert await asyncio.wait_for(got, 5) == "at add_reader"
    finally:
        a.close()
        b.close()

    sig = loop.create_future()
    var.set("at add_signal_handler")
    loop.add_signal_handler(signal.SIGUSR1, lambda: sig.set_result(var.get()))
    var.set("later")
    try:
        os.kill(os.getpid(), signal.SIGUSR1)
        assert await asyncio.wait_for(sig, 5) == "at add_signal_handler"
    finally:
        loop.remove_signal_handler(signal.SIGUSR1)


# ------------------------------------------------------------------ set_protocol mid-drain

class Upgrading(asyncio.Protocol):
    """Hands the connection to ``new`` from inside its first data_received."""

    def __init__(self, new: asyncio.BaseProtocol) -> None:
        self.new = new
        self.chunks: list[bytes] = []

    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        self.chunks.append(data)
        self.new.total -= len(data)
        self.transport.set_protocol(self.new)
        self.new.connection_made(self.transport)


class Collect(asyncio.Protocol):
    def __init__(self, total: int) -> None:
        self.data = bytearray()
        self.total = total  # what the old protocol got counts too: set before the switch
        self.full = asyncio.get_running_loop().create_future()

    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        self.data += data
        self._check()

    def _check(self):
        if len(self.data) >= self.total and not self.full.done():
            self.full.set_result(None)

    def connection_lost(self, exc):
        pass


class CollectBuffered(asyncio.BufferedProtocol):
    def __init__(self, total: int) -> None:
        self.data = bytearray()
        self.total = total
        self.buf = bytearray(4096)
        self.full = asyncio.get_running_loop().create_future()

    def connection_made(self, transport):
        self.transport = transport

    def get_buffer(self, sizehint):
        return self.buf

    def buffer_updated(self, nbytes):
        self.data += self.buf[:nbytes]
        if len(self.data) >= self.total and not self.full.done():
            self.full.set_result(None)

    def connection_lost(self, exc):
        pass


@pytest.mark.parametrize("kind", [Collect, CollectBuffered])
@pytest.mark.asyncio
async def test_set_protocol_inside_data_received_applies_to_the_next_chunk(kind):
    """Far more than one read's worth is queued at once, so an edge-triggered drain reads many
    chunks in a row: after the switch, not one more chunk may reach the old protocol."""
    loop = asyncio.get_running_loop()
    payload = os.urandom(1 << 20)
    a, b = socket.socketpair()
    b.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
    new = kind(len(payload))
    old = Upgrading(new)
    b.setblocking(False)
    sent = 0
    try:
        sent = b.send(payload)  # queued before the transport exists: one long drain
        tr, _ = await loop.connect_accepted_socket(lambda: old, a)
        while sent < len(payload):
            await loop.sock_sendall(b, payload[sent:])
            sent = len(payload)
        await asyncio.wait_for(new.full, 10)
        assert len(old.chunks) == 1
        assert bytes(old.chunks[0]) + bytes(new.data) == payload
        tr.close()
        await asyncio.sleep(0)
    finally:
        b.close()


# ------------------------------------------------------------------ the loop's clock

@pytest.mark.asyncio
async def test_timers_follow_a_patched_loop_time():
    loop = asyncio.get_running_loop()
    now = [loop.time()]
    loop.time = lambda: now[0]
    try:
        fired = loop.create_future()
        timer = loop.call_later(1000, fired.set_result, "fired")
        assert timer.when() == pytest.approx(now[0] + 1000)
        for _ in range(3):
            await asyncio.sleep(0)
        assert not fired.done()
        now[0] += 1001  # the fake clock jumps; the real one did not move
        assert await asyncio.wait_for(fired, 2) == "fired"
        # asyncio.sleep and timeouts go through call_at/call_later: they follow it too.
        sleeper = loop.create_task(asyncio.sleep(3600))
        await asyncio.sleep(0)
        now[0] += 3601
        await asyncio.wait_for(sleeper, 2)
    finally:
        del loop.time


# ------------------------------------------------------------------ uvicorn websocket upgrade

async def _ws_echo_app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            else:
                await send({"type": "lifespan.shutdown.complete"})
                return
    assert scope["type"] == "websocket"
    await receive()  # websocket.connect
    await send({"type": "websocket.accept"})
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            return
        await send({"type": "websocket.send", "text": message["text"]})


async def _uvicorn(ws: str):
    uvicorn = pytest.importorskip("uvicorn")
    config = uvicorn.Config(_ws_echo_app, host="127.0.0.1", port=0, loop="none", http="h11",
                            ws=ws, lifespan="off", log_level="warning",
                            h11_max_incomplete_event_size=256 * 1024)
    server = uvicorn.Server(config)
    task = asyncio.get_running_loop().create_task(server.serve())
    for _ in range(500):
        if server.started:
            break
        await asyncio.sleep(0.01)
    assert server.started
    port = server.servers[0].sockets[0].getsockname()[1]
    return server, task, port


def _client_frame(text: str) -> bytes:
    """A masked text frame, as a client sends it (RFC 6455, 5.2)."""
    payload = text.encode()
    mask = os.urandom(4)
    n = len(payload)
    head = bytes([0x81]) + (bytes([0x80 | n]) if n < 126 else bytes([0x80 | 126]) + n.to_bytes(2, "big"))
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


async def _read_server_frame(reader: asyncio.StreamReader) -> str:
    b0, b1 = await reader.readexactly(2)
    assert b0 == 0x81, hex(b0)
    n = b1 & 0x7F
    if n == 126:
        n = int.from_bytes(await reader.readexactly(2), "big")
    elif n == 127:
        n = int.from_bytes(await reader.readexactly(8), "big")
    return (await reader.readexactly(n)).decode()


@pytest.mark.skipif(REFERENCE, reason="the stdlib reads 256 KiB per recv: the frames come in the "
                    "handshake's own chunk, whose tail uvicorn's h11 protocol drops")
@pytest.mark.parametrize("ws", ["websockets-sansio", "wsproto"])
@pytest.mark.asyncio
async def test_uvicorn_websocket_upgrade_then_frames_in_the_same_drain(ws):
    """uvicorn switches protocols (transport.set_protocol) inside data_received.  The handshake
    here fills exactly one 64 KiB read and the frames follow at once, so an edge-triggered drain
    reads the frames in the same drain: they must reach the websocket protocol."""
    pytest.importorskip("websockets" if ws == "websockets-sansio" else "wsproto")
    server, task, port = await _uvicorn(ws)
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        head = ("GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
                "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                "Sec-WebSocket-Version: 13\r\n")
        # Padding headers (servers cap a header line at 8 KiB) up to exactly 64 KiB.
        for i in range(15):
            head += f"X-Pad-{i:02d}: " + "p" * 4000 + "\r\n"
        head += "X-Pad-Last: "
        pad = 64 * 1024 - len(head) - len("\r\n\r\n")
        request = (head + "p" * pad + "\r\n\r\n").encode()
        assert len(request) == 64 * 1024
        messages = [f"{i:04d}:" + "m" * 3000 for i in range(40)]
        writer.write(request + b"".join(_client_frame(m) for m in messages))
        status = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        assert status.startswith(b"HTTP/1.1 101"), status[:80]
        echoed = [await asyncio.wait_for(_read_server_frame(reader), 10) for _ in messages]
        assert echoed == messages
        writer.close()
        await writer.wait_closed()
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 10)


@pytest.mark.asyncio
async def test_uvicorn_websocket_with_the_websockets_client():
    """The same server with a real client: upgrade, then 50 messages sent back to back."""
    client = pytest.importorskip("websockets.asyncio.client")
    server, task, port = await _uvicorn("websockets-sansio")
    try:
        async with client.connect(f"ws://127.0.0.1:{port}/ws", max_size=None) as conn:
            messages = [f"{i}:" + "w" * (i * 997) for i in range(50)]
            for m in messages:
                await conn.send(m)
            echoed = [await asyncio.wait_for(conn.recv(), 10) for _ in messages]
            assert echoed == messages
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 10)


@pytest.mark.asyncio
async def test_unretrieved_task_exception_is_reported_at_once_in_debug_mode():
    """A task failing with nobody awaiting it is freed at once, so that its exception is
    reported by the next iteration (in the task's context from 3.12): nothing of the loop may
    keep the task alive, not even the frames a failed coroutine links to (3.12+, debug mode
    times each callback in a frame of its own)."""
    loop = asyncio.get_running_loop()
    seen: list[str] = []

    async def failing():
        var.set("task")
        1 / 0

    loop.set_debug(True)
    loop.set_exception_handler(lambda lp, ctx: seen.append(var.get()))
    try:
        loop.create_task(failing())
        await asyncio.sleep(0)
        assert len(seen) == 1
        if sys.version_info >= (3, 12):  # Task.get_context() exists from 3.12 on
            assert seen == ["task"]
    finally:
        loop.set_exception_handler(None)
        loop.set_debug(False)
