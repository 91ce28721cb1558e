"""The same rounds driven by an asyncio event loop: edgeloop's backends, or asyncio/uvloop.

Two ways to watch the N sockets, chosen with ``--api``:

* ``reader``: ``loop.add_reader(fd, callback)`` per socket; the callback reads one datagram.
* ``datagram``: ``loop.create_datagram_endpoint(sock=...)`` per socket; ``datagram_received``
  counts the reply and requests go out through ``transport.sendto``.  This exercises edgeloop's
  own datagram transport (edge-triggered with its readiness cache in edge mode).

Loop creation and registration of the N sockets are set-up and are not counted.
"""
from __future__ import annotations

import asyncio
import socket
import time
from typing import Any, Callable

from benchmarks.fds.raw import MIN_SAMPLES, batches
from benchmarks.fds.sockets import PAYLOAD, RECV_SIZE, drain

LOOP_SERIES: dict[str, dict[str, str]] = {
    "select": {"backend": "select", "trigger": "level"},
    "poll": {"backend": "poll", "trigger": "level"},
    "epoll-level": {"backend": "epoll", "trigger": "level"},
    "epoll-edge": {"backend": "epoll", "trigger": "edge"},
}


def new_loop(series: str) -> asyncio.AbstractEventLoop:
    """``edgeloop <kind>`` series use edgeloop; ``asyncio`` and ``uvloop`` are references."""
    if series == "asyncio":
        return asyncio.SelectorEventLoop()
    if series == "uvloop":
        import uvloop
        return uvloop.new_event_loop()
    import edgeloop
    loop: asyncio.AbstractEventLoop = edgeloop.new_event_loop(**LOOP_SERIES[series])
    return loop


class _Round:
    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.pending: set[int] = set()
        self.done: asyncio.Future[bool] | None = None

    def got(self, fd: int) -> None:
        if fd in self.pending:
            self.pending.discard(fd)
            if not self.pending and self.done is not None and not self.done.done():
                self.done.set_result(True)


class _Echo(asyncio.DatagramProtocol):
    def __init__(self, state: _Round, fd: int) -> None:
        self.state, self.fd = state, fd

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.state.got(self.fd)


def run_rounds(series: str, api: str, socks: list[socket.socket], active: list[socket.socket],
               rounds: int, warmup: int, serial: bool = False, time_cap: float | None = None,
               timeout: float = 2.0) -> tuple[list[float], int]:
    """Same contract as :func:`benchmarks.fds.raw.run_rounds`."""
    loop = new_loop(series)
    state = _Round(loop)
    senders: dict[int, Callable[[bytes], Any]] = {}
    transports: list[asyncio.BaseTransport] = []

    def on_readable(s: socket.socket) -> None:
        try:
            s.recv(RECV_SIZE)
        except BlockingIOError:
            return
        state.got(s.fileno())

    async def endpoint(s: socket.socket) -> None:
        fd = s.fileno()
        tr, _ = await loop.create_datagram_endpoint(lambda: _Echo(state, fd), sock=s)
        transports.append(tr)
        senders[fd] = tr.sendto  # type: ignore[attr-defined]

    async def setup() -> None:
        if api == "reader":
            for s in socks:
                loop.add_reader(s.fileno(), on_readable, s)
                senders[s.fileno()] = s.send
            return
        # All endpoints in one gather: created one by one, each would cost a loop iteration, and
        # a poll backend rebuilds its whole pollfd array after every change (O(N^2) set-up).
        results = await asyncio.gather(*(endpoint(s) for s in socks), return_exceptions=True)
        for res in results:
            if isinstance(res, BaseException):
                raise res

    async def measure() -> tuple[list[float], int]:
        samples: list[float] = []
        discarded = 0
        perf = time.perf_counter
        stop_at = float("inf")
        warm_stop = perf() + time_cap / 4 if time_cap is not None else float("inf")
        r = 0
        while r < warmup + rounds:
            if r == warmup and time_cap is not None:
                stop_at = perf() + time_cap
            for batch in batches(active, serial):
                if r < warmup and perf() > warm_stop:
                    break  # enough warm-up
                if perf() > stop_at and len(samples) >= MIN_SAMPLES:
                    return samples, discarded
                fds = [s.fileno() for s in batch]
                lossy = False
                state.pending = set(fds)
                t0 = perf()
                for fd in fds:
                    senders[fd](PAYLOAD)
                while True:
                    state.done = loop.create_future()
                    timer = loop.call_later(timeout, lambda f=state.done: f.done() or
                                            f.set_result(False))
                    ok = await state.done
                    timer.cancel()
                    if ok or not state.pending:
                        break
                    lossy = True
                    for fd in list(state.pending):
                        senders[fd](PAYLOAD)
                elapsed = perf() - t0
                if lossy:
                    await asyncio.sleep(0.05)
                    if api == "reader":
                        drain(active)
                if r >= warmup:
                    if lossy:
                        discarded += 1
                    else:
                        samples.append(elapsed / len(batch))
            r = warmup if r < warmup and perf() > warm_stop else r + 1
        return samples, discarded

    try:
        loop.run_until_complete(setup())
        return loop.run_until_complete(measure())
    finally:
        try:
            if api == "reader":
                for s in socks:
                    try:
                        loop.remove_reader(s.fileno())
                    except (ValueError, OSError):
                        pass
            else:
                for tr in transports:
                    tr.close()
                loop.run_until_complete(asyncio.sleep(0))
        finally:
            loop.close()
