#!/usr/bin/env python3
"""aiohttp's "Hello, World!" served by edgeloop.

    python examples/aiohttp_hello.py --port 8080
    curl http://127.0.0.1:8080/          # Hello, World!

``web.run_app`` takes the loop to run on; it installs SIGINT/SIGTERM handlers through the loop and
shuts the application down gracefully on either (exit status 0).

Looking inside the running server without changing it (edgeloop's operator snapshot)::

    EDGELOOP_DUMP_SIGNAL=USR2 python examples/aiohttp_hello.py --port 8080 &
    kill -USR2 %1      # logs loop.stats() and loop.describe_text() on stderr
    EDGELOOP_STALL_MS=100 python examples/aiohttp_hello.py   # warn about iterations over 100 ms
"""
from __future__ import annotations

import argparse
import asyncio

from aiohttp import web


async def hello(request: web.Request) -> web.Response:
    return web.Response(text="Hello, World!")


def make_app() -> web.Application:
    app = web.Application()
    app.router.add_get("/", hello)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--trigger", choices=["edge", "level"], default="edge")
    parser.add_argument("--loop", choices=["edgeloop", "asyncio"], default="edgeloop")
    args = parser.parse_args()
    if args.loop == "asyncio":
        loop = asyncio.new_event_loop()
    else:
        import edgeloop
        loop = edgeloop.new_event_loop(trigger=args.trigger)
    web.run_app(make_app(), host=args.host, port=args.port, loop=loop)


if __name__ == "__main__":
    main()
