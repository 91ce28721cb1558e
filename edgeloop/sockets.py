"""``loop.sock_*`` coroutines on sockets the caller owns.

Each operation is tried at once (most succeed: data is often already there, the send buffer
rarely full); only when it would block do we wait, with a one-shot readiness callback on the
descriptor that retries the operation and resolves a future.  The wait is removed when the
operation completes, fails, or the awaiting task is cancelled, so nothing stays registered.
"""
from __future__ import annotations

import asyncio
import errno
import os
import socket
from typing import TYPE_CHECKING, Any, Callable

if TYPE_CHECKING:
    from .loop import EventLoop

try:
    from ssl import SSLSocket
except ImportError:  # Python built without ssl
    SSLSocket = None  # type: ignore[assignment, misc]

_AGAIN = (BlockingIOError, InterruptedError)


def _check(loop: EventLoop, sock: socket.socket) -> None:
    loop._check_closed()
    if SSLSocket is not None and isinstance(sock, SSLSocket):
        raise TypeError("Socket cannot be of type SSLSocket")
    if sock.gettimeout() != 0:
        raise ValueError("the socket must be non-blocking")


async def _when_ready(loop: EventLoop, sock: socket.socket, reading: bool, attempt: Callable[[], Any]) -> Any:
    """Call ``attempt()`` each time ``sock`` is ready until it stops raising BlockingIOError.

    ``attempt`` returns ``(done, result)``; it may make partial progress (sendall) and ask for
    another readiness notification by returning ``done=False``.
    """
    fut = loop.create_future()
    fd = sock.fileno()

    def on_ready() -> None:
        if fut is None or fut.done():
            return
        try:
            done, result = attempt()
        except _AGAIN:
            return  # spurious wakeup: keep waiting
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            loop._remove_fd_handle(fd, handle, reading)
            fut.set_exception(exc)
            return
        if done:
            loop._remove_fd_handle(fd, handle, reading)
            fut.set_result(result)

    handle = asyncio.Handle(on_ready, (), loop, None)
    loop._add_fd_callback(fd, handle, reading)
    try:
        return await fut
    finally:
        # Only our own registration: a newer sock_* call on the same fd may have replaced it.
        loop._remove_fd_handle(fd, handle, reading)
        # A failure leaves with a traceback that keeps this frame (and on_ready's): drop the
        # future that holds the exception, as asyncio's sock_* do.
        fut = None  # type: ignore[assignment]


async def sock_recv(self: EventLoop, sock: socket.socket, n: int) -> bytes:
    _check(self, sock)
    try:
        return sock.recv(n)
    except _AGAIN:
        pass
    return await _when_ready(self, sock, True, lambda: (True, sock.recv(n)))


async def sock_recv_into(self: EventLoop, sock: socket.socket, buf: Any) -> int:
    _check(self, sock)
    try:
        return sock.recv_into(buf)
    except _AGAIN:
        pass
    return await _when_ready(self, sock, True, lambda: (True, sock.recv_into(buf)))


async def sock_recvfrom(self: EventLoop, sock: socket.socket, bufsize: int) -> tuple[bytes, Any]:
    _check(self, sock)
    try:
        return sock.recvfrom(bufsize)
    except _AGAIN:
        pass
    return await _when_ready(self, sock, True, lambda: (True, sock.recvfrom(bufsize)))


async def sock_recvfrom_into(self: EventLoop, sock: socket.socket, buf: Any, nbytes: int = 0) -> tuple[int, Any]:
    _check(self, sock)
    if not nbytes:
        nbytes = len(buf)
    try:
        return sock.recvfrom_into(buf, nbytes)
    except _AGAIN:
        pass
    return await _when_ready(self, sock, True, lambda: (True, sock.recvfrom_into(buf, nbytes)))


async def sock_sendall(self: EventLoop, sock: socket.socket, data: Any) -> None:
    _check(self, sock)
    try:
        sent = sock.send(data)
    except _AGAIN:
        sent = 0
    view = memoryview(data).cast("B")
    total = len(view)
    if sent == total:
        return
    progress = [sent]

    def attempt() -> tuple[bool, None]:
        progress[0] += sock.send(view[progress[0]:])
        return progress[0] == total, None

    await _when_ready(self, sock, False, attempt)


async def sock_sendto(self: EventLoop, sock: socket.socket, data: Any, address: Any) -> int:
    _check(self, sock)
    try:
        return sock.sendto(data, address)
    except _AGAIN:
        pass
    return await _when_ready(self, sock, False, lambda: (True, sock.sendto(data, address)))


async def _resolve(loop: EventLoop, sock: socket.socket, address: Any) -> Any:
    """Resolve a host name in an (host, port, ...) address the way sock.connect would, but in the
    executor instead of blocking the loop."""
    if sock.family not in (socket.AF_INET, socket.AF_INET6) or not isinstance(address, tuple):
        return address
    host, port = address[:2]
    infos = await loop.getaddrinfo(host, port, family=sock.family, type=sock.type, proto=sock.proto)
    if not infos:
        raise OSError(f"getaddrinfo({host!r}) returned empty list")
    resolved = infos[0][4]
    if sock.family == socket.AF_INET6 and len(address) > 2:
        resolved = resolved[:2] + tuple(address[2:])
    return resolved


async def sock_connect(self: EventLoop, sock: socket.socket, address: Any) -> None:
    _check(self, sock)
    address = await _resolve(self, sock, address)
    try:
        sock.connect(address)
        return
    except _AGAIN:
        pass

    def attempt() -> tuple[bool, None]:
        err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if err == errno.EINPROGRESS or err == errno.EALREADY:
            return False, None
        if err:
            raise OSError(err, f"Connect call failed {address}")
        return True, None

    await _when_ready(self, sock, False, attempt)


async def sock_accept(self: EventLoop, sock: socket.socket) -> tuple[socket.socket, Any]:
    _check(self, sock)

    def attempt() -> tuple[bool, tuple[socket.socket, Any]]:
        conn, addr = sock.accept()
        conn.setblocking(False)
        return True, (conn, addr)

    try:
        return attempt()[1]
    except _AGAIN:
        pass
    return await _when_ready(self, sock, True, attempt)


async def sock_sendfile(self: EventLoop, sock: socket.socket, file: Any, offset: int = 0,
                        count: int | None = None, *, fallback: bool | None = True) -> int:
    """Send a file over a connected stream socket: ``os.sendfile`` (zero-copy) when possible,
    else (``fallback=True``) read-and-send in chunks.  Same rules as asyncio: TypeError/ValueError
    for bad arguments, SendfileNotAvailableError (fallback=False) when the file cannot be sent
    that way, the file position left after the last byte sent."""
    from .sendfile import check_params, file_descriptor  # sendfile.py imports the transports

    _check(self, sock)
    if sock.type != socket.SOCK_STREAM:
        raise ValueError("only SOCK_STREAM type sockets are supported")
    check_params(file, offset, count)
    try:
        return await _sock_sendfile_native(self, sock, file_descriptor(file), file, offset, count)
    except asyncio.SendfileNotAvailableError:
        if not fallback:
            raise
    return await _sendfile_fallback(self, sock, file, offset, count)


async def _sock_sendfile_native(loop: EventLoop, sock: socket.socket, fileno: int, file: Any,
                                offset: int, count: int | None) -> int:
    from .sendfile import NOT_AVAILABLE_ERRNOS

    if count is None and not os.fstat(fileno).st_size:
        return 0
    end = None if count is None else offset + count
    position = [offset]
    chunk = 4 * 1024 * 1024

    def attempt() -> tuple[bool, None]:
        # Until EOF (os.sendfile returns 0) or ``count`` bytes; BlockingIOError waits for the socket.
        while end is None or position[0] < end:
            want = chunk if end is None else min(chunk, end - position[0])
            n = os.sendfile(sock.fileno(), fileno, position[0], want)
            if n == 0:
                break
            position[0] += n
        return True, None

    try:
        try:
            attempt()
        except _AGAIN:
            await _when_ready(loop, sock, False, attempt)
    except OSError as exc:
        if position[0] == offset and exc.errno in NOT_AVAILABLE_ERRNOS:
            raise asyncio.SendfileNotAvailableError(f"os.sendfile call failed: {exc}") from exc
        if exc.errno == errno.ENOTCONN and type(exc) is not ConnectionError:
            raise ConnectionError(errno.ENOTCONN, "socket is not connected") from exc
        raise
    finally:
        if position[0] > offset:
            if hasattr(file, "seek"):
                file.seek(position[0])
            else:
                os.lseek(fileno, position[0], os.SEEK_SET)
    return position[0] - offset


async def _sendfile_fallback(loop: EventLoop, sock: socket.socket, file: Any, offset: int, count: int | None) -> int:
    chunk = 256 * 1024
    if offset:
        file.seek(offset)
    total = 0
    try:
        while count is None or total < count:
            want = chunk if count is None else min(chunk, count - total)
            data = await loop.run_in_executor(None, file.read, want)
            if not data:
                break
            await loop.sock_sendall(sock, data)
            total += len(data)
    finally:
        if total and hasattr(file, "seek"):
            file.seek(offset + total)
    return total
