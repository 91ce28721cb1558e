"""Drop-in, exactly: behaviours where edgeloop used to differ from the stdlib loop of the running
Python, each checked on every loop configuration and, with EDGELOOP_TESTS_REFERENCE=asyncio, on
the stdlib loop itself.
"""
from __future__ import annotations

import asyncio
import os
import socket
import ssl
import sys

import pytest
import trustme

try:
    from tests._streamutil import REFERENCE, Recorder, short_unix_path
except ModuleNotFoundError:  # tests/ on sys.path rather than a package
    from _streamutil import REFERENCE, Recorder, short_unix_path

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(scope="module")
def ca():
    return trustme.CA()


@pytest.fixture(scope="module")
def server_ctx(ca):
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost", "127.0.0.1").configure_cert(ctx)
    return ctx


@pytest.fixture(scope="module")
def client_ctx(ca):
    ctx = ssl.create_default_context()
    ca.configure_trust(ctx)
    return ctx


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
