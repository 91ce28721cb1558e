"""An ordinary async test module; conftest.py decides which loops it runs on."""
import asyncio

import pytest
import pytest_asyncio

import edgeloop


@pytest.mark.asyncio(loop_factories=["edgeloop"])
async def test_runs_on_edgeloop():
    assert type(asyncio.get_running_loop()) is edgeloop.EventLoop


@pytest_asyncio.fixture  # strict mode: async fixtures take pytest_asyncio.fixture
async def echo_server():
    """An async fixture: it runs on the same loop as the test that uses it."""
    async def echo(reader, writer):
        writer.write(await reader.read())
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(echo, "127.0.0.1", 0)
    yield server
    server.close()
    await server.wait_closed()


@pytest.mark.asyncio
async def test_echo_on_every_loop(echo_server):
    assert echo_server.get_loop() is asyncio.get_running_loop()
    reader, writer = await asyncio.open_connection(*echo_server.sockets[0].getsockname()[:2])
    writer.write(b"ping" * 10000)
    writer.write_eof()
    assert await reader.read() == b"ping" * 10000
    writer.close()
    await writer.wait_closed()
