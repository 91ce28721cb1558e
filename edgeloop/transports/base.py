"""The life of a descriptor-backed transport, shared by every kind (stream, datagram, pipes).

A transport is a handler in the sense of ``edgeloop.descriptors``: the loop hands it the events
of its one descriptor, and it reaches the loop only through ``loop.io`` (``self._io``).  What is
written once here for every kind:

* **Protocol plumbing**: ``set_protocol``/``get_protocol``, the ``connection_made`` call that
  starts a transport (scheduled with ``io.call_next`` by each constructor), error reporting.
* **The protocol's context**: every protocol callback runs in one ``contextvars.Context`` of the
  connection's own, as in asyncio: a copy of the context current when the transport was created
  (the server hands each accepted connection a copy of the context of the ``create_server``
  call).  The loop calls ``_on_events``, which for a transport is ``partial(context.run,
  self._events)``: one ``Context.run`` per event, entered from C, with no Python frame of ours
  in between.  ``connection_made``/``connection_lost`` and deferred drains run in the same
  context.  ``pause_writing`` is the exception: ``write()`` calls it, so it runs in the
  writer's context (asyncio does the same).
* **The deferred list**: ``_on_deferred`` continues a read drain that the budget, a pause or a
  not-yet-made connection cut short (edge mode: no new edge will come for data already queued).
  Drains call ``io.cut_off(self)`` when their budget runs out.
* **One close path**, with one set of names for every kind:
  ``_schedule_connection_lost(exc)`` (once: ``_conn_lost`` becomes non-zero) ->
  ``_call_connection_lost(exc)`` (the protocol hears ``connection_lost`` once, if it heard
  ``connection_made``) -> ``_release()`` (unregister the descriptor, *then* close it: epoll
  tracks the file description, not the number; then the ``_on_released`` hook).
  ``_force_close(exc)`` is the abort of each kind; it is also what the loop's exception barrier
  calls (``_on_handler_error``) when an exception escapes one of our handlers.
* Writes after the end are dropped, counted in ``_dropped_writes`` and logged from the fifth on,
  as asyncio does.

The reading and writing themselves differ too much between a stream, a datagram socket and a
pipe to share without hiding them; each transport module keeps that part.
"""
from __future__ import annotations

import asyncio
import contextvars
import functools
import logging
import time
import warnings
from typing import TYPE_CHECKING, Any, Callable

if TYPE_CHECKING:
    from ..descriptors import IOServices
    from ..loop import EventLoop

logger = logging.getLogger("asyncio")

# Indexes of FdTransport._counts.
READS, WRITES, BYTES_IN, BYTES_OUT = range(4)
_DROPPED_WRITES_WARN = 5  # writes after the connection is lost before we start logging them


def set_result_unless_cancelled(fut: asyncio.Future[Any] | None, result: Any) -> None:
    if fut is not None and not fut.cancelled():
        fut.set_result(result)


class FdTransport:
    """Mixin for the transports that own one descriptor registered in the loop's poller."""

    _is_transport = True    # the loop refuses add_reader/add_writer on our fd
    _deferred = False       # on the loop's deferred list
    _protocol_connected = False
    _reading = False
    _readable = False       # edge mode: data may be waiting in the kernel
    _closing = False
    _conn_lost = 0          # non-zero once connection_lost is scheduled (or called)
    _dropped_writes = 0
    # Per-transport counters for loop.describe(), in one list so that they cost one instance
    # attribute (see StreamTransport.__init__ on why that matters): reads, writes (calls),
    # bytes in, bytes out.  The loop's stats() adds up the calls of the live transports and
    # those folded in by _release().
    _counts: list[int]
    _created = 0.0
    _kind = "fd"            # what loop.describe() calls it: tcp, unix, udp, pipe-read...
    _DROPPED_WRITE_WARNING = "socket.send() raised exception."
    _loop: EventLoop
    _io: IOServices
    _protocol: Any
    _fd: int
    _context: contextvars.Context
    _on_events: Callable[[int], None]
    _extra: dict[str, Any]  # set by asyncio.BaseTransport.__init__(extra)

    def _attach_loop(self, loop: EventLoop, context: contextvars.Context | None = None) -> None:
        """Take what the transport needs from the loop (its services and counters), and the
        context its protocol callbacks run in (by default a copy of the current one)."""
        self._loop = loop
        self._io = loop.io
        self._edge = loop.io.edge
        self._created = time.monotonic()
        self._counts = [0, 0, 0, 0]  # READS, WRITES, BYTES_IN, BYTES_OUT
        if context is None:
            context = contextvars.copy_context()
        self._context = context
        self._on_events = functools.partial(context.run, self._events)  # type: ignore[call-arg]

    def _evict(self) -> bool:
        """The descriptor contract: a transport keeps its fd until ``connection_lost``."""
        return False

    def _events(self, mask: int) -> None:  # pragma: no cover
        """The kind's event handler (see ``_on_events``)."""
        raise NotImplementedError

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self._protocol = protocol

    def get_protocol(self) -> asyncio.BaseProtocol:
        return self._protocol

    def is_closing(self) -> bool:
        return self._closing

    # Hooks of each kind.
    def _read_ready(self) -> None:  # pragma: no cover
        raise NotImplementedError

    def _force_close(self, exc: BaseException | None) -> None:  # pragma: no cover
        raise NotImplementedError

    def _take_file(self) -> Any:  # pragma: no cover
        """Detach and return the object that owns the descriptor (socket or pipe), or None."""
        raise NotImplementedError

    def _on_released(self) -> None:
        """Hook: the descriptor is closed and the protocol told."""

    # ------------------------------------------------------------------ the loop's side

    def _on_deferred(self) -> None:
        """Called from the loop's deferred list: continue a read drain that was cut short."""
        self._deferred = False
        if self._reading and self._readable:
            self._context.run(self._read_ready)

    def _on_handler_error(self, exc: BaseException) -> None:
        """The loop caught ``exc`` escaping our event handler (and reported it): abort."""
        self._force_close(exc)

    # ------------------------------------------------------------------ starting

    def _make_connection(self, waiter: asyncio.Future[Any] | None) -> bool:
        """Call ``protocol.connection_made``; False if it raised.

        As in asyncio, a protocol that fails to start is the protocol's bug, not the caller's:
        the exception goes to the loop's exception handler and ``create_connection()`` (or the
        server) carries on.  asyncio then leaves the transport open; edgeloop closes it, with
        ``connection_lost(exc)`` called once, rather than feed data to a protocol that never
        started."""
        self._protocol_connected = True
        try:
            self._protocol.connection_made(self)
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            self._report(exc, "Exception in protocol.connection_made()")
            self._force_close(exc)
            set_result_unless_cancelled(waiter, None)
            return False
        return True

    # ------------------------------------------------------------------ errors

    def _fatal_error(self, exc: BaseException, message: str) -> None:
        self._report_fatal(exc, message)
        self._force_close(exc)

    def _report(self, exc: BaseException, message: str) -> None:
        """An error the user should see: through the loop's exception handler."""
        self._loop.call_exception_handler({
            "message": message, "exception": exc, "transport": self, "protocol": self._protocol,
        })

    def _report_fatal(self, exc: BaseException, message: str) -> None:
        """How a fatal error is told: OSErrors (the peer went away) are the connection's normal
        end and only logged in debug mode; anything else is a bug worth the exception handler."""
        if isinstance(exc, OSError):
            if self._loop.get_debug():
                logger.debug("%r: %s", self, message, exc_info=True)
        else:
            self._report(exc, message)

    def _drop_write(self) -> None:
        """A write after the end: dropped, and logged from the fifth on."""
        self._dropped_writes += 1
        if self._dropped_writes >= _DROPPED_WRITES_WARN:
            logger.warning(self._DROPPED_WRITE_WARNING)

    # ------------------------------------------------------------------ the close path

    def _schedule_connection_lost(self, exc: BaseException | None) -> None:
        if self._conn_lost:
            return
        self._conn_lost = 1
        if self._loop.is_closed():
            # Nothing will run any more: release the descriptor now, without callbacks.
            self._protocol_connected = False
            self._call_connection_lost(exc)
            return
        self._io.call_next(self._call_connection_lost, exc, context=self._context)

    def _call_connection_lost(self, exc: BaseException | None) -> None:
        self._conn_lost = self._conn_lost or 1
        try:
            if self._protocol_connected:
                self._protocol_connected = False
                self._protocol.connection_lost(exc)
        finally:
            self._release()

    def _release(self) -> None:
        file = self._take_file()
        if file is not None:
            if not self._loop.is_closed():
                self._io.unregister(self._fd)
            file.close()
            self._fold_counters()
        self._protocol = None
        self._on_released()

    def _fold_counters(self) -> None:
        """Hand our read/write counts to the loop's totals (we leave the registry)."""
        stats = self._io.stats
        counts = self._counts
        stats.reads += counts[READS]
        stats.writes += counts[WRITES]
        counts[READS] = counts[WRITES] = 0

    # ------------------------------------------------------------------ loop.describe()

    def _state(self) -> list[str]:
        state = []
        if self._closing:
            state.append("closing")
        elif self._reading:
            state.append("reading")
        elif getattr(self, "_paused", False):
            state.append("paused")
        if getattr(self, "_protocol_paused", False):
            state.append("writing-paused")
        return state

    def _describe(self) -> dict[str, Any]:
        extra = getattr(self, "_extra", {})
        size = getattr(self, "get_write_buffer_size", None)
        return {
            "kind": self._kind,
            "local": extra.get("sockname"),
            "peer": extra.get("peername"),
            "state": self._state(),
            "write_buffer": size() if size is not None else 0,
            "readable": self._readable,
            "writable": getattr(self, "_writable", None),
            "deferred": self._deferred,
            "reads": self._counts[READS], "writes": self._counts[WRITES],
            "bytes_in": self._counts[BYTES_IN], "bytes_out": self._counts[BYTES_OUT],
            "created": self._created,
            "protocol": type(self._protocol).__qualname__ if self._protocol is not None else None,
        }

    def __del__(self, _warn: Any = warnings.warn) -> None:
        try:
            file = self._take_file()
        except AttributeError:
            return  # construction failed before the descriptor was ours
        if file is not None:
            _warn(f"unclosed transport {self!r}", ResourceWarning, source=self)
            if not self._loop.is_closed():
                self._io.unregister(self._fd)
            file.close()
            self._fold_counters()


class SocketTransport(FdTransport):
    """The closing half shared by the stream and datagram transports (one socket each).

    ``close()`` stops reading and lets the write buffer drain (and a stream's ``loop.sendfile()``
    transfer finish); ``abort()`` and fatal errors drop the buffer and fail the transfer.
    Subclasses provide ``_sock``, ``_buffer``, ``_buffer_size`` and ``_update_interest()``
    (level mode).
    """

    _sock: Any
    _edge: bool
    _buffer: Any
    _buffer_size: int
    _sendfile: Any = None   # stream transports: the loop.sendfile() transfer in progress

    def _update_interest(self) -> None:  # pragma: no cover
        raise NotImplementedError

    def _take_file(self) -> Any:
        sock, self._sock = self._sock, None
        return sock

    def close(self) -> None:
        if self._closing:
            return
        self._closing = True
        self._reading = False
        if not self._edge:
            self._update_interest()
        if not self._buffer and self._sendfile is None:
            self._schedule_connection_lost(None)

    def abort(self) -> None:
        self._force_close(None)

    def _force_close(self, exc: BaseException | None) -> None:
        if self._conn_lost:
            return
        if self._buffer:
            self._buffer.clear()
            self._buffer_size = 0
        self._closing = True
        self._reading = False
        self._schedule_connection_lost(exc)
        if self._sendfile is not None:
            self._sendfile._abort(exc)  # the rest of the file will not go out
