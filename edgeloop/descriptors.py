"""The descriptor contract: what the loop and the handlers of its descriptors promise each other.

Design
------
The loop's hot path hands every ``(fd, mask)`` the poller reports straight to one *handler*
object: a transport, the accept loop of a server, the ``add_reader``/``add_writer`` callbacks of a
descriptor, the signal wakeup socket, a child's pidfd.  No ``Handle`` is allocated per event, so
this hand-off is the core of the design, and it is declared here rather than left to a friendship
of private attributes.

The handler's side (``Handler``, a ``typing.Protocol`` that mypy checks):

* ``_on_events(mask)``: the poller reported ``mask`` (epoll bits) for the handler's descriptor.
  In edge mode this is the only notice the handler gets: it must remember what it could not act
  on yet (``_readable`` in the transports) or ask to be *deferred* (below).
* ``_deferred``: True while the handler sits on the loop's *deferred list*.
* ``_on_deferred()``: called once per iteration for a handler on the deferred list, after the
  batch of events.  A read drain cut short by its budget, a pause, or a connection not yet made
  asks for it: edge-triggered epoll will not report the data already queued again, so without
  the list it would be stranded.  The handler clears ``_deferred`` itself, first thing.
* ``_on_handler_error(exc)``: the loop caught ``exc`` escaping ``_on_events`` or
  ``_on_deferred`` (a bug in the handler or in a protocol callback that it does not guard).  The
  loop has already reported it to its exception handler; the handler releases its descriptor:
  a transport aborts, with ``connection_lost(exc)``.
* ``_is_transport``: a transport owns its fd until ``connection_lost``; ``add_reader`` refuses it.
* ``_evict()``: another handler is being registered for our fd.  True: we gave it up (and
  unregistered); False (every handler but one): we keep it, and the new registration fails as
  for any registered fd.  Only a registration that merely caches readiness between the loop's
  ``sock_*`` calls (``sockets.SockWaits``, edge mode) gives its fd up: the socket is the user's,
  and handing it to a transport or a server is the user's right.
* ``_describe()``: a dict for ``loop.describe()`` (kind, addresses, state, counters).

The loop's side (``IOServices``, one per loop, reached as ``loop.io``): the only door from a
handler into the loop's machinery.  Handlers never touch the loop's private attributes.

* ``register(fd, handler, events, edge=...)`` / ``unregister(fd)``: enter and leave the poller.
  ``register`` first asks a handler already in place to give the fd up (``_evict``).
  ``unregister`` is always safe to call (closed or unknown fd), and must come *before* the
  descriptor is closed: epoll tracks the file description, not the number.
* ``set_interest(fd, events)``: the one way to change interest (level mode).  The registered mask
  is cached in one place, the poller; an unchanged mask costs no system call.  ``rearm`` issues
  the modification whatever the cache says (one-shot registrations need it).
* ``defer(handler)`` and ``cut_off(handler)``: put a handler on the deferred list; ``cut_off`` is
  the budget rule every drain shares (edge mode only: in level mode the poller reports the
  descriptor again by itself).
* ``call_next(callback, *args)``: schedule for the *next* iteration, even from inside a batch.
  Transports use it for ``connection_made`` and ``connection_lost``, which asyncio runs one
  iteration after the I/O that caused them (see the ordering rule in loop.py).
* ``schedule(handle)``: queue an existing ``Handle`` like ``call_soon`` would (signals).
* ``run_handle(handle)``: run a ``Handle`` the way the loop runs its ready queue (timed and
  reported in debug mode).
* ``edge``, ``read_budget``, ``accept_budget``, ``read_policy``, ``stats``: the settings and the
  counters handlers bump.
"""
from __future__ import annotations

import contextvars
import time
from asyncio import Handle
from typing import TYPE_CHECKING, Any, Callable, Protocol

if TYPE_CHECKING:
    from .loop import EventLoop, Stats
    from .poller import Poller


class Handler(Protocol):
    """What the loop calls on the handler of a registered descriptor (see the module docstring)."""

    _deferred: bool
    _is_transport: bool

    def _on_events(self, mask: int) -> None: ...

    def _on_deferred(self) -> None: ...

    def _on_handler_error(self, exc: BaseException) -> None: ...

    def _describe(self) -> dict[str, Any]: ...

    def _evict(self) -> bool: ...


class HandlerBase:
    """Defaults for handlers that are not transports: never deferred, nothing to abort."""

    __slots__ = ()
    _deferred = False
    _is_transport = False

    def _on_events(self, mask: int) -> None:  # pragma: no cover - every handler overrides it
        raise NotImplementedError

    def _on_deferred(self) -> None:
        self._deferred = False  # type: ignore[misc]  # only handlers with a __dict__ are deferred

    def _on_handler_error(self, exc: BaseException) -> None:
        """Reported by the loop already; the descriptor stays registered."""

    def _describe(self) -> dict[str, Any]:
        return {"kind": type(self).__name__}

    def _evict(self) -> bool:
        return False


class IOServices:
    """The services a handler may use (see the module docstring); one per loop: ``loop.io``."""

    __slots__ = ("_loop", "_poller", "edge", "read_budget", "accept_budget", "read_policy",
                 "stats", "deferred", "lingering")

    def __init__(self, loop: EventLoop, poller: Poller, stats: Stats) -> None:
        self._loop = loop
        self._poller = poller
        self.edge: bool = loop.trigger == "edge"
        self.read_budget: int = loop.read_budget
        self.accept_budget: int = loop.accept_budget
        self.read_policy: str = loop.read_policy
        self.stats = stats
        # The deferred list (one list object for the loop's life: the loop serves a copy).
        self.deferred: list[Handler] = []
        # Numbers under which the kernel may still hold a registration of a file that is gone
        # from our map: a socket kept registered by sock_* (edge mode) and closed behind our
        # back, maybe while a duplicate kept its file alive.  Its events arrive under the number
        # at whichever handler holds it next; the add_reader/add_writer callbacks of such a
        # number check the descriptor's real readiness before they are called (FdCallbacks).
        self.lingering: set[int] = set()

    # registration ---------------------------------------------------------------------------

    @property
    def backend(self) -> str:
        return self._poller.name

    def register(self, fd: int, handler: Handler, events: int, edge: bool = False) -> None:
        old = self._poller.handlers.get(fd)
        if old is not None:
            old._evict()  # given up, or kept: then the poller refuses the fd below
        self._poller.register(fd, handler, events, edge)

    def set_interest(self, fd: int, events: int, edge: bool = False) -> None:
        self._poller.set_interest(fd, events, edge)

    def rearm(self, fd: int, events: int) -> None:
        self._poller.modify(fd, events)

    def unregister(self, fd: int) -> None:
        self._poller.unregister(fd)

    def handler_of(self, fd: int) -> Handler | None:
        return self._poller.handlers.get(fd)

    # the deferred list ----------------------------------------------------------------------

    def defer(self, handler: Handler) -> None:
        if not handler._deferred:
            handler._deferred = True
            self.deferred.append(handler)

    def cut_off(self, handler: Handler) -> None:
        """A drain stopped by its budget with more possibly queued: continue it next iteration
        (edge mode; level-triggered pollers report the descriptor again by themselves)."""
        if self.edge:
            self.stats.cutoffs += 1
            self.defer(handler)

    # callbacks ------------------------------------------------------------------------------

    def call_next(self, callback: Callable[..., Any], *args: Any,
                  context: contextvars.Context | None = None) -> Handle:
        loop = self._loop
        loop._check_closed()
        handle = Handle(callback, args, loop, context)
        loop._ready.append(handle)
        return handle

    def schedule(self, handle: Handle) -> None:
        self._loop._soon.append(handle)

    def run_handle(self, handle: Handle) -> None:
        loop = self._loop
        if not loop._timing:
            handle._run()
            return
        loop._current_handle = handle
        t0 = time.monotonic()
        try:
            handle._run()
        finally:
            loop._current_handle = None
        loop._handle_ran(handle, time.monotonic() - t0)
        # A coroutine that failed in this handle keeps its caller's frames (f_back), ours
        # included: our frame must not keep the handle, and through it the task, alive (asyncio
        # reports a never-retrieved exception when the task is freed, in the task's context).
        handle = None  # type: ignore[assignment]
