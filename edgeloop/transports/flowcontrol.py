"""Write flow control shared by the datagram and pipe transports.

A transport that keeps a write buffer tells its protocol to ``pause_writing()`` when the buffer
grows past the high-water mark and to ``resume_writing()`` once it has drained to the low-water
mark, exactly once per crossing.  The transport owns ``_buffer_size`` (what counts as buffered is
its business: bytes for a pipe, bytes plus a per-datagram overhead for UDP) through
``get_write_buffer_size()`` (by default the ``_buffer_size`` attribute), and calls
``_maybe_pause_protocol()`` after buffering and ``_maybe_resume_protocol()`` after flushing.

A protocol that raises from either callback does not break the transport: the error goes to the
loop's exception handler, like in every asyncio loop.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..loop import EventLoop

HIGH_WATER = 64 * 1024


class WriteFlowControl:
    """Mixin: ``set_write_buffer_limits`` and friends over ``self._buffer_size``."""

    _loop: EventLoop
    _protocol: Any
    _buffer_size = 0
    _high = HIGH_WATER
    _low = HIGH_WATER // 4
    _protocol_paused = False

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        if high is None:
            high = HIGH_WATER if low is None else 4 * low
        if low is None:
            low = high // 4
        if not high >= low >= 0:
            raise ValueError(f"high ({high!r}) must be >= low ({low!r}) must be >= 0")
        self._high = high
        self._low = low
        self._maybe_pause_protocol()

    def get_write_buffer_limits(self) -> tuple[int, int]:
        return (self._low, self._high)

    def get_write_buffer_size(self) -> int:
        return self._buffer_size

    def _maybe_pause_protocol(self) -> None:
        if self._protocol_paused or self.get_write_buffer_size() <= self._high:
            return
        self._protocol_paused = True
        self._flow_callback("pause_writing")

    def _maybe_resume_protocol(self) -> None:
        if self._protocol_paused and self.get_write_buffer_size() <= self._low:
            self._protocol_paused = False
            self._flow_callback("resume_writing")

    def _flow_callback(self, name: str) -> None:
        protocol = self._protocol
        try:
            getattr(protocol, name)()
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            self._loop.call_exception_handler({
                "message": f"protocol.{name}() failed",
                "exception": exc, "transport": self, "protocol": protocol,
            })
