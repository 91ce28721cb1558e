"""What every descriptor-backed transport shares: the protocol it talks to, the
``connection_made`` call that starts it, and how its errors are reported.

The rest of a transport's life (reading, writing, closing) differs too much between a stream, a
datagram socket and a pipe to share without hiding it; each transport module keeps that part.
"""
from __future__ import annotations

import asyncio
import logging
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
    _loop: Any
    _protocol: Any

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self._protocol = protocol

    def get_protocol(self) -> asyncio.BaseProtocol:
        return self._protocol

    def _fatal_error(self, exc: BaseException, message: str) -> None:  # pragma: no cover
        raise NotImplementedError

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
