"""The study's UDP echo server: one socket, a blocking recvfrom/sendto loop, nothing else.

    python -m benchmarks.fds.udpecho [--port 0]

Prints ``{"port": N}`` once bound.  The receive buffer is enlarged (SO_RCVBUFFORCE as root) so a
round of thousands of simultaneous requests is queued rather than dropped; the client still
re-sends anything lost after a timeout and discards that round.
"""
from __future__ import annotations

import argparse
import json
import socket

from benchmarks.proc import die_with_parent

BUFFER = 64 * 1024 * 1024


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m benchmarks.fds.udpecho")
    p.add_argument("--port", type=int, default=0)
    args = p.parse_args()
    die_with_parent()
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    for opt in (getattr(socket, "SO_RCVBUFFORCE", 33), socket.SO_RCVBUF):
        try:
            s.setsockopt(socket.SOL_SOCKET, opt, BUFFER)
            break
        except OSError:
            continue
    s.bind(("127.0.0.1", args.port))
    print(json.dumps({"port": s.getsockname()[1]}), flush=True)
    buf = bytearray(2048)
    view = memoryview(buf)
    recvfrom_into, sendto = s.recvfrom_into, s.sendto
    while True:
        n, addr = recvfrom_into(buf)
        sendto(view[:n], addr)


if __name__ == "__main__":
    main()
