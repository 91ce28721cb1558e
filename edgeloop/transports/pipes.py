"""Pipe transports: ``connect_read_pipe`` and ``connect_write_pipe``.

What counts as a pipe
---------------------
A pipe, a FIFO, a socket or a character device (a pty).  Anything else, a regular file above all,
is refused with ``ValueError`` before anything is registered: epoll cannot watch regular files, and
poll/select would report them ready forever.  A character device that cannot be polled at all
(``/dev/null``) makes the registration fail with ``PermissionError``, as with ``add_reader``.

Edge mode
---------
Like stream.py: the descriptor is registered once and its readiness remembered.  The read end
drains until EAGAIN: unlike stream sockets, a short read is not taken as "drained", because
whether a later write raises a new edge depends on the kind of descriptor and on the kernel
(pipes only wake readers on every write since Linux 5.14; ttys have their own rules).  A drain
reads at most ``loop.read_budget`` chunks per wakeup and continues from the loop's deferred list.
Reads are 64 KiB (the default pipe capacity): larger ``os.read`` sizes cost a large allocation per
call for nothing.

Level mode
----------
Interest follows the state, and a descriptor with no interest left is *unregistered*, not
modified to an empty mask: the kernel reports ``EPOLLHUP``/``EPOLLERR`` whatever the mask, so a
paused read pipe whose writer has gone would otherwise wake the loop forever (the stdlib loop
removes its reader for the same reason).

Semantics (those of the stdlib's Unix pipe transports)
------------------------------------------------------
* Read pipe: end of file calls ``eof_received()`` and then ``connection_lost(None)`` (the return
  value of ``eof_received`` is ignored: a read pipe has nothing left to do).  ``EIO`` from a pty
  whose other side is closed ends the transport with ``connection_lost(OSError(EIO))`` without
  logging it.  An exception raised by ``data_received`` goes to the exception handler and the pipe
  stays open.
* Write pipe: the peer closing the read end (``EPOLLERR`` on a pipe or FIFO, readability on a
  socket) ends the transport: ``connection_lost(None)``, or ``connection_lost(BrokenPipeError())``
  when data was still buffered.  A failed write (``BrokenPipeError``...) ends it with that error.
  ``close()`` flushes the buffer first; ``abort()`` drops it.  Writes after the end are dropped
  silently, with a warning after a few.
* ``connection_lost`` is called exactly once; the descriptor is unregistered before it is closed.
"""
from __future__ import annotations

import asyncio
import errno
import logging
import os
import stat
from typing import TYPE_CHECKING, Any

from ..poller import EPOLLET, EPOLLIN, EPOLLOUT, EPOLLRDHUP, READ_EVENTS, WRITE_EVENTS
from .base import FdTransport, set_result_unless_cancelled
from .flowcontrol import WriteFlowControl

if TYPE_CHECKING:
    from ..loop import EventLoop

logger = logging.getLogger("asyncio")

MAX_READ = 64 * 1024
_READ_INTEREST = EPOLLIN | EPOLLRDHUP
_NOT_A_PIPE = "Pipe transport is for pipes/sockets/character devices only."


def _pipe_kind(fd: int) -> int:
    """The file type bits of ``fd``; ValueError unless it is a pipe, socket or character device."""
    mode = os.fstat(fd).st_mode
    if not (stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode) or stat.S_ISCHR(mode)):
        raise ValueError(_NOT_A_PIPE)
    return stat.S_IFMT(mode)


class _PipeTransportBase(FdTransport):
    """Registration shared by both directions (the close path is FdTransport's)."""

    _DROPPED_WRITE_WARNING = "pipe closed by peer or os.write(pipe, data) raised exception."
    _DIRECTION = "?"
    _pipe: Any

    def _setup(self, loop: EventLoop, pipe: Any, protocol: Any, extra: dict[str, Any]) -> int:
        fd = pipe.fileno()
        kind = _pipe_kind(fd)
        extra["pipe"] = pipe
        what = {stat.S_IFIFO: "pipe", stat.S_IFSOCK: "socket"}.get(kind, "char")
        if kind == stat.S_IFCHR and os.isatty(fd):
            what = "pty"
        self._kind = f"{what}-{self._DIRECTION}"
        self._attach_loop(loop)  # the protocol's context: a copy of the caller's
        self._pipe = pipe
        self._fd = fd
        self._protocol = protocol
        os.set_blocking(fd, False)
        return kind

    def _register(self, events: int) -> None:
        """Enter the poller, at construction: a descriptor it refuses fails here."""
        try:
            self._io.register(self._fd, self, events)
        except BaseException:
            self._pipe = None  # refused: the caller keeps its pipe
            raise

    def _set_interest(self, events: int) -> None:
        """Level mode: watch ``events`` (an empty mask stays registered, quiet: the poller keeps
        a hung-up idle descriptor from being reported again and again)."""
        if self._pipe is None or self._loop.is_closed():
            return
        self._io.set_interest(self._fd, events)

    def _take_file(self) -> Any:
        pipe, self._pipe = self._pipe, None
        return pipe

    def __repr__(self) -> str:
        if self._pipe is None:
            state = "closed"
        elif self._closing:
            state = "closing"
        else:
            state = "open"
        return f"<{type(self).__name__} fd={self._fd} {state}>"


class ReadPipeTransport(_PipeTransportBase, asyncio.ReadTransport):
    """The read end of a pipe (or a socket, FIFO or pty) delivering to a Protocol."""

    _DIRECTION = "read"

    def __init__(self, loop: EventLoop, pipe: Any, protocol: asyncio.BaseProtocol,
                 waiter: asyncio.Future[Any] | None = None,
                 extra: dict[str, Any] | None = None) -> None:
        super().__init__(extra)
        self._setup(loop, pipe, protocol, self._extra)
        self._paused = False
        self._reading = False
        self._readable = False
        self._budget = self._io.read_budget if self._edge else 1
        # Registered at once in both modes, so that a descriptor the poller refuses fails here.
        self._register(_READ_INTEREST | (EPOLLET if self._edge else 0))
        self._io.call_next(self._connection_made, waiter, context=self._context)

    def _connection_made(self, waiter: asyncio.Future[Any] | None) -> None:
        if not self._make_connection(waiter):
            return
        if self.is_reading():
            self._start_reading()
        elif not self._edge:
            self._set_interest(0)
        set_result_unless_cancelled(waiter, None)

    def _start_reading(self) -> None:
        self._reading = True
        if self._edge:
            if self._readable:
                self._io.defer(self)  # data queued before: no new edge will come
        else:
            self._set_interest(_READ_INTEREST)

    def _stop_reading(self) -> None:
        self._reading = False
        if not self._edge:
            self._set_interest(0)

    # ------------------------------------------------------------------ events

    def _events(self, mask: int) -> None:
        if mask & READ_EVENTS:
            self._readable = True
            if self._reading:
                self._read_ready()

    def _read_ready(self) -> None:
        read = os.read
        fd = self._fd
        budget = self._budget
        n = 0
        try:
            while True:
                try:
                    data = read(fd, MAX_READ)
                except (BlockingIOError, InterruptedError):
                    self._readable = False
                    self._io.stats.eagain += 1
                    break
                except OSError as exc:
                    self._readable = False
                    self._fatal_error(exc, "Fatal read error on pipe transport")
                    break
                n += 1
                if not data:
                    self._readable = False
                    self._eof()
                    break
                self._counts[2] += len(data)  # BYTES_IN
                try:
                    self._protocol.data_received(data)
                except (SystemExit, KeyboardInterrupt):
                    raise
                except BaseException as exc:
                    self._report(exc, "Exception in callback protocol.data_received()")
                if not self._reading:
                    break  # paused or closed by the protocol
                if n >= budget:
                    self._io.cut_off(self)
                    break
        finally:
            self._counts[0] += n  # READS

    def _read_queued(self) -> None:
        """Deliver what the pipe already holds (one read budget), if the protocol is reading:
        the subprocess transport calls it when the child's exit is seen, so that the output
        the child left behind comes before ``process_exited``."""
        if self._reading:
            self._context.run(self._read_ready)

    def _eof(self) -> None:
        if self._loop.get_debug():
            logger.info("%r was closed by peer", self)
        self._closing = True
        self._stop_reading()
        self._loop.call_soon(self._eof_received, context=self._context)
        self._schedule_connection_lost(None)

    def _eof_received(self) -> None:
        if self._protocol is None:
            return
        try:
            self._protocol.eof_received()
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            self._report(exc, "Exception in callback protocol.eof_received()")

    # ------------------------------------------------------------------ reading control

    def is_reading(self) -> bool:
        return not self._paused and not self._closing

    def pause_reading(self) -> None:
        if not self.is_reading():
            return
        self._paused = True
        if self._protocol_connected:
            self._stop_reading()

    def resume_reading(self) -> None:
        if self._closing or not self._paused:
            return
        self._paused = False
        if self._protocol_connected:
            self._start_reading()

    # ------------------------------------------------------------------ closing

    def close(self) -> None:
        if not self._closing:
            self._force_close(None)

    def _force_close(self, exc: BaseException | None) -> None:
        self._closing = True
        self._stop_reading()
        self._schedule_connection_lost(exc)

    def _fatal_error(self, exc: BaseException, message: str) -> None:
        if isinstance(exc, OSError) and exc.errno == errno.EIO:
            # A pty whose other side was closed: the normal end of a terminal session.
            if self._loop.get_debug():
                logger.debug("%r: %s", self, message, exc_info=True)
        else:
            self._report(exc, message)
        self._force_close(exc)


class WritePipeTransport(_PipeTransportBase, WriteFlowControl, asyncio.Transport):
    """The write end of a pipe (or a socket, FIFO or pty) with a write buffer and flow control.

    An ``asyncio.Transport``, as asyncio's write-pipe transport is (through its flow-control
    mixin): the reading half (``pause_reading()``...) raises NotImplementedError."""

    _DIRECTION = "write"

    def __init__(self, loop: EventLoop, pipe: Any, protocol: asyncio.BaseProtocol,
                 waiter: asyncio.Future[Any] | None = None,
                 extra: dict[str, Any] | None = None) -> None:
        super().__init__(extra)
        kind = self._setup(loop, pipe, protocol, self._extra)
        self._buffer = bytearray()
        self._writable = True
        # A closed read end shows up as EPOLLERR on a pipe or FIFO and as readability on a
        # socket.  A pty reports its own input as readable, so it is not watched that way.
        self._watch_peer = kind in (stat.S_IFIFO, stat.S_IFSOCK)
        if self._edge:
            peer = EPOLLIN | EPOLLRDHUP if self._watch_peer else 0
            self._register(EPOLLOUT | peer | EPOLLET)
        else:
            # Registered now so that a refused descriptor fails here; narrowed once connected.
            self._register(EPOLLOUT | (EPOLLIN if self._watch_peer else 0))
        self._io.call_next(self._connection_made, waiter, context=self._context)

    def _connection_made(self, waiter: asyncio.Future[Any] | None) -> None:
        if not self._make_connection(waiter):
            return
        if not self._edge:
            self._update_interest()
        set_result_unless_cancelled(waiter, None)

    def _update_interest(self) -> None:
        if self._edge:
            return
        events = 0
        if self._watch_peer and not self._conn_lost:
            events |= EPOLLIN
        if self._buffer:
            events |= EPOLLOUT
        self._set_interest(events)

    def get_write_buffer_size(self) -> int:
        return len(self._buffer)

    # ------------------------------------------------------------------ events

    def _events(self, mask: int) -> None:
        if self._watch_peer and mask & READ_EVENTS:
            self._peer_closed()
            return
        if mask & WRITE_EVENTS:
            self._writable = True
            if self._buffer:
                self._write_ready()

    def _peer_closed(self) -> None:
        if self._conn_lost:
            return
        if self._loop.get_debug():
            logger.info("%r was closed by peer", self)
        self._force_close(BrokenPipeError() if self._buffer else None)

    # ------------------------------------------------------------------ writing

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if type(data) is not bytes:
            if not isinstance(data, (bytearray, memoryview)):
                raise TypeError(
                    f"data argument must be a bytes-like object, not {type(data).__name__!r}"
                )
            data = memoryview(data).cast("B")
        if not data:
            return
        if self._conn_lost or self._closing:
            self._drop_write()
            return
        if not self._buffer:
            if self._writable or not self._edge:
                try:
                    n = os.write(self._fd, data)
                except (BlockingIOError, InterruptedError):
                    n = 0
                except (SystemExit, KeyboardInterrupt):
                    raise
                except BaseException as exc:
                    self._fatal_error(exc, "Fatal write error on pipe transport")
                    return
                self._counts[1] += 1  # WRITES
                self._counts[3] += n  # BYTES_OUT
                if n == len(data):
                    return
                self._writable = False
                if n:
                    data = memoryview(data)[n:]
            self._buffer += data
            self._update_interest()
        else:
            self._buffer += data
        self._maybe_pause_protocol()

    def _write_ready(self) -> None:
        buffer = self._buffer
        try:
            n = os.write(self._fd, buffer)
        except (BlockingIOError, InterruptedError):
            self._writable = False
            return
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            buffer.clear()
            self._fatal_error(exc, "Fatal write error on pipe transport")
            return
        self._counts[1] += 1  # WRITES
        self._counts[3] += n  # BYTES_OUT
        if n < len(buffer):
            del buffer[:n]
            self._writable = False
            self._maybe_resume_protocol()
            return
        buffer.clear()
        self._maybe_resume_protocol()  # may write again
        if buffer:
            return
        if self._closing:
            if not self._conn_lost:
                self._call_connection_lost(None)
        else:
            self._update_interest()

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        if self._closing:
            return
        self._closing = True
        if not self._buffer:
            self._schedule_connection_lost(None)
            self._update_interest()

    def close(self) -> None:
        if self._pipe is not None and not self._closing:
            self.write_eof()  # the pipe has nothing else to close

    def abort(self) -> None:
        self._force_close(None)

    def _force_close(self, exc: BaseException | None) -> None:
        self._closing = True
        self._buffer.clear()
        self._schedule_connection_lost(exc)
        self._update_interest()


# ---------------------------------------------------------------------- loop methods
#
# Bound as ``EventLoop.connect_read_pipe`` / ``connect_write_pipe``; ``self`` is the loop.

async def connect_read_pipe(self: EventLoop, protocol_factory: Any,
                            pipe: Any) -> tuple[asyncio.ReadTransport, asyncio.BaseProtocol]:
    self._check_closed()
    return await _connect(self, ReadPipeTransport, protocol_factory, pipe)


async def connect_write_pipe(self: EventLoop, protocol_factory: Any,
                             pipe: Any) -> tuple[asyncio.WriteTransport, asyncio.BaseProtocol]:
    self._check_closed()
    return await _connect(self, WritePipeTransport, protocol_factory, pipe)


async def _connect(loop: EventLoop, cls: type, protocol_factory: Any, pipe: Any) -> Any:
    protocol = protocol_factory()
    waiter = loop.create_future()
    transport = cls(loop, pipe, protocol, waiter)
    try:
        await waiter
    except BaseException:
        transport.close()
        raise
    if loop.get_debug():
        logger.debug("%s %r connected: (%r, %r)", cls.__name__, pipe.fileno(), transport, protocol)
    return transport, protocol
