"""A protocol whose ``connection_made`` raises is the protocol's bug, not the caller's.

As in asyncio, ``create_connection()`` (and the datagram and pipe variants) still return
``(transport, protocol)``, the exception goes to the loop's exception handler, and a server keeps
serving.  asyncio leaves such a transport open; edgeloop closes it and calls ``connection_lost``
once (README, differences from the stdlib loop).  Every test passes on the stdlib loop too.
"""
from __future__ import annotations

import asyncio
import os
import socket

import pytest

from tests._streamutil import REFERENCE


class Broken(asyncio.Protocol):
    def __init__(self) -> None:
        self.lost: list[BaseException | None] = []
        self.transport = None

    def connection_made(self, transport):
        self.transport = transport
        raise ZeroDivisionError("buggy protocol")

    def connection_lost(self, exc):
        self.lost.append(exc)


class BrokenDatagram(asyncio.DatagramProtocol):
    def connection_made(self, transport):
        self.transport = transport
        raise ZeroDivisionError("buggy protocol")


def _catch(loop) -> list[dict]:
    seen: list[dict] = []
    loop.set_exception_handler(lambda lp, ctx: seen.append(ctx))
    return seen


async def _settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


def _check_reported(seen: list[dict]) -> None:
    assert [type(ctx.get("exception")) for ctx in seen] == [ZeroDivisionError]


@pytest.mark.asyncio
async def test_create_connection_returns_when_connection_made_raises():
    loop = asyncio.get_running_loop()
    seen = _catch(loop)
    listener = socket.create_server(("127.0.0.1", 0))
    try:
        tr, proto = await loop.create_connection(Broken, *listener.getsockname())
        assert isinstance(proto, Broken) and proto.transport is tr
        await _settle()
        _check_reported(seen)
        if not REFERENCE:
            assert tr.is_closing()
            assert len(proto.lost) == 1 and isinstance(proto.lost[0], ZeroDivisionError)
        tr.close()
        await _settle()
        assert len(proto.lost) == 1
    finally:
        listener.close()


@pytest.mark.asyncio
async def test_server_keeps_serving_when_connection_made_raises():
    loop = asyncio.get_running_loop()
    seen = _catch(loop)
    made = 0

    class Echo(asyncio.Protocol):
        def connection_made(self, transport):
            nonlocal made
            made += 1
            self.transport = transport
            if made == 1:
                raise ZeroDivisionError("buggy protocol")

        def data_received(self, data):
            self.transport.write(data)

    server = await loop.create_server(Echo, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    first = socket.create_connection(("127.0.0.1", port))
    try:
        for _ in range(100):
            if seen:
                break
            await asyncio.sleep(0.01)
        _check_reported(seen)
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"second")
        assert await asyncio.wait_for(reader.readexactly(6), 5) == b"second"
        writer.close()
        await writer.wait_closed()
    finally:
        first.close()
        server.close()
        await asyncio.wait_for(server.wait_closed(), 5)


@pytest.mark.asyncio
async def test_datagram_endpoint_and_pipe_return_when_connection_made_raises():
    loop = asyncio.get_running_loop()
    seen = _catch(loop)
    tr, proto = await loop.create_datagram_endpoint(BrokenDatagram, local_addr=("127.0.0.1", 0))
    assert proto.transport is tr
    await _settle()
    _check_reported(seen)
    tr.close()
    seen.clear()

    rfd, wfd = os.pipe()
    try:
        ptr, pproto = await loop.connect_read_pipe(Broken, os.fdopen(rfd, "rb", 0))
        assert pproto.transport is ptr
        await _settle()
        _check_reported(seen)
        ptr.close()
        await _settle()
        assert len(pproto.lost) == 1
    finally:
        os.close(wfd)
