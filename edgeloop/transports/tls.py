"""TLS on top of a stream transport, written on ``ssl.MemoryBIO`` and ``ssl.SSLObject``.

Two objects make one TLS connection::

    socket <-> StreamTransport <-> TLSProtocol  ==  SSLTransport <-> application protocol
               (ciphertext)        (SSLObject +      (plaintext, what the application
                                    two MemoryBIOs)   holds and calls)

``TLSProtocol`` is the *protocol* of the raw transport (a BufferedProtocol: the raw transport reads
straight into its buffer) and owns the TLS state.  ``SSLTransport`` is the thin, app-facing
``asyncio.Transport``; every call is forwarded to the ``TLSProtocol``.  The raw transport may be any
transport with the usual API, so TLS over TLS (``start_tls`` on a TLS transport) works too.

State machine
-------------
::

    INIT --connection_made--> HANDSHAKE --done--> OPEN --close() / peer close_notify--> CLOSING
                                  |                 |                                    |
                                  +---fail/timeout--+------abort / fatal / raw EOF-------+--> CLOSED

* ``HANDSHAKE``: every chunk of ciphertext goes into the incoming BIO and ``do_handshake()`` runs
  again; whatever it produced in the outgoing BIO is written to the raw transport.  A timer
  (``ssl_handshake_timeout``, default 60 s) aborts it with ``ConnectionAbortedError``.  Failure
  (e.g. ``ssl.SSLCertVerificationError``) is delivered to the waiter of ``create_connection`` /
  ``start_tls``; the alert the SSLObject produced is still sent, then the raw transport is closed.
  The application protocol hears nothing: it never got ``connection_made``.
* ``OPEN``: application writes are encrypted at once into the outgoing BIO and flushed to the raw
  transport; incoming records are decrypted and delivered (``data_received`` with up to 256 KiB
  joined, or ``get_buffer``/``buffer_updated`` filled in place for a BufferedProtocol).
* ``CLOSING``: entered by ``close()`` or by the peer's ``close_notify``.  We send our
  ``close_notify`` (``unwrap()``), discard application data still arriving, and wait for the peer's
  ``close_notify`` or EOF; then the raw transport is closed.  A timer (``ssl_shutdown_timeout``,
  default 30 s) bounds the whole close: it force-closes the raw transport with ``TimeoutError``.
* ``CLOSED``: the raw transport is closed or closing; its ``connection_lost`` gives the application
  ``connection_lost`` exactly once (if it had ``connection_made``).

Decisions
---------
* Half-close does not exist in TLS: ``can_write_eof()`` is False and ``write_eof()`` raises
  NotImplementedError, as in the stdlib.  The peer's ``close_notify`` (or a raw EOF without one)
  gives ``eof_received()``; its return value cannot keep the connection open (a warning says so),
  and the connection then shuts down.
* Write flow control: the application's buffer is the plaintext we could not encrypt yet (only
  during a renegotiation) plus the ciphertext held in the outgoing BIO while the raw transport has
  paused us.  Above the high-water mark (default 512 KiB) the application gets ``pause_writing()``.
* Read flow control: the application's ``pause_reading()`` stops decryption at once *and* pauses
  the raw transport, so nothing piles up in between (the stdlib instead keeps reading into the BIO
  up to a read high-water mark).  Records already in the BIO wait there; ``resume_reading()``
  delivers them from a ``call_soon`` and resumes the raw transport.  During a shutdown the raw
  transport reads regardless, because we must see the peer's ``close_notify``.
* Every callback into the application may re-enter (write, close, abort, pause_reading): loops
  re-check the state after each call.
"""
from __future__ import annotations

import asyncio
import collections
import enum
import logging
import ssl
import warnings
from typing import TYPE_CHECKING, Any, Iterable

if TYPE_CHECKING:
    from ..loop import EventLoop

logger = logging.getLogger("asyncio")

HANDSHAKE_TIMEOUT = 60.0
SHUTDOWN_TIMEOUT = 30.0
WRITE_HIGH_WATER = 512 * 1024
READ_CHUNK = 256 * 1024
_CONN_LOST_WARN = 5

_WANT = (ssl.SSLWantReadError, ssl.SSLWantWriteError)


class _State(enum.Enum):
    INIT = "INIT"
    HANDSHAKE = "HANDSHAKE"
    OPEN = "OPEN"
    CLOSING = "CLOSING"
    CLOSED = "CLOSED"


class _App(enum.Enum):
    NEW = "NEW"            # connection_made not called yet
    CONNECTED = "CONNECTED"
    EOF = "EOF"            # eof_received called
    LOST = "LOST"          # connection_lost called


# ---------------------------------------------------------------------- argument helpers

def check_timeouts(handshake: float | None, shutdown: float | None) -> tuple[float, float]:
    """Defaults and validation of ``ssl_handshake_timeout`` and ``ssl_shutdown_timeout``."""
    if handshake is None:
        handshake = HANDSHAKE_TIMEOUT
    elif handshake <= 0:
        raise ValueError(f"ssl_handshake_timeout should be a positive number, got {handshake}")
    if shutdown is None:
        shutdown = SHUTDOWN_TIMEOUT
    elif shutdown <= 0:
        raise ValueError(f"ssl_shutdown_timeout should be a positive number, got {shutdown}")
    return handshake, shutdown


def make_context(ssl_arg: Any, server_side: bool, server_hostname: str | None) -> ssl.SSLContext:
    """The SSLContext for ``ssl=``: the context itself, or a default client one for ``ssl=True``."""
    if isinstance(ssl_arg, ssl.SSLContext):
        return ssl_arg
    if server_side:
        raise ValueError("Server side SSL needs a valid SSLContext")
    context = ssl.create_default_context()
    if not server_hostname:
        context.check_hostname = False
    return context


def _flow_limits(high: int | None, low: int | None) -> tuple[int, int]:
    if high is None:
        high = WRITE_HIGH_WATER if low is None else 4 * low
    if low is None:
        low = high // 4
    if not high >= low >= 0:
        raise ValueError(f"high ({high!r}) must be >= low ({low!r}) must be >= 0")
    return high, low


# ---------------------------------------------------------------------- the app-facing transport

class SSLTransport(asyncio.Transport):
    """The plaintext transport the application sees; a facade over ``TLSProtocol``.

    Named like the stdlib's ``_SSLProtocolTransport``: code (CPython's own tests among it) looks
    for "ssl" in the class name of a TLS transport."""

    _start_tls_compatible = True

    def __init__(self, tls: "TLSProtocol") -> None:
        super().__init__()
        self._tls = tls

    def __repr__(self) -> str:
        return f"<SSLTransport {self._tls._state.value} on {self._tls._transport!r}>"

    # information ---------------------------------------------------------------------------
    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self._tls._get_extra_info(name, default)

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self._tls._set_app_protocol(protocol)

    def get_protocol(self) -> asyncio.BaseProtocol:
        return self._tls._app_protocol

    def is_closing(self) -> bool:
        return self._tls._app_closing

    # reading -------------------------------------------------------------------------------
    def is_reading(self) -> bool:
        return self._tls._app_is_reading()

    def pause_reading(self) -> None:
        self._tls._app_pause_reading()

    def resume_reading(self) -> None:
        self._tls._app_resume_reading()

    # writing -------------------------------------------------------------------------------
    def write(self, data: bytes | bytearray | memoryview) -> None:
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError(
                f"data argument must be a bytes-like object, not {type(data).__name__!r}"
            )
        self._tls._app_write(data)

    def writelines(self, list_of_data: Iterable[bytes | bytearray | memoryview]) -> None:
        chunks = list(list_of_data)
        for data in chunks:
            if not isinstance(data, (bytes, bytearray, memoryview)):
                raise TypeError(
                    f"data argument must be a bytes-like object, not {type(data).__name__!r}"
                )
        for data in chunks:
            self._tls._app_write(data, flush=False)
        self._tls._flush()

    def can_write_eof(self) -> bool:
        return False

    def write_eof(self) -> None:
        raise NotImplementedError("TLS transports do not support write_eof()")

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        self._tls._set_write_limits(high, low)

    def get_write_buffer_limits(self) -> tuple[int, int]:
        return (self._tls._low, self._tls._high)

    def get_write_buffer_size(self) -> int:
        return self._tls._write_buffer_size()

    @property
    def _protocol_paused(self) -> bool:
        """Whether the application protocol is paused for writing (read by loop.sendfile)."""
        return self._tls._app_write_paused

    # closing -------------------------------------------------------------------------------
    def close(self) -> None:
        self._tls._app_close()

    def abort(self) -> None:
        self._tls._app_abort(None)

    def _force_close(self, exc: BaseException | None) -> None:
        self._tls._app_abort(exc)

    # Names CPython's own asyncio test-suite reaches into (test_ssl.py); kept so that suite can run
    # against edgeloop unchanged.
    @property
    def _ssl_protocol(self) -> "TLSProtocol":
        return self._tls

    def _test__append_write_backlog(self, data: bytes) -> None:
        self._tls._queue(data)

    def __del__(self, _warn: Any = warnings.warn) -> None:
        tls = getattr(self, "_tls", None)
        if tls is not None and not tls._app_closing and tls._state is not _State.CLOSED:
            _warn(f"unclosed transport {self!r}", ResourceWarning, source=self)


# ---------------------------------------------------------------------- the TLS engine

class TLSProtocol(asyncio.BufferedProtocol):
    """The protocol of the raw (ciphertext) transport; see the module docstring."""

    def __init__(
        self,
        loop: EventLoop,
        app_protocol: asyncio.BaseProtocol,
        context: ssl.SSLContext,
        waiter: asyncio.Future[None] | None,
        *,
        server_side: bool = False,
        server_hostname: str | None = None,
        ssl_handshake_timeout: float | None = None,
        ssl_shutdown_timeout: float | None = None,
        app_connected: bool = False,
    ) -> None:
        self._handshake_timeout, self._shutdown_timeout = check_timeouts(
            ssl_handshake_timeout, ssl_shutdown_timeout)
        self._loop = loop
        self._context = context
        self._waiter = waiter
        self._server_side = server_side
        self._incoming = ssl.MemoryBIO()
        self._outgoing = ssl.MemoryBIO()
        hostname = None if server_side else (server_hostname or None)
        self._sslobj = context.wrap_bio(self._incoming, self._outgoing,
                                        server_side=server_side, server_hostname=hostname)
        self._extra: dict[str, Any] = {"sslcontext": context}
        self._state = _State.INIT
        self._app_state = _App.CONNECTED if app_connected else _App.NEW
        self._transport: Any = None
        self._app_protocol: Any = None
        self._app_buffered = False
        self._set_app_protocol(app_protocol)
        self._app_transport = SSLTransport(self)
        self._app_closing = False       # close()/abort() called by the application
        self._app_read_paused = False   # pause_reading() by the application
        self._app_write_paused = False  # we called the application's pause_writing()
        self._raw_write_paused = False  # the raw transport called our pause_writing()
        self._raw_eof = False           # the raw transport saw EOF
        self._raw_lost = False          # the raw transport called connection_lost
        self._lost_writes = 0
        self._backlog: collections.deque[bytes] = collections.deque()
        self._backlog_size = 0
        self._high, self._low = _flow_limits(None, None)
        self._buffer = bytearray(READ_CHUNK)
        self._view = memoryview(self._buffer)
        self._timer: asyncio.TimerHandle | None = None

    def __repr__(self) -> str:
        return f"<TLSProtocol {self._state.value} server_side={self._server_side}>"

    @property
    def _sslcontext(self) -> ssl.SSLContext:
        """asyncio's SSLProtocol name for the context (tests reach it through the transport's
        ``_ssl_protocol``); read-only."""
        return self._context

    @property
    def app_transport(self) -> SSLTransport:
        return self._app_transport

    def _set_app_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self._app_protocol = protocol
        self._app_buffered = isinstance(protocol, asyncio.BufferedProtocol)

    def _get_extra_info(self, name: str, default: Any = None) -> Any:
        if name in self._extra:
            return self._extra[name]
        if self._transport is not None:
            return self._transport.get_extra_info(name, default)
        return default

    # ------------------------------------------------------------------ raw transport events

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport
        if self._state is not _State.INIT:
            transport.close()  # closed before the raw transport came up
            return
        self._state = _State.HANDSHAKE
        self._set_timer(self._handshake_timeout, self._on_handshake_timeout)
        self._handshake_step()

    def get_buffer(self, sizehint: int) -> memoryview:
        return self._view

    def buffer_updated(self, nbytes: int) -> None:
        self._incoming.write(self._view[:nbytes])
        state = self._state
        if state is _State.OPEN:
            self._read_app_data()
        elif state is _State.HANDSHAKE:
            self._handshake_step()
        elif state is _State.CLOSING:
            self._shutdown_step()

    def eof_received(self) -> bool:
        self._raw_eof = True
        if self._loop.get_debug():
            logger.debug("%r received EOF", self)
        state = self._state
        if state is _State.HANDSHAKE:
            self._handshake_failed(ConnectionResetError("Connection lost during the TLS handshake"))
        elif state is _State.OPEN:
            if not self._app_read_paused:
                self._read_app_data()  # also handles the EOF once the data is delivered
        elif state is _State.CLOSING:
            self._app_eof()
            self._close_raw()
        return True  # we close the raw transport ourselves, after flushing

    def connection_lost(self, exc: BaseException | None) -> None:
        handshaking = self._waiter is not None
        self._raw_lost = True
        self._state = _State.CLOSED
        self._app_closing = True
        self._cancel_timer()
        self._backlog.clear()
        self._backlog_size = 0
        self._outgoing.read()
        if handshaking:
            if exc is None and self._app_state is _App.NEW:
                exc = ConnectionResetError("Connection lost during the TLS handshake")
            # start_tls (the application is connected already): a closed raw transport resolves
            # the waiter with None, and start_tls returns None, as asyncio's SSLProtocol does.
            self._wake_waiter(exc)
        # The application hears connection_lost iff it heard connection_made: with start_tls it
        # had it from the plain transport, so it hears the end even of a failed handshake.
        protocol = self._app_protocol
        # Break the cycles (application protocol <-> its transport <-> us): an application that
        # keeps its transport must not keep the SSLContext and buffers alive through a cycle.
        self._app_protocol = None
        self._app_transport = None  # type: ignore[assignment]
        if self._app_state in (_App.CONNECTED, _App.EOF):
            self._app_state = _App.LOST
            protocol.connection_lost(exc)

    def pause_writing(self) -> None:
        self._raw_write_paused = True

    def resume_writing(self) -> None:
        self._raw_write_paused = False
        self._flush()

    # ------------------------------------------------------------------ handshake

    def _handshake_step(self) -> None:
        try:
            self._sslobj.do_handshake()
        except _WANT:
            self._flush()
            return
        except Exception as exc:
            self._handshake_failed(exc)
            return
        self._handshake_done()

    def _handshake_done(self) -> None:
        self._cancel_timer()
        sslobj = self._sslobj
        try:
            peercert = sslobj.getpeercert()
        except Exception as exc:
            self._handshake_failed(exc)
            return
        self._state = _State.OPEN
        self._extra.update(peercert=peercert, cipher=sslobj.cipher(),
                           compression=sslobj.compression(), ssl_object=sslobj)
        self._flush()  # the last flight of the handshake (and TLS 1.3 session tickets)
        if self._app_state is _App.NEW:
            self._app_state = _App.CONNECTED
            try:
                self._app_protocol.connection_made(self._app_transport)
            except (SystemExit, KeyboardInterrupt):
                raise
            except BaseException as exc:
                self._fatal_error(exc, "Fatal error: protocol.connection_made() call failed.")
                return
        self._wake_waiter(None)
        if self._state is not _State.OPEN:
            return  # the application closed or aborted in connection_made()
        self._encrypt_backlog()
        if self._app_read_paused:
            self._transport.pause_reading()
        else:
            self._read_app_data()  # records that came with the handshake's last flight

    def _handshake_failed(self, exc: BaseException) -> None:
        if self._state is _State.CLOSED:
            return
        self._cancel_timer()
        if self._loop.get_debug() or not isinstance(exc, OSError):
            message = ("SSL handshake failed on verifying the certificate"
                       if isinstance(exc, ssl.CertificateError) else "SSL handshake failed")
            self._report(exc, message)
        self._close_raw()  # sends the alert the SSLObject wrote, if any
        self._wake_waiter(exc)

    def _on_handshake_timeout(self) -> None:
        self._timer = None
        if self._state is _State.HANDSHAKE:
            exc = ConnectionAbortedError(
                f"SSL handshake is taking longer than {self._handshake_timeout} seconds: "
                f"aborting the connection")
            self._wake_waiter(exc)
            self._fatal_error(exc, "SSL handshake timed out")

    # ------------------------------------------------------------------ application data in

    def _read_app_data(self) -> None:
        """Decrypt and deliver until the BIO runs dry, the application pauses, or the state
        changes; then act on a close_notify or a raw EOF."""
        notified = False
        try:
            while self._state is _State.OPEN and not self._app_read_paused:
                if self._app_buffered:
                    more, notified = self._deliver_buffered()
                else:
                    more, notified = self._deliver_copied()
                if notified or not more:
                    break
        except (SystemExit, KeyboardInterrupt):
            raise
        except ssl.SSLError as exc:
            self._fatal_error(exc, "Fatal error on TLS transport: decryption failed")
            return
        except BaseException as exc:
            self._fatal_error(exc, "Fatal error: protocol.data_received() call failed.")
            return
        if self._state is not _State.OPEN:
            return
        if notified:
            self._peer_closed(close_notify=True)
            return
        self._encrypt_backlog()  # a renegotiation may have been waiting for these records
        self._flush()
        if self._raw_eof and not self._app_read_paused:
            self._peer_closed(close_notify=False)

    def _deliver_copied(self) -> tuple[bool, bool]:
        """One data_received() with up to READ_CHUNK bytes; returns (maybe more, close_notify)."""
        chunks: list[bytes] = []
        size = 0
        more = True
        notified = False
        read = self._sslobj.read
        while size < READ_CHUNK:
            try:
                data = read(READ_CHUNK)
            except _WANT:
                more = False
                break
            except ssl.SSLZeroReturnError:
                notified = True
                break
            if not data:
                notified = True
                break
            chunks.append(data)
            size += len(data)
        if chunks:
            self._app_protocol.data_received(chunks[0] if len(chunks) == 1 else b"".join(chunks))
        return more, notified

    def _deliver_buffered(self) -> tuple[bool, bool]:
        """Fill one get_buffer() and call buffer_updated(); returns (maybe more, close_notify)."""
        protocol = self._app_protocol
        pending = self._sslobj.pending() or self._incoming.pending
        if not pending:
            return False, False
        buf = memoryview(protocol.get_buffer(-1)).cast("B")
        size = len(buf)
        if not size:
            raise RuntimeError("get_buffer() returned an empty buffer")
        filled = 0
        more = True
        notified = False
        read = self._sslobj.read
        while filled < size:
            try:
                n = read(size - filled, buf[filled:])
            except _WANT:
                more = False
                break
            except ssl.SSLZeroReturnError:
                notified = True
                break
            if not n:
                notified = True
                break
            filled += n  # type: ignore[operator]
        if filled:
            protocol.buffer_updated(filled)
        return more, notified

    def _peer_closed(self, close_notify: bool) -> None:
        """The peer is done sending (close_notify, or EOF of the raw stream without one)."""
        self._app_eof()
        if self._state is not _State.OPEN:
            return  # the application closed or aborted in eof_received()
        if close_notify and not self._raw_eof:
            self._start_shutdown()  # answer with our close_notify
        else:
            self._state = _State.CLOSING
            self._close_raw()

    def _app_eof(self) -> None:
        """eof_received() for the application, once.  Like asyncio, also when the application
        closed first and this is the end of the shutdown exchange."""
        if self._app_state is not _App.CONNECTED:
            return
        self._app_state = _App.EOF
        protocol = self._app_protocol
        try:
            keep_open = protocol.eof_received()
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            self._fatal_error(exc, "Fatal error: protocol.eof_received() call failed.")
            return
        if keep_open and not isinstance(protocol, TLSProtocol):  # (TLS over TLS: ours, no news)
            logger.warning("returning true from eof_received() has no effect when using ssl")

    # ------------------------------------------------------------------ application data out

    def _app_write(self, data: bytes | bytearray | memoryview, flush: bool = True) -> None:
        if self._app_closing or self._state not in (_State.INIT, _State.HANDSHAKE, _State.OPEN):
            if self._lost_writes >= _CONN_LOST_WARN:
                logger.warning("SSL connection is closed")
            self._lost_writes += 1
            return
        if not data:
            return
        if self._state is _State.OPEN and not self._backlog:
            self._encrypt(data)
        else:
            self._queue(data)
        if flush:
            self._flush()

    def _queue(self, data: bytes | bytearray | memoryview) -> None:
        chunk = bytes(data)
        self._backlog.append(chunk)
        self._backlog_size += len(chunk)

    def _encrypt(self, data: bytes | bytearray | memoryview) -> None:
        view = memoryview(data).cast("B")
        write = self._sslobj.write
        try:
            while view:
                view = view[write(view):]
        except _WANT:
            self._queue(view)  # a renegotiation needs the peer's records first
        except ssl.SSLError as exc:
            self._fatal_error(exc, "Fatal error on TLS transport: encryption failed")

    def _encrypt_backlog(self) -> None:
        backlog = self._backlog
        write = self._sslobj.write
        try:
            while backlog:
                chunk = backlog[0]
                n = write(chunk)
                self._backlog_size -= n
                if n < len(chunk):
                    backlog[0] = chunk[n:]
                else:
                    backlog.popleft()
        except _WANT:
            pass
        except ssl.SSLError as exc:
            self._fatal_error(exc, "Fatal error on TLS transport: encryption failed")
            return
        self._flush()

    def _flush(self) -> None:
        """Move ciphertext from the outgoing BIO to the raw transport unless it paused us."""
        if not self._raw_write_paused and self._outgoing.pending and self._transport is not None:
            self._transport.write(self._outgoing.read())
        self._update_app_writing()

    def _write_buffer_size(self) -> int:
        return self._backlog_size + self._outgoing.pending

    def _set_write_limits(self, high: int | None, low: int | None) -> None:
        self._high, self._low = _flow_limits(high, low)
        self._update_app_writing()

    def _update_app_writing(self) -> None:
        size = self._write_buffer_size()
        if not self._app_write_paused and size > self._high:
            self._app_write_paused = True
            self._call_app_flow("pause_writing")
        elif self._app_write_paused and size <= self._low:
            self._app_write_paused = False
            self._call_app_flow("resume_writing")

    def _call_app_flow(self, name: str) -> None:
        if self._app_state is not _App.CONNECTED and self._app_state is not _App.EOF:
            return
        try:
            getattr(self._app_protocol, name)()
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            self._loop.call_exception_handler({
                "message": f"protocol.{name}() failed", "exception": exc,
                "transport": self._app_transport, "protocol": self._app_protocol,
            })

    # ------------------------------------------------------------------ application reading

    def _app_is_reading(self) -> bool:
        return not self._app_read_paused and not self._app_closing

    def _app_pause_reading(self) -> None:
        if self._app_closing or self._app_read_paused:
            return
        self._app_read_paused = True
        if self._state is _State.OPEN:
            self._transport.pause_reading()

    def _app_resume_reading(self) -> None:
        if self._app_closing or not self._app_read_paused:
            return
        self._app_read_paused = False
        if self._state is _State.OPEN:
            self._transport.resume_reading()
            self._loop.call_soon(self._resume_delivery)

    def _resume_delivery(self) -> None:
        if self._state is _State.OPEN and not self._app_read_paused:
            self._read_app_data()

    # ------------------------------------------------------------------ closing

    def _app_close(self) -> None:
        if self._app_closing:
            return
        self._app_closing = True
        state = self._state
        if state is _State.OPEN:
            self._start_shutdown()
        elif state in (_State.INIT, _State.HANDSHAKE):
            self._abort_raw(None)

    def _app_abort(self, exc: BaseException | None) -> None:
        self._app_closing = True
        if not self._raw_lost:
            self._abort_raw(exc)

    def _start_shutdown(self) -> None:
        self._state = _State.CLOSING
        self._app_closing = True
        self._set_timer(self._shutdown_timeout, self._on_shutdown_timeout)
        if self._app_read_paused and self._transport is not None:
            self._transport.resume_reading()  # the peer's close_notify must get through
        self._shutdown_step()

    def _shutdown_step(self) -> None:
        """Flush what the application wrote, send close_notify, wait for the peer's."""
        if self._backlog:
            self._encrypt_backlog()
            if self._backlog or self._state is not _State.CLOSING:
                return
        sslobj = self._sslobj
        try:
            # Application data arriving after we decided to close is dropped; reading it is also
            # how OpenSSL notices the peer's close_notify (unwrap() would fail on unread data).
            while True:
                try:
                    if not sslobj.read(READ_CHUNK):
                        break
                except (ssl.SSLWantReadError, ssl.SSLZeroReturnError):
                    break
            sslobj.unwrap()
        except ssl.SSLWantReadError:
            self._flush()  # our close_notify; now wait for the peer's
            return
        except ssl.SSLError as exc:
            self._fatal_error(exc, "Fatal error on TLS transport: shutdown failed")
            return
        self._app_eof()
        if self._state is _State.CLOSING:
            self._close_raw()

    def _close_raw(self) -> None:
        """Send everything the SSLObject produced, then close the raw transport gracefully."""
        self._state = _State.CLOSED
        transport = self._transport
        if transport is None:
            return
        if self._outgoing.pending:
            transport.write(self._outgoing.read())
        transport.close()
        if self._timer is None:
            # Bound the flush: a peer that never reads must not keep the connection forever.
            self._set_timer(self._shutdown_timeout, self._on_shutdown_timeout)

    def _on_shutdown_timeout(self) -> None:
        self._timer = None  # still armed, so the raw transport has not lost its connection yet
        if self._transport is not None:
            self._abort_raw(TimeoutError("SSL shutdown timed out"))

    def _abort_raw(self, exc: BaseException | None) -> None:
        self._state = _State.CLOSED
        transport = self._transport
        if transport is None:
            return
        force_close = getattr(transport, "_force_close", None)
        if force_close is not None:
            force_close(exc)
        else:
            transport.abort()

    def _fatal_error(self, exc: BaseException, message: str) -> None:
        self._report(exc, message)
        self._app_closing = True
        self._wake_waiter(exc)
        self._abort_raw(exc)

    def _report(self, exc: BaseException, message: str) -> None:
        if isinstance(exc, OSError):
            if self._loop.get_debug():
                logger.debug("%r: %s", self, message, exc_info=True)
            return
        self._loop.call_exception_handler({
            "message": message, "exception": exc,
            "transport": self._transport, "protocol": self,
        })

    # ------------------------------------------------------------------ timers and waiter

    def _set_timer(self, delay: float, callback: Any) -> None:
        self._cancel_timer()
        self._timer = self._loop.call_later(delay, callback)

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _wake_waiter(self, exc: BaseException | None) -> None:
        waiter = self._waiter
        if waiter is None:
            return
        self._waiter = None
        if waiter.done():
            return
        if exc is None:
            waiter.set_result(None)
        else:
            waiter.set_exception(exc)


# ---------------------------------------------------------------------- loop-level functions

def server_protocol(loop: EventLoop, app_protocol: asyncio.BaseProtocol, context: ssl.SSLContext,
                    ssl_handshake_timeout: float | None = None,
                    ssl_shutdown_timeout: float | None = None) -> TLSProtocol:
    """The raw-transport protocol of a TLS connection accepted by a server."""
    return TLSProtocol(loop, app_protocol, context, None, server_side=True,
                       ssl_handshake_timeout=ssl_handshake_timeout,
                       ssl_shutdown_timeout=ssl_shutdown_timeout)


def _upgradable(transport: Any) -> bool:
    from .stream import StreamTransport
    return isinstance(transport, (StreamTransport, SSLTransport)) or bool(
        getattr(transport, "_start_tls_compatible", False))


async def start_tls(
    self: EventLoop, transport: asyncio.BaseTransport, protocol: asyncio.BaseProtocol,
    sslcontext: ssl.SSLContext, *, server_side: bool = False, server_hostname: str | None = None,
    ssl_handshake_timeout: float | None = None, ssl_shutdown_timeout: float | None = None,
) -> asyncio.Transport:
    """``loop.start_tls``: run a TLS handshake over an established transport and return the new
    (plaintext) transport; ``protocol`` should use it from now on."""
    if not isinstance(sslcontext, ssl.SSLContext):
        raise TypeError(f"sslcontext is expected to be an instance of ssl.SSLContext, "
                        f"got {sslcontext!r}")
    if not _upgradable(transport):
        raise TypeError(f"transport {transport!r} is not supported by start_tls()")
    # A closing transport is not refused: asyncio's start_tls goes ahead, and returns None once
    # the raw transport's connection_lost has reached the TLS layer (aiohttp relies on it).
    waiter = self.create_future()
    tls = TLSProtocol(self, protocol, sslcontext, waiter, server_side=server_side,
                      server_hostname=server_hostname,
                      ssl_handshake_timeout=ssl_handshake_timeout,
                      ssl_shutdown_timeout=ssl_shutdown_timeout, app_connected=True)
    # Pause first: no byte may reach the new protocol before its connection_made.
    transport.pause_reading()  # type: ignore[attr-defined]  # _upgradable(): it has one
    transport.set_protocol(tls)
    made = self.call_soon(tls.connection_made, transport)
    resumed = self.call_soon(transport.resume_reading)  # type: ignore[attr-defined]
    try:
        await waiter
    except BaseException:
        made.cancel()
        resumed.cancel()
        transport.close()
        raise
    finally:
        # It holds the failure, whose traceback keeps this frame.
        waiter = None  # type: ignore[assignment]
    # None if the connection was lost meanwhile (connection_lost drops it), like asyncio's
    # ``ssl_protocol._app_transport``.
    return tls._app_transport
