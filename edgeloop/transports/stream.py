"""Stream transports (TCP and Unix), edge- or level-triggered.

Edge mode (the default on epoll)
--------------------------------
The socket is registered once, ``EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET``, and its interest is
never changed: pausing, resuming, buffering and unbuffering writes cost no ``epoll_ctl``.  What the
kernel stops telling us we remember ourselves:

* ``_readable``: set by any read-ish event; cleared when a read raises EAGAIN or, under the default
  ``"short"`` read policy, returns fewer bytes than asked (the receive queue was emptied; on Linux
  the next arrival raises a new edge).  The short-read rule has two exceptions.  A FIN or an error
  that arrived *before* epoll_wait collected the event raises no further edge, and a read stops
  short in front of it; the event mask carries ``EPOLLRDHUP``/``EPOLLHUP``/``EPOLLERR`` in that
  case, so once such a bit has been seen we read until EOF or EAGAIN (``_hup``).  And the rule is
  not used on Unix sockets with ``SO_PASSCRED``: their reads also stop short between messages of
  different senders.  While it is set and the protocol wants data, we own the job
  of reading: a drain stopped by the budget, a pause, or a not-yet-made connection is resumed from
  the loop's deferred list (``_on_deferred``).
* ``_writable``: cleared when a send is partial or raises EAGAIN, set again by ``EPOLLOUT``.  A
  write with an empty buffer tries ``send()`` at once unless we know the socket is full.

Level mode
----------
Interest follows the state, like the stdlib: ``EPOLLIN`` while the protocol reads, ``EPOLLOUT``
only while the write buffer holds data or a ``loop.sendfile()`` transfer is in progress.  One read
per event; the poller reports the socket again if more is queued.

Both modes share everything else: the write buffer (a deque of chunks flushed with ``sendmsg``),
flow control, half-close, and a close path that unregisters the fd before closing it and calls
``connection_lost`` exactly once.

A zero-copy ``loop.sendfile()`` is state of the transport, not a takeover of its descriptor:
``_sendfile`` holds the transfer (see ``edgeloop/sendfile.py``).  While it is set, write readiness
with an empty buffer is handed to it, ``write()`` is refused, and ``close()``/``write_eof()`` wait
for it as they wait for buffered data.
"""
from __future__ import annotations

import asyncio
import collections
import contextvars
import logging
import os
import socket
from asyncio.trsock import TransportSocket
from typing import TYPE_CHECKING, Any

from .base import SocketTransport, set_result_unless_cancelled
from .flowcontrol import WriteFlowControl
from ..poller import (
    EDGE_STREAM, EPOLLERR, EPOLLHUP, EPOLLIN, EPOLLOUT, EPOLLRDHUP, READ_EVENTS, WRITE_EVENTS,
)

if TYPE_CHECKING:
    from ..loop import EventLoop
    from ..sendfile import _FilePump
    from ..server import Server

logger = logging.getLogger("asyncio")

# 64 KiB, not the 256 KiB of asyncio: CPython allocates the whole size for every recv() and
# shrinks it after, and above glibc's mmap threshold (128 KiB unless raised by luck) that is an
# mmap, an mremap and a munmap per read (seen with strace: 5 syscalls per echoed message).
MAX_READ = 64 * 1024
_IOV_MAX = min(os.sysconf("SC_IOV_MAX") if hasattr(os, "sysconf") else 16, 1024)
_HUP_EVENTS = EPOLLRDHUP | EPOLLHUP | EPOLLERR
# Messages of the RuntimeError raised by a refused write; ``{}`` is the method's name.
_REFUSED_AFTER_EOF = "Cannot call {}() after write_eof()"
_REFUSED_DURING_SENDFILE = "unable to write; sendfile is in progress"


def _short_reads_safe(sock: socket.socket) -> bool:
    """May a short read be taken to mean "the receive queue is empty" on this socket?"""
    if sock.family in (socket.AF_INET, socket.AF_INET6):
        return True
    if sock.family == socket.AF_UNIX and hasattr(socket, "SO_PASSCRED"):
        try:
            return not sock.getsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED)
        except OSError:
            return False
    return False


class StreamTransport(SocketTransport, WriteFlowControl, asyncio.Transport):
    """A connected stream socket bound to a Protocol or BufferedProtocol."""

    _read_eof = False            # EOF received
    _eof = False                 # write_eof() called
    _sendfile: _FilePump | None = None  # the loop.sendfile() transfer in progress
    _server: Server | None = None

    @property
    def _kind(self) -> str:  # type: ignore[override]
        family = self._extra["socket"].family
        return "unix" if family == socket.AF_UNIX else "tcp"

    def __init__(
        self,
        loop: EventLoop,
        sock: socket.socket,
        protocol: asyncio.BaseProtocol,
        waiter: asyncio.Future[Any] | None = None,
        extra: dict[str, Any] | None = None,
        server: Server | None = None,
        context: contextvars.Context | None = None,
    ) -> None:
        super().__init__(extra)
        self._attach_loop(loop, context)
        self._sock: socket.socket | None = sock
        self._fd = sock.fileno()
        io = self._io
        self._budget = io.read_budget if self._edge else 1
        # May a short read end a drain?  Cleared for good once RDHUP/HUP/ERR is seen: EOF or an
        # error is queued behind the data then (see the module docstring).
        self._short = io.read_policy == "short" and _short_reads_safe(sock)
        self._extra["socket"] = TransportSocket(sock)
        try:
            self._extra["sockname"] = sock.getsockname()
        except OSError:
            self._extra["sockname"] = None
        if "peername" not in self._extra:
            try:
                self._extra["peername"] = sock.getpeername()
            except OSError:
                self._extra["peername"] = None
        if sock.family in (socket.AF_INET, socket.AF_INET6) and sock.type == socket.SOCK_STREAM:
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:
                pass
        self._protocol: Any = None
        self._buffered = False
        self.set_protocol(protocol)

        self._reading = False        # the protocol wants data and we may deliver it
        self._paused = False         # pause_reading() in effect
        self._readable = False       # edge mode: data may be waiting in the kernel
        self._writable = True        # edge mode: the last send did not fill the socket
        # Why write() is refused (a message, see _REFUSED_*), None while writing is allowed: one
        # test on the write path for both write_eof() and a transfer in progress.
        self._write_refused: str | None = None
        self._buffer: collections.deque[Any] = collections.deque()
        self._buffer_size = 0
        self._conn_lost = 0          # read by every write()
        self._closing = False        # read by is_closing(), which frameworks call per write
        self._sendfile = None        # read by every write event
        # The rest stays at its class default until it changes (_read_eof, _eof, _server...):
        # CPython keeps attribute access on its fast path only for objects with at most 30
        # instance attributes, and this object is on the hottest path of all; an attribute read
        # through the class is slower, so the ones read per event or per write are set here.

        # Registered before anything else can refer to us: if the poller refuses the socket
        # (ENOSPC; select past FD_SETSIZE without ctypes), the caller still owns it and nothing is
        # left behind.
        try:
            if self._edge:
                io.register(self._fd, self, EDGE_STREAM)
            else:
                io.register(self._fd, self, 0)
        except BaseException:
            self._sock = None  # not ours: __del__ must not close it
            raise
        if server is not None:
            self._server = server
            server._attach(self)
        io.call_next(self._connection_made, waiter, context=self._context)

    def __repr__(self) -> str:
        state = "closed" if self._sock is None else ("closing" if self._closing else "open")
        return f"<{type(self).__name__} fd={self._fd} {state} buffered={self._buffer_size}>"

    # ------------------------------------------------------------------ protocol plumbing

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self._protocol = protocol
        self._buffered = isinstance(protocol, asyncio.BufferedProtocol)

    def _connection_made(self, waiter: asyncio.Future[Any] | None) -> None:
        # Runs before any _call_connection_lost (both are scheduled in order), so the protocol
        # always hears connection_made first, even of a transport closed at once.
        if not self._make_connection(waiter):
            return
        if not self._closing and not self._paused:
            self._start_reading()
        # Resolved here, not through another call_soon: the awaiting coroutine must resume in
        # the next iteration, before a fast peer's whole exchange can complete behind its back.
        set_result_unless_cancelled(waiter, None)

    def _start_reading(self) -> None:
        self._reading = True
        if self._edge:
            if self._readable:
                # No new edge will come for data that is already queued: drain it ourselves.
                self._io.defer(self)
        else:
            self._update_interest()

    def _update_interest(self) -> None:
        """Level mode: keep the poller's interest equal to what we want to hear about."""
        if self._sock is not None:
            writing = self._buffer or self._sendfile is not None
            events = (EPOLLIN if self._reading else 0) | (EPOLLOUT if writing else 0)
            self._io.set_interest(self._fd, events)

    # ------------------------------------------------------------------ events

    def _events(self, mask: int) -> None:
        """One event: drain the reads (edge mode: until EAGAIN, a short read or the budget),
        then serve the write side.  The Protocol drain is written out here, not called: this is
        the hottest function of a server, and a call per event costs a frame."""
        if mask & READ_EVENTS:
            self._readable = True
            if mask & _HUP_EVENTS:
                self._short = False
            if self._reading:
                if self._buffered:
                    self._read_ready_buffered()
                else:
                    # Methods called through their objects, not bound to locals first: most
                    # events are one read, and a bound method is an allocation each.
                    protocol = self._protocol
                    sock = self._sock
                    n = got = 0
                    try:
                        while True:
                            try:
                                data = sock.recv(MAX_READ)  # type: ignore[union-attr]
                            except (BlockingIOError, InterruptedError):
                                self._readable = False
                                self._io.stats.eagain += 1
                                break
                            n += 1
                            size = len(data)
                            if not size:
                                self._readable = False
                                self._eof_received()
                                break
                            got += size
                            protocol.data_received(data)
                            if size < MAX_READ and self._short:
                                self._readable = False
                                break
                            if not self._reading:
                                break  # paused or closed by the protocol
                            if n >= self._budget:
                                self._io.cut_off(self)
                                break
                            if self._protocol is not protocol:
                                # set_protocol() from data_received (a websocket upgrade): the
                                # next chunk is the new protocol's, maybe a BufferedProtocol.
                                self._io.defer(self)
                                break
                    except (SystemExit, KeyboardInterrupt):
                        raise
                    except OSError as exc:
                        self._fatal_error(exc, "Fatal read error on socket transport")
                    except BaseException as exc:
                        self._fatal_error(exc, "Fatal error: protocol.data_received() call failed.")
                    finally:
                        # Per transport (loop.describe()); stats() adds them up: no second
                        # counter here.  Literal indexes: a global lookup per counter would cost
                        # more than the addition.
                        counts = self._counts
                        counts[0] += n      # READS
                        counts[2] += got    # BYTES_IN
        if mask & WRITE_EVENTS:
            self._writable = True
            if self._buffer:
                self._write_ready()
            elif self._sendfile is not None:
                self._sendfile._send()  # buffer flushed: the file goes on

    # ------------------------------------------------------------------ reading

    def _read_ready(self) -> None:
        """A drain outside an event (the deferred list, resume_reading): the one in _events."""
        self._events(EPOLLIN)

    def _read_ready_buffered(self) -> None:
        # The same drain as _events, for a BufferedProtocol (get_buffer + recv_into). Kept
        # as a second flat loop on purpose: sharing it would put a per-read branch or a call
        # on the hottest path of both.
        protocol = self._protocol
        recv_into = self._sock.recv_into  # type: ignore[union-attr]
        budget = self._budget
        short = self._short
        n = got = 0
        try:
            while True:
                try:
                    buf = protocol.get_buffer(-1)
                    size = len(buf)
                    if not size:
                        raise RuntimeError("get_buffer() returned an empty buffer")
                except (SystemExit, KeyboardInterrupt):
                    raise
                except BaseException as exc:
                    self._fatal_error(exc, "Fatal error: protocol.get_buffer() call failed.")
                    return
                try:
                    nbytes = recv_into(buf)
                except (BlockingIOError, InterruptedError):
                    self._readable = False
                    self._io.stats.eagain += 1
                    break
                n += 1
                if not nbytes:
                    self._readable = False
                    self._eof_received()
                    break
                got += nbytes
                protocol.buffer_updated(nbytes)
                if short and nbytes < size:
                    self._readable = False
                    break
                if not self._reading:
                    break
                if n >= budget:
                    self._io.cut_off(self)
                    break
                if self._protocol is not protocol:
                    self._io.defer(self)  # set_protocol() from buffer_updated: see _read_ready
                    break
        except (SystemExit, KeyboardInterrupt):
            raise
        except OSError as exc:
            self._fatal_error(exc, "Fatal read error on socket transport")
        except BaseException as exc:
            self._fatal_error(exc, "Fatal error: protocol.buffer_updated() call failed.")
        finally:
            counts = self._counts
            counts[0] += n      # READS
            counts[2] += got    # BYTES_IN

    def _eof_received(self) -> None:
        self._read_eof = True
        self._reading = False
        if not self._edge:
            self._update_interest()
        if self._loop.get_debug():
            logger.debug("%r received EOF", self)
        try:
            keep_open = self._protocol.eof_received()
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            self._fatal_error(exc, "Fatal error: protocol.eof_received() call failed.")
            return
        if not keep_open:
            self.close()

    def pause_reading(self) -> None:
        if self._closing or self._paused:
            return
        self._paused = True
        self._reading = False
        if not self._edge:
            self._update_interest()

    def resume_reading(self) -> None:
        if self._closing or not self._paused:
            return
        self._paused = False
        if self._protocol_connected and not self._read_eof:
            self._start_reading()

    def is_reading(self) -> bool:
        return not self._paused and not self._closing

    # ------------------------------------------------------------------ writing

    def write(self, data: bytes | bytearray | memoryview) -> None:
        mutable = type(data) is not bytes
        if mutable:
            if not isinstance(data, (bytearray, memoryview)):
                raise TypeError(
                    f"data argument must be a bytes-like object, not {type(data).__name__!r}"
                )
            data = memoryview(data).cast("B")
        if self._write_refused is not None:
            raise RuntimeError(self._write_refused.format("write"))
        if not data:
            return
        if self._conn_lost:
            self._drop_write()
            return
        buffer = self._buffer
        if not buffer:
            # Optimistic send: most writes go straight into the kernel's socket buffer.  In edge
            # mode we skip it when we know the socket is full (EPOLLOUT has not come back yet).
            if self._writable or not self._edge:
                try:
                    n = self._sock.send(data)  # type: ignore[union-attr]
                except (BlockingIOError, InterruptedError):
                    n = 0
                except (SystemExit, KeyboardInterrupt):
                    raise
                except BaseException as exc:
                    self._fatal_error(exc, "Fatal write error on socket transport")
                    return
                counts = self._counts
                counts[1] += 1      # WRITES
                counts[3] += n      # BYTES_OUT
                if n == len(data):
                    return
                self._writable = False
                if n:
                    data = memoryview(data)[n:]  # no copy of the unsent tail
        # The caller may reuse a bytearray or memoryview once write() returns: keep our own copy.
        if mutable:
            data = bytes(data)
        buffer.append(data)
        self._buffer_size += len(data)
        if not self._edge and len(buffer) == 1:
            self._update_interest()
        self._maybe_pause_protocol()

    def writelines(self, list_of_data: Any) -> None:
        if self._write_refused is not None:
            raise RuntimeError(self._write_refused.format("writelines"))
        chunks = []
        size = 0
        for data in list_of_data:
            if type(data) is not bytes:
                if not isinstance(data, (bytearray, memoryview)):
                    raise TypeError(
                        f"data argument must be a bytes-like object, not {type(data).__name__!r}"
                    )
                data = bytes(data)
            if data:
                chunks.append(data)
                size += len(data)
        if not chunks:
            return
        if self._conn_lost:
            self._drop_write()
            return
        was_empty = not self._buffer
        self._buffer.extend(chunks)
        self._buffer_size += size
        if was_empty and (self._writable or not self._edge):
            self._write_ready()  # one sendmsg() for all the chunks
        elif not self._edge:
            self._update_interest()
        self._maybe_pause_protocol()

    def _write_ready(self) -> None:
        """Flush the buffer until it is empty or the socket is full."""
        sock = self._sock
        buffer = self._buffer
        if sock is None:
            return
        try:
            while buffer:
                if len(buffer) == 1:
                    chunk = buffer[0]
                    attempted = len(chunk)
                    n = sock.send(chunk)
                else:
                    chunks = [buffer[i] for i in range(min(len(buffer), _IOV_MAX))]
                    attempted = sum(map(len, chunks))
                    n = sock.sendmsg(chunks)
                counts = self._counts
                counts[1] += 1      # WRITES
                counts[3] += n      # BYTES_OUT
                self._consume(n)
                if n < attempted:
                    self._writable = False
                    break
        except (BlockingIOError, InterruptedError):
            self._writable = False
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            self._fatal_error(exc, "Fatal write error on socket transport")
            return
        self._maybe_resume_protocol()
        if not buffer:
            if self._sendfile is not None:
                # Bytes written before sendfile() are out: the file follows.  The transfer
                # completes a close() or write_eof() when it ends (_end_sendfile).
                self._sendfile._send()
                return
            if not self._edge:
                self._update_interest()
            if self._closing:
                self._schedule_connection_lost(None)
            elif self._eof:
                self._shutdown_write()
        elif not self._edge:
            self._update_interest()

    def _consume(self, n: int) -> None:
        buffer = self._buffer
        self._buffer_size -= n
        while n:
            chunk = buffer[0]
            size = len(chunk)
            if n >= size:
                buffer.popleft()
                n -= size
            else:
                buffer[0] = memoryview(chunk)[n:]
                break

    def _shutdown_write(self) -> None:
        try:
            self._sock.shutdown(socket.SHUT_WR)  # type: ignore[union-attr]
        except OSError:
            pass  # the peer is gone already; the read side will find out

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        if self._closing or self._eof:
            return
        self._eof = True
        self._write_refused = _REFUSED_AFTER_EOF
        if not self._buffer and self._sendfile is None:
            self._shutdown_write()

    # ------------------------------------------------------------------ sendfile

    def _start_sendfile(self, transfer: _FilePump) -> None:
        """A ``loop.sendfile()`` transfer begins: refuse writes, and hand write readiness to
        ``transfer._send()`` whenever the buffer is empty (now, if it already is)."""
        self._sendfile = transfer
        if not self._eof:
            self._write_refused = _REFUSED_DURING_SENDFILE
        if not self._buffer:
            if not self._edge:
                self._update_interest()  # ask for EPOLLOUT for the transfer
            if self._writable or not self._edge:
                transfer._send()

    def _end_sendfile(self) -> None:
        """The transfer is over (done, failed or cancelled): writes are allowed again, and a
        close() or write_eof() that waited for it completes."""
        self._sendfile = None
        self._write_refused = _REFUSED_AFTER_EOF if self._eof else None
        if self._sock is not None and not self._conn_lost:
            # Flushes what is left (a transfer cancelled in its flush stage), resets the level-mode
            # interest, then closes or shuts down the write side if that was asked meanwhile.
            self._write_ready()

    # Flow control (set_write_buffer_limits, get_write_buffer_size, pause/resume_writing) comes
    # from WriteFlowControl over ``_buffer_size``.

    # ------------------------------------------------------------------ closing
    # close, abort, fatal errors and connection_lost come from SocketTransport.

    def _state(self) -> list[str]:
        state = super()._state()
        if self._read_eof:
            state.append("eof-received")
        if self._eof:
            state.append("eof-sent")
        if self._sendfile is not None:
            state.append(f"sendfile({self._sendfile.sent} B sent)")
        return state

    def _on_released(self) -> None:
        server = self._server
        if server is not None:
            self._server = None
            server._detach(self)
