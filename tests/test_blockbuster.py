"""blockbuster, which flags blocking calls made while an event loop runs, against edgeloop.

blockbuster exempts asyncio's own loop internals by file and function name; edgeloop does the same
work from its own functions, and ``edgeloop.blockbuster_exemptions(bb)`` grants them the same
exemptions.  The tests: with the exemptions, aiohttp's zero-copy FileResponse, a Unix-socket site
and connector, subprocesses, sock_sendfile and shutdown_default_executor pass under blockbuster;
without them the same code fails on edgeloop (and passes on the stdlib loop, which blockbuster
exempts itself); with them, blocking calls made by user code are still flagged.

Each test that serves through aiohttp runs with blockbuster watching every module (``all``, the
strictest) and watching only aiohttp (``aiohttp``, how aiohttp's own test suite scopes it:
``blockbuster_ctx("aiohttp", ...)``).  Nothing but edgeloop's exemptions is granted: no exemption
for aiohttp or pytest was needed.  The test file and the module's data are written by fixtures,
before the loop runs (blockbuster would rightly flag a file write inside the test).

With EDGELOOP_TESTS_REFERENCE=asyncio the same tests run on the stdlib loop: the helper is applied
there too (it names only edgeloop's files, so it changes nothing), and the "without exemptions"
tests check that the stdlib passes where edgeloop alone fails.
"""
from __future__ import annotations

import ast
import asyncio
import contextlib
import logging
import os
import re
import shutil
import socket
import subprocess
import sys
import time

import pytest

blockbuster = pytest.importorskip("blockbuster")
aiohttp = pytest.importorskip("aiohttp")
from aiohttp import web  # noqa: E402
from blockbuster import BlockBuster, BlockingError, blockbuster_ctx  # noqa: E402

import edgeloop  # noqa: E402  (the helper is imported on the stdlib loop too: a no-op there)
import edgeloop.blockbuster as edgeloop_bb  # noqa: E402

try:
    from tests._streamutil import REFERENCE, short_unix_path
except ModuleNotFoundError:  # tests/ on sys.path rather than a package
    from _streamutil import REFERENCE, short_unix_path

pytestmark = pytest.mark.timeout(60)

SIZE = 3 << 20  # a few MB: several os.sendfile calls, and more than a socket buffer holds

# How blockbuster is scoped: every module, or (as aiohttp's test suite does) only calls made with
# aiohttp code on the stack.
SCOPES: dict[str, dict] = {"all": {}, "aiohttp": {"scanned_modules": "aiohttp"}}


@contextlib.contextmanager
def watching(scope: str = "all", *, exempt: bool = True):
    """blockbuster active for the block; with edgeloop's exemptions unless ``exempt=False``."""
    with blockbuster_ctx(**SCOPES[scope]) as bb:
        if exempt:
            edgeloop.blockbuster_exemptions(bb)
        yield bb


def flagged(call: str):
    """What edgeloop without the exemptions must do: raise BlockingError for ``call``.  On the
    stdlib loop the same code passes, blockbuster exempting asyncio's internals itself."""
    if REFERENCE:
        return contextlib.nullcontext()
    return pytest.raises(BlockingError, match=re.escape(f"Blocking call to {call}"))


# --------------------------------------------------------------------------------------------
# fixtures

@pytest.fixture(scope="module")
def big_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("blockbuster") / "big.bin"
    data = os.urandom(SIZE)
    path.write_bytes(data)
    return path, data


@pytest.fixture
def unix_path():
    directory, path = short_unix_path()
    yield path
    shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def sendfile_calls(monkeypatch):
    """The byte counts os.sendfile returned during the test: proof that a download went zero-copy
    rather than through a read-and-write fallback.  The spy is in place before blockbuster wraps
    os.sendfile, so blockbuster wraps (and checks the callers of) the spy."""
    sent: list[int] = []
    real = os.sendfile

    def spy(*args, **kwargs):
        n = real(*args, **kwargs)
        sent.append(n)
        return n

    monkeypatch.setattr(os, "sendfile", spy)
    return sent


@contextlib.asynccontextmanager
async def serving(app: web.Application, unix: str | None = None):
    """Run ``app`` on 127.0.0.1:<free port> (or on the Unix socket ``unix``); yield its base URL."""
    runner = web.AppRunner(app)
    await runner.setup()
    try:
        if unix is None:
            await web.TCPSite(runner, "127.0.0.1", 0).start()
            host, port = runner.addresses[0][:2]
            yield f"http://{host}:{port}"
        else:
            await web.UnixSite(runner, unix).start()
            yield "http://localhost"
    finally:
        await runner.cleanup()


def file_app(path) -> web.Application:
    async def hello(request: web.Request) -> web.Response:
        return web.Response(text="Hello, World!")

    async def file(request: web.Request) -> web.FileResponse:
        return web.FileResponse(path)  # aiohttp sends it with loop.sendfile()

    async def sleepy(request: web.Request) -> web.Response:
        time.sleep(0.01)  # a blocking call in user code: blockbuster must flag it
        return web.Response(text="slept")

    app = web.Application()
    app.router.add_get("/", hello)
    app.router.add_get("/file", file)
    app.router.add_get("/sleepy", sleepy)
    return app


async def receive(loop: asyncio.AbstractEventLoop, sock: socket.socket, n: int | None = None) -> bytes:
    """What arrives on ``sock`` until EOF (or ``n`` bytes)."""
    chunks = bytearray()
    while n is None or len(chunks) < n:
        chunk = await loop.sock_recv(sock, 1 << 16)
        if not chunk:
            break
        chunks += chunk
    return bytes(chunks)


def blocking_errors(caplog, call: str) -> list[BaseException]:
    """The BlockingErrors for ``call`` that aiohttp's server logged (a failed handler)."""
    return [r.exc_info[1] for r in caplog.records
            if r.exc_info and isinstance(r.exc_info[1], BlockingError)
            and f"Blocking call to {call}" in str(r.exc_info[1])]


# --------------------------------------------------------------------------------------------
# the helper itself

def test_exemptions_name_real_functions():
    """Every entry names a function blockbuster watches and a function defined in that edgeloop
    file, so that renaming either breaks this test rather than users' suites."""
    watched = BlockBuster().functions
    package = os.path.dirname(edgeloop.__file__)
    for name, relpath, functions in edgeloop_bb._EXEMPTIONS:
        assert name in watched, name
        source_path = os.path.join(package, relpath)
        with open(source_path) as f:
            tree = ast.parse(f.read())
        defined = {node.name for node in ast.walk(tree)
                   if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))}
        for function in functions:
            assert function in defined, f"{relpath} defines no {function}()"


def test_exemptions_are_added_once_and_only_where_listed():
    bb = BlockBuster()
    before = {name: list(f.can_block_functions) for name, f in bb.functions.items()}
    edgeloop.blockbuster_exemptions(bb)
    after = {name: list(f.can_block_functions) for name, f in bb.functions.items()}
    edgeloop.blockbuster_exemptions(bb)  # idempotent
    assert {name: list(f.can_block_functions) for name, f in bb.functions.items()} == after
    listed = {name for name, _, _ in edgeloop_bb._EXEMPTIONS}
    package = os.path.dirname(edgeloop.__file__)
    for name in bb.functions:
        added = after[name][len(before[name]):]
        assert after[name][:len(before[name])] == before[name]
        if name not in listed:
            assert not added, name
        for filename, functions in added:
            assert filename.startswith(package + os.sep), filename  # edgeloop's files only
    assert sum(len(after[n]) - len(before[n]) for n in after) == len(edgeloop_bb._EXEMPTIONS)


def test_importing_edgeloop_does_not_import_blockbuster():
    code = "import sys, edgeloop; assert 'blockbuster' not in sys.modules, sys.modules['blockbuster']"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    subprocess.run([sys.executable, "-c", code], check=True, env=env, timeout=30)


# --------------------------------------------------------------------------------------------
# with the exemptions: what the stdlib loop's exemptions allow, edgeloop's allow

@pytest.mark.asyncio
@pytest.mark.parametrize("scope", SCOPES)
async def test_file_response_goes_through_sendfile(scope, big_file, sendfile_calls):
    path, data = big_file
    with watching(scope):
        async with serving(file_app(path)) as url:
            async with aiohttp.ClientSession() as session:
                async with session.get(url + "/file") as resp:
                    assert resp.status == 200
                    body = await resp.read()
    assert body == data
    assert sum(sendfile_calls) == len(data)  # zero-copy, not aiohttp's or the loop's fallback


@pytest.mark.asyncio
@pytest.mark.parametrize("scope", SCOPES)
async def test_unix_site_and_connector(scope, unix_path):
    with watching(scope):
        async with serving(file_app(None), unix=unix_path) as url:
            async with aiohttp.ClientSession(connector=aiohttp.UnixConnector(unix_path)) as session:
                async with session.get(url + "/") as resp:
                    assert resp.status == 200
                    text = await resp.text()
    assert text == "Hello, World!"
    # Server.close() removes the socket file (os.stat, os.unlink) from 3.13 on, like the stdlib.
    assert os.path.exists(unix_path) == (sys.version_info < (3, 13))


@pytest.mark.asyncio
async def test_unix_server_close_removes_its_socket_file(unix_path):
    loop = asyncio.get_running_loop()
    server = await loop.create_unix_server(asyncio.Protocol, unix_path)
    with watching():
        server.close()
        await server.wait_closed()
    assert os.path.exists(unix_path) == (sys.version_info < (3, 13))


@pytest.mark.asyncio
async def test_sock_sendfile(big_file):
    path, data = big_file
    loop = asyncio.get_running_loop()
    a, b = socket.socketpair()
    a.setblocking(False)
    b.setblocking(False)
    with open(path, "rb") as file, a, b:
        with watching():
            reader = asyncio.ensure_future(receive(loop, b))
            sent = await loop.sock_sendfile(a, file, fallback=False)  # zero-copy or an error
            a.shutdown(socket.SHUT_WR)
            body = await reader
    assert sent == len(data)
    assert body == data


@pytest.mark.asyncio
async def test_subprocess():
    with watching():
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-c", "print('hi')", stdout=asyncio.subprocess.PIPE)
        out, _ = await proc.communicate()
    assert out == b"hi\n"
    assert proc.returncode == 0


def slow_executor_joiner(loop, monkeypatch) -> None:
    """Make the thread that shuts the default executor down linger after reporting that it is
    done, so that shutdown_default_executor()'s thread.join() really waits (a blocking
    Lock.acquire for blockbuster) instead of finding the thread gone, as it often would."""
    name = "_do_shutdown" if REFERENCE else "_join_executor"
    joiner = getattr(loop, name)

    def slow(*args):
        joiner(*args)
        time.sleep(0.05)  # not on the loop's thread: blockbuster lets it through

    monkeypatch.setattr(loop, name, slow)


@pytest.mark.asyncio
async def test_shutdown_default_executor(monkeypatch):
    loop = asyncio.get_running_loop()
    slow_executor_joiner(loop, monkeypatch)
    with watching():
        assert await loop.run_in_executor(None, sum, (1, 2)) == 3
        await loop.shutdown_default_executor()


# --------------------------------------------------------------------------------------------
# without the exemptions: edgeloop fails where the stdlib loop passes

@pytest.mark.asyncio
@pytest.mark.parametrize("scope", SCOPES)
async def test_without_exemptions_file_response_fails(scope, big_file, caplog):
    path, data = big_file
    caplog.set_level(logging.ERROR, logger="aiohttp.server")
    with watching(scope, exempt=False):
        async with serving(file_app(path)) as url:
            async with aiohttp.ClientSession() as session:
                async with session.get(url + "/file") as resp:
                    assert resp.status == 200  # the headers go out before the file
                    if REFERENCE:
                        assert await resp.read() == data
                    else:
                        with pytest.raises(aiohttp.ClientPayloadError):
                            await resp.read()
    if REFERENCE:
        assert not blocking_errors(caplog, "os.sendfile")
    else:
        assert blocking_errors(caplog, "os.sendfile")


@pytest.mark.asyncio
@pytest.mark.parametrize("scope", SCOPES)
async def test_without_exemptions_unix_site_fails(scope, unix_path):
    with watching(scope, exempt=False):
        runner = web.AppRunner(file_app(None))
        await runner.setup()
        try:
            with flagged("os.stat"):  # create_unix_server's check for a stale socket file
                await web.UnixSite(runner, unix_path).start()
        finally:
            await runner.cleanup()


@pytest.mark.asyncio
async def test_without_exemptions_unix_server_close_fails(unix_path):
    if sys.version_info < (3, 13):
        pytest.skip("before 3.13 neither loop removes the socket file on close: nothing to flag")
    loop = asyncio.get_running_loop()
    server = await loop.create_unix_server(asyncio.Protocol, unix_path)
    with watching(exempt=False):
        with flagged("os.stat"):  # the check that the socket file is still the server's own
            server.close()  # (on edgeloop the listening socket is closed before the check)
    if REFERENCE:
        await server.wait_closed()


@pytest.mark.asyncio
async def test_without_exemptions_sock_sendfile_fails(big_file):
    path, _ = big_file
    loop = asyncio.get_running_loop()
    a, b = socket.socketpair()
    a.setblocking(False)
    b.setblocking(False)
    with open(path, "rb") as file, a, b:
        with watching(exempt=False):
            # The stdlib loop sends the file: receive it there.
            reader = asyncio.ensure_future(receive(loop, b, 1 << 16))
            try:
                with flagged("os.sendfile"):
                    await loop.sock_sendfile(a, file, count=1 << 16, fallback=False)
                if REFERENCE:
                    assert len(await reader) == 1 << 16
            finally:
                reader.cancel()


@pytest.mark.asyncio
async def test_without_exemptions_subprocess_fails():
    if sys.version_info >= (3, 13):
        pytest.skip("3.13 starts children with posix_spawn: no exec-error pipe is read")
    with watching(exempt=False):
        with flagged("os.read"):  # subprocess.Popen reads its exec-error pipe
            proc = await asyncio.create_subprocess_exec(sys.executable, "-c", "pass")
            await proc.wait()


@pytest.mark.asyncio
async def test_without_exemptions_shutdown_default_executor_fails(monkeypatch):
    if sys.version_info >= (3, 13):
        pytest.skip("3.13's Thread.join waits in C (_ThreadHandle.join), not in Lock.acquire")
    loop = asyncio.get_running_loop()
    slow_executor_joiner(loop, monkeypatch)
    assert await loop.run_in_executor(None, sum, (1, 2)) == 3
    with watching(exempt=False):
        with flagged("lock.acquire"):  # thread.join(): threading.Lock.acquire
            await loop.shutdown_default_executor()
    await asyncio.sleep(0.1)  # let the lingering thread end


# --------------------------------------------------------------------------------------------
# with the exemptions, user code's blocking calls are still flagged

@pytest.mark.asyncio
@pytest.mark.parametrize("call", ["time.sleep", "os.stat", "os.sendfile", "os.read"])
async def test_blocking_calls_in_user_code_are_still_flagged(call, big_file):
    path, _ = big_file
    fd = os.open(path, os.O_RDONLY)
    a, b = socket.socketpair()  # blocking sockets
    try:
        with watching():
            with pytest.raises(BlockingError, match=re.escape(f"Blocking call to {call}")):
                if call == "time.sleep":
                    time.sleep(0.01)
                elif call == "os.stat":
                    os.stat(path)
                elif call == "os.sendfile":
                    os.sendfile(a.fileno(), fd, 0, 1)
                else:
                    os.read(fd, 1)
    finally:
        os.close(fd)
        a.close()
        b.close()


@pytest.fixture
def stale_socket_file(unix_path):
    """A socket file left behind by an earlier run (bound, then closed)."""
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(unix_path)
    return unix_path


@pytest.mark.asyncio
async def test_stale_socket_file_is_flagged_as_on_asyncio(stale_socket_file):
    """blockbuster does not exempt asyncio's removal of a stale socket file: nor do we."""
    loop = asyncio.get_running_loop()
    with watching():
        with pytest.raises(BlockingError, match=re.escape("Blocking call to os.remove")):
            await loop.create_unix_server(asyncio.Protocol, stale_socket_file)
        with pytest.raises(BlockingError, match=re.escape("Blocking call to os.stat")):
            await loop.create_datagram_endpoint(asyncio.DatagramProtocol, family=socket.AF_UNIX,
                                                local_addr=stale_socket_file)


@pytest.mark.asyncio
@pytest.mark.parametrize("scope", SCOPES)
async def test_blocking_call_in_a_handler_is_still_flagged(scope, caplog):
    """A blocking call in an aiohttp handler, next to a FileResponse served with the exemptions."""
    caplog.set_level(logging.ERROR, logger="aiohttp.server")
    with watching(scope):
        async with serving(file_app(None)) as url:
            async with aiohttp.ClientSession() as session:
                async with session.get(url + "/sleepy") as resp:
                    assert resp.status == 500
    assert blocking_errors(caplog, "time.sleep")


@pytest.mark.asyncio
async def test_blocking_call_in_a_protocol_callback_is_still_flagged():
    """A blocking call in data_received, which edgeloop's transport calls: flagged (the exemptions
    cover edgeloop's functions, not the user code they call)."""
    loop = asyncio.get_running_loop()
    errors: list[BaseException] = []
    loop.set_exception_handler(lambda loop, context: errors.append(context.get("exception")))
    received = loop.create_future()

    class Sleepy(asyncio.Protocol):
        def data_received(self, data: bytes) -> None:
            try:
                time.sleep(0.01)
            finally:
                if not received.done():
                    received.set_result(data)

    a, b = socket.socketpair()
    b.setblocking(False)
    try:
        with watching():
            transport, _ = await loop.connect_accepted_socket(Sleepy, a)
            await loop.sock_sendall(b, b"ping")
            assert await received == b"ping"
            await asyncio.sleep(0)
            transport.close()
            await asyncio.sleep(0)
    finally:
        loop.set_exception_handler(None)
        a.close()
        b.close()
    assert any(isinstance(e, BlockingError) and "time.sleep" in str(e) for e in errors), errors
