"""``loop.sendfile(transport, file, ...)``: a file to a transport, zero-copy when possible.

Zero-copy path (plain ``StreamTransport``)
------------------------------------------
``os.sendfile`` moves the file straight from the page cache into the socket.  The transfer is
state of the transport, not a takeover of its descriptor: a ``_FilePump`` is stored in the
transport's ``_sendfile`` field for the duration.  The poller keeps dispatching the descriptor's
events to the transport (so ``add_reader()``/``add_writer()`` on it stay refused), and the
transport hands write readiness to the pump whenever its write buffer is empty.  In level mode
the transport asks for ``EPOLLOUT`` while a transfer is in progress, as while its buffer holds
data.  The transfer goes through these stages:

1. *flush*: the transport sends what its buffer holds, as usual, so bytes written before
   ``sendfile()`` precede the file.  ``_write_ready`` calls the pump when the buffer runs empty
   (at once if it was empty to begin with).
2. *send*: on write readiness with an empty buffer (``_on_events``, or the end of the flush) the
   pump calls ``os.sendfile`` until the socket is full (edge mode: it clears ``_writable`` and
   waits for the next ``EPOLLOUT``), at most ``_CALLS_PER_WAKEUP`` times per wakeup; then it goes
   on from a ``call_soon`` callback, so that a fast peer cannot starve the loop.  Read events
   are still remembered by the transport (edge mode: ``_readable``), but reading is paused for
   the transfer, as on the stdlib loop (a protocol answering incoming data would hit the
   RuntimeError below); ``resume_reading`` drains what arrived afterwards.
3. *end* (the file is out, an error, or the caller cancelled): the pump clears the transport's
   field (``_end_sendfile``), which completes a ``close()`` or ``write_eof()`` made during the
   transfer: those wait for the file like they wait for buffered data, since their condition is
   "buffer empty and no transfer in progress" (the stdlib would cut the file short).  What a
   transfer cancelled in its flush stage left in the buffer goes out as usual.  An ``abort()``
   (or a fatal error) during the transfer fails it at once with ConnectionError.

From the call on, ``write()``/``writelines()`` raise RuntimeError("unable to write; sendfile is in
progress"), as on the stdlib loop.  The transport keeps why writing is refused in one field
(``_write_refused``, which also covers ``write_eof()``), so the ordinary write path tests one
attribute, as it did before sendfile existed.  The transport's protocol is wrapped for the
duration (``_Watch``, a transparent proxy) to pause reading and restore it afterwards.

Fallback (TLS transports, files without a usable descriptor)
------------------------------------------------------------
Read a chunk in the executor, ``transport.write()`` it, and wait whenever the protocol would be
told to pause writing (the ``_Watch`` proxy sees ``pause_writing``/``resume_writing`` and passes
them on), so the transport's buffer stays bounded.  Reading is paused here too.

In both cases the file position is left after the last byte sent, also on error.
"""
from __future__ import annotations

import asyncio
import errno
import io
import os
from typing import TYPE_CHECKING, Any

from .transports.stream import StreamTransport
from .transports.tls import SSLTransport

if TYPE_CHECKING:
    from .loop import EventLoop

_NATIVE_CHUNK = 4 * 1024 * 1024      # bytes asked of one os.sendfile() call
_CALLS_PER_WAKEUP = 16               # os.sendfile() calls before yielding to other callbacks
_FALLBACK_CHUNK = 256 * 1024         # bytes read (in the executor) per write in the fallback
# os.sendfile() errors that mean "not with this file", when nothing has been sent yet.
NOT_AVAILABLE_ERRNOS = {errno.EINVAL, errno.ENOSYS, errno.ESPIPE, errno.EOPNOTSUPP, errno.ENOTSUP,
                  errno.EBADF, errno.EOVERFLOW}


def check_params(file: Any, offset: Any, count: Any) -> None:
    """The argument checks shared by ``sendfile`` and ``sock_sendfile`` (same errors as asyncio)."""
    if "b" not in getattr(file, "mode", "b"):
        raise ValueError("file should be opened in binary mode")
    if count is not None:
        if not isinstance(count, int):
            raise TypeError(f"count must be a positive integer (got {count!r})")
        if count <= 0:
            raise ValueError(f"count must be a positive integer (got {count!r})")
    if not isinstance(offset, int):
        raise TypeError(f"offset must be a non-negative integer (got {offset!r})")
    if offset < 0:
        raise ValueError(f"offset must be a non-negative integer (got {offset!r})")


def file_descriptor(file: Any) -> int:
    """The descriptor of a file ``os.sendfile`` can read, else SendfileNotAvailableError."""
    try:
        fileno = file.fileno()
        os.fstat(fileno)
    except (AttributeError, io.UnsupportedOperation, OSError, ValueError) as exc:
        raise asyncio.SendfileNotAvailableError("not a regular file") from exc
    if not hasattr(os, "sendfile"):
        raise asyncio.SendfileNotAvailableError("os.sendfile() is not available")
    return fileno


def set_file_position(file: Any, position: int) -> None:
    if hasattr(file, "seek"):
        file.seek(position)
    else:
        os.lseek(file.fileno(), position, os.SEEK_SET)


async def sendfile(self: EventLoop, transport: asyncio.WriteTransport, file: Any, offset: int = 0,
                   count: int | None = None, *, fallback: bool = True) -> int:
    """``loop.sendfile``: send ``file`` (from ``offset``, ``count`` bytes or to EOF) over
    ``transport``; return the number of bytes sent."""
    if transport.is_closing():
        raise RuntimeError("Transport is closing")
    native = isinstance(transport, StreamTransport)
    if not native and not _fallback_capable(transport):
        raise RuntimeError(f"sendfile is not supported for transport {transport!r}")
    check_params(file, offset, count)
    if isinstance(transport.get_protocol(), _Watch):
        raise RuntimeError("sendfile is already in progress on this transport")
    if native:
        try:
            return await _sendfile_native(self, transport, file, offset, count)  # type: ignore[arg-type]
        except asyncio.SendfileNotAvailableError:
            if not fallback:
                raise
    elif not fallback:
        # A RuntimeError, as asyncio raises here, and the more precise type of the native path.
        raise asyncio.SendfileNotAvailableError(
            f"fallback is disabled and native sendfile is not supported for transport {transport!r}")
    return await _sendfile_fallback(self, transport, file, offset, count)


def _fallback_capable(transport: Any) -> bool:
    return isinstance(transport, SSLTransport) or (
        getattr(transport, "_sendfile_compatible", None) is not None
        and hasattr(transport, "set_protocol"))


# ---------------------------------------------------------------------- protocol proxy

class _Watch(asyncio.Protocol):
    """Stands in for the transport's protocol during a transfer: passes every callback on, and
    remembers what the fallback needs to know (write pause, connection lost).  It also pauses
    reading for the transfer and resumes it afterwards if it was on."""

    def __init__(self, loop: EventLoop, transport: Any) -> None:
        self._loop = loop
        self._transport = transport
        self._protocol = transport.get_protocol()
        self._lost = False
        self._resumed: asyncio.Future[None] | None = None
        self.paused = bool(getattr(transport, "_protocol_paused", False))
        self._was_reading = transport.is_reading()
        transport.pause_reading()
        transport.set_protocol(self)

    def restore(self) -> None:
        transport = self._transport
        if transport.get_protocol() is self:
            transport.set_protocol(self._protocol)
            if self._was_reading and not self._lost:
                self._was_reading = False
                transport.resume_reading()
        if self._resumed is not None and not self._resumed.done():
            self._resumed.cancel()

    async def drain(self) -> None:
        """Wait until the transport accepts more data (its protocol would be writing)."""
        if self._lost or self._transport.is_closing():
            raise ConnectionError("Connection closed by peer")
        if self.paused:
            self._resumed = self._loop.create_future()
            await self._resumed
            self._resumed = None

    # protocol callbacks, passed on ---------------------------------------------------------
    def connection_made(self, transport: Any) -> None:
        raise RuntimeError("Invalid state: connection should have been established already.")

    def connection_lost(self, exc: BaseException | None) -> None:
        self._lost = True
        error = ConnectionError("Connection lost during sendfile")
        error.__cause__ = exc
        if self._resumed is not None and not self._resumed.done():
            self._resumed.set_exception(error)
        self._protocol.connection_lost(exc)

    def pause_writing(self) -> None:
        self.paused = True
        self._protocol.pause_writing()

    def resume_writing(self) -> None:
        self.paused = False
        if self._resumed is not None and not self._resumed.done():
            self._resumed.set_result(None)
        self._protocol.resume_writing()

    def data_received(self, data: bytes) -> None:
        self._protocol.data_received(data)

    def eof_received(self) -> bool | None:
        return self._protocol.eof_received()


class _BufferedWatch(_Watch, asyncio.BufferedProtocol):
    def get_buffer(self, sizehint: int) -> Any:
        return self._protocol.get_buffer(sizehint)

    def buffer_updated(self, nbytes: int) -> None:
        self._protocol.buffer_updated(nbytes)


def _watch(loop: EventLoop, transport: Any) -> _Watch:
    if isinstance(transport.get_protocol(), asyncio.BufferedProtocol):
        return _BufferedWatch(loop, transport)
    return _Watch(loop, transport)


# ---------------------------------------------------------------------- zero-copy

async def _sendfile_native(loop: EventLoop, transport: StreamTransport, file: Any, offset: int,
                           count: int | None) -> int:
    fileno = file_descriptor(file)
    if count is None and not os.fstat(fileno).st_size:
        return 0
    pump = _FilePump(loop, transport, fileno, offset, count)
    try:
        await pump.run()
    finally:
        if pump.sent:
            set_file_position(file, offset + pump.sent)
    return pump.sent


class _FilePump:
    """One ``os.sendfile`` transfer, driven by the transport it is the ``_sendfile`` of."""

    def __init__(self, loop: EventLoop, transport: StreamTransport, fileno: int, offset: int,
                 count: int | None) -> None:
        self._loop = loop
        self._transport = transport
        self._fd = transport._fd
        self._fileno = fileno
        self._position = offset
        self._start = offset
        self._end = None if count is None else offset + count
        self._done: asyncio.Future[None] = loop.create_future()
        self._watch: _Watch | None = None

    def __repr__(self) -> str:
        return f"<sendfile pump fd={self._fd} sent={self.sent} for {self._transport!r}>"

    @property
    def sent(self) -> int:
        return self._position - self._start

    async def run(self) -> None:
        transport = self._transport
        self._watch = _watch(self._loop, transport)
        try:
            transport._start_sendfile(self)  # may send (or fail) at once
            await self._done
        finally:
            self._restore()

    # called by the transport ---------------------------------------------------------------
    def _send(self) -> None:
        """Write readiness with an empty buffer: send more of the file."""
        transport = self._transport
        if transport._sendfile is not self:
            return  # over already (a _continue that was scheduled before the end)
        for _ in range(_CALLS_PER_WAKEUP):
            want = _NATIVE_CHUNK if self._end is None else min(_NATIVE_CHUNK, self._end - self._position)
            if want <= 0:
                self._finish()
                return
            try:
                n = os.sendfile(self._fd, self._fileno, self._position, want)
            except (BlockingIOError, InterruptedError):
                transport._writable = False  # edge mode: EPOLLOUT will call us again
                return
            except OSError as exc:
                self._fail(self._classify(exc))
                return
            if n == 0:
                self._finish()  # end of file
                return
            # A short count may mean a full socket or the end of the file: the next call tells
            # (EAGAIN or 0).  Only EAGAIN promises another EPOLLOUT edge.
            self._position += n
            counts = transport._counts
            counts[1] += 1  # WRITES
            counts[3] += n  # BYTES_OUT
        self._loop.call_soon(self._continue)  # budget spent: let others run

    def _abort(self, exc: BaseException | None) -> None:
        """The transport was aborted (``exc`` None) or failed: the file will not go out."""
        if exc is None:
            error = ConnectionError("Connection aborted during sendfile")
        else:
            error = ConnectionError("Connection lost during sendfile")
            error.__cause__ = exc
        self._fail(error)

    # sending -------------------------------------------------------------------------------
    def _continue(self) -> None:
        transport = self._transport
        if transport._writable or not transport._edge:
            self._send()

    def _classify(self, exc: OSError) -> BaseException:
        if self._position == self._start and exc.errno in NOT_AVAILABLE_ERRNOS:
            error: BaseException = asyncio.SendfileNotAvailableError(f"os.sendfile call failed: {exc}")
            error.__cause__ = exc
            return error
        if exc.errno == errno.ENOTCONN and type(exc) is not ConnectionError:
            error = ConnectionError(errno.ENOTCONN, "socket is not connected")
            error.__cause__ = exc
            return error
        return exc

    # completion ----------------------------------------------------------------------------
    def _finish(self) -> None:
        if not self._done.done():
            self._done.set_result(None)
        self._restore()

    def _fail(self, exc: BaseException) -> None:
        if not self._done.done():
            self._done.set_exception(exc)
        self._restore()

    def _restore(self) -> None:
        """Give the transport back its protocol and its writes (idempotent)."""
        if self._watch is not None:
            self._watch.restore()
            self._watch = None
        if self._transport._sendfile is self:
            # Completes a close() or a write_eof() that waited for the file; in level mode it
            # also drops the EPOLLOUT interest.
            self._transport._end_sendfile()


# ---------------------------------------------------------------------- fallback

async def _sendfile_fallback(loop: EventLoop, transport: Any, file: Any, offset: int,
                             count: int | None) -> int:
    watch = _watch(loop, transport)
    total = 0
    try:
        if offset:
            file.seek(offset)
        while count is None or total < count:
            want = _FALLBACK_CHUNK if count is None else min(_FALLBACK_CHUNK, count - total)
            data = await loop.run_in_executor(None, file.read, want)
            if not data:
                break
            await watch.drain()
            transport.write(data)
            total += len(data)
        return total
    finally:
        if total:
            set_file_position(file, offset + total)
        watch.restore()
