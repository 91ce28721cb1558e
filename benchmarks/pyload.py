"""Pure-Python echo load generator: the fallback when no C compiler is available.

    python -m benchmarks.pyload (-p PORT | -u PATH) [-H host] [-c conns] [-s size] [-d s] [-w s]

Same method and JSON output as ``echoload.c`` (closed loop, one message in flight per connection,
warm-up not counted), built on ``select.epoll`` directly rather than on any asyncio loop.  It is
much slower than the C client, so with fast servers it may be the bottleneck: the harness says so
in its report whenever this client was used.
"""
from __future__ import annotations

import argparse
import json
import select
import socket
import time

from benchmarks.stats import percentile


def run(host: str, port: int, unix: str | None, conns: int, size: int, duration: float,
        warmup: float) -> dict[str, object]:
    msg = b"x" * size
    socks: list[socket.socket] = []
    for _ in range(conns):
        if unix:
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.connect(unix)
        else:
            s = socket.create_connection((host, port))
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        s.setblocking(False)
        socks.append(s)
    ep = select.epoll()
    by_fd = {s.fileno(): i for i, s in enumerate(socks)}
    sent = [0] * conns
    received = [0] * conns
    started = [0.0] * conns
    lat: list[float] = []
    warm = errors = 0
    dead: set[int] = set()
    t0 = time.monotonic()
    t_measure, t_end = t0 + warmup, t0 + warmup + duration

    def pump(i: int) -> None:
        s = socks[i]
        while sent[i] < size:
            try:
                sent[i] += s.send(msg[sent[i]:] if sent[i] else msg)
            except BlockingIOError:
                ep.modify(s, select.EPOLLIN | select.EPOLLOUT)
                return
        ep.modify(s, select.EPOLLIN)

    for i, s in enumerate(socks):
        ep.register(s, select.EPOLLIN)
        started[i] = t0
        pump(i)
    while len(dead) < conns:
        now = time.monotonic()
        if now >= t_end:
            break
        for fd, ev in ep.poll(min(t_end - now, 0.05)):
            i = by_fd[fd]
            if i in dead:
                continue
            try:
                if ev & select.EPOLLOUT:
                    pump(i)
                if ev & (select.EPOLLIN | select.EPOLLHUP | select.EPOLLERR):
                    while True:
                        try:
                            data = socks[i].recv(262144)
                        except BlockingIOError:
                            break
                        if not data:
                            raise ConnectionResetError
                        received[i] += len(data)
                        if received[i] >= size:
                            t = time.monotonic()
                            if started[i] >= t_measure and t <= t_end:
                                lat.append((t - started[i]) * 1e6)
                            elif started[i] < t_measure:
                                warm += 1
                            received[i] = sent[i] = 0
                            started[i] = t
                            pump(i)
            except OSError:
                dead.add(i)
                errors += 1
                ep.unregister(socks[i])
    elapsed = max(min(time.monotonic(), t_end) - t_measure, 1e-9)
    for s in socks:
        s.close()
    ep.close()
    lat.sort()
    pct = {k: (percentile(lat, q) if lat else 0.0)
           for k, q in (("p50", 50), ("p90", 90), ("p99", 99), ("p999", 99.9))}
    return {"requests": len(lat), "warmup_requests": warm, "seconds": elapsed,
            "rps": len(lat) / elapsed, "conns": conns, "size": size, "errors": errors,
            "latency_us": {"mean": sum(lat) / len(lat) if lat else 0.0, **pct,
                           "max": lat[-1] if lat else 0.0}}


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m benchmarks.pyload", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-H", dest="host", default="127.0.0.1")
    p.add_argument("-p", dest="port", type=int, default=0)
    p.add_argument("-u", dest="unix")
    p.add_argument("-c", dest="conns", type=int, default=10)
    p.add_argument("-s", dest="size", type=int, default=1024)
    p.add_argument("-d", dest="duration", type=float, default=1.0)
    p.add_argument("-w", dest="warmup", type=float, default=0.2)
    a = p.parse_args()
    print(json.dumps(run(a.host, a.port, a.unix, a.conns, a.size, a.duration, a.warmup)))


if __name__ == "__main__":
    main()
