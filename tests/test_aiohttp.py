"""aiohttp, server and client both, running on edgeloop."""
from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os

import pytest

aiohttp = pytest.importorskip("aiohttp")
from aiohttp import web  # noqa: E402

pytestmark = pytest.mark.timeout(60)

REFERENCE = os.environ.get("EDGELOOP_TESTS_REFERENCE") == "asyncio"

ALL = ["edge", "level", "poll", "select"]
PEERS = web.AppKey("peers", set)


@contextlib.asynccontextmanager
async def serve(app: web.Application, **runner_kwargs):
    """Run ``app`` on 127.0.0.1:<free port>; yield (base_url, runner)."""
    runner = web.AppRunner(app, **runner_kwargs)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        host, port = runner.addresses[0][:2]
        yield f"http://{host}:{port}", runner
    finally:
        if runner.server is not None:  # the test may have shut it down itself
            await runner.cleanup()


def make_app() -> web.Application:
    app = web.Application(client_max_size=32 << 20)
    peers: set = set()
    app[PEERS] = peers

    async def hello(request: web.Request) -> web.Response:
        peers.add(request.transport.get_extra_info("peername"))
        return web.Response(text="Hello, World!", headers={"X-Loop": type(
            asyncio.get_running_loop()).__module__})

    async def digest(request: web.Request) -> web.Response:
        body = await request.read()
        return web.json_response({"size": len(body), "sha256": hashlib.sha256(body).hexdigest()})

    async def stream(request: web.Request) -> web.StreamResponse:
        n, size = int(request.query["n"]), int(request.query["size"])
        resp = web.StreamResponse()
        resp.enable_chunked_encoding()
        resp.content_type = "application/octet-stream"
        await resp.prepare(request)
        for i in range(n):
            await resp.write(bytes([i % 256]) * size)
            if i % 10 == 0:
                await asyncio.sleep(0)  # chunks go out over several loop iterations
        await resp.write_eof()
        return resp

    async def ws_echo(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        async for msg in ws:
            if msg.type == aiohttp.WSMsgType.TEXT:
                if msg.data == "close":
                    await ws.close(code=4000, message=b"bye")
                else:
                    await ws.send_str(msg.data)
            elif msg.type == aiohttp.WSMsgType.BINARY:
                await ws.send_bytes(msg.data)
        return ws

    app.router.add_get("/", hello)
    app.router.add_post("/digest", digest)
    app.router.add_get("/stream", stream)
    app.router.add_get("/ws", ws_echo)
    return app


@pytest.mark.asyncio(loop_factories=ALL)
async def test_get():
    async with serve(make_app()) as (url, _):
        async with aiohttp.ClientSession() as session:
            async with session.get(url + "/") as resp:
                assert resp.status == 200
                assert await resp.text() == "Hello, World!"
                assert resp.headers["Content-Type"].startswith("text/plain")
                served_by = resp.headers["X-Loop"]
                assert served_by.split(".")[0] == ("asyncio" if REFERENCE else "edgeloop")
            async with session.get(url + "/missing") as resp:
                assert resp.status == 404
                await resp.read()


@pytest.mark.asyncio(loop_factories=ALL)
async def test_post_10mb_body():
    body = os.urandom(10 << 20)
    async with serve(make_app()) as (url, _):
        async with aiohttp.ClientSession() as session:
            async with session.post(url + "/digest", data=body) as resp:
                assert resp.status == 200
                got = await resp.json()
    assert got == {"size": len(body), "sha256": hashlib.sha256(body).hexdigest()}


@pytest.mark.asyncio(loop_factories=ALL)
async def test_streamed_response():
    n, size = 200, 10_000
    async with serve(make_app()) as (url, _):
        async with aiohttp.ClientSession() as session:
            async with session.get(url + "/stream", params={"n": n, "size": size}) as resp:
                assert resp.status == 200
                assert resp.headers.get("Transfer-Encoding") == "chunked"
                received = bytearray()
                pieces = 0
                async for chunk in resp.content.iter_any():
                    received += chunk
                    pieces += 1
    assert len(received) == n * size
    assert received == b"".join(bytes([i % 256]) * size for i in range(n))
    assert pieces > 1


@pytest.mark.asyncio(loop_factories=ALL)
async def test_websocket_echo():
    async with serve(make_app()) as (url, _):
        async with aiohttp.ClientSession() as session:
            async with session.ws_connect(url + "/ws") as ws:
                for i in range(100):
                    await ws.send_str(f"message {i}")
                for i in range(100):
                    msg = await asyncio.wait_for(ws.receive(), 5)
                    assert msg.type == aiohttp.WSMsgType.TEXT and msg.data == f"message {i}"
                blob = os.urandom(256 * 1024)
                await ws.send_bytes(blob)
                msg = await asyncio.wait_for(ws.receive(), 10)
                assert msg.type == aiohttp.WSMsgType.BINARY and msg.data == blob
                await ws.send_str("close")
                msg = await asyncio.wait_for(ws.receive(), 5)
                assert msg.type == aiohttp.WSMsgType.CLOSE
                assert ws.close_code == 4000
            assert ws.closed


@pytest.mark.asyncio(loop_factories=ALL)
async def test_concurrent_requests_reuse_keepalive_connections():
    app = make_app()
    async with serve(app) as (url, _):
        connector = aiohttp.TCPConnector(limit=20)
        async with aiohttp.ClientSession(connector=connector) as session:
            async def one():
                async with session.get(url + "/") as resp:
                    assert resp.status == 200
                    return await resp.text()

            texts = await asyncio.wait_for(asyncio.gather(*(one() for _ in range(200))), 30)
    assert texts == ["Hello, World!"] * 200
    # 200 requests over at most 20 connections: keep-alive connections were reused
    assert 1 <= len(app[PEERS]) <= 20, len(app[PEERS])


@pytest.mark.asyncio(loop_factories=ALL)
async def test_graceful_shutdown_completes_in_flight_request():
    release = asyncio.Event()
    started = asyncio.Event()

    async def slow(request):
        started.set()
        await release.wait()
        return web.Response(text="finished")

    app = make_app()
    app.router.add_get("/slow", slow)
    async with serve(app, shutdown_timeout=10) as (url, runner):
        async with aiohttp.ClientSession() as session, aiohttp.ClientSession() as idle:
            async with idle.get(url + "/") as resp:  # leaves an idle keep-alive connection
                assert await resp.text() == "Hello, World!"
            request = asyncio.ensure_future(session.get(url + "/slow"))
            await asyncio.wait_for(started.wait(), 5)
            cleanup = asyncio.ensure_future(runner.cleanup())
            # the site stops listening first: a new connection is refused
            for _ in range(200):
                if not runner.sites:
                    break
                await asyncio.sleep(0.01)
            with pytest.raises(aiohttp.ClientConnectionError):
                async with aiohttp.ClientSession() as late:
                    await late.get(url + "/")
            assert not cleanup.done()  # waits for the in-flight handler
            release.set()
            resp = await asyncio.wait_for(request, 10)
            assert resp.status == 200
            assert await resp.text() == "finished"
            resp.release()
            await asyncio.wait_for(cleanup, 10)
            assert runner.server is None


@pytest.mark.asyncio(loop_factories=["edge", "level"])
async def test_shutdown_timeout_cancels_stuck_handler():
    cancelled = asyncio.Event()
    started = asyncio.Event()

    async def stuck(request):
        started.set()
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return web.Response(text="never")

    app = web.Application()
    app.router.add_get("/stuck", stuck)
    async with serve(app, shutdown_timeout=0.2) as (url, runner):
        async with aiohttp.ClientSession() as session:
            request = asyncio.ensure_future(session.get(url + "/stuck"))
            await asyncio.wait_for(started.wait(), 5)
            await asyncio.wait_for(runner.cleanup(), 10)
            assert cancelled.is_set()
            with pytest.raises(aiohttp.ClientError):
                await asyncio.wait_for(request, 10)
