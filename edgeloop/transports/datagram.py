"""Datagram transports (UDP and Unix datagram sockets), edge- or level-triggered.

Reading
-------
In edge mode the socket is registered once, ``EPOLLIN | EPOLLOUT | EPOLLET``, like a stream
socket, and readiness is remembered in ``_readable``/``_writable``.  The one rule that differs from
streams: **a short read never means drained**.  Every ``recvfrom`` returns exactly one datagram,
whatever its size, so the only proof that the queue is empty is EAGAIN.  A drain reads up to
``READ_BUDGET`` datagrams per wakeup; when the budget runs out the transport goes on the loop's I/O
list (``io.cut_off``) and continues next iteration, because epoll will not report the
datagrams already queued again.

An empty datagram is a datagram: ``recvfrom`` returning ``b""`` is delivered as
``datagram_received(b"", addr)``, never taken for end-of-file (datagram sockets have none).

Datagrams are received with ``recvfrom_into`` into one scratch buffer per thread and copied out at
their real size: asking ``recvfrom`` for 256 KiB allocates (and shrinks) a 256 KiB object per
datagram, which costs several times the system call itself.

Errors
------
An ``OSError`` from ``recvfrom`` or ``send``/``sendto`` is not fatal: it goes to
``protocol.error_received(exc)``.  That is how ICMP errors surface, e.g. ``ConnectionRefusedError``
on a connected UDP socket whose peer port is closed (Linux queues the error on the socket and
reports ``EPOLLERR``; the next receive or send returns it once).  A drain continues after an error,
so datagrams queued behind it are not stranded in edge mode.  An exception raised by the protocol's
``datagram_received``/``error_received`` is reported to the loop's exception handler and the
transport stays open, as in the stdlib loop (where such exceptions escape a callback handle).

Writing
-------
``sendto`` tries the kernel first; datagrams it refuses (EAGAIN: the send buffer, or for Unix
datagram sockets the receiver's queue, is full) wait in a deque of ``(bytes, addr)`` flushed on
``EPOLLOUT``.  Each buffered datagram counts its length plus an 8-byte header towards flow control
(as Python 3.13 does), so a pile of empty datagrams still pauses the protocol.  Empty datagrams are
sent (Python 3.13 behaviour; 3.11 and 3.12 silently drop them).  A datagram whose send fails with
an ``OSError`` is dropped after ``error_received`` and the flush goes on with the next one.

Level mode
----------
Interest follows the state as in stream.py: ``EPOLLIN`` while reading (from ``connection_made`` to
``close``), ``EPOLLOUT`` only while datagrams are buffered; one datagram per read event, like the
stdlib loop.
"""
from __future__ import annotations

import asyncio
import collections
import contextvars
import logging
import os
import socket
from asyncio.trsock import TransportSocket
import stat
import threading
from typing import TYPE_CHECKING, Any

from ..poller import EPOLLET, EPOLLIN, EPOLLOUT, READ_EVENTS, WRITE_EVENTS
from .base import SocketTransport, set_result_unless_cancelled
from .flowcontrol import WriteFlowControl

if TYPE_CHECKING:
    from ..loop import EventLoop

logger = logging.getLogger("asyncio")

MAX_DATAGRAM = 256 * 1024   # the largest datagram delivered whole (like the stdlib's max_size)
READ_BUDGET = 64            # datagrams per wakeup in edge mode
HEADER_OVERHEAD = 8         # counted per buffered datagram for flow control
EDGE_DGRAM = EPOLLIN | EPOLLOUT | EPOLLET

_scratch = threading.local()


def _scratch_buffer() -> tuple[bytearray, memoryview]:
    """The calling thread's receive buffer (one per thread: a loop runs in one thread)."""
    pair = getattr(_scratch, "pair", None)
    if pair is None:
        buf = bytearray(MAX_DATAGRAM)
        pair = _scratch.pair = (buf, memoryview(buf))
    return pair


class DatagramTransport(SocketTransport, WriteFlowControl, asyncio.DatagramTransport, asyncio.Transport):
    """A UDP or Unix datagram socket bound to a DatagramProtocol.

    Also an ``asyncio.Transport``, as the stdlib's datagram transport is (its stream-only methods
    raise NotImplementedError there too): code and tests check ``isinstance(tr, Transport)``.
    """

    def __init__(
        self,
        loop: EventLoop,
        sock: socket.socket,
        protocol: asyncio.BaseProtocol,
        address: Any = None,
        waiter: asyncio.Future[Any] | None = None,
        extra: dict[str, Any] | None = None,
        context: contextvars.Context | None = None,
    ) -> None:
        super().__init__(extra)
        self._attach_loop(loop, context)
        self._sock: socket.socket | None = sock
        self._fd = sock.fileno()
        self._protocol: Any = protocol
        self._address = address  # the remote address sendto() defaults to (and insists on)
        self._budget = READ_BUDGET if self._edge else 1
        self._kind = "unix-dgram" if sock.family == socket.AF_UNIX else "udp"
        self._extra["socket"] = TransportSocket(sock)
        self._extra["sockname"] = _sockname(sock)
        if "peername" not in self._extra:
            self._extra["peername"] = _peername(sock)
        self._connected = self._extra["peername"] is not None

        self._reading = False
        self._readable = False
        self._writable = True
        self._closing = False
        self._conn_lost = 0
        self._protocol_connected = False
        self._buffer: collections.deque[tuple[bytes, Any]] = collections.deque()
        self._buffer_size = 0

        # A socket the poller refuses (ENOSPC; select past FD_SETSIZE without ctypes) stays the
        # caller's, unregistered.
        try:
            if self._edge:
                self._io.register(self._fd, self, EDGE_DGRAM)
            else:
                self._io.register(self._fd, self, 0)
        except BaseException:
            self._sock = None  # not ours: __del__ must not close it
            raise
        self._io.call_next(self._connection_made, waiter, context=self._context)

    def __repr__(self) -> str:
        state = "closed" if self._sock is None else ("closing" if self._closing else "open")
        return f"<{type(self).__name__} fd={self._fd} {state} buffered={self._buffer_size}>"

    def _connection_made(self, waiter: asyncio.Future[Any] | None) -> None:
        if not self._make_connection(waiter):
            return
        if not self._closing:
            self._reading = True
            if self._edge:
                if self._readable:
                    self._io.defer(self)  # queued before we listened: no new edge
            else:
                self._update_interest()
        set_result_unless_cancelled(waiter, None)

    def _update_interest(self) -> None:
        """Level mode: read interest while reading, write interest while datagrams wait."""
        if self._sock is not None and not self._loop.is_closed():
            events = (EPOLLIN if self._reading else 0) | (EPOLLOUT if self._buffer else 0)
            self._io.set_interest(self._fd, events)

    def _protocol_error(self, exc: BaseException, callback: str) -> None:
        self._loop.call_exception_handler({
            "message": f"Exception in callback protocol.{callback}()",
            "exception": exc, "transport": self, "protocol": self._protocol,
        })

    # ------------------------------------------------------------------ events

    def _events(self, mask: int) -> None:
        if mask & READ_EVENTS:
            self._readable = True
            if self._reading:
                self._read_ready()
        if mask & WRITE_EVENTS:
            self._writable = True
            if self._buffer:
                self._write_ready()

    # ------------------------------------------------------------------ reading

    def _read_ready(self) -> None:
        buf, view = _scratch_buffer()
        recvfrom_into = self._sock.recvfrom_into  # type: ignore[union-attr]
        protocol = self._protocol
        budget = self._budget
        n = 0
        try:
            while True:
                try:
                    nbytes, addr = recvfrom_into(buf)
                except (BlockingIOError, InterruptedError):
                    self._readable = False
                    self._io.stats.eagain += 1
                    break
                except OSError as exc:
                    n += 1
                    self._deliver_error(exc)
                else:
                    n += 1
                    self._counts[2] += nbytes  # BYTES_IN
                    try:
                        protocol.datagram_received(bytes(view[:nbytes]), addr)
                    except (SystemExit, KeyboardInterrupt):
                        raise
                    except BaseException as exc:
                        self._protocol_error(exc, "datagram_received")
                if not self._reading:
                    break  # closed by the protocol
                if n >= budget:
                    self._io.cut_off(self)
                    break
                protocol = self._protocol  # set_protocol() applies to the very next datagram
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            self._fatal_error(exc, "Fatal read error on datagram transport")
        finally:
            self._counts[0] += n  # READS

    def _deliver_error(self, exc: OSError) -> None:
        try:
            self._protocol.error_received(exc)
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as err:
            self._protocol_error(err, "error_received")

    # ------------------------------------------------------------------ writing

    def sendto(self, data: bytes | bytearray | memoryview, addr: Any = None) -> None:
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError(
                f"data argument must be a bytes-like object, not {type(data).__name__!r}"
            )
        if self._address:
            if addr not in (None, self._address):
                raise ValueError(f"Invalid address: must be None or {self._address}")
            addr = self._address
        if self._conn_lost:
            self._drop_write()
            return
        if not self._buffer and (self._writable or not self._edge):
            if self._send(data, addr):
                return
            self._writable = False
        # The caller may reuse its buffer once sendto() returns: keep an immutable copy.
        data = bytes(data)
        self._buffer.append((data, addr))
        self._buffer_size += len(data) + HEADER_OVERHEAD
        if not self._edge and len(self._buffer) == 1:
            self._update_interest()
        self._maybe_pause_protocol()

    def _send(self, data: Any, addr: Any) -> bool:
        """One datagram to the kernel.  False if it would block; True if it was sent or dropped
        (an OSError, reported to ``error_received``, or a fatal error)."""
        try:
            if self._connected:
                self._counts[3] += self._sock.send(data)  # type: ignore[union-attr]
            else:
                self._counts[3] += self._sock.sendto(data, addr)  # type: ignore[union-attr]
        except (BlockingIOError, InterruptedError):
            return False
        except OSError as exc:
            self._deliver_error(exc)
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            self._fatal_error(exc, "Fatal write error on datagram transport")
        finally:
            self._counts[1] += 1  # WRITES
        return True

    def _write_ready(self) -> None:
        buffer = self._buffer
        while buffer and self._sock is not None:
            data, addr = buffer[0]
            if not self._send(data, addr):
                self._writable = False
                break
            if buffer:  # a fatal error clears the buffer
                buffer.popleft()
                self._buffer_size -= len(data) + HEADER_OVERHEAD
        if self._sock is None or self._conn_lost:
            return
        self._maybe_resume_protocol()  # may buffer more
        if not buffer:
            if self._closing:
                self._schedule_connection_lost(None)
        if not self._edge:
            self._update_interest()

    # close, abort, fatal errors and connection_lost come from SocketTransport.


def _sockname(sock: socket.socket) -> Any:
    try:
        return sock.getsockname()
    except OSError:
        return None


def _peername(sock: socket.socket) -> Any:
    try:
        return sock.getpeername()
    except OSError:
        return None


# ---------------------------------------------------------------------- create_datagram_endpoint
#
# Bound as ``EventLoop.create_datagram_endpoint``; ``self`` is the loop.  The argument checks and
# their exceptions follow the stdlib loop (Python 3.13: any non-stream socket may be passed as
# ``sock``); ``reuse_address`` is not a parameter, so passing it is a TypeError as on 3.11+.

_SOCKET_MODIFIERS = ("local_addr", "remote_addr", "family", "proto", "flags", "reuse_port",
                     "allow_broadcast")


async def create_datagram_endpoint(
    self: EventLoop, protocol_factory: Any, local_addr: Any = None, remote_addr: Any = None, *,
    family: int = 0, proto: int = 0, flags: int = 0, reuse_port: bool | None = None,
    allow_broadcast: bool | None = None, sock: socket.socket | None = None,
) -> tuple[asyncio.DatagramTransport, asyncio.BaseProtocol]:
    self._check_closed()
    owned = sock is None  # until a transport holds it, only a socket of ours is closed on failure
    if sock is not None:
        if sock.type == socket.SOCK_STREAM:
            raise ValueError(f"A datagram socket was expected, got {sock!r}")
        given = dict(local_addr=local_addr, remote_addr=remote_addr, family=family, proto=proto,
                     flags=flags, reuse_port=reuse_port, allow_broadcast=allow_broadcast)
        problems = ", ".join(f"{k}={v}" for k, v in given.items() if v)
        if problems:
            raise ValueError("socket modifier keyword arguments can not be used "
                             f"when sock is specified. ({problems})")
        sock.setblocking(False)
        remote = None
    else:
        pairs = await _address_pairs(self, local_addr, remote_addr, family, proto, flags)
        sock, remote = await _open_socket(self, pairs, local_addr, remote_addr, reuse_port,
                                          allow_broadcast)
    try:
        protocol = protocol_factory()
        waiter = self.create_future()
        transport = DatagramTransport(self, sock, protocol, remote, waiter)
    except BaseException:
        if owned:
            sock.close()
        raise
    try:
        await waiter
    except BaseException:
        transport.close()
        raise
    return transport, protocol


async def _address_pairs(loop: EventLoop, local_addr: Any, remote_addr: Any, family: int, proto: int,
                         flags: int) -> list[tuple[tuple[int, int], tuple[Any, Any]]]:
    """``[((family, proto), (local, remote)), ...]``: the socket kinds to try, in order."""
    if not (local_addr or remote_addr):
        if family == 0:
            raise ValueError("unexpected address family")
        return [((family, proto), (None, None))]
    if family == getattr(socket, "AF_UNIX", None):
        for addr in (local_addr, remote_addr):
            if addr is not None and not isinstance(addr, str):
                raise TypeError("string is expected")
        if local_addr and local_addr[0] not in (0, "\x00"):
            _remove_stale_socket(local_addr)
        return [((family, proto), (local_addr, remote_addr))]
    # Resolve both ends and keep the (family, proto) kinds for which every given end resolved.
    found: dict[tuple[int, int], list[Any]] = {}
    for index, addr in ((0, local_addr), (1, remote_addr)):
        if addr is None:
            continue
        if not (isinstance(addr, tuple) and len(addr) == 2):
            raise TypeError("2-tuple is expected")
        infos = await loop.getaddrinfo(addr[0], addr[1], family=family, type=socket.SOCK_DGRAM,
                                       proto=proto, flags=flags)
        if not infos:
            raise OSError("getaddrinfo() returned empty list")
        for fam, _, pro, _, address in infos:
            found.setdefault((fam, pro), [None, None])
            if found[(fam, pro)][index] is None:
                found[(fam, pro)][index] = address
    pairs = [
        (key, (ends[0], ends[1])) for key, ends in found.items()
        if not ((local_addr and ends[0] is None) or (remote_addr and ends[1] is None))
    ]
    if not pairs:
        raise ValueError("can not get address information")
    return pairs


def _remove_stale_socket(path: str) -> None:
    """A socket file left by an earlier run would make bind() fail: remove it (only a socket)."""
    try:
        if stat.S_ISSOCK(os.stat(path).st_mode):
            os.remove(path)
    except FileNotFoundError:
        pass
    except OSError as exc:
        logger.error("Unable to check or remove stale UNIX socket %r: %r", path, exc)


async def _open_socket(loop: EventLoop, pairs: list[Any], local_addr: Any, remote_addr: Any,
                       reuse_port: bool | None, allow_broadcast: bool | None) -> tuple[socket.socket, Any]:
    """The first kind in ``pairs`` that can be created, bound and connected wins; if none can,
    the first error is raised."""
    errors: list[OSError] = []
    for (family, proto), (local, remote) in pairs:
        sock = None
        try:
            sock = socket.socket(family=family, type=socket.SOCK_DGRAM, proto=proto)
            if reuse_port:
                if not hasattr(socket, "SO_REUSEPORT"):
                    raise ValueError("reuse_port not supported by socket module")
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            if allow_broadcast:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
            sock.setblocking(False)
            if local_addr:
                sock.bind(local)
            if remote_addr:
                # A broadcast endpoint stays unconnected: sendto() defaults to the address.
                if not allow_broadcast:
                    await loop.sock_connect(sock, remote)
                return sock, remote
            return sock, None
        except OSError as exc:
            if sock is not None:
                sock.close()
            errors.append(exc)
        except BaseException:
            if sock is not None:
                sock.close()
            raise
    try:
        raise errors[0]
    finally:
        errors = None  # type: ignore[assignment]  # the traceback keeps this frame
