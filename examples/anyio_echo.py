#!/usr/bin/env python3
"""anyio on edgeloop: a TCP echo server and client (anyio streams) plus a worker thread.

    python examples/anyio_echo.py

anyio's asyncio backend takes the loop through ``backend_options={"loop_factory": ...}``, which
it hands to ``asyncio.Runner``::

    anyio.run(main, backend="asyncio", backend_options={"loop_factory": edgeloop.new_event_loop})

The same works for anyio's pytest plugin: an ``anyio_backend`` fixture returning
``("asyncio", {"loop_factory": edgeloop.new_event_loop})``.
"""
from __future__ import annotations

import asyncio
import hashlib
import threading

import anyio
from anyio.abc import SocketStream

import edgeloop


async def _echo(stream: SocketStream) -> None:
    async with stream:
        try:
            while True:
                await stream.send(await stream.receive())
        except anyio.EndOfStream:
            pass


async def main(payload_size: int = 1 << 20) -> dict[str, object]:
    """Serve echo on a free port, send ``payload_size`` bytes through it, hash them in a thread."""
    payload = bytes(range(256)) * (payload_size // 256)
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
    port = listener.extra(anyio.abc.SocketAttribute.local_port)
    async with listener, anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, _echo)
        async with await anyio.connect_tcp("127.0.0.1", port) as client:
            received = bytearray()

            async def read_back() -> None:
                while len(received) < len(payload):
                    received.extend(await client.receive())

            async with anyio.create_task_group() as io:
                io.start_soon(read_back)
                await client.send(payload)
            await client.send_eof()
        # Blocking work off the loop: anyio's worker threads, results back on the loop.
        digest, thread_name = await anyio.to_thread.run_sync(
            lambda: (hashlib.sha256(payload).hexdigest(), threading.current_thread().name))
        tg.cancel_scope.cancel()
    return {
        "loop": type(asyncio.get_running_loop()).__name__,
        "echoed": bytes(received) == payload,
        "sha256": digest,
        "thread": thread_name,
    }


if __name__ == "__main__":
    result = anyio.run(main, backend="asyncio",
                       backend_options={"loop_factory": edgeloop.new_event_loop})
    for key, value in result.items():
        print(f"{key}: {value}")
