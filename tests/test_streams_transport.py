"""The Transport API of stream sockets (TCP and Unix), Protocol and BufferedProtocol, and streams.

Each test drives one transport made by the loop against a raw non-blocking peer socket (read and
written with ``loop.sock_*``), so what the peer observes is what the kernel carried.
"""
from __future__ import annotations

import asyncio
import hashlib
import os
import socket

import pytest

try:
    from tests._streamutil import (
        BufferedRecorder, ExceptionCatcher, Recorder, make_transport, short_unix_path,
        sock_recv_exactly, sock_recv_until_eof,
    )
except ModuleNotFoundError:  # tests/ on sys.path rather than a package
    from _streamutil import (
        BufferedRecorder, ExceptionCatcher, Recorder, make_transport, short_unix_path,
        sock_recv_exactly, sock_recv_until_eof,
    )

pytestmark = pytest.mark.timeout(30)

KINDS = ["tcp", "unix"]

# Tests of API surface (arguments, attributes) rather than of the I/O path run on the two epoll
# modes only: the poll and select backends share the level-triggered transports.
EDGE_LEVEL = pytest.mark.asyncio(loop_factories=["edge", "level"])


def pattern(n: int, seed: int = 0) -> bytes:
    """n bytes that are not periodic at any small stride (so reordering or loss shows)."""
    out = bytearray()
    i = seed
    while len(out) < n:
        out += hashlib.sha256(i.to_bytes(8, "little")).digest() * 64
        i += 1
    return bytes(out[:n])


async def quiet(seconds: float = 0.05) -> None:
    """Let the loop run for a while when asserting that something does *not* happen."""
    await asyncio.sleep(seconds)


# --------------------------------------------------------------------------------------------
# write / writelines

@EDGE_LEVEL
@pytest.mark.parametrize("kind", KINDS)
async def test_write_accepts_bytes_like(kind):
    async with make_transport(kind, Recorder) as (tr, pr, peer):
        tr.write(b"abc")
        tr.write(bytearray(b"def"))
        tr.write(memoryview(b"xxghixx")[2:5])
        tr.write(b"")  # no-op
        tr.write(memoryview(bytearray(b"jkl")))
        assert await sock_recv_exactly(peer, 12) == b"abcdefghijkl"
        assert not tr.is_closing()


@pytest.mark.asyncio
@pytest.mark.parametrize("kind", KINDS)
async def test_write_copies_mutable_buffers(kind):
    """The transport may keep data it could not send: it must not alias the caller's buffer."""
    async with make_transport(kind, Recorder) as (tr, pr, peer):
        big = pattern(4 << 20)
        tr.write(big)  # the peer is not reading: most of this stays in the transport buffer
        buf = bytearray(b"A" * 1000)
        tr.write(buf)
        buf[:] = b"B" * 1000
        got = await sock_recv_exactly(peer, len(big) + 1000)
        assert got[:len(big)] == big
        assert got[len(big):] == b"A" * 1000


@EDGE_LEVEL
@pytest.mark.parametrize("kind", KINDS)
async def test_write_rejects_non_bytes(kind):
    async with make_transport(kind, Recorder) as (tr, pr, peer):
        with pytest.raises(TypeError):
            tr.write("text")
        with pytest.raises(TypeError):
            tr.write(12)
        tr.write(b"ok")
        assert await sock_recv_exactly(peer, 2) == b"ok"


@EDGE_LEVEL
@pytest.mark.parametrize("kind", KINDS)
async def test_writelines(kind):
    async with make_transport(kind, Recorder) as (tr, pr, peer):
        tr.writelines([b"one ", bytearray(b"two "), memoryview(b"three ")])
        tr.writelines(b"%d," % i for i in range(1000))  # a generator
        tr.writelines([])
        expected = b"one two three " + b"".join(b"%d," % i for i in range(1000))
        assert await sock_recv_exactly(peer, len(expected)) == expected


@pytest.mark.asyncio
@pytest.mark.parametrize("kind", KINDS)
async def test_large_write_arrives_intact(kind):
    async with make_transport(kind, Recorder) as (tr, pr, peer):
        payload = pattern(8 << 20, seed=7)
        for i in range(0, len(payload), 1 << 20):
            tr.write(payload[i:i + (1 << 20)])
        got = await sock_recv_exactly(peer, len(payload), timeout=20)
        assert hashlib.sha256(got).digest() == hashlib.sha256(payload).digest()
        assert tr.get_write_buffer_size() == 0


# --------------------------------------------------------------------------------------------
# receiving, Protocol callbacks order

@pytest.mark.asyncio
@pytest.mark.parametrize("kind", KINDS)
async def test_protocol_callback_order(kind):
    loop = asyncio.get_running_loop()
    async with make_transport(kind, Recorder) as (tr, pr, peer):
        payload = pattern(300_000, seed=1)
        await loop.sock_sendall(peer, payload)
        peer.shutdown(socket.SHUT_WR)
        assert await asyncio.wait_for(pr.eof, 10) == payload
        exc = await asyncio.wait_for(pr.lost, 10)  # eof_received returned None: transport closes
        assert exc is None
        ev = pr.events
        assert ev[0] == "made" and ev[-2:] == ["eof", "lost"]
        assert set(ev[1:-2]) == {"data"}
        assert pr.lost_count == 1 and pr.eof_count == 1
        assert tr.is_closing()


@EDGE_LEVEL
@pytest.mark.parametrize("kind", KINDS)
async def test_set_protocol_switches_delivery(kind):
    loop = asyncio.get_running_loop()
    async with make_transport(kind, Recorder) as (tr, first, peer):
        await loop.sock_sendall(peer, b"first")
        await first.wait_bytes(5)
        second = Recorder()
        tr.set_protocol(second)
        assert tr.get_protocol() is second
        await loop.sock_sendall(peer, b"second")
        assert await second.wait_bytes(6) == b"second"
        assert bytes(first.data) == b"first"
        tr.close()
        assert await asyncio.wait_for(second.lost, 5) is None
        assert first.lost_count == 0 and second.lost_count == 1
        tr.set_protocol(first)  # so make_transport's cleanup finds a finished protocol
        first.lost.set_result(None)


# --------------------------------------------------------------------------------------------
# write_eof / close / abort

@pytest.mark.asyncio
@pytest.mark.parametrize("kind", KINDS)
async def test_write_eof_half_closes(kind):
    loop = asyncio.get_running_loop()
    async with make_transport(kind, Recorder) as (tr, pr, peer):
        assert tr.can_write_eof() is True
        payload = pattern(2 << 20, seed=2)  # more than the kernel buffers: write_eof waits
        tr.write(payload)
        tr.write_eof()
        tr.write_eof()  # idempotent
        assert not tr.is_closing()
        with pytest.raises(RuntimeError):
            tr.write(b"after eof")
        got = await sock_recv_until_eof(peer, timeout=20)
        assert got == payload
        # the read side still works after our EOF
        await loop.sock_sendall(peer, b"still reading")
        assert await pr.wait_bytes(13) == b"still reading"
        peer.shutdown(socket.SHUT_WR)
        await asyncio.wait_for(pr.eof, 5)
        assert await asyncio.wait_for(pr.lost, 5) is None
        assert pr.lost_count == 1


@pytest.mark.asyncio
@pytest.mark.parametrize("kind", KINDS)
async def test_close_flushes_then_eof(kind):
    async with make_transport(kind, Recorder) as (tr, pr, peer):
        payload = pattern(4 << 20, seed=3)
        tr.write(payload)
        assert tr.get_write_buffer_size() > 0  # the peer has not read anything yet
        tr.close()
        assert tr.is_closing()
        tr.close()  # idempotent
        assert not pr.lost.done()  # never synchronously from close()
        got = await sock_recv_until_eof(peer, timeout=20)
        assert got == payload
        assert await asyncio.wait_for(pr.lost, 5) is None
        await quiet()
        assert pr.lost_count == 1
        assert pr.events.count("lost") == 1


@pytest.mark.asyncio
@pytest.mark.parametrize("kind", KINDS)
async def test_close_stops_reading(kind):
    loop = asyncio.get_running_loop()
    async with make_transport(kind, Recorder) as (tr, pr, peer):
        await loop.sock_sendall(peer, b"before")
        await pr.wait_bytes(6)
        tr.close()
        try:
            await loop.sock_sendall(peer, b"after close")
        except OSError:
            pass
        assert await asyncio.wait_for(pr.lost, 5) is None
        await quiet()
        assert bytes(pr.data) == b"before"
        assert "eof" not in pr.events


@pytest.mark.asyncio
@pytest.mark.parametrize("kind", KINDS)
async def test_abort_discards_buffer(kind):
    loop = asyncio.get_running_loop()
    async with make_transport(kind, Recorder) as (tr, pr, peer):
        total = 8 << 20
        tr.write(b"x" * total)
        pending = tr.get_write_buffer_size()
        assert pending > 0
        tr.abort()
        assert tr.is_closing()
        tr.abort()
        tr.close()
        assert await asyncio.wait_for(pr.lost, 5) is None
        got = 0
        try:
            while True:
                chunk = await asyncio.wait_for(loop.sock_recv(peer, 1 << 20), 10)
                if not chunk:
                    break
                got += len(chunk)
        except ConnectionResetError:
            pass
        assert got <= total - pending
        await quiet()
        assert pr.lost_count == 1


@pytest.mark.asyncio
@pytest.mark.parametrize("kind", KINDS)
async def test_write_after_close_is_ignored(kind):
    async with make_transport(kind, Recorder) as (tr, pr, peer):
        tr.write(b"before")
        assert await sock_recv_exactly(peer, 6) == b"before"
        tr.close()
        tr.write(b"after close")  # stdlib: silently dropped once the connection is going away
        assert await asyncio.wait_for(pr.lost, 5) is None
        for _ in range(3):
            tr.write(b"after lost")
        assert await sock_recv_until_eof(peer) == b""
        assert pr.lost_count == 1


@pytest.mark.asyncio
@pytest.mark.parametrize("kind", KINDS)
async def test_connection_lost_once_when_peer_closes_and_we_close(kind):
    async with make_transport(kind, Recorder) as (tr, pr, peer):
        peer.close()
        await asyncio.wait_for(pr.eof, 5)
        tr.close()
        tr.abort()
        assert await asyncio.wait_for(pr.lost, 5) is None
        await quiet()
        assert pr.lost_count == 1
        assert tr.is_closing()


@EDGE_LEVEL
@pytest.mark.parametrize("kind", KINDS)
async def test_data_received_exception_is_fatal(kind):
    loop = asyncio.get_running_loop()
    boom = ValueError("boom")

    def on_data(p, data):
        raise boom

    with ExceptionCatcher(loop) as caught:
        async with make_transport(kind, lambda: Recorder(on_data=on_data)) as (tr, pr, peer):
            await loop.sock_sendall(peer, b"x")
            assert await asyncio.wait_for(pr.lost, 5) is boom
            await quiet()
            assert pr.lost_count == 1
            assert tr.is_closing()
    assert any(ctx.get("exception") is boom for ctx in caught.contexts)


# --------------------------------------------------------------------------------------------
# pause_reading / resume_reading

@pytest.mark.asyncio
@pytest.mark.parametrize("kind", KINDS)
async def test_pause_resume_reading(kind):
    loop = asyncio.get_running_loop()
    async with make_transport(kind, Recorder) as (tr, pr, peer):
        assert tr.is_reading()
        tr.pause_reading()
        assert not tr.is_reading()
        tr.pause_reading()  # idempotent
        assert not tr.is_reading()
        await loop.sock_sendall(peer, b"while paused")
        peer.shutdown(socket.SHUT_WR)
        await quiet(0.1)
        assert pr.data == b"" and pr.eof_count == 0  # neither data nor EOF while paused
        tr.resume_reading()
        assert tr.is_reading()
        tr.resume_reading()  # idempotent
        assert await asyncio.wait_for(pr.eof, 5) == b"while paused"
        assert await asyncio.wait_for(pr.lost, 5) is None
        assert not tr.is_reading()


@pytest.mark.asyncio
@pytest.mark.parametrize("kind", KINDS)
async def test_pause_inside_data_received_stops_delivery(kind):
    """After pause_reading() returns, data_received is not called until resume_reading()."""
    loop = asyncio.get_running_loop()
    paused = []

    def on_data(p, data):
        assert not paused or not paused[-1], "data_received while paused"
        p.transport.pause_reading()
        paused.append(True)

        def resume():
            paused.append(False)
            p.transport.resume_reading()
        loop.call_soon(resume)

    async with make_transport(kind, lambda: Recorder(on_data=on_data)) as (tr, pr, peer):
        payload = pattern(1 << 20, seed=4)
        sender = asyncio.ensure_future(loop.sock_sendall(peer, payload))
        assert await pr.wait_bytes(len(payload), timeout=20) == payload
        await sender
        assert pr.chunks >= 2


@EDGE_LEVEL
@pytest.mark.parametrize("kind", KINDS)
async def test_is_reading_false_after_close(kind):
    async with make_transport(kind, Recorder) as (tr, pr, peer):
        tr.close()
        assert not tr.is_reading()
        tr.pause_reading()  # no-ops on a closing transport
        tr.resume_reading()
        assert await asyncio.wait_for(pr.lost, 5) is None


# --------------------------------------------------------------------------------------------
# write flow control

@EDGE_LEVEL
@pytest.mark.parametrize("kind", KINDS)
async def test_write_buffer_limits_values(kind):
    async with make_transport(kind, Recorder) as (tr, pr, peer):
        low, high = tr.get_write_buffer_limits()
        assert 0 <= low <= high
        tr.set_write_buffer_limits(high=4096, low=1024)
        assert tr.get_write_buffer_limits() == (1024, 4096)
        tr.set_write_buffer_limits(high=4000)
        assert tr.get_write_buffer_limits() == (1000, 4000)
        tr.set_write_buffer_limits(low=100)
        assert tr.get_write_buffer_limits() == (100, 400)
        tr.set_write_buffer_limits(high=0, low=0)
        assert tr.get_write_buffer_limits() == (0, 0)
        with pytest.raises(ValueError):
            tr.set_write_buffer_limits(high=10, low=20)
        with pytest.raises(ValueError):
            tr.set_write_buffer_limits(high=10, low=-1)
        assert tr.get_write_buffer_limits() == (0, 0)  # unchanged by the failed calls
        assert tr.get_write_buffer_size() == 0


@pytest.mark.asyncio
@pytest.mark.parametrize("kind", KINDS)
async def test_pause_and_resume_writing(kind):
    loop = asyncio.get_running_loop()
    async with make_transport(kind, Recorder) as (tr, pr, peer):
        high, low = 256 * 1024, 64 * 1024
        tr.set_write_buffer_limits(high=high, low=low)
        chunk = pattern(64 * 1024, seed=5)
        sent = 0
        while pr.writing:
            tr.write(chunk)
            sent += len(chunk)
            assert sent < 64 << 20, "pause_writing never called"
        assert pr.pauses == 1 and pr.resumes == 0
        assert tr.get_write_buffer_size() > high
        # another write while paused: buffered, no second pause_writing
        tr.write(chunk)
        sent += len(chunk)
        assert pr.pauses == 1
        at_resume = []
        orig = pr.resume_writing

        def resume_writing():
            at_resume.append(tr.get_write_buffer_size())
            orig()
        pr.resume_writing = resume_writing
        got = await sock_recv_exactly(peer, sent, timeout=20)
        assert got == chunk * (sent // len(chunk))
        await pr.wait_writable(5)
        assert pr.resumes == 1 and at_resume[0] <= low
        assert pr.events.count("pause_writing") == pr.events.count("resume_writing") == 1
        assert tr.get_write_buffer_size() == 0
        await loop.sock_sendall(peer, b"ping")  # reading is unaffected by write flow control
        assert await pr.wait_bytes(4) == b"ping"


@pytest.mark.asyncio
@pytest.mark.parametrize("kind", KINDS)
async def test_lowering_high_water_pauses(kind):
    async with make_transport(kind, Recorder) as (tr, pr, peer):
        tr.set_write_buffer_limits(high=64 << 20)
        tr.write(b"z" * (4 << 20))
        size = tr.get_write_buffer_size()
        assert size > 0 and pr.pauses == 0
        tr.set_write_buffer_limits(high=size // 2)
        assert pr.pauses == 1
        assert await sock_recv_exactly(peer, 4 << 20, timeout=20) == b"z" * (4 << 20)
        await pr.wait_writable(5)
        assert pr.resumes == 1


# --------------------------------------------------------------------------------------------
# get_extra_info

@EDGE_LEVEL
async def test_extra_info_tcp():
    async with make_transport("tcp", Recorder) as (tr, pr, peer):
        sock = tr.get_extra_info("socket")
        assert sock is not None
        assert sock.family == socket.AF_INET and sock.type == socket.SOCK_STREAM
        assert sock.fileno() >= 0
        assert tr.get_extra_info("sockname") == sock.getsockname() == peer.getpeername()
        assert tr.get_extra_info("peername") == sock.getpeername() == peer.getsockname()
        assert tr.get_extra_info("no-such-key") is None
        sentinel = object()
        assert tr.get_extra_info("no-such-key", sentinel) is sentinel
        assert tr.get_extra_info("sockname", sentinel) == peer.getpeername()


@EDGE_LEVEL
async def test_extra_info_unix():
    async with make_transport("unix", Recorder) as (tr, pr, peer):
        sock = tr.get_extra_info("socket")
        assert sock.family == socket.AF_UNIX and sock.type == socket.SOCK_STREAM
        path = peer.getsockname()
        assert path.startswith("/tmp/")
        assert tr.get_extra_info("peername") == path
        assert tr.get_extra_info("sockname") == sock.getsockname() == ""  # unbound client
        assert tr.get_extra_info("no-such-key", 42) == 42


@EDGE_LEVEL
@pytest.mark.parametrize("kind", KINDS)
async def test_extra_info_socket_is_not_closable_behind_our_back(kind):
    """The exposed socket is the transport's: using it for getsockopt works."""
    async with make_transport(kind, Recorder) as (tr, pr, peer):
        sock = tr.get_extra_info("socket")
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_TYPE) == socket.SOCK_STREAM
        tr.write(b"still fine")
        assert await sock_recv_exactly(peer, 10) == b"still fine"


# --------------------------------------------------------------------------------------------
# BufferedProtocol

@pytest.mark.asyncio
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("size", [1, 7, 65536])
async def test_buffered_protocol(kind, size):
    loop = asyncio.get_running_loop()
    async with make_transport(kind, lambda: BufferedRecorder(size)) as (tr, pr, peer):
        payload = pattern({1: 5_000, 7: 40_000}.get(size, 200_000), seed=size)
        await loop.sock_sendall(peer, payload)
        peer.shutdown(socket.SHUT_WR)
        assert await asyncio.wait_for(pr.eof, 20) == payload
        assert await asyncio.wait_for(pr.lost, 5) is None
        assert max(pr.updates) <= size
        assert sum(pr.updates) == len(payload)
        assert pr.sizes_asked and all(isinstance(h, int) for h in pr.sizes_asked)
        assert pr.events[0] == "made" and pr.events[-2:] == ["eof", "lost"]
        assert pr.lost_count == 1


@pytest.mark.asyncio
@pytest.mark.parametrize("kind", KINDS)
async def test_buffered_protocol_empty_buffer_is_fatal(kind):
    loop = asyncio.get_running_loop()
    with ExceptionCatcher(loop) as caught:
        async with make_transport(kind, lambda: BufferedRecorder(0)) as (tr, pr, peer):
            await loop.sock_sendall(peer, b"data")
            exc = await asyncio.wait_for(pr.lost, 5)
            assert isinstance(exc, RuntimeError)
            await quiet()
            assert pr.lost_count == 1
            assert pr.updates == []
    assert caught.contexts


@EDGE_LEVEL
@pytest.mark.parametrize("kind", KINDS)
async def test_buffered_protocol_get_buffer_raises(kind):
    loop = asyncio.get_running_loop()
    boom = KeyError("no buffer")

    class Failing(BufferedRecorder):
        def get_buffer(self, sizehint):
            raise boom

    with ExceptionCatcher(loop):
        async with make_transport(kind, lambda: Failing(10)) as (tr, pr, peer):
            await loop.sock_sendall(peer, b"data")
            assert await asyncio.wait_for(pr.lost, 5) is boom
            await quiet()
            assert pr.lost_count == 1


@EDGE_LEVEL
@pytest.mark.parametrize("kind", KINDS)
async def test_buffered_protocol_writes(kind):
    async with make_transport(kind, lambda: BufferedRecorder(16)) as (tr, pr, peer):
        tr.write(b"buffered protocols write like any other")
        assert await sock_recv_exactly(peer, 39) == b"buffered protocols write like any other"


# --------------------------------------------------------------------------------------------
# asyncio streams

async def _echo_handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
    try:
        while True:
            line = await reader.readline()
            if not line:
                break
            if line.startswith(b"BLOB "):
                n = int(line[5:])
                blob = await reader.readexactly(n)
                writer.write(hashlib.sha256(blob).hexdigest().encode() + b"\n")
            else:
                writer.write(line)
            await writer.drain()
        writer.write(b"bye\n")
        await writer.drain()
    finally:
        writer.close()
        await writer.wait_closed()


@pytest.mark.asyncio
@pytest.mark.parametrize("kind", KINDS)
async def test_streams_echo(kind):
    tmpdir = path = None
    if kind == "tcp":
        server = await asyncio.start_server(_echo_handler, "127.0.0.1", 0)
        addr = server.sockets[0].getsockname()
        connect = lambda: asyncio.open_connection(*addr)  # noqa: E731
    else:
        tmpdir, path = short_unix_path()
        server = await asyncio.start_unix_server(_echo_handler, path)
        connect = lambda: asyncio.open_unix_connection(path)  # noqa: E731
    try:
        async with server:
            reader, writer = await connect()
            for i in range(100):
                writer.write(b"line %d\n" % i)
            await writer.drain()
            for i in range(100):
                assert await asyncio.wait_for(reader.readline(), 5) == b"line %d\n" % i
            blob = pattern(3 << 20, seed=9)
            writer.write(b"BLOB %d\n" % len(blob))
            writer.write(blob)
            await asyncio.wait_for(writer.drain(), 20)
            digest = await asyncio.wait_for(reader.readline(), 20)
            assert digest == hashlib.sha256(blob).hexdigest().encode() + b"\n"
            assert writer.can_write_eof()
            writer.write_eof()
            assert await asyncio.wait_for(reader.readline(), 5) == b"bye\n"
            assert await asyncio.wait_for(reader.read(), 5) == b""
            assert reader.at_eof()
            if kind == "tcp":
                assert writer.get_extra_info("peername") == addr
            writer.close()
            await asyncio.wait_for(writer.wait_closed(), 5)
            assert writer.is_closing()
    finally:
        if path is not None:
            if os.path.exists(path):
                os.unlink(path)
            os.rmdir(tmpdir)


@pytest.mark.asyncio
async def test_streams_many_clients():
    async with await asyncio.start_server(_echo_handler, "127.0.0.1", 0) as server:
        addr = server.sockets[0].getsockname()

        async def client(i):
            reader, writer = await asyncio.open_connection(*addr)
            try:
                for j in range(20):
                    writer.write(b"%d:%d\n" % (i, j))
                    await writer.drain()
                    assert await reader.readline() == b"%d:%d\n" % (i, j)
            finally:
                writer.close()
                await writer.wait_closed()

        await asyncio.wait_for(asyncio.gather(*(client(i) for i in range(30))), 20)


@EDGE_LEVEL
async def test_streams_readexactly_incomplete():
    loop = asyncio.get_running_loop()

    async def handler(reader, writer):
        writer.write(b"short")
        writer.close()
        await writer.wait_closed()

    async with await asyncio.start_server(handler, "127.0.0.1", 0) as server:
        reader, writer = await asyncio.open_connection(*server.sockets[0].getsockname())
        with pytest.raises(asyncio.IncompleteReadError) as info:
            await asyncio.wait_for(reader.readexactly(100), 5)
        assert info.value.partial == b"short"
        writer.close()
        await writer.wait_closed()
    assert loop.is_running()
