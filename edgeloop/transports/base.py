"""What every descriptor-backed transport shares: the protocol it talks to, the
``connection_made`` call that starts it, and how its errors are reported.

The rest of a transport's life (reading, writing, closing) differs too much between a stream, a
datagram socket and a pipe to share without hiding it; each transport module keeps that part.
"""
from __future__ import annotations

import asyncio
import logging
import warnings
from typing import Any

logger = logging.getLogger("asyncio")


def set_result_unless_cancelled(fut: asyncio.Future | None, result: Any) -> None:
    if fut is not None and not fut.cancelled():
        fut.set_result(result)


class FdTransport:
    """Mixin for the transports that own one descriptor registered in the loop's poller."""

    _is_transport = True   # the loop refuses add_reader/add_writer on our fd
    _queued = False        # on the loop's I/O ready list
    _protocol_connected = False
    _reading = False
    _readable = False       # edge mode: data may be waiting in the kernel
    _loop: Any
    _protocol: Any

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self._protocol = protocol

    def get_protocol(self) -> asyncio.BaseProtocol:
        return self._protocol

    def _fatal_error(self, exc: BaseException, message: str) -> None:  # pragma: no cover
        raise NotImplementedError

    def _read_ready(self) -> None:  # pragma: no cover
        raise NotImplementedError

    def _on_ready(self) -> None:
        """Called from the loop's I/O ready list: continue a read drain that the budget, a pause
        or a not-yet-made connection cut short (edge mode: no new edge will come for it)."""
        self._queued = False
        if self._reading and self._readable:
            self._read_ready()

    def _make_connection(self, waiter: asyncio.Future | None) -> bool:
        """Call ``protocol.connection_made``; False (and the transport failing) if it raised."""
        self._protocol_connected = True
        try:
            self._protocol.connection_made(self)
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            self._fatal_error(exc, "Fatal error: protocol.connection_made() call failed.")
            if waiter is not None and not waiter.done():
                waiter.set_exception(exc)
            return False
        return True

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


class SocketTransport(FdTransport):
    """The closing half shared by the stream and datagram transports (one socket each).

    ``close()`` stops reading and lets the write buffer drain (and a stream's ``loop.sendfile()``
    transfer finish); ``abort()`` and fatal errors drop the buffer and fail the transfer.  Either
    way ``connection_lost`` is scheduled once, and the socket is unregistered from the poller
    *before* it is closed: epoll tracks the file description, not the number.
    Subclasses provide ``_sock``, ``_fd``, ``_edge``, ``_buffer``, ``_buffer_size``,
    ``_reading``, ``_closing``, ``_conn_lost`` and ``_update_interest()`` (level mode).
    """

    _sock: Any
    _fd: int
    _edge: bool
    _buffer: Any
    _buffer_size: int
    _reading: bool
    _closing: bool
    _conn_lost: int
    _sendfile: Any = None   # stream transports: the loop.sendfile() transfer in progress

    def _update_interest(self) -> None:  # pragma: no cover
        raise NotImplementedError

    def is_closing(self) -> bool:
        return self._closing

    def close(self) -> None:
        if self._closing:
            return
        self._closing = True
        self._reading = False
        if not self._edge:
            self._update_interest()
        if not self._buffer and self._sendfile is None:
            self._call_connection_lost_soon(None)

    def abort(self) -> None:
        self._force_close(None)

    def _fatal_error(self, exc: BaseException, message: str) -> None:
        self._report_fatal(exc, message)
        self._force_close(exc)

    def _force_close(self, exc: BaseException | None) -> None:
        if self._conn_lost:
            return
        if self._buffer:
            self._buffer.clear()
            self._buffer_size = 0
        self._closing = True
        self._reading = False
        self._call_connection_lost_soon(exc)
        if self._sendfile is not None:
            self._sendfile._abort(exc)  # the rest of the file will not go out

    def _call_connection_lost_soon(self, exc: BaseException | None) -> None:
        if self._conn_lost:
            return
        self._conn_lost += 1
        if self._loop.is_closed():
            # Nothing will run any more: close the socket now, without callbacks.
            self._protocol_connected = False
            self._call_connection_lost(exc)
            return
        self._loop._call_soon_next(self._call_connection_lost, exc)

    def _call_connection_lost(self, exc: BaseException | None) -> None:
        try:
            if self._protocol_connected:
                self._protocol.connection_lost(exc)
        finally:
            sock = self._sock
            if sock is not None:
                if not self._loop.is_closed():
                    self._loop._poller.unregister(self._fd)
                sock.close()
                self._sock = None
            self._protocol = None
            self._released()

    def _released(self) -> None:
        """Hook: the socket is closed and the protocol told."""

    def __del__(self, _warn: Any = warnings.warn) -> None:
        if getattr(self, "_sock", None) is not None:
            _warn(f"unclosed transport {self!r}", ResourceWarning, source=self)
            if not self._loop.is_closed():
                self._loop._poller.unregister(self._fd)
            self._sock.close()
