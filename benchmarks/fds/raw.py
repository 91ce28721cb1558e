"""Raw pollers, no event loop: select (ctypes, any nfds), poll, epoll level- and edge-triggered.

Every socket is watched for reading for the whole series (interest never changes).  After a wake-up
the level-triggered pollers read once per ready socket; the edge-triggered one must read until
EAGAIN, because it will not be told again about data it left behind — in this workload that costs
one extra ``recv`` per reply, which is exactly the price edge mode pays for one-datagram queues.
"""
from __future__ import annotations

import select
import socket
import time
from typing import Protocol

from benchmarks.fds.cselect import BigSelect
from benchmarks.fds.sockets import PAYLOAD, RECV_SIZE, drain

RAW_KINDS = ("select", "poll", "epoll-level", "epoll-edge")
MIN_SAMPLES = 3  # a point has at least this many samples, whatever the time cap


class Poller(Protocol):
    def wait(self, timeout: float | None) -> list[int]: ...
    def close(self) -> None: ...


class PollPoller:
    def __init__(self, fds: list[int]) -> None:
        self.p = select.poll()
        for fd in fds:
            self.p.register(fd, select.POLLIN)

    def wait(self, timeout: float | None) -> list[int]:
        ms = None if timeout is None else max(0, int(timeout * 1000))
        return [fd for fd, _ in self.p.poll(ms)]

    def close(self) -> None:
        pass


class EpollPoller:
    def __init__(self, fds: list[int], edge: bool) -> None:
        self.ep = select.epoll(len(fds) or 1)
        mask = select.EPOLLIN | (select.EPOLLET if edge else 0)
        for fd in fds:
            self.ep.register(fd, mask)
        self.maxevents = max(64, min(len(fds), 4096))

    def wait(self, timeout: float | None) -> list[int]:
        return [fd for fd, _ in self.ep.poll(-1 if timeout is None else timeout,
                                             self.maxevents)]

    def close(self) -> None:
        self.ep.close()


def make_poller(kind: str, fds: list[int]) -> Poller:
    if kind == "select":
        return BigSelect(fds)
    if kind == "poll":
        return PollPoller(fds)
    if kind in ("epoll-level", "epoll-edge"):
        return EpollPoller(fds, edge=kind == "epoll-edge")
    raise ValueError(kind)


def batches(active: list[socket.socket], serial: bool) -> list[list[socket.socket]]:
    """One round: every active socket at once, or (serial) one request in flight at a time."""
    return [[s] for s in active] if serial else [active]


def run_rounds(kind: str, socks: list[socket.socket], active: list[socket.socket], rounds: int,
               warmup: int, serial: bool = False, time_cap: float | None = None,
               timeout: float = 2.0) -> tuple[list[float], int]:
    """Run ``warmup + rounds`` rounds; return the per-request times (seconds) of the measured
    rounds and the number of measured samples discarded because a datagram was lost.

    A sample is one batch's wall time divided by its size: in the default mode a batch is every
    active socket at once (one sample per round), in serial mode a single request."""
    by_fd = {s.fileno(): s for s in socks}
    poller = make_poller(kind, list(by_fd))
    drain_all = kind == "epoll-edge"
    samples: list[float] = []
    discarded = 0
    perf = time.perf_counter
    stop_at = float("inf")
    warm_stop = perf() + time_cap / 4 if time_cap is not None else float("inf")
    try:
        r = 0
        while r < warmup + rounds:
            if r == warmup and time_cap is not None:
                stop_at = perf() + time_cap
            for batch in batches(active, serial):
                if r < warmup and perf() > warm_stop:
                    break  # enough warm-up
                if perf() > stop_at and len(samples) >= MIN_SAMPLES:
                    return samples, discarded
                pending = {s.fileno() for s in batch}
                lossy = False
                t0 = perf()
                for s in batch:
                    s.send(PAYLOAD)
                deadline = t0 + timeout
                while pending:
                    ready = poller.wait(max(0.0, deadline - perf()))
                    if not ready:
                        if perf() >= deadline:  # lost datagrams: ask again, drop the sample
                            lossy = True
                            for fd in pending:
                                by_fd[fd].send(PAYLOAD)
                            deadline = perf() + timeout
                        continue
                    for fd in ready:
                        recv = by_fd[fd].recv
                        while True:
                            try:
                                recv(RECV_SIZE)
                            except BlockingIOError:
                                break
                            pending.discard(fd)
                            if not drain_all:
                                break
                elapsed = perf() - t0
                if lossy:
                    time.sleep(0.05)
                    drain(active)
                if r >= warmup:
                    if lossy:
                        discarded += 1
                    else:
                        samples.append(elapsed / len(batch))
            r = warmup if r < warmup and perf() > warm_stop else r + 1
    finally:
        poller.close()
    return samples, discarded
