#!/usr/bin/env python3
"""Serve ``asgi_app.app`` with hypercorn on edgeloop.

    python examples/hypercorn_serve.py --port 8000
    curl http://127.0.0.1:8000/          # edgeloop.loop.EventLoop

hypercorn's command line (``--worker-class``) knows only asyncio, uvloop and trio, so a custom
loop goes through its programmatic API: ``hypercorn.asyncio.serve(app, config)`` is a coroutine and
runs on whatever loop runs it, here ``edgeloop.run``.  Without a ``shutdown_trigger`` hypercorn
installs SIGINT/SIGTERM handlers on the running loop (``loop.add_signal_handler``) and shuts down
gracefully on either; the process then exits with status 0.  Port 0 picks a free port; hypercorn
logs the real address ("Running on http://...").
"""
from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from hypercorn.asyncio import serve
from hypercorn.config import Config

sys.path.insert(0, str(Path(__file__).resolve().parent))
from asgi_app import app  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--loop", choices=["edgeloop", "asyncio"], default="edgeloop")
    args = parser.parse_args()
    config = Config()
    config.bind = [f"{args.host}:{args.port}"]
    config.graceful_timeout = 5.0
    if args.loop == "asyncio":
        asyncio.run(serve(app, config))
    else:
        import edgeloop
        edgeloop.run(serve(app, config))
    print("hypercorn stopped", flush=True)


if __name__ == "__main__":
    main()
