"""Cost of one ``SelectPoller.wait(0)`` (one ready descriptor among N) on each of its two paths.

``python -m benchmarks.fds.selectcost [--ns 10,100,1000,2000,10000]`` prints, per N:

* ``select.select``: the stdlib call the poller makes while every descriptor is below 1024
  (``select.select(readers, writers, (), 0)``, the poller's own sets);
* ``libc cached``: libc's select through ctypes (edgeloop.cselect) with the poller's cached
  bitmaps, which is what ``wait()`` does once a descriptor is >= 1024 (for N below 1024 this is
  the same call forced, to compare the two paths on the same descriptors);
* ``libc rebuilt``: the same call with bitmaps rebuilt from the descriptor sets on each wait
  (the design not taken);
* ``modify``: one interest change (write interest on, then off, halved) with the bitmaps kept.

The best of 3 repeats of about 0.2 s each; a few seconds in all.  Not part of the study's report.
"""
from __future__ import annotations

import argparse
import select
import socket
import sys
import timeit

from benchmarks.fds.rlimit import raise_nofile


def _measure(func, budget: float = 0.2) -> float:
    timer = timeit.Timer(func)
    number, _ = timer.autorange()
    number = max(1, int(number * budget / 0.2))
    return min(timer.repeat(repeat=3, number=number)) / number


def run(ns: list[int]) -> list[dict[str, object]]:
    import edgeloop.cselect as cselect
    from edgeloop.poller import EPOLLIN, EPOLLOUT, SelectPoller

    libc = cselect.load()
    rows = []
    for n in ns:
        socks = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(n)]
        try:
            for s in socks:
                s.bind(("127.0.0.1", 0))
                s.setblocking(False)
            ready = socks[n // 2]
            ready.sendto(b"x", ready.getsockname())
            poller = SelectPoller()
            for s in socks:
                poller.register(s.fileno(), None, EPOLLIN)  # type: ignore[arg-type]
            assert poller.wait(0) == [(ready.fileno(), EPOLLIN)]
            high = max(s.fileno() for s in socks) >= poller.FD_SETSIZE
            row: dict[str, object] = {"n": n, "top_fd": max(s.fileno() for s in socks)}
            if not high:
                readers, writers = poller._readers, poller._writers
                row["select.select"] = _measure(lambda: select.select(readers, writers, (), 0))
            readers = poller._readers

            def rebuilt() -> None:
                bits = 0
                for fd in readers:
                    bits |= 1 << fd
                libc.wait(bits, 0, 0)

            row["libc cached"] = _measure(lambda: libc.wait(poller._rbits, poller._wbits, 0))
            row["libc rebuilt"] = _measure(rebuilt)
            fd = ready.fileno()

            def toggle() -> None:
                poller.modify(fd, EPOLLIN | EPOLLOUT)
                poller.modify(fd, EPOLLIN)

            row["modify"] = _measure(toggle) / 2
            poller.close()
            rows.append(row)
        finally:
            for s in socks:
                s.close()
    return rows


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.fds.selectcost", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ns", default="10,100,1000,2000,10000", help="N values (default: %(default)s)")
    args = p.parse_args(argv)
    ns = [int(x) for x in args.ns.split(",") if x.strip()]
    raise_nofile(max(ns) + 64)
    cols = ["select.select", "libc cached", "libc rebuilt", "modify"]
    print("| N | top fd | " + " | ".join(f"{c} (µs)" for c in cols) + " |")
    print("|---:|---:|" + "---:|" * len(cols))
    for row in run(ns):
        cells = [f"{row[c] * 1e6:.2f}" if c in row else "-" for c in cols]  # type: ignore[operator]
        print(f"| {row['n']} | {row['top_fd']} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
