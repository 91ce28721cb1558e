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
import select
import stat
from asyncio import Handle
from typing import TYPE_CHECKING, Any

from .descriptors import HandlerBase
from .poller import EPOLLIN, EPOLLONESHOT, EPOLLOUT, POLLNVAL, READ_EVENTS, WRITE_EVENTS

if TYPE_CHECKING:
    from .descriptors import IOServices

_STALE_ERRNOS = (errno.EBADF, errno.ENOENT)


def fileobj_to_fd(fileobj: Any, closed_ok: bool = False) -> int:
    """An int fd or an object with ``fileno()``, validated like the stdlib's selectors do.

    ``closed_ok``: an object whose ``fileno()`` answers -1 (a closed socket) gives -1."""
    if isinstance(fileobj, int):
        fd = fileobj
    else:
        try:
            fd = int(fileobj.fileno())
        except (AttributeError, TypeError, ValueError):
            raise ValueError(f"Invalid file object: {fileobj!r}") from None
    if fd < 0 and not (closed_ok and not isinstance(fileobj, int)):
        raise ValueError(f"Invalid file descriptor: {fd}")
    return fd


def _callback_name(handle: Handle) -> str:
    cb = getattr(handle, "_callback", None)
    return getattr(cb, "__qualname__", None) or repr(cb)


def _real_state(fd: int) -> int:
    """What ``poll()`` says of ``fd`` now, without waiting (the POLL bits are the EPOLL bits)."""
    probe = select.poll()
    probe.register(fd, EPOLLIN | EPOLLOUT)
    ready = probe.poll(0)
    return ready[0][1] if ready else 0


def _identity(fd: int) -> tuple[int, int] | None:
    try:
        st = os.fstat(fd)
    except OSError:
        return None
    return (st.st_dev, st.st_ino)


class FdCallbacks(HandlerBase):
    """The handler registered for one descriptor that has a reader and/or a writer callback."""

    __slots__ = ("fd", "fileobj", "reader", "writer", "_io", "_oneshot", "ident", "verify")

    def __init__(self, io: IOServices, fd: int, fileobj: Any = None) -> None:
        self.fd = fd
        # What add_reader/add_writer was given: remove_* finds the registration by this object
        # once it is closed (fileno() -1), like asyncio's selector (anyio relies on it).
        self.fileobj: Any = fd if fileobj is None else fileobj
        self.reader: Handle | None = None
        self.writer: Handle | None = None
        self._io = io
        self._oneshot = EPOLLONESHOT if io.backend == "epoll" else 0
        # poll/select know descriptors by number only: remember which file we were given, to tell
        # a stale POLLNVAL (reported before the number was reused and re-added) from a live one.
        self.ident: tuple[int, int] | None = None
        # The kernel may hold another file's registration under this number (io.lingering, see
        # edgeloop/sockets.py): check an event against the descriptor's real state.
        self.verify = fd in io.lingering

    def interest(self) -> int:
        events = 0
        if self.reader is not None:
            events |= EPOLLIN
        if self.writer is not None:
            events |= EPOLLOUT
        return events | self._oneshot

    def register(self) -> None:
        if self._io.backend != "epoll":
            # epoll refuses regular files with EPERM; poll/select would report them ready forever.
            # Refuse them everywhere so that the backends agree.
            st = os.fstat(self.fd)
            if stat.S_ISREG(st.st_mode):
                raise PermissionError(errno.EPERM, os.strerror(errno.EPERM))
            self.ident = (st.st_dev, st.st_ino)
        self._io.register(self.fd, self, self.interest())

    def refresh(self) -> None:
        """The caller handed us this fd again (add_reader/add_writer): it names a live file."""
        if not self._oneshot:
            self.ident = _identity(self.fd)

    def update(self) -> bool:
        """Apply the current interest; unregister when none is left.

        False when the registration turns out to be stale: the fd was closed behind our back
        (EBADF) or its number now names another file (ENOENT).  The caller decides what to do.
        """
        io = self._io
        if io.handler_of(self.fd) is not self:
            return False
        if self.reader is None and self.writer is None:
            io.unregister(self.fd)
            return True
        try:
            # Always issued: a one-shot registration that fired must be re-armed.
            io.rearm(self.fd, self.interest())
        except OSError as exc:
            if exc.errno not in _STALE_ERRNOS:
                raise
            return False
        return True

    def drop(self) -> None:
        """Forget a stale registration: its callbacks belonged to a file that is gone."""
        for handle in (self.reader, self.writer):
            if handle is not None:
                handle.cancel()
        self.reader = self.writer = None
        if self._io.handler_of(self.fd) is self:
            self._io.unregister(self.fd)

    def _on_events(self, mask: int) -> None:
        if mask & POLLNVAL:
            # Closed behind our back, unless the number was reused and added again since the
            # poll: then the event is about the old file and the new registration stands.
            if self.ident is None or _identity(self.fd) != self.ident:
                self.drop()
            return
        try:
            if self.verify:
                mask = _real_state(self.fd)  # an old file's event is no event of ours
            reader = self.reader
            if reader is not None and mask & READ_EVENTS and not reader._cancelled:
                self._io.run_handle(reader)
            writer = self.writer
            if writer is not None and mask & WRITE_EVENTS and not writer._cancelled:
                self._io.run_handle(writer)
        finally:
            if self._oneshot and not self.update():
                # Re-armed above, even when a callback let SystemExit or KeyboardInterrupt
                # escape (the fd keeps its level semantics for the next run); failing that, the
                # fd was closed behind our back.
                if self._io.handler_of(self.fd) is self:
                    self.drop()

    def _describe(self) -> dict[str, Any]:
        names = [("reader", self.reader), ("writer", self.writer)]
        live = [(role, h) for role, h in names if h is not None]
        return {
            "kind": "+".join(role for role, _ in live) or "callbacks",
            "state": [f"{role}={_callback_name(h)}" for role, h in live],
        }

    def _on_handler_error(self, exc: BaseException) -> None:
        # Only the bookkeeping can fail here (the callbacks run behind Handle._run's own
        # barrier): forget the registration rather than risk a descriptor that spins.
        self.drop()
