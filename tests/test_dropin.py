"""Drop-in, exactly: behaviours where edgeloop used to differ from the stdlib loop of the running
Python, each checked on every loop configuration and, with EDGELOOP_TESTS_REFERENCE=asyncio, on
the stdlib loop itself.
"""
from __future__ import annotations

import asyncio
import contextlib
import errno
import gc
import logging
import os
import signal
import socket
import ssl
import sys
import threading
import time
import types
import warnings

import pytest

try:
    from tests._streamutil import REFERENCE, Recorder, short_unix_path
except ModuleNotFoundError:  # tests/ on sys.path rather than a package
    from _streamutil import REFERENCE, Recorder, short_unix_path

pytestmark = pytest.mark.timeout(60)


# ca, server_ctx, client_ctx: shared TLS fixtures in conftest.py


async def _plain_pair():
    """A plain TCP connection to a server that keeps (and later closes) its end."""
    loop = asyncio.get_running_loop()
    accepted: list[Recorder] = []

    def factory():
        accepted.append(Recorder())
        return accepted[-1]

    server = await loop.create_server(factory, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    tr, pr = await loop.create_connection(Recorder, "127.0.0.1", port)
    return server, accepted, tr, pr


async def _close_server(server, accepted):
    server.close()
    for proto in accepted:
        if proto.transport is not None:
            proto.transport.abort()
    await asyncio.wait_for(server.wait_closed(), 5)


# --------------------------------------------------------------------------------------------
# 5. start_tls on a closing transport


@pytest.mark.asyncio
async def test_start_tls_on_a_closing_transport_returns_none(client_ctx):
    """asyncio goes ahead with start_tls() on a transport already closing: the raw transport's
    connection_lost reaches the TLS layer first, which drops its transport, and start_tls
    returns None (aiohttp turns that into "Failed to start TLS").  Same on 3.11-3.13."""
    server, accepted, tr, pr = await _plain_pair()
    try:
        tr.close()
        assert tr.is_closing()
        # Awaited in this task (not wrapped in a new one): connection_lost must still be pending.
        async with asyncio.timeout(10):
            result = await asyncio.get_running_loop().start_tls(tr, pr, client_ctx,
                                                                 server_hostname="localhost")
        assert result is None
        assert await asyncio.wait_for(pr.lost, 5) is None
        assert pr.lost_count == 1
    finally:
        await _close_server(server, accepted)


@pytest.mark.asyncio
async def test_start_tls_raw_transport_closed_during_the_handshake(client_ctx):
    """The plain transport closed while start_tls() waits for the handshake: None, as above."""
    loop = asyncio.get_running_loop()
    server, accepted, tr, pr = await _plain_pair()
    try:
        upgrade = asyncio.ensure_future(
            loop.start_tls(tr, pr, client_ctx, server_hostname="localhost"))
        await asyncio.sleep(0.05)  # ClientHello sent; the plain server never answers it
        assert not upgrade.done()
        tr.close()
        assert await asyncio.wait_for(upgrade, 10) is None
    finally:
        await _close_server(server, accepted)


@pytest.mark.skipif(REFERENCE, reason="asyncio waits forever: its handshake timeout only "
                    "aborts the raw transport and counts on a connection_lost that already ran")
@pytest.mark.asyncio
async def test_start_tls_on_a_closed_transport_times_out(client_ctx):
    """A transport whose connection_lost already ran: nothing will ever answer the handshake;
    the call fails after ssl_handshake_timeout with the error asyncio's timeout would give."""
    loop = asyncio.get_running_loop()
    server, accepted, tr, pr = await _plain_pair()
    try:
        tr.close()
        await asyncio.wait_for(pr.lost, 5)
        with pytest.raises(ConnectionAbortedError):
            await asyncio.wait_for(
                loop.start_tls(tr, pr, client_ctx, server_hostname="localhost",
                               ssl_handshake_timeout=0.2), 10)
    finally:
        await _close_server(server, accepted)


# --------------------------------------------------------------------------------------------
# 6. Unix server socket files: removed on close from 3.13 (cleanup_socket), left before

PY313 = sys.version_info >= (3, 13)


@pytest.fixture
def unix_path():
    d, path = short_unix_path("srv")
    yield path
    if os.path.lexists(path):
        os.unlink(path)
    os.rmdir(d)


@pytest.mark.asyncio
async def test_unix_server_socket_file_on_close(unix_path):
    loop = asyncio.get_running_loop()
    server = await loop.create_unix_server(asyncio.Protocol, unix_path)
    assert os.path.exists(unix_path)
    server.close()
    await server.wait_closed()
    assert os.path.exists(unix_path) is not PY313


@pytest.mark.asyncio
async def test_unix_server_given_a_bound_socket_file_on_close(unix_path):
    loop = asyncio.get_running_loop()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(unix_path)
    server = await loop.create_unix_server(asyncio.Protocol, sock=sock)
    server.close()
    await server.wait_closed()
    assert sock.fileno() == -1
    assert os.path.exists(unix_path) is not PY313


@pytest.mark.asyncio
async def test_unix_server_cleanup_socket_keyword(unix_path):
    """3.13 added ``cleanup_socket``; before, it is an unknown keyword (TypeError), as in asyncio."""
    loop = asyncio.get_running_loop()
    if not PY313:
        with pytest.raises(TypeError):
            await loop.create_unix_server(asyncio.Protocol, unix_path, cleanup_socket=False)
        assert not os.path.exists(unix_path)
        return
    server = await loop.create_unix_server(asyncio.Protocol, unix_path, cleanup_socket=False)
    server.close()
    await server.wait_closed()
    assert os.path.exists(unix_path)


@pytest.mark.skipif(not PY313, reason="cleanup_socket is 3.13+")
@pytest.mark.asyncio
async def test_unix_server_cleanup_spares_a_replaced_file(unix_path):
    """Only the file the server bound is removed: not one that replaced it, and a file already
    gone is no error."""
    loop = asyncio.get_running_loop()
    server = await loop.create_unix_server(asyncio.Protocol, unix_path)
    os.unlink(unix_path)
    other = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        other.bind(unix_path)
        server.close()
        await server.wait_closed()
        assert os.path.exists(unix_path)
    finally:
        other.close()
    os.unlink(unix_path)
    server = await loop.create_unix_server(asyncio.Protocol, unix_path)
    os.unlink(unix_path)
    server.close()
    await server.wait_closed()
    assert not os.path.exists(unix_path)


# --------------------------------------------------------------------------------------------
# 7. remove_reader/remove_writer with a socket closed since it was added

def _fds() -> set[int]:
    return {int(x) for x in os.listdir("/proc/self/fd")}


async def _loop_still_serves(loop) -> None:
    """A new socket (it may get the closed one's number) is watched and reported normally."""
    a, b = socket.socketpair()
    try:
        a.setblocking(False)
        ready = loop.create_future()
        loop.add_reader(a, lambda: ready.done() or ready.set_result(a.recv(10)))
        b.send(b"ping")
        assert await asyncio.wait_for(ready, 5) == b"ping"
        assert loop.remove_reader(a) is True
    finally:
        a.close()
        b.close()


@pytest.mark.asyncio
async def test_remove_reader_finds_a_closed_socket():
    """anyio's Unix socket streams: a receive waits with add_reader(sock); close() wakes it; the
    wait's done callback then calls remove_reader(sock) on the closed socket.  asyncio's selector
    finds the registration by the object and removes it (True)."""
    loop = asyncio.get_running_loop()
    before = _fds()
    a, b = socket.socketpair()
    a.setblocking(False)
    removed = []
    waiter = loop.create_future()
    loop.add_reader(a, waiter.set_result, None)
    waiter.add_done_callback(lambda _: removed.append(loop.remove_reader(a)))
    waiter.set_result(None)  # what anyio's aclose() does, then it closes the socket
    a.close()
    await asyncio.sleep(0)
    assert removed == [True]
    b.close()
    assert _fds() == before
    await _loop_still_serves(loop)


@pytest.mark.asyncio
@pytest.mark.parametrize("reader", [True, False], ids=["reader", "writer"])
async def test_remove_a_closed_socket_twice_and_add_it(reader):
    loop = asyncio.get_running_loop()
    add, remove = (loop.add_reader, loop.remove_reader) if reader else \
        (loop.add_writer, loop.remove_writer)
    other = loop.remove_writer if reader else loop.remove_reader
    a, b = socket.socketpair()
    add(a, lambda: None)
    a.close()
    assert a.fileno() == -1
    assert other(a) is False  # registered, but not in that direction
    assert remove(a) is True
    # Nothing registered for it any more: as unknown as any closed socket.
    with pytest.raises(ValueError):
        remove(a)
    # Adding a closed socket is refused, as asyncio does.
    with pytest.raises(ValueError):
        add(a, lambda: None)
    b.close()
    await _loop_still_serves(loop)


@pytest.mark.skipif(REFERENCE, reason="asyncio's selector modifies the closed fd's epoll "
                    "registration for the remaining direction: OSError(EBADF)")
@pytest.mark.asyncio
async def test_remove_both_directions_of_a_closed_socket():
    loop = asyncio.get_running_loop()
    a, b = socket.socketpair()
    loop.add_reader(a, lambda: None)
    loop.add_writer(a, lambda: None)
    a.close()
    assert loop.remove_writer(a) is True
    assert loop.remove_reader(a) is True
    with pytest.raises(ValueError):
        loop.remove_reader(a)
    b.close()
    await _loop_still_serves(loop)


@pytest.mark.asyncio
async def test_remove_reader_of_a_closed_socket_that_sock_recv_waits_on():
    """sock_recv() registers the descriptor by number, in asyncio too: remove_reader(sock) of the
    closed socket does not find it (ValueError); cancelling the wait cleans up, and the loop
    goes on."""
    loop = asyncio.get_running_loop()
    before = _fds()
    a, b = socket.socketpair()
    a.setblocking(False)
    recv = asyncio.ensure_future(loop.sock_recv(a, 10))
    await asyncio.sleep(0)
    a.close()
    with pytest.raises(ValueError):
        loop.remove_reader(a)
    recv.cancel()
    with pytest.raises(asyncio.CancelledError):
        await recv
    b.close()
    assert _fds() == before
    await _loop_still_serves(loop)


@pytest.mark.asyncio
async def test_remove_reader_of_a_closed_file_object():
    """A closed file raises ValueError from fileno() itself: asyncio does not look it up (the
    registration is left to be removed by number)."""
    loop = asyncio.get_running_loop()
    r, w = os.pipe()
    reader = open(r, "rb", buffering=0)
    try:
        loop.add_reader(reader, lambda: None)
    finally:
        reader.close()
        os.close(w)
    with pytest.raises(ValueError):
        loop.remove_reader(reader)
    assert loop.remove_reader(r) is True
    await _loop_still_serves(loop)


# --------------------------------------------------------------------------------------------
# 8. a failed connection attempt must not keep its exception alive (gh-124859)

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def _holders(exc: BaseException, *allowed: object) -> list[str]:
    """What still refers to ``exc`` (garbage collected first), apart from the calling test's own
    frame and ``allowed``: the loop must keep nothing (no list, dict, frame, future).  Checked
    one step later: until then the callback that woke the test (with the future it awaited) is
    still running."""
    await asyncio.sleep(0)
    gc.collect()
    here = sys._getframe(1)
    out = []
    for ref in gc.get_referrers(exc):
        if ref is here or getattr(ref, "cr_frame", None) is here or any(ref is a for a in allowed):
            continue  # the test's own frame, or the coroutine that holds it
        name = type(ref).__name__
        if isinstance(ref, types.FrameType):
            name += f" {ref.f_code.co_name} ({ref.f_code.co_filename}:{ref.f_lineno})"
        out.append(name)
    return out


# Before the gh-124859 fix (3.12.8, 3.13.1) asyncio's staggered race kept its lists of errors.
_STDLIB_STAGGERED_CYCLE = sys.version_info < (3, 12, 8) or (3, 13) <= sys.version_info < (3, 13, 1)
HAPPY_EYEBALLS = [
    None,
    pytest.param(0.25, marks=pytest.mark.skipif(
        REFERENCE and _STDLIB_STAGGERED_CYCLE, reason="asyncio before gh-124859 keeps them")),
]


@pytest.mark.asyncio
@pytest.mark.parametrize("delay", HAPPY_EYEBALLS, ids=["sequential", "happy_eyeballs"])
async def test_refused_connection_keeps_no_reference_to_its_error(delay):
    loop = asyncio.get_running_loop()
    exc = None
    try:
        await loop.create_connection(asyncio.Protocol, "127.0.0.1", _free_port(),
                                     happy_eyeballs_delay=delay)
    except OSError as e:
        exc = e
    assert isinstance(exc, ConnectionRefusedError)
    assert await _holders(exc) == []


def _two_addresses(loop, port):
    """getaddrinfo answering two refused addresses (127.0.0.1 and 127.0.0.2, both loopback)."""
    real = loop.getaddrinfo

    async def getaddrinfo(host, port_, **kwargs):
        if host != "two.example":
            return await real(host, port_, **kwargs)
        return [(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", (ip, port))
                for ip in ("127.0.0.1", "127.0.0.2")]
    loop.getaddrinfo = getaddrinfo


@pytest.mark.asyncio
@pytest.mark.parametrize("delay", HAPPY_EYEBALLS, ids=["sequential", "happy_eyeballs"])
async def test_refused_addresses_keep_no_reference_to_their_errors(delay):
    loop = asyncio.get_running_loop()
    _two_addresses(loop, _free_port())
    try:
        exc = None
        try:
            await loop.create_connection(asyncio.Protocol, "two.example", 80,
                                         happy_eyeballs_delay=delay)
        except OSError as e:
            exc = e
        assert exc is not None and str(exc).startswith("Multiple exceptions")
        assert await _holders(exc) == []
        if sys.version_info < (3, 12):
            return  # all_errors is 3.12+
        group = None
        try:
            await loop.create_connection(asyncio.Protocol, "two.example", 80,
                                         happy_eyeballs_delay=delay, all_errors=True)
        except ExceptionGroup as e:
            group = e
        assert group is not None and len(group.exceptions) == 2
        assert await _holders(group) == []
        for member in group.exceptions:
            assert isinstance(member, ConnectionRefusedError)
            # The group's own containers (its tuple, and the list it was built from) only.
            assert await _holders(member, group.exceptions, group.args[1]) == []
    finally:
        del loop.getaddrinfo


@pytest.mark.asyncio
async def test_refused_sock_connect_keeps_no_reference_to_its_error():
    loop = asyncio.get_running_loop()
    exc = None
    with socket.socket() as sock:
        sock.setblocking(False)
        try:
            await loop.sock_connect(sock, ("127.0.0.1", _free_port()))
        except OSError as e:
            exc = e
    assert isinstance(exc, ConnectionRefusedError)
    assert await _holders(exc) == []


@pytest.mark.asyncio
async def test_refused_unix_connection_keeps_no_reference_to_its_error(unix_path):
    loop = asyncio.get_running_loop()
    exc = None
    try:
        await loop.create_unix_connection(asyncio.Protocol, unix_path)
    except OSError as e:
        exc = e
    assert isinstance(exc, FileNotFoundError)
    assert await _holders(exc) == []
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(unix_path)
    stale.close()  # a socket file nobody listens on
    exc = None
    try:
        await loop.create_unix_connection(asyncio.Protocol, unix_path)
    except OSError as e:
        exc = e
    assert isinstance(exc, ConnectionRefusedError)
    assert await _holders(exc) == []


@pytest.mark.asyncio
@pytest.mark.parametrize("delay", HAPPY_EYEBALLS, ids=["sequential", "happy_eyeballs"])
async def test_failed_resolution_keeps_no_reference_to_its_error(delay):
    """The error comes from the executor (getaddrinfo), through a future the loop resolves."""
    loop = asyncio.get_running_loop()

    def fail(*args):
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    async def getaddrinfo(host, port, **kwargs):
        return await loop.run_in_executor(None, fail)
    loop.getaddrinfo = getaddrinfo
    try:
        exc = None
        try:
            await loop.create_connection(asyncio.Protocol, "unknown.example", 80,
                                         happy_eyeballs_delay=delay)
        except OSError as e:
            exc = e
        assert isinstance(exc, socket.gaierror)
        assert await _holders(exc) == []
    finally:
        del loop.getaddrinfo


@pytest.mark.skipif(REFERENCE, reason="asyncio's create_datagram_endpoint keeps its list of "
                    "errors in the frame the traceback holds")
@pytest.mark.asyncio
async def test_failed_datagram_endpoint_keeps_no_reference_to_its_error():
    loop = asyncio.get_running_loop()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind(("127.0.0.1", 0))
        exc = None
        try:
            await loop.create_datagram_endpoint(asyncio.DatagramProtocol,
                                                local_addr=taken.getsockname())
        except OSError as e:
            exc = e
    assert isinstance(exc, OSError) and exc.errno == errno.EADDRINUSE
    assert await _holders(exc) == []


@pytest.mark.skipif(REFERENCE, reason="asyncio keeps the handshake's waiter (holding the error) "
                    "in the frame the traceback holds")
@pytest.mark.asyncio
async def test_failed_tls_handshake_keeps_no_reference_to_its_error(server_ctx):
    loop = asyncio.get_running_loop()
    server = await loop.create_server(asyncio.Protocol, "127.0.0.1", 0, ssl=server_ctx)
    port = server.sockets[0].getsockname()[1]
    untrusting = ssl.create_default_context()
    try:
        exc = None
        try:
            await loop.create_connection(asyncio.Protocol, "127.0.0.1", port, ssl=untrusting,
                                         server_hostname="localhost")
        except ssl.SSLError as e:
            exc = e
        assert isinstance(exc, ssl.SSLCertVerificationError)
        assert await _holders(exc) == []
        tr, pr = await loop.create_connection(Recorder, "127.0.0.1", port)
        exc = None
        try:
            await loop.start_tls(tr, pr, untrusting, server_hostname="localhost")
        except ssl.SSLError as e:
            exc = e
        assert isinstance(exc, ssl.SSLCertVerificationError)
        assert await _holders(exc) == []
        await asyncio.wait_for(pr.lost, 5)
    finally:
        server.close()
        await server.wait_closed()


# --------------------------------------------------------------------------------------------
# 9. smaller differences

@pytest.mark.asyncio
async def test_slow_task_step_warning_names_the_task(caplog):
    """Debug mode: a slow task step is reported as the task, like asyncio's base_events does."""
    loop = asyncio.get_running_loop()
    loop.set_debug(True)
    loop.slow_callback_duration = 0.1

    async def blocker():
        time.sleep(0.15)

    try:
        with caplog.at_level(logging.WARNING, logger="asyncio"):
            await loop.create_task(blocker(), name="slowpoke")
            await asyncio.sleep(0)
    finally:
        loop.set_debug(False)
    slow = [r.getMessage() for r in caplog.records if "took" in r.getMessage()]
    assert slow, caplog.text
    assert any(m.startswith("Executing <Task finished name='slowpoke' coro=<") and
               "blocker()" in m for m in slow), slow
    assert not any("TaskStepMethWrapper" in m for m in slow), slow


@pytest.mark.asyncio
async def test_slow_plain_callback_warning_names_the_handle(caplog):
    loop = asyncio.get_running_loop()
    loop.set_debug(True)
    loop.slow_callback_duration = 0.1

    def blocker():
        time.sleep(0.15)

    try:
        with caplog.at_level(logging.WARNING, logger="asyncio"):
            loop.call_soon(blocker)
            await asyncio.sleep(0.05)
    finally:
        loop.set_debug(False)
    slow = [r.getMessage() for r in caplog.records if "took" in r.getMessage()]
    assert any(m.startswith("Executing <Handle ") and "blocker()" in m for m in slow), slow


@pytest.mark.asyncio
async def test_write_pipe_transport_is_a_transport():
    """asyncio's write-pipe transport is an asyncio.Transport (its _FlowControlMixin is one): the
    reading half raises NotImplementedError, not AttributeError.  The subprocess's stdin is one."""
    loop = asyncio.get_running_loop()
    transport, _ = await loop.subprocess_exec(asyncio.SubprocessProtocol, sys.executable, "-c",
                                              "import sys; sys.stdin.read()")
    try:
        stdin = transport.get_pipe_transport(0)
        assert isinstance(stdin, asyncio.Transport)
        for method in (stdin.pause_reading, stdin.resume_reading, stdin.is_reading):
            with pytest.raises(NotImplementedError):
                method()
        stdin.close()
        assert await asyncio.wait_for(transport._wait(), 10) == 0
    finally:
        transport.close()
    r, w = os.pipe()
    with open(w, "wb", buffering=0) as pipe:
        tr, _ = await loop.connect_write_pipe(asyncio.Protocol, pipe)
        assert isinstance(tr, asyncio.Transport)
        with pytest.raises(NotImplementedError):
            tr.pause_reading()
        tr.close()
        await asyncio.sleep(0)
    os.close(r)


# Descriptors >= FD_SETSIZE (1024)
#
# Every configuration serves them, select included: past 1024 edgeloop's select backend calls
# libc's select through ctypes with larger bitmaps (edgeloop/cselect.py).  Where ctypes is
# missing, that backend refuses such a descriptor with ValueError from the call that creates or
# registers it, with nothing left behind.  On select each test below first checks that refusal
# with ctypes made unavailable (``_without_ctypes``), then that the same call works.

_REFUSED = "out of range for select"


def _select_loop(loop_config: str) -> bool:
    """Whether this configuration is edgeloop's select backend (the one that needs ctypes)."""
    return loop_config == "select" and not REFERENCE


@contextlib.contextmanager
def _without_ctypes(loop=None):
    """libc's select out of reach, as on a Python built without ctypes: ``import ctypes`` fails,
    and ``loop``'s select poller has not loaded it yet."""
    from edgeloop import cselect

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(cselect, "_loaded", None)
        mp.setitem(sys.modules, "ctypes", None)
        if loop is not None:
            mp.setattr(loop._poller, "_libc", None, raising=False)
        yield


def _high(obj):
    """The same socket or pipe end moved to a free descriptor number >= 1024."""
    used = _fds()
    target = next(n for n in range(1500, 4000) if n not in used)
    if isinstance(obj, socket.socket):
        os.dup2(obj.fileno(), target, inheritable=False)
        moved = socket.socket(fileno=target)
        obj.close()
        return moved
    os.dup2(obj, target, inheritable=False)
    os.close(obj)
    return target


@contextlib.contextmanager
def _low_fds_taken():
    """Every free descriptor number below 1024 taken: what is opened meanwhile gets >= 1024."""
    fillers = [os.open(os.devnull, os.O_RDONLY)]
    try:
        while fillers[-1] < 1023:
            fillers.append(os.dup(fillers[0]))
        yield
    finally:
        for fd in fillers:
            os.close(fd)


@contextlib.contextmanager
def _no_resource_warning():
    """Nothing may be left for a destructor to close (with its "unclosed ..." warning)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ResourceWarning)
        yield
    unclosed = [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)]
    assert not unclosed


def _registered(loop) -> int | None:
    stats = getattr(loop, "stats", None)
    return None if REFERENCE or stats is None else stats()["fds"]


def _echo(rec, data):
    rec.transport.write(data)


async def _echo_server():
    loop = asyncio.get_running_loop()
    accepted: list[Recorder] = []

    def factory():
        accepted.append(Recorder(on_data=_echo))
        return accepted[-1]

    server = await loop.create_server(factory, "127.0.0.1", 0)
    return server, accepted, server.sockets[0].getsockname()[1]


async def _roundtrip(loop, port) -> None:
    tr, pr = await loop.create_connection(Recorder, "127.0.0.1", port)
    tr.write(b"still here")
    assert await pr.wait_bytes(10) == b"still here"
    tr.close()
    await asyncio.wait_for(pr.lost, 5)


async def _echoes(tr, pr, size: int = 100) -> None:
    """``size`` bytes written on ``tr`` come back whole from an echo peer; then closed."""
    payload = os.urandom(size)
    tr.write(payload)
    assert await pr.wait_bytes(size) == payload
    tr.close()
    await asyncio.wait_for(pr.lost, 5)


class _Datagrams(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.got: asyncio.Queue = asyncio.Queue()

    def datagram_received(self, data, addr):
        self.got.put_nowait((data, addr))


@pytest.mark.asyncio
@pytest.mark.usefixtures("high_fd_limit")
@pytest.mark.parametrize("entry", ["create_connection", "connect_accepted_socket"])
async def test_a_high_stream_socket(loop_config, entry):
    """A TCP socket numbered >= 1024 handed to the loop: 4 MiB echoed through its transport (more
    than the socket buffers take at once, so the transport also waits for writability)."""
    loop = asyncio.get_running_loop()
    server, accepted, port = await _echo_server()
    try:
        sock = _high(socket.create_connection(("127.0.0.1", port)))
        fd = sock.fileno()

        def connect():
            if entry == "create_connection":
                return loop.create_connection(Recorder, sock=sock)
            return loop.connect_accepted_socket(Recorder, sock)

        try:
            if _select_loop(loop_config):
                before = _registered(loop)
                with _without_ctypes(loop), _no_resource_warning(), \
                        pytest.raises(ValueError, match=_REFUSED):
                    await connect()
                assert sock.fileno() == fd  # still the caller's, open
                assert _registered(loop) == before
            tr, pr = await connect()
            assert tr.get_extra_info("socket").fileno() == fd >= 1024
            await _echoes(tr, pr, 4 << 20)
        finally:
            sock.close()
        await _roundtrip(loop, port)
    finally:
        await _close_server(server, accepted)


@pytest.mark.asyncio
@pytest.mark.usefixtures("high_fd_limit")
async def test_a_high_datagram_socket(loop_config):
    loop = asyncio.get_running_loop()
    sock = _high(socket.socket(socket.AF_INET, socket.SOCK_DGRAM))
    fd = sock.fileno()
    peer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sock.bind(("127.0.0.1", 0))
        peer.bind(("127.0.0.1", 0))
        if _select_loop(loop_config):
            with _without_ctypes(loop), pytest.raises(ValueError, match=_REFUSED):
                await loop.create_datagram_endpoint(asyncio.DatagramProtocol, sock=sock)
            assert sock.fileno() == fd
        tr, pr = await loop.create_datagram_endpoint(_Datagrams, sock=sock)
        try:
            assert fd >= 1024
            peer.sendto(b"ping", sock.getsockname())
            data, addr = await asyncio.wait_for(pr.got.get(), 5)
            assert (data, addr) == (b"ping", peer.getsockname())
            tr.sendto(b"pong", addr)
            peer.settimeout(5)
            assert peer.recv(16) == b"pong"
        finally:
            tr.close()
            await asyncio.sleep(0)
    finally:
        sock.close()
        peer.close()


@pytest.mark.asyncio
@pytest.mark.usefixtures("high_fd_limit")
@pytest.mark.parametrize("end", ["read", "write"])
async def test_a_high_pipe(loop_config, end):
    """connect_read_pipe/connect_write_pipe on a pipe end numbered >= 1024: data flows."""
    loop = asyncio.get_running_loop()
    r, w = os.pipe()
    if end == "read":
        r = _high(r)
        pipe, other, connect = open(r, "rb", buffering=0), w, loop.connect_read_pipe
    else:
        w = _high(w)
        pipe, other, connect = open(w, "wb", buffering=0), r, loop.connect_write_pipe
    try:
        if _select_loop(loop_config):
            with _without_ctypes(loop), pytest.raises(ValueError, match=_REFUSED):
                await connect(asyncio.Protocol, pipe)
            assert not pipe.closed  # still the caller's
        tr, pr = await connect(Recorder, pipe)
        assert pipe.fileno() >= 1024
        payload = os.urandom(256 * 1024)  # more than a pipe holds: the transport waits for it
        if end == "read":
            await loop.run_in_executor(None, os.write, other, payload)
            assert await pr.wait_bytes(len(payload)) == payload
        else:
            tr.write(payload)
            got = bytearray()
            while len(got) < len(payload):
                got += await loop.run_in_executor(None, os.read, other, 65536)
            assert got == payload
        tr.close()
        await asyncio.sleep(0)
    finally:
        pipe.close()
        os.close(other)


@pytest.mark.asyncio
@pytest.mark.usefixtures("high_fd_limit")
async def test_a_high_descriptor_in_add_reader_and_sock_calls(loop_config):
    loop = asyncio.get_running_loop()
    a, b = socket.socketpair()
    a = _high(a)
    a.setblocking(False)
    before = _registered(loop)
    try:
        if _select_loop(loop_config):
            with _without_ctypes(loop):
                for add in (loop.add_reader, loop.add_writer):
                    with pytest.raises(ValueError, match=_REFUSED):
                        add(a, lambda: None)
                with pytest.raises(ValueError, match=_REFUSED):
                    await loop.sock_recv(a, 1)
            assert loop.remove_reader(a) is False and loop.remove_writer(a) is False
            assert _registered(loop) == before
        got = loop.create_future()
        loop.add_reader(a, lambda: got.done() or got.set_result(a.recv(1)))
        b.send(b"x")
        assert await asyncio.wait_for(got, 5) == b"x"
        assert loop.remove_reader(a)
        writable = loop.create_future()
        loop.add_writer(a, lambda: writable.done() or writable.set_result(True))
        assert await asyncio.wait_for(writable, 5)
        assert loop.remove_writer(a)
        b.send(b"y")
        assert await asyncio.wait_for(loop.sock_recv(a, 1), 5) == b"y"
        await asyncio.wait_for(loop.sock_sendall(a, b"z"), 5)
        assert b.recv(1) == b"z"
        assert a.fileno() >= 1024
        assert _registered(loop) == before
    finally:
        a.close()
        b.close()


@pytest.mark.asyncio
@pytest.mark.usefixtures("high_fd_limit")
async def test_add_reader_on_a_high_pipe_end(loop_config):
    """add_reader on a pipe end numbered >= 1024 keeps level semantics: 10 bytes written once to a
    callback that reads one byte per call fire it 10 times (EPOLL_NOTES behaviour 10)."""
    loop = asyncio.get_running_loop()
    r, w = os.pipe()
    r = _high(r)
    os.set_blocking(r, False)
    try:
        if _select_loop(loop_config):
            with _without_ctypes(loop), pytest.raises(ValueError, match=_REFUSED):
                loop.add_reader(r, lambda: None)
            assert loop.remove_reader(r) is False
        calls = 0
        got = bytearray()
        done = loop.create_future()

        def on_readable():
            nonlocal calls
            calls += 1
            got.extend(os.read(r, 1))
            if len(got) == 10 and not done.done():
                done.set_result(None)

        loop.add_reader(r, on_readable)
        os.write(w, b"0123456789")
        await asyncio.wait_for(done, 5)
        await asyncio.sleep(0.02)  # drained: no more calls
        assert got == b"0123456789" and calls == 10
        assert loop.remove_reader(r)
    finally:
        os.close(r)
        os.close(w)


@pytest.mark.asyncio
@pytest.mark.usefixtures("high_fd_limit")
@pytest.mark.parametrize("entry", ["create_connection", "create_unix_connection",
                                   "create_datagram_endpoint"])
async def test_a_high_socket_of_its_own(loop_config, entry, unix_path):
    """The loop's own socket gets a number >= 1024 (refused without ctypes on select: closed,
    nothing left registered); it works."""
    loop = asyncio.get_running_loop()
    server, accepted, port = await _echo_server()
    uaccepted: list[Recorder] = []

    def ufactory():
        uaccepted.append(Recorder(on_data=_echo))
        return uaccepted[-1]

    userver = await loop.create_unix_server(ufactory, unix_path)

    def call():
        if entry == "create_connection":
            return loop.create_connection(Recorder, "127.0.0.1", port)
        if entry == "create_unix_connection":
            return loop.create_unix_connection(Recorder, unix_path)
        return loop.create_datagram_endpoint(_Datagrams, local_addr=("127.0.0.1", 0))

    try:
        before = _registered(loop)
        with _low_fds_taken():
            if _select_loop(loop_config):
                open_before = _fds()
                with _without_ctypes(loop), _no_resource_warning(), \
                        pytest.raises(ValueError, match=_REFUSED):
                    await call()
                assert _fds() == open_before  # closed at once, not left to the garbage collector
                assert _registered(loop) == before
                await asyncio.sleep(0.05)  # the servers see the peer and let go of it
            tr, pr = await call()
            assert tr.get_extra_info("socket").fileno() >= 1024
            if entry == "create_datagram_endpoint":
                tr.sendto(b"to myself", tr.get_extra_info("sockname"))
                assert (await asyncio.wait_for(pr.got.get(), 5))[0] == b"to myself"
                tr.close()
            else:
                await _echoes(tr, pr)
            await asyncio.sleep(0.05)
        await _roundtrip(loop, port)
    finally:
        await _close_server(userver, uaccepted)
        await _close_server(server, accepted)


@pytest.mark.asyncio
@pytest.mark.usefixtures("high_fd_limit")
@pytest.mark.parametrize("entry", ["create_server", "create_unix_server"])
async def test_a_high_listening_socket_of_its_own(loop_config, entry, unix_path):
    loop = asyncio.get_running_loop()
    before = _registered(loop)
    accepted: list[Recorder] = []

    def factory():
        accepted.append(Recorder(on_data=_echo))
        return accepted[-1]

    def call():
        if entry == "create_server":
            return loop.create_server(factory, "127.0.0.1", 0)
        return loop.create_unix_server(factory, unix_path)

    with _low_fds_taken():
        if _select_loop(loop_config):
            open_before = _fds()
            with _without_ctypes(loop), _no_resource_warning(), \
                    pytest.raises(ValueError, match=_REFUSED):
                await call()
            assert _fds() == open_before  # closed at once, not left to the garbage collector
            assert _registered(loop) == before
        server = await call()
        try:
            assert server.sockets[0].fileno() >= 1024
            if entry == "create_server":
                connected = loop.create_connection(Recorder, *server.sockets[0].getsockname())
            else:
                connected = loop.create_unix_connection(Recorder, unix_path)
            await _echoes(*await connected)
        finally:
            await _close_server(server, accepted)


@pytest.mark.asyncio
@pytest.mark.usefixtures("high_fd_limit")
async def test_a_high_listening_socket_given(loop_config):
    loop = asyncio.get_running_loop()
    sock = _high(socket.socket())
    fd = sock.fileno()
    accepted: list[Recorder] = []

    def factory():
        accepted.append(Recorder(on_data=_echo))
        return accepted[-1]

    try:
        sock.bind(("127.0.0.1", 0))
        before = _registered(loop)
        if _select_loop(loop_config):
            with _without_ctypes(loop):
                with pytest.raises(ValueError, match=_REFUSED):
                    await loop.create_server(factory, sock=sock)
                assert sock.fileno() == fd  # still the caller's
                assert _registered(loop) == before
                server = await loop.create_server(factory, sock=sock, start_serving=False)
                with pytest.raises(ValueError, match=_REFUSED):
                    await server.start_serving()
                assert not server.is_serving() and _registered(loop) == before
            server.close()  # closes the socket it was given, even never served
            assert sock.fileno() == -1
            sock = _high(socket.socket())
            sock.bind(("127.0.0.1", 0))
        server = await loop.create_server(factory, sock=sock)
        try:
            assert server.sockets[0].fileno() >= 1024
            await _echoes(*await loop.create_connection(Recorder, *sock.getsockname()))
        finally:
            await _close_server(server, accepted)
    finally:
        sock.close()


@pytest.mark.asyncio
async def test_server_close_closes_sockets_never_served():
    """asyncio's Server.close() closes every listening socket, served or not."""
    loop = asyncio.get_running_loop()
    server = await loop.create_server(asyncio.Protocol, "127.0.0.1", 0, start_serving=False)
    socks = server.sockets
    assert socks and all(s.fileno() >= 0 for s in socks)
    server.close()
    await server.wait_closed()
    assert all(s.fileno() == -1 for s in socks)


@pytest.mark.asyncio
@pytest.mark.usefixtures("high_fd_limit")
async def test_a_subprocess_with_high_pipes(loop_config):
    """The child's pipes get numbers >= 1024 (refused without ctypes on select: the child killed
    and reaped, its pipes closed); stdin and stdout carry the data."""
    loop = asyncio.get_running_loop()
    with _low_fds_taken():
        if _select_loop(loop_config):
            open_before = _fds()
            with _without_ctypes(loop), _no_resource_warning(), \
                    pytest.raises(ValueError, match=_REFUSED):
                await loop.subprocess_exec(asyncio.SubprocessProtocol, sys.executable, "-c", "pass")
            assert _fds() == open_before
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-c", "import sys; sys.stdout.write(sys.stdin.read())",
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE)
        assert proc.stdin.get_extra_info("pipe").fileno() >= 1024
        out, _ = await asyncio.wait_for(proc.communicate(b"through pipes >= 1024"), 10)
        assert out == b"through pipes >= 1024" and proc.returncode == 0


@pytest.mark.asyncio
@pytest.mark.usefixtures("high_fd_limit")
async def test_subprocess_with_a_high_pidfd(monkeypatch):
    """A pidfd numbered >= 1024 is no reason to fail (a poller that refuses it leaves the exit to a
    watcher thread)."""
    loop = asyncio.get_running_loop()
    real = getattr(os, "pidfd_open", None)
    if real is not None:
        monkeypatch.setattr(os, "pidfd_open", lambda pid, *args: _high(real(pid, *args)))
    tr, _ = await loop.subprocess_exec(asyncio.SubprocessProtocol, sys.executable, "-c", "pass")
    try:
        assert await asyncio.wait_for(tr._wait(), 10) == 0
    finally:
        tr.close()


@pytest.mark.asyncio
@pytest.mark.usefixtures("high_fd_limit")
async def test_a_high_signal_wakeup_socket(loop_config):
    """The wakeup socket of add_signal_handler gets a number >= 1024 (refused without ctypes on
    select, and not kept half set up: signals would arrive on a socket nobody watches); the
    signal is delivered."""
    loop = asyncio.get_running_loop()
    got = loop.create_future()
    with _low_fds_taken():
        if _select_loop(loop_config):
            open_before = _fds()
            with _without_ctypes(loop), pytest.raises(ValueError, match=_REFUSED):
                loop.add_signal_handler(signal.SIGUSR1, lambda: None)
            assert _fds() == open_before
        try:
            loop.add_signal_handler(signal.SIGUSR1, lambda: got.done() or got.set_result(True))
            os.kill(os.getpid(), signal.SIGUSR1)
            assert await asyncio.wait_for(got, 5)
        finally:
            loop.remove_signal_handler(signal.SIGUSR1)


@pytest.mark.skipif(REFERENCE, reason="edgeloop's select backend")
@pytest.mark.usefixtures("high_fd_limit")
def test_a_select_loop_with_a_high_wakeup_descriptor():
    """A select loop built when every number below 1024 is taken: its own eventfd gets a number
    >= 1024.  Without ctypes the constructor fails without leaving it open; with ctypes the loop
    is woken through it from another thread."""
    import edgeloop

    with _low_fds_taken():
        open_before = _fds()
        with _without_ctypes(), _no_resource_warning(), pytest.raises(ValueError, match=_REFUSED):
            edgeloop.new_event_loop(backend="select")
        assert _fds() == open_before
        loop = edgeloop.new_event_loop(backend="select")
        try:
            assert max(_fds() - open_before) >= 1024
            fut = loop.create_future()
            timer = threading.Timer(0.1, loop.call_soon_threadsafe, (fut.set_result, "woken"))
            timer.start()
            try:
                assert loop.run_until_complete(asyncio.wait_for(fut, 5)) == "woken"
            finally:
                timer.join()
        finally:
            loop.close()
        assert _fds() == open_before


@pytest.mark.asyncio
@pytest.mark.parametrize("entry", ["create_connection", "connect_accepted_socket",
                                   "create_unix_connection", "create_datagram_endpoint"])
async def test_failing_protocol_factory_leaves_the_given_socket_to_the_caller(entry):
    """asyncio calls the protocol factory before any transport holds ``sock=``: if it raises,
    the socket is still the caller's, open."""
    loop = asyncio.get_running_loop()
    if entry == "create_datagram_endpoint":
        sock, other = socket.socket(socket.AF_INET, socket.SOCK_DGRAM), None
    elif entry == "create_unix_connection":
        sock, other = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    else:
        sock, other = socket.socketpair()

    def factory():
        raise RuntimeError("no protocol")

    try:
        with pytest.raises(RuntimeError, match="no protocol"):
            if entry == "connect_accepted_socket":
                await loop.connect_accepted_socket(factory, sock)
            else:
                await getattr(loop, entry)(factory, sock=sock)
        assert sock.fileno() >= 0
    finally:
        sock.close()
        if other is not None:
            other.close()


@pytest.mark.asyncio
async def test_ssl_protocol_sslcontext(server_ctx, client_ctx):
    """Tests of some libraries read ``transport._ssl_protocol._sslcontext`` (asyncio's private
    name): the context the TLS layer was made with, on both ends."""
    loop = asyncio.get_running_loop()
    accepted: list[Recorder] = []

    def factory():
        accepted.append(Recorder())
        return accepted[-1]

    server = await loop.create_server(factory, "127.0.0.1", 0, ssl=server_ctx)
    port = server.sockets[0].getsockname()[1]
    try:
        tr, pr = await loop.create_connection(Recorder, "127.0.0.1", port, ssl=client_ctx,
                                              server_hostname="localhost")
        assert tr._ssl_protocol._sslcontext is client_ctx
        await asyncio.wait_for(accepted[0].made, 5)
        assert accepted[0].transport._ssl_protocol._sslcontext is server_ctx
        tr.close()
        await asyncio.wait_for(pr.lost, 5)
    finally:
        await _close_server(server, accepted)
