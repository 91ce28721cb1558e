"""Unix signal handlers for the loop, delivered through ``signal.set_wakeup_fd``.

The C-level signal handler writes the signal number to a socket we own; the Python-level handler
does nothing.  That socket is registered in the poller like any descriptor, so a signal wakes a
loop blocked in ``epoll_wait`` and its callbacks run on the loop, never inside the signal handler.
"""
from __future__ import annotations

import asyncio
import errno
import signal
import socket
import threading
from typing import TYPE_CHECKING, Any, Callable

from .descriptors import HandlerBase
from .poller import EPOLLIN

if TYPE_CHECKING:
    from .loop import EventLoop


def _noop(signum: int, frame: Any) -> None:
    """Installed as the Python-level handler: the wakeup fd does the work."""


class SignalHandlers(HandlerBase):
    """The loop's signal handlers, and the handler of the wakeup socket they arrive on."""

    __slots__ = ("_loop", "_handlers", "_rsock", "_wsock")

    def __init__(self, loop: EventLoop) -> None:
        self._loop = loop
        self._handlers: dict[int, asyncio.Handle] = {}
        self._rsock: socket.socket | None = None
        self._wsock: socket.socket | None = None

    @staticmethod
    def _check(sig: Any) -> None:
        if not isinstance(sig, int):
            raise TypeError(f"sig must be an int, not {sig!r}")
        if sig not in signal.valid_signals():
            raise ValueError(f"invalid signal number {sig}")

    def _open(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            raise RuntimeError("add_signal_handler() can only be called from the main thread")
        if self._rsock is None:
            rsock, wsock = socket.socketpair()
            try:
                rsock.setblocking(False)
                wsock.setblocking(False)
                self._loop.io.register(rsock.fileno(), self, EPOLLIN)
            except BaseException:  # refused (select without ctypes): no unwatched wakeup socket
                rsock.close()
                wsock.close()
                raise
            self._rsock, self._wsock = rsock, wsock
        try:
            signal.set_wakeup_fd(self._wsock.fileno())  # type: ignore[union-attr]
        except (ValueError, OSError) as exc:
            raise RuntimeError(str(exc)) from exc

    def add(self, sig: int, callback: Callable[..., Any], args: tuple[Any, ...]) -> None:
        self._check(sig)
        self._open()
        handle = asyncio.Handle(callback, args, self._loop, None)
        self._handlers[sig] = handle
        try:
            signal.signal(sig, _noop)
            # Restart interrupted system calls: the loop learns of the signal through the fd.
            signal.siginterrupt(sig, False)
        except OSError as exc:
            del self._handlers[sig]
            if not self._handlers:
                self._close_wakeup()
            if exc.errno == errno.EINVAL:
                raise RuntimeError(f"sig {sig:d} cannot be caught") from None
            raise

    def remove(self, sig: int) -> bool:
        self._check(sig)
        handle = self._handlers.pop(sig, None)
        if handle is None:
            return False
        handle.cancel()
        default = signal.default_int_handler if sig == signal.SIGINT else signal.SIG_DFL
        try:
            signal.signal(sig, default)
        except OSError as exc:
            if exc.errno == errno.EINVAL:
                raise RuntimeError(f"sig {sig:d} cannot be caught") from None
            raise
        if not self._handlers:
            self._close_wakeup()
        return True

    def _on_events(self, mask: int) -> None:
        rsock = self._rsock
        if rsock is None:
            return
        while True:
            try:
                data = rsock.recv(4096)
            except (BlockingIOError, InterruptedError):
                return
            if not data:
                return
            for signum in data:
                handle = self._handlers.get(signum)
                if handle is not None and not handle._cancelled:
                    self._loop.io.schedule(handle)

    def _describe(self) -> dict[str, Any]:
        names = sorted(signal.Signals(s).name for s in self._handlers)
        return {"kind": "signal-wakeup", "state": names}

    def _close_wakeup(self) -> None:
        if self._rsock is None:
            return
        try:
            previous = signal.set_wakeup_fd(-1)
            if previous not in (-1, self._wsock.fileno()):  # type: ignore[union-attr]
                signal.set_wakeup_fd(previous)  # someone else's, installed after ours: keep it
        except (ValueError, OSError):
            pass  # not the main thread, or interpreter shutting down
        self._loop.io.unregister(self._rsock.fileno())
        self._rsock.close()
        self._wsock.close()  # type: ignore[union-attr]
        self._rsock = self._wsock = None

    def close(self) -> None:
        for sig in list(self._handlers):
            try:
                self.remove(sig)
            except (RuntimeError, ValueError, OSError):
                pass  # interpreter shutdown or not in the main thread: nothing more can be done
        self._close_wakeup()
