#!/usr/bin/env python3
"""A TCP echo server: an asyncio Protocol served by edgeloop.

    python examples/echo_server.py --port 8888 --trigger edge
    printf 'hello\n' | nc -q1 127.0.0.1 8888

SIGINT or SIGTERM stops it cleanly (exit status 0).  ``--loop asyncio`` runs the same server on the
stdlib loop, for comparison.
"""
from __future__ import annotations

import argparse
import asyncio
import signal


class Echo(asyncio.Protocol):
    def __init__(self, connections: set[asyncio.Transport]):
        self.connections = connections

    def connection_made(self, transport: asyncio.Transport) -> None:
        self.transport = transport
        self.connections.add(transport)

    def data_received(self, data: bytes) -> None:
        self.transport.write(data)

    def eof_received(self) -> bool:
        return False  # the client is done: close our side too (after the buffer drains)

    def connection_lost(self, exc: Exception | None) -> None:
        self.connections.discard(self.transport)


async def serve(host: str, port: int) -> None:
    loop = asyncio.get_running_loop()
    connections: set[asyncio.Transport] = set()
    server = await loop.create_server(lambda: Echo(connections), host, port)
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    host, port = server.sockets[0].getsockname()[:2]
    print(f"echo server listening on {host}:{port} ({loop!r})", flush=True)
    try:
        await stop.wait()
    finally:
        server.close()
        for transport in list(connections):
            transport.close()
        await server.wait_closed()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
    print("echo server stopped", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8888, help="0 picks a free port")
    parser.add_argument("--trigger", choices=["edge", "level"], default="edge")
    parser.add_argument("--backend", choices=["epoll", "poll", "select"], default="epoll")
    parser.add_argument("--loop", choices=["edgeloop", "asyncio"], default="edgeloop")
    args = parser.parse_args()
    if args.loop == "asyncio":
        asyncio.run(serve(args.host, args.port))
    else:
        import edgeloop
        trigger = args.trigger if args.backend == "epoll" else "level"
        edgeloop.run(serve(args.host, args.port), backend=args.backend, trigger=trigger)


if __name__ == "__main__":
    main()
