"""``Server`` (``asyncio.AbstractServer``) and the accept loop of each listening socket.

The accept loop
---------------
A listening socket is registered once (edge mode: ``EPOLLIN | EPOLLET``).  An event means "the
backlog is not empty": we accept until EAGAIN, but at most ``loop.accept_budget`` connections per
wakeup so that a connection storm cannot starve established connections and timers; a loop cut off
by the budget goes on the loop's deferred list and continues next iteration.

When accept fails for lack of descriptors or memory (EMFILE, ENFILE, ENOBUFS, ENOMEM) the
connections stay in the kernel's backlog.  Retrying at once would spin; waiting for another edge
would wait forever (the backlog does not change).  So we report the error once, stop, and retry
after ``ACCEPT_RETRY_DELAY``.

Shared listening sockets: ``EPOLLEXCLUSIVE``
-------------------------------------------
Pre-fork servers (gunicorn, or any parent that binds and forks) give every worker the same
listening socket; each worker's loop adds it to its own epoll instance.  Plain registrations make a
new connection wake *every* worker; one wins ``accept()`` and the others find EAGAIN.  Registered
with ``EPOLLEXCLUSIVE`` the kernel wakes one worker that is waiting (and only queues the event for
busy ones).  We set it on every listening socket on the epoll backend, not only on sockets handed
in with ``sock=``: with a single epoll instance the flag changes nothing, and the loop cannot tell
whether a socket is shared (a ``sock=`` socket may be private, and a descriptor can be inherited in
ways the loop never sees).  poll and select have no such flag.

The kernel refuses ``EPOLL_CTL_MOD`` on an exclusive registration, and the resource back-off used
``modify`` in level mode.  An exclusive acceptor instead *leaves* the epoll set while it backs off
(in both modes): a worker that cannot accept should not be the one the kernel picks to wake; the
re-registration (``EPOLL_CTL_ADD``) reports a non-empty backlog at once.  Kernels older than 4.5
answer EINVAL to the flag: we register without it.  ``EXCLUSIVE_ACCEPT = False`` turns it off (the
benchmark ``benchmarks/exclusive.py`` compares both).
"""
from __future__ import annotations

import asyncio
import contextvars
import errno
import os
import socket
import stat
from asyncio.trsock import TransportSocket
from typing import TYPE_CHECKING, Any, Callable

from .descriptors import HandlerBase
from .poller import EPOLLEXCLUSIVE, EPOLLIN
from .transports import tls as _tls
from .transports.stream import StreamTransport

if TYPE_CHECKING:
    from .loop import EventLoop

ACCEPT_RETRY_DELAY = 0.25
# Register listening sockets with EPOLLEXCLUSIVE on the epoll backend (see the module docstring).
EXCLUSIVE_ACCEPT = True
_RESOURCE_ERRNOS = (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM)
# The peer gave up between the SYN and our accept(): nothing to report, try the next one.
_TRANSIENT_ERRNOS = (errno.ECONNABORTED, errno.EPROTO, errno.EPERM, errno.EINTR)


class Acceptor(HandlerBase):
    """The accept loop of one listening socket."""

    def __init__(self, loop: EventLoop, server: "Server", sock: socket.socket) -> None:
        self._loop = loop
        self._io = loop.io
        self._server = server
        self._sock: socket.socket | None = sock
        self._fd = sock.fileno()
        self._pending = False      # edge mode: the backlog may hold connections
        self._backing_off: asyncio.TimerHandle | None = None
        self._accepted = 0         # connections accepted, for loop.describe()
        self._exclusive = self._register()

    def _register(self) -> bool:
        """Add the listening socket to the loop's poller; True if it is an exclusive waiter."""
        io = self._io
        if EXCLUSIVE_ACCEPT and io.backend == "epoll":
            try:
                io.register(self._fd, self, EPOLLIN | EPOLLEXCLUSIVE, edge=io.edge)
                return True
            except OSError as exc:
                if exc.errno != errno.EINVAL:  # EINVAL: kernel without EPOLLEXCLUSIVE
                    raise
        io.register(self._fd, self, EPOLLIN, edge=io.edge)
        return False

    def _on_events(self, mask: int) -> None:
        self._pending = True
        if self._backing_off is None:
            self._accept()

    def _on_deferred(self) -> None:
        self._deferred = False
        if self._pending and self._backing_off is None and self._sock is not None:
            self._accept()

    def _describe(self) -> dict[str, Any]:
        try:
            local = self._sock.getsockname() if self._sock is not None else None
        except OSError:
            local = None
        state = ["backing-off" if self._backing_off is not None else "accepting"]
        if self._exclusive:
            state.append("exclusive")
        return {"kind": "listener", "local": local, "state": state,
                "readable": self._pending, "deferred": self._deferred,
                "accepted": self._accepted}

    def _on_handler_error(self, exc: BaseException) -> None:
        # Reported by the loop already.  The backlog may still hold connections and, edge
        # triggered, no new edge will say so: look again after the back-off delay.
        if self._sock is not None and self._backing_off is None:
            self._back_off(None)

    def _accept(self) -> None:
        loop = self._loop
        io = self._io
        assert self._sock is not None
        accept = self._sock.accept
        server = self._server
        accepted = 0
        try:
            for _ in range(io.accept_budget):
                try:
                    conn, addr = accept()
                except (BlockingIOError, InterruptedError):
                    self._pending = False
                    return
                except OSError as exc:
                    if exc.errno in _TRANSIENT_ERRNOS:
                        continue
                    if exc.errno in _RESOURCE_ERRNOS:
                        self._back_off(exc)
                        return
                    loop.call_exception_handler({
                        "message": "socket.accept() failed", "exception": exc, "socket": self._sock,
                    })
                    self._back_off(None)
                    return
                accepted += 1
                # Each connection gets its own copy of the create_server caller's context: the
                # protocol factory and every callback of the connection run in it.
                context = server._context.copy()
                context.run(server._connection_accepted, conn, addr, context)
            # Budget spent with the backlog possibly non-empty.
            io.cut_off(self)
        finally:
            io.stats.accepts += accepted
            self._accepted += accepted

    def _back_off(self, exc: OSError | None) -> None:
        loop = self._loop
        if exc is not None:
            loop.call_exception_handler({
                "message": "socket.accept() out of system resource",
                "exception": exc, "socket": self._sock,
            })
        if self._exclusive:
            self._io.unregister(self._fd)  # no EPOLL_CTL_MOD on it; let other workers wake
        elif not self._io.edge:
            self._io.set_interest(self._fd, 0)  # level mode would report the backlog at once
        self._backing_off = loop.call_later(ACCEPT_RETRY_DELAY, self._retry)

    def _retry(self) -> None:
        self._backing_off = None
        if self._sock is None:
            return
        if self._exclusive:
            self._exclusive = self._register()
        elif not self._io.edge:
            self._io.set_interest(self._fd, EPOLLIN)
        # The backlog produced no new edge while we waited: look ourselves.
        self._pending = True
        self._accept()

    def close(self, close_socket: bool = True) -> None:
        if self._backing_off is not None:
            self._backing_off.cancel()
            self._backing_off = None
        if self._sock is not None:
            if not self._loop.is_closed():
                self._io.unregister(self._fd)
            if close_socket:
                self._sock.close()
            self._sock = None


class Server(asyncio.AbstractServer):
    def __init__(
        self,
        loop: EventLoop,
        sockets: list[socket.socket],
        protocol_factory: Callable[[], asyncio.BaseProtocol],
        backlog: int,
        unix_path: str | None = None,
        ssl: Any = None,
        ssl_handshake_timeout: float | None = None,
        ssl_shutdown_timeout: float | None = None,
    ) -> None:
        self._loop = loop
        # The context of the create_server call: each accepted connection runs in a copy.
        self._context = contextvars.copy_context()
        # With an SSL context, each accepted connection is wrapped in TLS (transports/tls.py).
        self._ssl = ssl
        self._ssl_handshake_timeout = ssl_handshake_timeout
        self._ssl_shutdown_timeout = ssl_shutdown_timeout
        self._sockets: list[socket.socket] | None = sockets
        self._acceptors: list[Acceptor] = []
        self._protocol_factory = protocol_factory
        self._backlog = backlog
        self._clients: set[StreamTransport] = set()
        self._waiters: list[asyncio.Future[None]] | None = []
        self._serving = False
        self._serving_forever: asyncio.Future[None] | None = None
        self._unix_cleanup: tuple[str, int] | None = None
        if unix_path is not None:
            try:
                self._unix_cleanup = (unix_path, os.stat(unix_path).st_ino)
            except OSError:
                pass

    def __repr__(self) -> str:
        return f"<{type(self).__name__} sockets={self.sockets!r}>"

    # Connections -------------------------------------------------------------------------

    def _connection_accepted(self, conn: socket.socket, addr: Any,
                             context: contextvars.Context) -> None:
        """Build the transport of an accepted connection.  Whatever fails on the way (the
        protocol factory, the TLS wrapper, the poller refusing the socket: ENOSPC from
        ``max_user_watches``, select past FD_SETSIZE without ctypes) closes that socket and is
        reported; the server keeps accepting, and no half-built transport is left among its
        clients."""
        loop = self._loop
        try:
            conn.setblocking(False)
            protocol = self._protocol_factory()
            if self._ssl is not None:
                protocol = _tls.server_protocol(loop, protocol, self._ssl,
                                                self._ssl_handshake_timeout,
                                                self._ssl_shutdown_timeout)
            StreamTransport(loop, conn, protocol, extra={"peername": addr}, server=self,
                            context=context)
        except (SystemExit, KeyboardInterrupt):
            conn.close()
            raise
        except BaseException as exc:
            conn.close()
            loop.call_exception_handler({
                "message": "Error while setting up an accepted connection",
                "exception": exc, "socket": conn, "peername": addr,
            })

    def _attach(self, transport: StreamTransport) -> None:
        self._clients.add(transport)

    def _detach(self, transport: StreamTransport) -> None:
        self._clients.discard(transport)
        if not self._clients and self._sockets is None:
            self._wake_waiters()

    def _wake_waiters(self) -> None:
        waiters = self._waiters
        if waiters is None:
            return
        self._waiters = None
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    # AbstractServer ----------------------------------------------------------------------

    def get_loop(self) -> asyncio.AbstractEventLoop:
        return self._loop

    def is_serving(self) -> bool:
        return self._serving

    @property
    def sockets(self) -> tuple[TransportSocket, ...]:
        if self._sockets is None:
            return ()
        # asyncio's own wrapper: the socket's queries and options, but not close() or blocking I/O.
        return tuple(TransportSocket(sock) for sock in self._sockets)

    def _start_serving(self) -> None:
        if self._serving or self._sockets is None:
            return
        try:
            for sock in self._sockets:
                sock.listen(self._backlog)
                self._acceptors.append(Acceptor(self._loop, self, sock))
        except BaseException:
            # A socket the poller refuses (select past FD_SETSIZE without ctypes): serve none of
            # them, and leave none registered.  The server keeps its sockets; close() closes them.
            for acceptor in self._acceptors:
                acceptor.close(close_socket=False)
            self._acceptors.clear()
            raise
        self._serving = True

    async def start_serving(self) -> None:
        self._start_serving()
        await asyncio.sleep(0)

    def close(self) -> None:
        if self._sockets is None:
            return
        sockets, self._sockets = self._sockets, None
        for acceptor in self._acceptors:
            acceptor.close()
        self._acceptors.clear()
        for sock in sockets:
            sock.close()  # those never served too (start_serving=False), as asyncio does
        self._serving = False
        self._cleanup_unix_path()
        fut = self._serving_forever
        if fut is not None and not fut.done():
            fut.cancel()
        if not self._clients:
            self._wake_waiters()

    def _cleanup_unix_path(self) -> None:
        if self._unix_cleanup is None:
            return
        path, inode = self._unix_cleanup
        self._unix_cleanup = None
        try:
            if os.stat(path).st_ino == inode and stat.S_ISSOCK(os.stat(path).st_mode):
                os.unlink(path)
        except OSError:
            pass

    def close_clients(self) -> None:
        for transport in list(self._clients):
            transport.close()

    def abort_clients(self) -> None:
        for transport in list(self._clients):
            transport.abort()

    async def serve_forever(self) -> None:
        if self._serving_forever is not None:
            raise RuntimeError(f"server {self!r} is already being awaited on serve_forever()")
        if self._sockets is None:
            raise RuntimeError(f"server {self!r} is closed")
        self._start_serving()
        self._serving_forever = self._loop.create_future()
        try:
            await self._serving_forever
        except asyncio.CancelledError:
            try:
                self.close()
                await self.wait_closed()
            finally:
                raise
        finally:
            self._serving_forever = None

    async def wait_closed(self) -> None:
        """Wait until the server is closed and every connection it accepted is gone."""
        if self._waiters is None:
            return
        waiter = self._loop.create_future()
        self._waiters.append(waiter)
        await waiter
