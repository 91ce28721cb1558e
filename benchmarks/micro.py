"""In-process workloads: loop overhead without sockets, run by a worker subprocess per loop.

    python -m benchmarks.micro --loop uvloop

The worker reads one JSON command per line on stdin, ``{"kind": "timers", "duration": 1.0}``,
runs that workload on a fresh loop for about ``duration`` seconds and answers one JSON line:
``{"ops": n, "seconds": s, "rate": n/s, "stats": {...} | null}``.  Keeping one worker per loop
alive lets the harness interleave rounds across loops without paying interpreter start-up.  Its
first line is ``{"ready": true, "edgeloop": FILE}`` (the edgeloop it imported, null for others).

* ``timers``: call_later/cancel churn.  Each step schedules 100 timers 0.5-5.4 ms ahead and cancels
  90 of them, then yields once; the 10% that survive fire.  An op is one call_later (+ its cancel).
* ``call_soon``: a chain in which each callback schedules the next with call_soon; an op is one
  callback, so this is the cost of one trip through the ready queue.
* ``sleep0``: two tasks taking turns by ``await asyncio.sleep(0)``; an op is one switch.
* ``call_soon-fd``: the ``call_soon`` chain while the loop watches one idle descriptor (a
  socket pair end with ``add_reader``, never readable), as in any server.  Without a descriptor
  an iteration with callbacks ready has nothing to ask the kernel, and edgeloop then skips the
  zero-timeout poll; here every loop pays one ``epoll_wait`` (or its equivalent) per iteration.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import socket
import sys
import time
from typing import Awaitable, Callable

from benchmarks.loops import ALL_LOOPS, edgeloop_file, loop_stats, new_loop
from benchmarks.proc import die_with_parent

CHECK_EVERY = 256


async def timers(duration: float) -> int:
    loop = asyncio.get_running_loop()
    fired = 0

    def fire() -> None:
        nonlocal fired
        fired += 1

    ops = 0
    end = time.perf_counter() + duration
    delays = [0.0005 + (i % 50) * 0.0001 for i in range(100)]
    while time.perf_counter() < end:
        handles = [loop.call_later(d, fire) for d in delays]
        for h in handles[:90]:
            h.cancel()
        ops += len(handles)
        await asyncio.sleep(0)
    return ops


async def call_soon_chain(duration: float) -> int:
    loop = asyncio.get_running_loop()
    done: asyncio.Future[None] = loop.create_future()
    count = 0
    end = time.perf_counter() + duration

    def step() -> None:
        nonlocal count
        count += 1
        if count % CHECK_EVERY == 0 and time.perf_counter() >= end:
            done.set_result(None)
        else:
            loop.call_soon(step)

    loop.call_soon(step)
    await done
    return count


async def call_soon_fd_chain(duration: float) -> int:
    loop = asyncio.get_running_loop()
    idle, peer = socket.socketpair()
    try:
        idle.setblocking(False)
        loop.add_reader(idle.fileno(), lambda: None)
        try:
            return await call_soon_chain(duration)
        finally:
            loop.remove_reader(idle.fileno())
    finally:
        idle.close()
        peer.close()


async def sleep0_pingpong(duration: float) -> int:
    count = 0
    stop = False
    end = time.perf_counter() + duration

    async def player() -> None:
        nonlocal count, stop
        while not stop:
            count += 1
            if count % CHECK_EVERY == 0 and time.perf_counter() >= end:
                stop = True
            await asyncio.sleep(0)

    await asyncio.gather(player(), player())
    return count


WORKLOADS: dict[str, Callable[[float], Awaitable[int]]] = {
    "timers": timers,
    "call_soon": call_soon_chain,
    "call_soon-fd": call_soon_fd_chain,
    "sleep0": sleep0_pingpong,
}


def run_one(loop_name: str, kind: str, duration: float) -> dict[str, object]:
    loop = new_loop(loop_name)
    try:
        t0 = time.perf_counter()
        ops = loop.run_until_complete(WORKLOADS[kind](duration))
        seconds = time.perf_counter() - t0
        stats = loop_stats(loop)
    finally:
        loop.close()
    return {"ops": ops, "seconds": seconds, "rate": ops / seconds, "stats": stats}


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m benchmarks.micro", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--loop", choices=ALL_LOOPS, required=True)
    args = p.parse_args()
    die_with_parent()
    print(json.dumps({"ready": True, "edgeloop": edgeloop_file(args.loop)}), flush=True)
    for line in sys.stdin:
        if not line.strip():
            continue
        cmd = json.loads(line)
        try:
            result = run_one(args.loop, cmd["kind"], float(cmd["duration"]))
        except Exception as exc:  # report, keep serving: one broken workload is not fatal
            result = {"error": f"{type(exc).__name__}: {exc}"}
        print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
