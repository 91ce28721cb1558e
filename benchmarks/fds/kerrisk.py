"""The Kerrisk-style table (TLPI table 63-9): time for 100,000 monitoring operations, one ready
descriptor among N, for select, poll and epoll.

N UDP sockets are opened and one of them (the last, the highest descriptor) is made readable by a
datagram that is never read, so it stays ready.  A monitoring operation is one zero-timeout call
that reports it: ``select`` (libc through ctypes, bitmap rebuilt each call as select requires),
``poll`` and ``epoll_wait`` (level-triggered).  To bound the run time the number of calls is
adapted (at most 100,000, at least 200) and the time is scaled to 100,000 calls; the JSON keeps the
number actually made.  From Python each call also pays interpreter overhead (a microsecond or
two), a floor that matters for epoll only.
"""
from __future__ import annotations

import socket
import time

from benchmarks.fds.raw import make_poller
from benchmarks.fds.sockets import close_all

OPS = 100_000
KERRISK_TLPI = {  # the article's reference figures, seconds per 100,000 operations
    10: {"poll": 0.61, "select": 0.73, "epoll": 0.41},
    100: {"poll": 2.9, "select": 3.0, "epoll": 0.42},
    1000: {"poll": 35.0, "select": 35.0, "epoll": 0.53},
    10000: {"poll": 990.0, "select": 930.0, "epoll": 0.66},
}
POLLERS = {"select": "select", "poll": "poll", "epoll": "epoll-level"}


def _one_ready(n: int) -> list[socket.socket]:
    socks = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            socks.append(s)
            s.bind(("127.0.0.1", 0))
        last = socks[-1]
        last.sendto(b"x", last.getsockname())  # to itself: readable until read, never read
    except OSError:
        close_all(socks)
        raise
    return socks


def time_ops(kind: str, fds: list[int], budget: float) -> tuple[float, int]:
    """Seconds per call and calls made for one poller kind."""
    poller = make_poller(kind, fds)
    try:
        wait = poller.wait
        t0 = time.perf_counter()
        for _ in range(200):
            if not wait(0):
                raise RuntimeError(f"{kind}: the ready descriptor was not reported")
        per_call = (time.perf_counter() - t0) / 200
        ops = int(min(OPS, max(200, budget / max(per_call, 1e-9))))
        t0 = time.perf_counter()
        for _ in range(ops):
            wait(0)
        return (time.perf_counter() - t0) / ops, ops
    finally:
        poller.close()


def table(ns: list[int], budget: float = 0.4) -> list[dict[str, object]]:
    rows: list[dict[str, object]] = []
    for n in ns:
        socks = _one_ready(n)
        try:
            fds = [s.fileno() for s in socks]
            time.sleep(0.01)  # let the datagram land
            row: dict[str, object] = {"n": n}
            for name, kind in POLLERS.items():
                per_call, ops = time_ops(kind, fds, budget)
                row[name] = per_call * OPS
                row[f"{name}_ops_measured"] = ops
            rows.append(row)
        finally:
            close_all(socks)
    return rows


def markdown(rows: list[dict[str, object]]) -> str:
    lines = ["| N fds | poll | select | epoll | TLPI poll | TLPI select | TLPI epoll |",
             "|---:|---:|---:|---:|---:|---:|---:|"]
    for row in rows:
        n = int(row["n"])  # type: ignore[call-overload]
        ref = KERRISK_TLPI.get(n, {})

        def r(k: str) -> str:
            return f"{ref[k]:g}" if k in ref else "-"

        lines.append(f"| {n} | {row['poll']:.3f} | {row['select']:.3f} | {row['epoll']:.3f} | "
                     f"{r('poll')} | {r('select')} | {r('epoll')} |")
    return "\n".join(lines)
