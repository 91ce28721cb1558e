"""A bare ASGI application (no framework), served on edgeloop by uvicorn or hypercorn.

    uvicorn asgi_app:app --app-dir examples --loop edgeloop:new_event_loop --port 8000
    uvicorn asgi_app:app --app-dir examples --loop edgeloop:new_event_loop --workers 2
    python examples/hypercorn_serve.py --port 8000
    curl http://127.0.0.1:8000/                           # edgeloop.loop.EventLoop
    curl --data-binary @somefile http://127.0.0.1:8000/echo

``GET /`` answers with the class of the running event loop, so that a client can check which loop
the server really runs on; ``GET /pid`` with the server process's pid (which worker answered, with
``--workers``); ``POST /echo`` sends the request body back.  The lifespan protocol is
handled (both servers speak it) and does nothing but accept.
"""
from __future__ import annotations

import asyncio
import os
from typing import Any, Awaitable, Callable

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


async def _respond(send: Send, status: int, body: bytes) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"text/plain"),
                            (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] == "lifespan":
        await _lifespan(receive, send)
        return
    if scope["type"] != "http":
        raise RuntimeError(f"unsupported scope {scope['type']!r}")
    body = bytearray()
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    if scope["path"] == "/" and scope["method"] == "GET":
        loop = type(asyncio.get_running_loop())
        await _respond(send, 200, f"{loop.__module__}.{loop.__qualname__}".encode())
    elif scope["path"] == "/pid" and scope["method"] == "GET":
        await _respond(send, 200, str(os.getpid()).encode())
    elif scope["path"] == "/echo" and scope["method"] == "POST":
        await _respond(send, 200, bytes(body))
    else:
        await _respond(send, 404, b"not found")
