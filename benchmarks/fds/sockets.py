"""The study's client sockets: N connected, non-blocking UDP sockets, and which ones are active."""
from __future__ import annotations

import socket

PAYLOAD = b"edgeloop-fds-req"  # one request: 16 bytes, echoed back whole
RECV_SIZE = 64


def open_udp(n: int, server_port: int) -> list[socket.socket]:
    socks: list[socket.socket] = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            socks.append(s)
            s.setblocking(False)
            s.connect(("127.0.0.1", server_port))
    except OSError:
        close_all(socks)
        raise
    return socks


def close_all(socks: list[socket.socket]) -> None:
    for s in socks:
        s.close()


def active_count(n: int, fraction: float) -> int:
    """``max(10, fraction * N)`` active sockets, never more than N."""
    return min(n, max(10, int(round(n * fraction))))


def pick_active(socks: list[socket.socket], k: int) -> list[socket.socket]:
    """k sockets spread evenly over the descriptor range (not bunched at the low fds)."""
    if k >= len(socks):
        return list(socks)
    step = len(socks) / k
    return [socks[int(i * step + step / 2)] for i in range(k)]


def drain(socks: list[socket.socket]) -> None:
    """Read and drop any late replies (after a round that timed out)."""
    for s in socks:
        while True:
            try:
                s.recv(RECV_SIZE)
            except BlockingIOError:
                break
