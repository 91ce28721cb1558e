"""``raw-python``: the reference echo server in pure Python, with no asyncio at all.

    python -m benchmarks.rawecho [-H HOST] [-p PORT | -u UNIX_PATH]

What pure Python can do for the echo workloads when nothing stands between the interpreter and
the syscalls: one ``select.epoll``, every socket registered once with ``EPOLLIN | EPOLLET``, an
accept loop, ``recv(65536)`` until a short read or ``EAGAIN``, and ``send`` of what was read (a
partial send keeps the rest and waits for ``EPOLLOUT``).  An asyncio loop written in pure Python
does at least this work per request plus its own layers (handles, transports, protocols), so this
server bounds every pure-Python loop; ``rawecho.c`` (the ``raw-c`` subject) is the same server in
C, the bound for native loops.  The 64 KiB read stays under glibc's initial mmap threshold, so the
server needs no EOF to run at full speed (see the warm-up note in benchmarks/README.md).

Once listening it prints one JSON line ``{"ready": true, "port": N, "pid": P, "edgeloop": null}``
(port 0 for a Unix socket) and serves until SIGTERM (the default action: no clean-up to do).
"""
from __future__ import annotations

import argparse
import json
import os
import select
import socket

from benchmarks.proc import die_with_parent

READ_SIZE = 65536


def listener(host: str, port: int, unix: str | None) -> socket.socket:
    if unix:
        if os.path.exists(unix):
            os.unlink(unix)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.bind(unix)
    else:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    sock.listen(1024)
    sock.setblocking(False)
    return sock


def serve(lsock: socket.socket, ready: str) -> None:
    IN, OUT, ET = select.EPOLLIN, select.EPOLLOUT, select.EPOLLET
    READABLE = IN | select.EPOLLHUP | select.EPOLLERR
    tcp = lsock.family != socket.AF_UNIX
    ep = select.epoll()
    lfd = lsock.fileno()
    ep.register(lfd, IN | ET)
    conns: dict[int, socket.socket] = {}
    pending: dict[int, bytes] = {}   # fd -> bytes read but not yet sent, in order
    print(ready, flush=True)
    poll, modify = ep.poll, ep.modify
    while True:
        for fd, ev in poll():
            if fd == lfd:
                while True:  # edge-triggered: accept until EAGAIN
                    try:
                        conn, _ = lsock.accept()
                    except (BlockingIOError, InterruptedError):
                        break
                    except OSError:  # EMFILE and the like: wait for the next edge
                        break
                    conn.setblocking(False)
                    if tcp:
                        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                    conns[conn.fileno()] = conn
                    ep.register(conn.fileno(), IN | ET)
                continue
            conn = conns.get(fd)  # type: ignore[assignment]
            if conn is None:
                continue
            dead = False
            try:
                if ev & OUT and fd in pending:
                    rest = pending[fd]
                    try:
                        n = conn.send(rest)
                    except BlockingIOError:
                        n = 0
                    if n < len(rest):
                        pending[fd] = rest[n:]
                    else:
                        del pending[fd]
                        modify(fd, IN | ET)
                if ev & READABLE:
                    while True:
                        try:
                            data = conn.recv(READ_SIZE)
                        except BlockingIOError:
                            break
                        if not data:
                            dead = True
                            break
                        if fd in pending:
                            pending[fd] += data
                        else:
                            try:
                                n = conn.send(data)
                            except BlockingIOError:
                                n = 0
                            if n < len(data):
                                pending[fd] = data[n:]
                                modify(fd, IN | OUT | ET)
                        if len(data) < READ_SIZE:
                            break  # short read: the socket is drained
            except OSError:
                dead = True
            if dead:
                ep.unregister(fd)
                conns.pop(fd).close()
                pending.pop(fd, None)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m benchmarks.rawecho", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-H", "--host", default="127.0.0.1")
    p.add_argument("-p", "--port", type=int, default=0)
    p.add_argument("-u", "--unix", help="listen on this Unix socket path instead of TCP")
    args = p.parse_args(argv)
    die_with_parent()
    lsock = listener(args.host, args.port, args.unix)
    port = 0 if args.unix else lsock.getsockname()[1]
    serve(lsock, json.dumps({"ready": True, "port": port, "pid": os.getpid(), "edgeloop": None}))


if __name__ == "__main__":
    main()
