"""add_reader / add_writer / remove_reader / remove_writer: return values, level-triggered
semantics in every configuration, regular files, fds owned by transports, closed fds that stay
registered through a dup (EPOLL_NOTES behaviour 12), and the closed loop."""
from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import tempfile

import pytest

try:
    from tests._looputil import REFERENCE, edgeloop_only, known_bug
except ImportError:  # tests/ itself on sys.path
    from _looputil import REFERENCE, edgeloop_only, known_bug


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


def _noop(*args):
    pass


# --------------------------------------------------------------------------------------------
# return values and basic dispatch


@pytest.mark.asyncio
async def test_add_remove_return_values():
    loop = asyncio.get_running_loop()
    with socketpair() as (a, b):
        fd = a.fileno()
        assert loop.remove_reader(fd) is False
        assert loop.remove_writer(fd) is False
        assert loop.add_reader(fd, _noop) is None
        assert loop.add_writer(fd, _noop) is None
        assert loop.remove_reader(fd) is True
        assert loop.remove_reader(fd) is False
        assert loop.remove_writer(fd) is True
        assert loop.remove_writer(fd) is False


@pytest.mark.asyncio
async def test_reader_called_with_args_and_socket_objects_accepted():
    loop = asyncio.get_running_loop()
    with socketpair() as (a, b):
        got = loop.create_future()

        def on_readable(tag, n):
            if not got.done():
                got.set_result((tag, n, a.recv(100)))

        loop.add_reader(a, on_readable, "tag", 7)  # a socket object, not just an int
        b.send(b"data")
        try:
            assert await asyncio.wait_for(got, 5) == ("tag", 7, b"data")
        finally:
            assert loop.remove_reader(a) is True


@pytest.mark.asyncio
async def test_writer_called_when_writable():
    loop = asyncio.get_running_loop()
    with socketpair() as (a, b):
        got = loop.create_future()
        loop.add_writer(a.fileno(), lambda x: got.done() or got.set_result(x), "w")
        try:
            assert await asyncio.wait_for(got, 5) == "w"
        finally:
            assert loop.remove_writer(a.fileno()) is True


@pytest.mark.asyncio
async def test_add_reader_replaces_the_previous_callback():
    loop = asyncio.get_running_loop()
    with socketpair() as (a, b):
        calls = []
        got = loop.create_future()
        loop.add_reader(a.fileno(), lambda: calls.append("old"))
        loop.add_reader(a.fileno(), lambda: got.done() or got.set_result(a.recv(10)))
        b.send(b"x")
        try:
            assert await asyncio.wait_for(got, 5) == b"x"
        finally:
            loop.remove_reader(a.fileno())
        assert calls == []


@pytest.mark.asyncio
async def test_reader_and_writer_on_one_fd_are_independent():
    loop = asyncio.get_running_loop()
    with socketpair() as (a, b):
        writable = loop.create_future()
        readable = loop.create_future()
        loop.add_reader(a.fileno(), lambda: readable.done() or readable.set_result(a.recv(10)))
        loop.add_writer(a.fileno(), lambda: writable.done() or writable.set_result(True))
        try:
            assert await asyncio.wait_for(writable, 5)
            assert loop.remove_writer(a.fileno()) is True
            # removing the writer left the reader in place
            b.send(b"r")
            assert await asyncio.wait_for(readable, 5) == b"r"
        finally:
            assert loop.remove_reader(a.fileno()) is True
            assert loop.remove_writer(a.fileno()) is False


@pytest.mark.asyncio
async def test_removed_reader_is_not_called():
    loop = asyncio.get_running_loop()
    with socketpair() as (a, b):
        calls = []
        loop.add_reader(a.fileno(), lambda: calls.append(1))
        assert loop.remove_reader(a.fileno())
        b.send(b"x")
        await asyncio.sleep(0.02)
        assert calls == []


@pytest.mark.asyncio
async def test_reader_removed_by_an_earlier_callback_in_the_same_batch():
    """Two fds ready in one poll: the first callback removes the second's reader."""
    loop = asyncio.get_running_loop()
    with socketpair() as (a, b), socketpair() as (c, d):
        calls = []

        def first(me, other):
            calls.append(me)
            me_sock = a if me == "a" else c
            me_sock.recv(10)
            loop.remove_reader(me_sock.fileno())
            loop.remove_reader(other.fileno())

        loop.add_reader(a.fileno(), first, "a", c)
        loop.add_reader(c.fileno(), first, "c", a)
        b.send(b"x")
        d.send(b"y")
        await asyncio.sleep(0.05)
        assert len(calls) == 1, calls
        assert loop.remove_reader(a.fileno()) is False
        assert loop.remove_reader(c.fileno()) is False


@pytest.mark.asyncio
async def test_exception_in_reader_goes_to_the_handler_and_loop_continues():
    loop = asyncio.get_running_loop()
    contexts = []
    loop.set_exception_handler(lambda lp, ctx: contexts.append(ctx))
    with socketpair() as (a, b):
        def bad():
            a.recv(10)
            raise ValueError("in reader")

        loop.add_reader(a.fileno(), bad)
        b.send(b"x")
        try:
            for _ in range(100):
                if contexts:
                    break
                await asyncio.sleep(0.005)
        finally:
            loop.remove_reader(a.fileno())
            loop.set_exception_handler(None)
    assert len(contexts) == 1
    assert isinstance(contexts[0]["exception"], ValueError)
    assert await asyncio.sleep(0, "alive") == "alive"


@pytest.mark.asyncio
@pytest.mark.parametrize("bad", [-1, "not a file", 1.5])
async def test_invalid_fd_raises_value_error(bad):
    loop = asyncio.get_running_loop()
    with pytest.raises(ValueError):
        loop.add_reader(bad, _noop)
    with pytest.raises(ValueError):
        loop.add_writer(bad, _noop)


# --------------------------------------------------------------------------------------------
# level semantics (EPOLL_NOTES behaviour 10)


@pytest.mark.asyncio
async def test_reader_is_level_triggered():
    """10 bytes sent once, a callback reading one byte per call: called 10 times."""
    loop = asyncio.get_running_loop()
    with socketpair() as (a, b):
        got = []
        spurious = []
        ten = loop.create_future()

        def read_one():
            try:
                got.append(a.recv(1))
            except BlockingIOError:
                spurious.append(1)
                return
            if len(got) == 10 and not ten.done():
                ten.set_result(None)

        loop.add_reader(a.fileno(), read_one)
        b.send(b"0123456789")
        try:
            await asyncio.wait_for(ten, 5)
            await asyncio.sleep(0.02)  # any further call would be a spurious wakeup
        finally:
            loop.remove_reader(a.fileno())
        assert b"".join(got) == b"0123456789"
        assert spurious == []


@pytest.mark.asyncio
async def test_reader_is_level_triggered_on_a_pipe():
    loop = asyncio.get_running_loop()
    r, w = os.pipe()
    os.set_blocking(r, False)
    try:
        got = []
        ten = loop.create_future()

        def read_one():
            got.append(os.read(r, 1))
            if len(got) == 10 and not ten.done():
                ten.set_result(None)

        loop.add_reader(r, read_one)
        os.write(w, b"0123456789")
        try:
            await asyncio.wait_for(ten, 5)
        finally:
            assert loop.remove_reader(r) is True
        assert b"".join(got) == b"0123456789"
    finally:
        os.close(r)
        os.close(w)


@pytest.mark.asyncio
async def test_writer_is_level_triggered():
    loop = asyncio.get_running_loop()
    with socketpair() as (a, b):
        calls = 0
        five = loop.create_future()

        def on_writable():
            nonlocal calls
            calls += 1  # writes nothing: the fd stays writable, so it fires again
            if calls == 5:
                five.set_result(None)

        loop.add_writer(a.fileno(), on_writable)
        try:
            await asyncio.wait_for(five, 5)
        finally:
            loop.remove_writer(a.fileno())


@pytest.mark.asyncio
async def test_reader_fires_again_for_new_data_after_draining():
    loop = asyncio.get_running_loop()
    with socketpair() as (a, b):
        chunks = asyncio.Queue()

        def drain():
            while True:
                try:
                    data = a.recv(4096)
                except BlockingIOError:
                    return
                chunks.put_nowait(data)
                if not data:
                    loop.remove_reader(a.fileno())
                    return

        loop.add_reader(a.fileno(), drain)
        try:
            for i in range(20):
                b.send(b"%d;" % i)
                assert await asyncio.wait_for(chunks.get(), 5) == b"%d;" % i
            b.shutdown(socket.SHUT_WR)
            assert await asyncio.wait_for(chunks.get(), 5) == b""
        finally:
            loop.remove_reader(a.fileno())


# --------------------------------------------------------------------------------------------
# regular files (EPOLL_NOTES behaviour 11): epoll refuses them


@pytest.mark.asyncio(loop_factories=["edge", "level"])
@pytest.mark.parametrize("method", ["add_reader", "add_writer"])
async def test_regular_file_raises_permission_error_and_registers_nothing(method):
    loop = asyncio.get_running_loop()
    f = tempfile.TemporaryFile()
    fd = f.fileno()
    try:
        with pytest.raises(PermissionError):
            getattr(loop, method)(fd, _noop)
        assert loop.remove_reader(fd) is False
        assert loop.remove_writer(fd) is False
    finally:
        f.close()
    # the number is free again; a socket that gets it (or any socket) can be watched
    with socketpair() as (a, b):
        got = loop.create_future()
        loop.add_reader(a.fileno(), lambda: got.done() or got.set_result(a.recv(10)))
        b.send(b"ok")
        try:
            assert await asyncio.wait_for(got, 5) == b"ok"
        finally:
            assert loop.remove_reader(a.fileno()) is True


# --------------------------------------------------------------------------------------------
# fds owned by a transport


@pytest.mark.asyncio
async def test_fd_owned_by_a_transport_raises_runtime_error():
    loop = asyncio.get_running_loop()
    accepted = loop.create_future()

    class ServerProto(asyncio.Protocol):
        def connection_made(self, transport):
            accepted.set_result(transport)

    server = await loop.create_server(ServerProto, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    transport, _ = await loop.create_connection(asyncio.Protocol, "127.0.0.1", port)
    server_transport = await asyncio.wait_for(accepted, 5)
    try:
        for tr in (transport, server_transport):
            fd = tr.get_extra_info("socket").fileno()
            for method in ("add_reader", "add_writer"):
                with pytest.raises(RuntimeError):
                    getattr(loop, method)(fd, _noop)
            for method in ("remove_reader", "remove_writer"):
                with pytest.raises(RuntimeError):
                    getattr(loop, method)(fd)
        # the transport still works after the refused calls
        transport.write(b"still fine")
    finally:
        transport.close()
        server_transport.close()
        server.close()
        await server.wait_closed()
    await asyncio.sleep(0)
    await asyncio.sleep(0)


# --------------------------------------------------------------------------------------------
# EPOLL_NOTES behaviour 12: a registered fd dup'ed, the original closed without remove_reader


def _socket_on_fd(fd: int) -> tuple[socket.socket, socket.socket]:
    """A new connected pair whose first socket has descriptor number ``fd``."""
    c, d = socket.socketpair()
    if c.fileno() != fd:
        os.dup2(c.fileno(), fd, inheritable=False)
        new = socket.socket(fileno=fd)
        c.close()
        c = new
    c.setblocking(False)
    d.setblocking(False)
    return c, d


@edgeloop_only  # asyncio's selector keeps the stale registration: it spins and misdelivers
@pytest.mark.asyncio
@pytest.mark.timeout(20)
async def test_fd_closed_while_registered_through_a_dup():
    loop = asyncio.get_running_loop()
    a, b = socket.socketpair()
    a.setblocking(False)
    fd = a.fileno()
    old_calls = []
    loop.add_reader(fd, lambda: old_calls.append(1))
    dup = os.dup(fd)
    c = d = None
    try:
        a.close()  # no remove_reader: the kernel's registration lives on through ``dup``
        b.send(b"x")  # the old file description is readable now, and stays readable

        polls = loop.stats()["polls"]
        await asyncio.sleep(0.2)
        polls = loop.stats()["polls"] - polls
        assert polls < 50, f"{polls} polls in 0.2 s: the loop spins on the closed fd"

        # another socket gets the same number
        c, d = _socket_on_fd(fd)
        assert c.fileno() == fd
        new_calls = []
        got = loop.create_future()

        def on_new():
            new_calls.append(1)
            try:
                data = c.recv(100)
            except BlockingIOError:
                return  # a wakeup for the old socket: recorded in new_calls
            if not got.done():
                got.set_result(data)

        loop.add_reader(fd, on_new)
        polls = loop.stats()["polls"]
        await asyncio.sleep(0.1)
        polls = loop.stats()["polls"] - polls
        assert new_calls == [], "the new socket was woken by the old socket's readiness"
        assert polls < 50, f"{polls} polls in 0.1 s"

        # and the new socket's own data is delivered
        d.send(b"new")
        assert await asyncio.wait_for(got, 5) == b"new"
        assert new_calls == [1]
        assert loop.remove_reader(fd) is True
    finally:
        os.close(dup)
        b.close()
        if c is not None:
            c.close()
            d.close()


@pytest.mark.asyncio
async def test_remove_reader_after_the_fd_was_closed():
    loop = asyncio.get_running_loop()
    a, b = socket.socketpair()
    fd = a.fileno()
    loop.add_reader(fd, _noop)
    a.close()
    b.close()
    assert loop.remove_reader(fd) is True  # no exception although the fd is gone
    assert loop.remove_reader(fd) is False


@edgeloop_only  # asyncio's selector keeps the dead key and never registers the new socket
@pytest.mark.asyncio
@pytest.mark.timeout(20)
async def test_fd_number_reused_after_close_without_remove_reader(request):
    loop = asyncio.get_running_loop()
    a, b = socket.socketpair()
    fd = a.fileno()
    loop.add_reader(fd, _noop)
    a.close()  # no remove_reader (and no dup: the kernel drops its registration)
    b.close()
    await asyncio.sleep(0)
    c, d = _socket_on_fd(fd)
    try:
        got = loop.create_future()
        loop.add_reader(fd, lambda: got.done() or got.set_result(c.recv(100)))
        before = loop.stats()
        await asyncio.sleep(0.1)
        after = loop.stats()
        assert after["polls"] - before["polls"] < 50, "the loop spins"
        assert after["ctl"] - before["ctl"] < 50, "the loop spins in epoll_ctl"
        d.send(b"reused")
        assert await asyncio.wait_for(got, 5) == b"reused"
        assert loop.remove_reader(fd) is True
    finally:
        c.close()
        d.close()


# --------------------------------------------------------------------------------------------
# closed loop


def test_closed_loop(loop):
    with socketpair() as (a, b):
        loop.close()
        with pytest.raises(RuntimeError):
            loop.add_reader(a.fileno(), _noop)
        with pytest.raises(RuntimeError):
            loop.add_writer(a.fileno(), _noop)
        # removing is a no-op on a closed loop (transports call it while tearing down)
        assert loop.remove_reader(a.fileno()) is False
        assert loop.remove_writer(a.fileno()) is False


def test_close_unregisters_readers(loop_factory):
    """Closing the loop drops its readers: the fds are the caller's and stay open and usable."""
    lp = loop_factory()
    with socketpair() as (a, b):
        lp.add_reader(a.fileno(), _noop)
        lp.add_writer(b.fileno(), _noop)
        lp.close()
        b.send(b"still open")
        assert a.recv(100) == b"still open"
        # a new loop can watch the same fds
        lp2 = loop_factory()
        try:
            got = lp2.create_future()
            lp2.add_reader(a.fileno(), lambda: got.done() or got.set_result(a.recv(100)))
            b.send(b"second loop")
            assert lp2.run_until_complete(asyncio.wait_for(got, 5)) == b"second loop"
            assert lp2.remove_reader(a.fileno()) is True
        finally:
            lp2.close()
