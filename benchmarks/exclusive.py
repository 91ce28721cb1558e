"""Wake-ups per accepted connection when several processes share one listening socket.

    python -m benchmarks.exclusive [--workers 4] [--connections 2000] [--concurrency 1]

A pre-fork server (gunicorn's model): the parent binds and listens, forks ``--workers`` children,
and each child runs its own edgeloop serving the inherited socket (``create_server(sock=...)``).
The parent then opens ``--connections`` connections, ``--concurrency`` at a time; each worker
answers one byte and closes.  Every worker reports ``loop.stats()`` (polls and accepts, counted
from the moment it was serving) and its voluntary context switches (``getrusage``); the script
prints, for each registration mode, both per accepted connection, summed over all workers.

Two counts, because they differ: ``polls`` counts the returns of ``epoll_wait`` to Python.  A
worker woken for a connection that another worker has already accepted is usually put back to
sleep *inside the kernel* (epoll re-checks readiness before reporting an event), so ``polls``
misses most losing wake-ups; the context switches count every time the process was woken.

Modes: ``exclusive`` is the default registration of listening sockets on epoll (``EPOLLEXCLUSIVE``:
the kernel wakes one waiting worker per connection); ``shared`` sets
``edgeloop.server.EXCLUSIVE_ACCEPT = False`` in the workers, so every idle worker wakes for every
connection and all but one find the backlog empty.  With sequential connections (concurrency 1,
all workers idle) the shared mode costs about ``workers`` wake-ups per connection; the exclusive
mode about one plus whatever the connection itself costs the worker that took it.

Workers are forked after the parent has created nothing of edgeloop: each builds its loop in the
child.  The numbers are wake-ups (``polls``), not time: they do not depend on the machine's speed.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import signal
import socket
import sys
import time
from concurrent.futures import ThreadPoolExecutor


class _OneByte(asyncio.Protocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport.write(b"x")  # type: ignore[attr-defined]
        transport.close()


def _worker(sock: socket.socket, report_fd: int, exclusive: bool, trigger: str) -> None:
    import edgeloop
    import edgeloop.server

    edgeloop.server.EXCLUSIVE_ACCEPT = exclusive

    async def serve() -> dict[str, int]:
        loop = asyncio.get_running_loop()
        stop = loop.create_future()
        loop.add_signal_handler(signal.SIGTERM, stop.set_result, None)
        server = await loop.create_server(_OneByte, sock=sock)
        before = loop.stats()  # type: ignore[attr-defined]
        csw_before = resource.getrusage(resource.RUSAGE_SELF).ru_nvcsw
        os.write(report_fd, b"ready\n")
        await stop
        csw = resource.getrusage(resource.RUSAGE_SELF).ru_nvcsw - csw_before
        after = loop.stats()  # type: ignore[attr-defined]
        server.close()
        # The SIGTERM that stopped us cost one wake-up of its own.
        out = {k: after[k] - before[k] for k in ("polls", "accepts", "events")}
        out["polls"] -= 1
        out["csw"] = csw - 1
        return out

    result = edgeloop.run(serve(), trigger=trigger)
    os.write(report_fd, (json.dumps({"pid": os.getpid(), **result}) + "\n").encode())


def _client(addr: tuple[str, int], n: int) -> None:
    for _ in range(n):
        with socket.create_connection(addr, timeout=10) as c:
            got = c.recv(2) + c.recv(1)  # the byte, then EOF: the worker has closed
            if got != b"x":
                raise RuntimeError(f"bad answer {got!r}")


def run_mode(exclusive: bool, workers: int, connections: int, concurrency: int,
             trigger: str) -> list[dict[str, int]]:
    lsock = socket.socket()
    lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(1024)
    lsock.setblocking(False)
    addr = lsock.getsockname()
    rfd, wfd = os.pipe()
    pids = []
    try:
        for _ in range(workers):
            pid = os.fork()
            if pid == 0:  # child
                code = 0
                try:
                    os.close(rfd)
                    _worker(lsock, wfd, exclusive, trigger)
                except BaseException:
                    import traceback
                    traceback.print_exc()
                    code = 1
                finally:
                    os._exit(code)
            pids.append(pid)
        os.close(wfd)
        wfd = -1
        reader = os.fdopen(rfd, "r")
        rfd = -1
        for _ in range(workers):
            if reader.readline().strip() != "ready":
                raise RuntimeError("a worker failed to start")
        per_thread = [connections // concurrency] * concurrency
        per_thread[0] += connections - sum(per_thread)
        with ThreadPoolExecutor(concurrency) as pool:
            list(pool.map(lambda n: _client(addr, n), per_thread))
        for pid in pids:
            os.kill(pid, signal.SIGTERM)
        results = [json.loads(reader.readline()) for _ in range(workers)]
        reader.close()
        return results
    finally:
        for fd in (rfd, wfd):
            if fd >= 0:
                os.close(fd)
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            os.waitpid(pid, 0)
        lsock.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--connections", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--trigger", choices=["edge", "level"], default="edge")
    args = parser.parse_args(argv)
    print(f"{args.workers} workers, {args.connections} connections, concurrency "
          f"{args.concurrency}, {args.trigger}-triggered, {os.cpu_count()} CPUs")
    summary = {}
    for mode, exclusive in (("shared", False), ("exclusive", True)):
        t0 = time.perf_counter()
        results = run_mode(exclusive, args.workers, args.connections, args.concurrency,
                           args.trigger)
        elapsed = time.perf_counter() - t0
        polls = sum(r["polls"] for r in results)
        csw = sum(r["csw"] for r in results)
        accepts = sum(r["accepts"] for r in results)
        summary[mode] = (polls / max(accepts, 1), csw / max(accepts, 1))
        print(f"\n{mode:>9}: {accepts} accepts; per connection {summary[mode][0]:.2f} polls, "
              f"{summary[mode][1]:.2f} context switches ({elapsed:.2f} s)")
        for r in sorted(results, key=lambda r: r["pid"]):
            print(f"           worker {r['pid']}: accepts {r['accepts']:6d}  polls {r['polls']:6d}"
                  f"  context switches {r['csw']:6d}")
    shared, excl = summary["shared"], summary["exclusive"]
    print(f"\nEPOLLEXCLUSIVE: polls/accept {shared[0]:.2f} -> {excl[0]:.2f}, "
          f"context switches/accept {shared[1]:.2f} -> {excl[1]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
