"""The benchmark server: one event loop, one echo or HTTP service, run as a subprocess.

    python -m benchmarks.server --loop edge --kind protocol [--port 0 | --unix PATH]
                                [--stats-file FILE]

Kinds: ``protocol`` (an ``asyncio.Protocol`` echo), ``streams`` (``start_server`` with
``StreamReader``/``StreamWriter``), ``sock`` (``loop.sock_accept``/``sock_recv``/``sock_sendall``)
and ``http`` (aiohttp "Hello, World!").  The listening socket is made here and handed to the loop,
so port 0 works; once listening the server prints one JSON line ``{"ready": true, "port": N,
"pid": P, "edgeloop": FILE}`` (FILE: the ``edgeloop/__init__.py`` it imported; null for other
loops).

Counters: on SIGUSR1 the server writes ``{"seq": n, "stats": loop.stats()}`` to ``--stats-file``
(atomically, by rename), so the harness can take a snapshot before and after a measured round; on
SIGTERM it writes a last snapshot and exits at once.  Loops without ``stats()`` write ``null``.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import sys
from typing import Any

from benchmarks.loops import ALL_LOOPS, edgeloop_file, loop_stats, new_loop
from benchmarks.proc import die_with_parent

KINDS = ("protocol", "streams", "sock", "http")
READ_SIZE = 256 * 1024


class EchoProtocol(asyncio.Protocol):
    transport: asyncio.Transport

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.transport.write(data)


async def _streams_client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            data = await reader.read(READ_SIZE)
            if not data:
                break
            writer.write(data)
            await writer.drain()
    except ConnectionError:
        pass
    finally:
        writer.close()


async def _sock_client(loop: asyncio.AbstractEventLoop, conn: socket.socket) -> None:
    with conn:
        try:
            while True:
                data = await loop.sock_recv(conn, READ_SIZE)
                if not data:
                    break
                await loop.sock_sendall(conn, data)
        except ConnectionError:
            pass


async def _sock_server(loop: asyncio.AbstractEventLoop, listener: socket.socket) -> None:
    tasks: set[asyncio.Task[None]] = set()
    while True:
        conn, _ = await loop.sock_accept(listener)
        conn.setblocking(False)
        if conn.family != socket.AF_UNIX:
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        task = loop.create_task(_sock_client(loop, conn))
        tasks.add(task)
        task.add_done_callback(tasks.discard)


async def _http_server(listener: socket.socket) -> Any:
    from aiohttp import web

    async def hello(request: web.Request) -> web.Response:
        return web.Response(text="Hello, World!")

    app = web.Application()
    app.router.add_get("/", hello)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    site = web.SockSite(runner, listener)
    await site.start()
    return runner


async def serve(kind: str, listener: socket.socket, ready: dict[str, Any]) -> None:
    loop = asyncio.get_running_loop()
    if kind == "protocol":
        await loop.create_server(EchoProtocol, sock=listener)
    elif kind == "streams":
        if listener.family == socket.AF_UNIX:
            await asyncio.start_unix_server(_streams_client, sock=listener)
        else:
            await asyncio.start_server(_streams_client, sock=listener)
    elif kind == "sock":
        loop.create_task(_sock_server(loop, listener))
    elif kind == "http":
        await _http_server(listener)
    else:
        raise ValueError(kind)
    print(json.dumps(ready), flush=True)
    await loop.create_future()  # serve until a signal ends the process


def _listener(args: argparse.Namespace) -> socket.socket:
    if args.unix:
        if os.path.exists(args.unix):
            os.unlink(args.unix)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.bind(args.unix)
    else:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((args.host, args.port))
    sock.listen(1024)
    sock.setblocking(False)
    return sock


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m benchmarks.server", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--loop", choices=ALL_LOOPS, required=True)
    p.add_argument("--kind", choices=KINDS, required=True)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--unix", help="listen on this Unix socket path instead of TCP")
    p.add_argument("--stats-file", help="where SIGUSR1/SIGTERM write the loop's counters")
    args = p.parse_args(argv)
    die_with_parent()

    listener = _listener(args)
    port = 0 if args.unix else listener.getsockname()[1]
    loop = new_loop(args.loop)
    asyncio.set_event_loop(loop)
    seq = 0

    def snapshot() -> None:
        nonlocal seq
        seq += 1
        if not args.stats_file:
            return
        tmp = f"{args.stats_file}.tmp"
        with open(tmp, "w") as f:
            json.dump({"seq": seq, "loop": args.loop, "stats": loop_stats(loop)}, f)
        os.replace(tmp, args.stats_file)

    def on_usr1(signum: int, frame: object) -> None:
        snapshot()

    def on_term(signum: int, frame: object) -> None:
        snapshot()
        sys.stdout.flush()
        os._exit(0)

    signal.signal(signal.SIGUSR1, on_usr1)
    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    loop.run_until_complete(serve(args.kind, listener, {"ready": True, "port": port,
                                                        "pid": os.getpid(),
                                                        "edgeloop": edgeloop_file(args.loop)}))


if __name__ == "__main__":
    main()
