"""``add_reader``/``add_writer``: level-triggered callbacks on descriptors the loop does not own.

Third-party code that calls ``add_reader`` may read one byte per call, so these registrations keep
the level contract in every mode: the callback is called again as long as the descriptor is ready.

On epoll they are registered ``EPOLLONESHOT`` and re-armed (``EPOLL_CTL_MOD``) after each call.
That costs one ``epoll_ctl`` per event, and buys safety against the classic epoll trap: epoll
registers the *file description*, so if the user closes the fd without ``remove_reader`` while a
duplicate keeps the description alive, a plain level registration would keep reporting the dead
number forever (a busy loop), and to whichever socket gets that number next.  With one-shot, the
dead registration fires at most once; the re-arm then fails (EBADF, or ENOENT because the number
now names another file) and the entry is dropped.  poll() reports a closed fd as POLLNVAL, which
drops the entry the same way.
"""
from __future__ import annotations

import errno
import os
import stat
from asyncio import Handle
from typing import Any

from .poller import EPOLLIN, EPOLLONESHOT, EPOLLOUT, POLLNVAL, READ_EVENTS, WRITE_EVENTS

_STALE_ERRNOS = (errno.EBADF, errno.ENOENT)


def fileobj_to_fd(fileobj: Any) -> int:
    """An int fd or an object with ``fileno()``, validated like the stdlib's selectors do."""
    if isinstance(fileobj, int):
        fd = fileobj
    else:
        try:
            fd = int(fileobj.fileno())
        except (AttributeError, TypeError, ValueError):
            raise ValueError(f"Invalid file object: {fileobj!r}") from None
    if fd < 0:
        raise ValueError(f"Invalid file descriptor: {fd}")
    return fd


class FdCallbacks:
    """The handler registered for one descriptor that has a reader and/or a writer callback."""

    __slots__ = ("fd", "reader", "writer", "_poller", "_oneshot")

    def __init__(self, poller: Any, fd: int) -> None:
        self.fd = fd
        self.reader: Handle | None = None
        self.writer: Handle | None = None
        self._poller = poller
        self._oneshot = EPOLLONESHOT if poller.name == "epoll" else 0

    def interest(self) -> int:
        events = 0
        if self.reader is not None:
            events |= EPOLLIN
        if self.writer is not None:
            events |= EPOLLOUT
        return events | self._oneshot

    def register(self) -> None:
        poller = self._poller
        if poller.name != "epoll":
            # epoll refuses regular files with EPERM; poll/select would report them ready forever.
            # Refuse them everywhere so that the backends agree.
            if stat.S_ISREG(os.fstat(self.fd).st_mode):
                raise PermissionError(errno.EPERM, os.strerror(errno.EPERM))
        poller.register(self.fd, self, self.interest())

    def update(self) -> bool:
        """Apply the current interest; unregister when none is left.  False if the fd is stale."""
        poller = self._poller
        if poller.handlers.get(self.fd) is not self:
            return False
        if self.reader is None and self.writer is None:
            poller.unregister(self.fd)
            return True
        try:
            poller.modify(self.fd, self.interest())
        except OSError as exc:
            if exc.errno not in _STALE_ERRNOS:
                raise
            self._drop()
            return False
        return True

    def _drop(self) -> None:
        for handle in (self.reader, self.writer):
            if handle is not None:
                handle.cancel()
        self.reader = self.writer = None
        self._poller.unregister(self.fd)

    def _on_events(self, mask: int) -> None:
        if mask & POLLNVAL:
            self._drop()
            return
        try:
            reader = self.reader
            if reader is not None and mask & READ_EVENTS and not reader._cancelled:
                reader._run()
            writer = self.writer
            if writer is not None and mask & WRITE_EVENTS and not writer._cancelled:
                writer._run()
        finally:
            if self._oneshot:
                # Re-arm, even when a callback let SystemExit or KeyboardInterrupt escape: the
                # fd must keep its level semantics for the next run of the loop.  Drops the
                # entry if the fd was closed behind our back.
                self.update()
