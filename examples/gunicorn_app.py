"""An aiohttp application for gunicorn, served on edgeloop in every worker process.

    gunicorn gunicorn_app:make_app --chdir examples --bind 127.0.0.1:8080 \\
        --worker-class edgeloop.worker.GunicornWebWorker --workers 2
    curl http://127.0.0.1:8080/            # "<pid> EventLoop": which worker answered, on which loop
    curl http://127.0.0.1:8080/slow?s=1    # answers after a second (to watch graceful reloads)

``make_app`` is a coroutine function: aiohttp's gunicorn worker awaits it inside the worker, on
the worker's loop.  Each worker prints one line when its application has started, so that scripts
(and the tests) know when every worker is up; ``/slow`` prints a line when a request starts, so
that a test can tell a request is in flight before it signals the server.
"""
from __future__ import annotations

import asyncio
import os
import sys

from aiohttp import web


def _say(line: str) -> None:
    # One write per line: the workers share the arbiter's stdout, and print() would write the text
    # and the newline separately, interleaving lines from two workers.
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


async def hello(request: web.Request) -> web.Response:
    loop = type(asyncio.get_running_loop()).__name__
    return web.Response(text=f"{os.getpid()} {loop}")


async def slow(request: web.Request) -> web.Response:
    seconds = float(request.query.get("s", "1"))
    _say(f"slow request started in worker {os.getpid()}")
    await asyncio.sleep(seconds)
    return web.Response(text=f"{os.getpid()} slept {seconds}")


async def _started(app: web.Application) -> None:
    loop = asyncio.get_running_loop()
    _say(f"worker {os.getpid()} serving on {type(loop).__module__}.{type(loop).__name__}")


async def make_app() -> web.Application:
    app = web.Application()
    app.router.add_get("/", hello)
    app.router.add_get("/slow", slow)
    app.on_startup.append(_started)
    return app
