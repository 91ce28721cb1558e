"""Readiness backends behind one small interface.

Design
------
The loop asks a poller one question per iteration: "which descriptors are ready, waiting at most
``timeout`` seconds?"  Everything else is bookkeeping: a descriptor is registered with a *handler*
object (a transport, the accept loop of a server, the callbacks of ``add_reader``...) and an interest
mask, and ``wait()`` returns ``(fd, mask)`` pairs that the loop hands to
``poller.handlers[fd]._on_events(mask)``.

Masks use the epoll bits everywhere.  On Linux ``POLLIN == EPOLLIN``, ``POLLOUT == EPOLLOUT``,
``POLLERR == EPOLLERR``, ``POLLHUP == EPOLLHUP`` and ``POLLRDHUP == EPOLLRDHUP``, so the poll backend
passes masks through untouched; the select backend builds them from its three lists.

Edge or level is chosen *per descriptor*: ``register(fd, handler, events, edge=True)`` adds
``EPOLLET``.  Only the epoll backend can do edge-triggered; the others report ``edge_capable =
False`` and the loop then runs every transport in level mode.

Three rules the loop relies on:

* ``unregister`` never fails because the descriptor is already closed or unknown to the kernel
  (ENOENT/EBADF, or EPERM: the number now names a regular file): closing paths must be able to
  call it unconditionally.
* An fd unregistered while the loop is dispatching a batch is added to ``stale``.  Events for it that
  are still in the batch are dropped by the loop: the number may already belong to a new socket, and
  the events were about the old one.  ``wait()`` empties ``stale`` when the next batch starts.
* After ``os.fork()`` the child shares the parent's epoll instance (it is one kernel object reached
  through two descriptors).  An ``epoll_ctl`` issued in the child would change the parent's interest
  list, so a forked poller turns every registration call into a no-op; closing it only closes the
  child's descriptor.
"""
from __future__ import annotations

import errno
import math
import os
import select
import weakref
from typing import TYPE_CHECKING

from . import cselect

if TYPE_CHECKING:
    from .descriptors import Handler

EPOLLIN: int = getattr(select, "EPOLLIN", 0x001)
EPOLLOUT: int = getattr(select, "EPOLLOUT", 0x004)
EPOLLERR: int = getattr(select, "EPOLLERR", 0x008)
EPOLLHUP: int = getattr(select, "EPOLLHUP", 0x010)
EPOLLRDHUP: int = getattr(select, "EPOLLRDHUP", 0x2000)
EPOLLET: int = getattr(select, "EPOLLET", 1 << 31)
EPOLLEXCLUSIVE: int = getattr(select, "EPOLLEXCLUSIVE", 1 << 28)
EPOLLONESHOT: int = getattr(select, "EPOLLONESHOT", 1 << 30)
POLLNVAL: int = getattr(select, "POLLNVAL", 0x020)

# What a handler treats as "try reading" and "try writing".  ERR and HUP wake both directions so
# that the read or the write that follows reports the error.
READ_EVENTS = EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR
WRITE_EVENTS = EPOLLOUT | EPOLLHUP | EPOLLERR

# One interest mask for every loop-owned socket in edge mode: registered once, never modified.
EDGE_STREAM = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET

# select() takes a float and poll() milliseconds; cap long sleeps like every asyncio loop does so
# that a far-away timer never overflows the kernel's timeout argument.
MAX_TIMEOUT = 24 * 3600.0

# EPERM: the number now names a file epoll cannot watch (a regular file), so not ours either; it
# happens when a registration outlives its socket (the sock_* handler, see sockets.py).
_IGNORED_ON_UNREGISTER = (errno.ENOENT, errno.EBADF, errno.EPERM)

# A select bitmap below this holds descriptors < FD_SETSIZE only: select.select can take it.
_SELECT_LIMIT = 1 << cselect.FD_SETSIZE


_DIRECTIONS = EPOLLIN | EPOLLOUT | EPOLLRDHUP


def _quiet_if_idle(events: int) -> int:
    """epoll reports EPOLLHUP/EPOLLERR even with no interest; level-triggered, a hung-up idle fd
    (a transport that stopped reading and has nothing to write) would then spin the loop.  With
    ``EPOLLONESHOT`` it is reported at most once, until the next modify re-arms it."""
    if events & _DIRECTIONS or events & EPOLLET:
        return events
    return events | EPOLLONESHOT


_live_pollers: "weakref.WeakSet[Poller]" = weakref.WeakSet()


def _mark_forked() -> None:
    for poller in list(_live_pollers):
        poller.forked = True


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_mark_forked)


class Poller:
    """Common bookkeeping: the fd -> handler map, counters and fork safety."""

    name = "?"
    edge_capable = False

    def __init__(self) -> None:
        self.handlers: dict[int, Handler] = {}
        # The mask each descriptor is registered with: the one cache of interest in the loop.
        self.masks: dict[int, int] = {}
        self.stale: set[int] = set()
        self.forked = False
        self.ctl_calls = 0
        _live_pollers.add(self)

    def register(self, fd: int, handler: Handler, events: int, edge: bool = False) -> None:
        if fd in self.handlers:
            raise ValueError(f"file descriptor {fd} is already registered")
        if edge:
            events |= EPOLLET
        if not self.forked:
            self.ctl_calls += 1
            self._register(fd, events)
        self.handlers[fd] = handler
        self.masks[fd] = events

    def modify(self, fd: int, events: int, edge: bool = False) -> None:
        """Set the interest of ``fd``, with a system call even if it is unchanged (a one-shot
        registration is re-armed that way)."""
        if edge:
            events |= EPOLLET
        if not self.forked:
            self.ctl_calls += 1
            self._modify(fd, events)
        self.masks[fd] = events

    def set_interest(self, fd: int, events: int, edge: bool = False) -> None:
        """Set the interest of a registered ``fd``; nothing happens if it is unchanged."""
        if edge:
            events |= EPOLLET
        if self.masks.get(fd) != events and fd in self.handlers:
            self.modify(fd, events)

    def unregister(self, fd: int) -> None:
        if self.handlers.pop(fd, None) is None:
            return
        self.masks.pop(fd, None)
        self.stale.add(fd)
        if not self.forked:
            self.ctl_calls += 1
            try:
                self._unregister(fd)
            except OSError as exc:
                if exc.errno not in _IGNORED_ON_UNREGISTER:
                    raise

    def poll(self, timeout: float | None) -> list[tuple[int, int]]:
        """``wait()`` for the loop's iteration, which has already emptied ``stale`` and capped
        the timeout at MAX_TIMEOUT (None: block)."""
        return self.wait(timeout)

    def fileno(self) -> int:
        return -1

    def close(self) -> None:
        self.handlers.clear()
        self.masks.clear()
        _live_pollers.discard(self)

    # Backend hooks.
    def _register(self, fd: int, events: int) -> None:
        raise NotImplementedError

    def _modify(self, fd: int, events: int) -> None:
        raise NotImplementedError

    def _unregister(self, fd: int) -> None:
        raise NotImplementedError

    def wait(self, timeout: float | None) -> list[tuple[int, int]]:
        raise NotImplementedError


class EpollPoller(Poller):
    """``select.epoll``: interest list kept in the kernel; cost follows the ready descriptors."""

    name = "epoll"
    edge_capable = True

    def __init__(self) -> None:
        super().__init__()
        self._epoll = select.epoll()  # O_CLOEXEC by default
        self._poll = self._epoll.poll
        # epoll.poll itself, no Python frame: the loop asks it once per iteration (it takes
        # None for "block", and rounds a float timeout *up* to whole milliseconds).
        self.poll = self._epoll.poll  # type: ignore[method-assign]

    def fileno(self) -> int:
        return self._epoll.fileno()

    def _register(self, fd: int, events: int) -> None:
        self._epoll.register(fd, _quiet_if_idle(events))

    def _modify(self, fd: int, events: int) -> None:
        self._epoll.modify(fd, _quiet_if_idle(events))

    def _unregister(self, fd: int) -> None:
        self._epoll.unregister(fd)

    def wait(self, timeout: float | None) -> list[tuple[int, int]]:
        if self.stale:
            self.stale.clear()
        # epoll.poll rounds a float timeout *up* to whole milliseconds, so a timer 0.4 ms away
        # sleeps 1 ms instead of spinning with a zero timeout.
        if timeout is None:
            return self._poll(-1)
        if timeout > MAX_TIMEOUT:
            timeout = MAX_TIMEOUT
        return self._poll(timeout)

    def close(self) -> None:
        super().close()
        # In a forked child this closes only the child's descriptor of the shared instance.
        self._epoll.close()


class PollPoller(Poller):
    """``select.poll``: the whole interest list crosses into the kernel on every call."""

    name = "poll"

    def __init__(self) -> None:
        super().__init__()
        self._pollobj = select.poll()
        self._poll = self._pollobj.poll
        self._idle: set[int] = set()

    # ``_idle``: registered with no interest, and kept out of the kernel's list, because poll()
    # reports POLLHUP/POLLERR whatever the interest and a hung-up idle fd would spin the loop.

    def _register(self, fd: int, events: int) -> None:
        if not events & _DIRECTIONS:
            self._idle.add(fd)
            return
        self._pollobj.register(fd, events & ~EPOLLET)

    def _modify(self, fd: int, events: int) -> None:
        if not events & _DIRECTIONS:
            if fd not in self._idle:
                self._pollobj.unregister(fd)
                self._idle.add(fd)
        elif fd in self._idle:
            self._idle.discard(fd)
            self._pollobj.register(fd, events & ~EPOLLET)
        else:
            self._pollobj.modify(fd, events & ~EPOLLET)

    def _unregister(self, fd: int) -> None:
        if fd in self._idle:
            self._idle.discard(fd)
        else:
            self._pollobj.unregister(fd)

    def wait(self, timeout: float | None) -> list[tuple[int, int]]:
        if self.stale:
            self.stale.clear()
        if timeout is None:
            return self._poll()
        # Milliseconds, rounded up for the same reason as epoll.
        return self._poll(math.ceil(min(timeout, MAX_TIMEOUT) * 1e3))


class SelectPoller(Poller):
    """select(2): the watched sets cross into the kernel as bitmaps on every call.

    ``select.select`` while every watched descriptor is below FD_SETSIZE (1024); libc's select
    through ctypes (:mod:`edgeloop.cselect`), with bitmaps sized to the highest descriptor, as
    soon as one is at or above it.  The two paths report the same masks and handle a descriptor
    closed behind the loop's back the same way.  Without ctypes (or libc) a descriptor >= 1024
    is refused with ValueError when it is registered, and the loop cleans up as for any refusal.

    Why both paths (``python -m benchmarks.fds.selectcost``, one ready among N, development
    machine): with few descriptors ``select.select`` is cheaper than the ctypes call (1.6 µs
    against 2.9 µs for N=10), they are even at N=100 (7.8 and 8.1 µs), and at N=1000 the ctypes
    path is 12% ahead (65 against 73 µs) because the kernel's work dominates both.  Descriptors
    below 1024 are the common case, so they keep the stdlib call, and ctypes is loaded only when
    a descriptor needs it.
    """

    name = "select"
    FD_SETSIZE = cselect.FD_SETSIZE

    def __init__(self) -> None:
        super().__init__()
        self._readers: set[int] = set()
        self._writers: set[int] = set()
        # The same two sets as bitmaps (bit n = descriptor n), kept up to date by every change so
        # that the ctypes path hands them to the kernel as they are.  Rebuilding them from the
        # sets on each wait made a wait 1.5 times as slow at N=1000 and 2000, 1.8 times at 10,000;
        # keeping them costs an interest change 40-70 ns (about 0.2 µs in all).
        self._rbits = 0
        self._wbits = 0
        self._libc: cselect.LibcSelect | None = None

    def _register(self, fd: int, events: int) -> None:
        if fd >= self.FD_SETSIZE and self._libc is None:
            try:
                self._libc = cselect.load()
            except cselect.Unavailable as exc:
                raise ValueError(f"file descriptor {fd} is out of range for select() "
                                 f"(>= {self.FD_SETSIZE}): {exc}") from None
        self._modify(fd, events)

    def _modify(self, fd: int, events: int) -> None:
        if events & EPOLLIN:
            if fd not in self._readers:
                self._readers.add(fd)
                self._rbits |= 1 << fd
        elif fd in self._readers:
            self._readers.discard(fd)
            self._rbits ^= 1 << fd
        if events & EPOLLOUT:
            if fd not in self._writers:
                self._writers.add(fd)
                self._wbits |= 1 << fd
        elif fd in self._writers:
            self._writers.discard(fd)
            self._wbits ^= 1 << fd

    def _unregister(self, fd: int) -> None:
        self._modify(fd, 0)

    def wait(self, timeout: float | None) -> list[tuple[int, int]]:
        if self.stale:
            self.stale.clear()
        if timeout is not None:
            timeout = min(timeout, MAX_TIMEOUT)
        # The third set is for out-of-band data, not errors: a socket with a pending error is
        # reported readable and writable, which is what the handlers need to see it.
        try:
            if self._rbits < _SELECT_LIMIT and self._wbits < _SELECT_LIMIT:  # all below 1024
                r, w, _ = select.select(self._readers, self._writers, (), timeout)
            else:
                # Both paths round a timeout up (select.select to the microsecond, as
                # cselect does) and retry on EINTR with the time left.
                assert self._libc is not None  # loaded when the first fd >= 1024 registered
                r, w = self._libc.wait(self._rbits, self._wbits, timeout)
        except OSError as exc:
            if exc.errno != errno.EBADF:
                raise
            return self._closed_fds()
        if not w:
            return [(fd, EPOLLIN) for fd in r]
        masks = dict.fromkeys(r, EPOLLIN)
        for fd in w:
            masks[fd] = masks.get(fd, 0) | EPOLLOUT
        return list(masks.items())

    def _closed_fds(self) -> list[tuple[int, int]]:
        """select() failed with EBADF: report the descriptors closed behind our back as POLLNVAL,
        like poll() does, so that their handlers can drop them instead of failing every wait."""
        bad = []
        for fd in self._readers | self._writers:
            try:
                os.fstat(fd)
            except OSError:
                self._unregister(fd)
                bad.append((fd, POLLNVAL | EPOLLERR))
        return bad


BACKENDS: dict[str, type[Poller]] = {"poll": PollPoller, "select": SelectPoller}
if hasattr(select, "epoll"):
    BACKENDS["epoll"] = EpollPoller


def default_backend() -> str:
    return "epoll" if "epoll" in BACKENDS else "poll"
