"""``EventLoop``: lifecycle, the ready queue, one iteration, and the non-I/O half of asyncio's API.

One iteration (of ``_run_until_stopped``) does, in order:

1. Choose the poll timeout: zero when callbacks are ready, when a handler is on the deferred list
   or when the loop is stopping; else the time to the earliest timer (the pollers round it *up*,
   so a near timer never turns into a busy loop); else block.
2. ``poller.poll(timeout)`` (on epoll, ``epoll.poll`` itself).  With a zero timeout and no
   descriptor registered but the loop's own waker there is nothing to ask: the poll is skipped
   (``stats()["idle_skips"]``; a thread's ``call_soon_threadsafe`` lands in the ready queue
   anyway, and the waker's bytes are read by the next blocking poll).
3. Move due timers to the ready queue (due = deadline within ``clock_resolution`` of now).
4. Run the callbacks that are in the ready queue now (queued before the poll, and the due
   timers); ones they add wait for the next iteration, so a callback that reschedules itself
   cannot starve I/O or timers.
5. Dispatch: hand every ``(fd, mask)`` from step 2 to the descriptor's handler object directly
   (``handler._on_events(mask)``, the contract of ``edgeloop.descriptors``): no ``Handle`` is
   allocated per I/O event.  Protocol callbacks run here, behind an exception barrier.
6. Run what the batch scheduled (``_after_io``).
7. Serve the deferred list: handlers whose drain was cut short (budget, pause, a connection not
   yet made).  Edge-triggered epoll will not report them again, so they are remembered until
   they reach EAGAIN.

The ordering rule (stated here once; the README's list of differences refers to it)
-----------------------------------------------------------------------------------
``call_soon`` callbacks run in FIFO order in the iteration after the one that scheduled them,
with one exception: what an I/O handler schedules while a batch is dispatched (typically the
wakeup of a task awaiting the data) runs right after that batch, in the same iteration (step 6).
asyncio would run it one iteration later; doing it now saves a poll per message.  Consequences
an application can see, compared with asyncio:

* a callback scheduled by the batch overtakes one that a step-4 callback scheduled in the same
  iteration (that one waits for the next iteration);
* timers found due after a poll run before the I/O that poll found (asyncio queues the I/O
  handles first and the due timers behind them, so its timers run after that I/O).

Transports schedule ``connection_made`` and ``connection_lost`` with ``io.call_next``, which
always means the next iteration, even from inside a batch: asyncio runs them one iteration after
the I/O that caused them, and code that stops the loop from ``connection_lost`` relies on it.
The subprocess transport keeps one FIFO for its protocol calls because of the first
consequence: its calls come both from I/O (the pidfd, the pipes) and from callbacks.

The exception barrier
---------------------
An exception escaping ``_on_events`` or ``_on_deferred`` goes to the exception handler (the
context names the handler and the fd) and the handler releases its descriptor
(``_on_handler_error``: a transport aborts with ``connection_lost(exc)``); the rest of the batch
and of the deferred list is served in the same iteration.  ``SystemExit`` and
``KeyboardInterrupt`` leave ``run_forever`` at once, with nothing lost: the rest of the batch is
kept (``_leftover``) and served first by the next run, and what the batch had scheduled moves
to the ready queue.  On Python 3.11+ a ``try`` costs nothing until something is raised.

The network, socket, server and signal parts of the API live in their own modules; this class
binds them.
"""
from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import contextvars
import logging
import os
import sys
import threading
import time
import traceback
import warnings
import weakref
from asyncio import Handle, TimerHandle
from typing import Any, Callable, Coroutine, Generator, Iterable, TypeVar, TypeVarTuple, Unpack

from . import introspect, network, sockets
from .callbacks import FdCallbacks, fileobj_to_fd
from .descriptors import Handler, HandlerBase, IOServices
from .handles import Handle as _LightHandle
from .handles import report_failure
from .poller import BACKENDS, EPOLLIN, MAX_TIMEOUT, Poller, default_backend
from .signals import SignalHandlers
from .timers import TimerQueue

logger = logging.getLogger("asyncio")

TRIGGERS = ("edge", "level")
_DEBUG_STACK_DEPTH = 10
_PY312 = sys.version_info >= (3, 12)
_T = TypeVar("_T")
_new_object = object.__new__
_NO_EVENTS: list[tuple[int, int]] = []  # never appended to
_copy_context = contextvars.copy_context
_Ts = TypeVarTuple("_Ts")  # the callback signatures of AbstractEventLoop, as typeshed spells them


def _env_debug() -> bool:
    """The default debug flag: ``-X dev`` or ``PYTHONASYNCIODEBUG``.  asyncio's own answer when it
    can give one, so that every loop of a process agrees (and tests that patch it see it)."""
    is_debug = getattr(asyncio.coroutines, "_is_debug_mode", None)
    if is_debug is not None:
        return bool(is_debug())
    if sys.flags.dev_mode:
        return True
    return not sys.flags.ignore_environment and bool(os.environ.get("PYTHONASYNCIODEBUG"))


class Stats:
    """Per-loop counters, kept as plain attributes so that the hot paths can bump them cheaply."""

    # ``iterations`` is not kept apart: it is ``polls`` plus ``idle_skips``, the iterations
    # that had callbacks ready and nothing to ask the kernel (only the waker registered).
    __slots__ = ("polls", "idle_skips", "events", "reads", "eagain", "cutoffs", "accepts",
                 "writes")
    # Declared for type checkers only (no class attribute: the slots stay plain slots).
    polls: int
    idle_skips: int
    events: int
    reads: int
    eagain: int
    cutoffs: int
    accepts: int
    writes: int

    def __init__(self) -> None:
        for name in self.__slots__:
            setattr(self, name, 0)


class _Waker(HandlerBase):
    """An eventfd that another thread (or a signal) writes to wake a loop blocked in the poller."""

    __slots__ = ("fd",)

    def __init__(self, poller: Poller) -> None:
        self.fd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        try:
            poller.register(self.fd, self, EPOLLIN)
        except BaseException:  # refused (select past FD_SETSIZE without ctypes): not built
            os.close(self.fd)
            raise

    def wake(self) -> None:
        try:
            os.eventfd_write(self.fd, 1)
        except (BlockingIOError, OSError):
            pass  # counter saturated (impossible in practice) or closing: the loop is awake anyway

    def _on_events(self, mask: int) -> None:
        try:
            os.eventfd_read(self.fd)
        except (BlockingIOError, OSError):
            pass

    def _describe(self) -> dict[str, Any]:
        return {"kind": "waker", "state": ["eventfd for call_soon_threadsafe"]}

    def close(self, poller: Poller) -> None:
        poller.unregister(self.fd)
        os.close(self.fd)


def _run_until_complete_cb(fut: asyncio.Future) -> None:
    if not fut.cancelled():
        exc = fut.exception()
        if isinstance(exc, (SystemExit, KeyboardInterrupt)):
            # The exception propagates out of run_forever by itself; stopping here would hide it.
            return
    fut.get_loop().stop()


def _format_handle(handle: Handle) -> str:
    """How the slow-callback warning names a handle: a task's step by the task, as asyncio's
    base_events does (``<Task finished name=... coro=<...>>``, not the step wrapper)."""
    owner = getattr(getattr(handle, "_callback", None), "__self__", None)
    if isinstance(owner, asyncio.Task):
        return repr(owner)
    return str(handle)


def _format_callback(handle: Handle) -> str:
    cb = getattr(handle, "_callback", None)
    return getattr(cb, "__qualname__", None) or repr(cb)


class EventLoop(asyncio.AbstractEventLoop):
    """An asyncio event loop driving sockets through epoll (edge-triggered by default).

    ``backend``: ``"epoll"`` (Linux default), ``"poll"`` or ``"select"``.
    ``trigger``: ``"edge"`` (default where the backend supports it) or ``"level"``.
    ``read_policy``: how an edge-triggered stream read drain decides that the socket is empty:
    ``"short"`` (a read shorter than the buffer means drained: on Linux the next arrival re-arms
    the edge) or ``"eagain"`` (read until EAGAIN).  The environment variables ``EDGELOOP_BACKEND``,
    ``EDGELOOP_TRIGGER`` and ``EDGELOOP_READ_POLICY`` set the defaults.
    """

    # Reads per handler per wakeup before it yields to the others (see the deferred list).
    read_budget = 16
    accept_budget = 64

    # Rarely set state lives at class level: an instance keeps few attributes, so that CPython
    # keeps its attribute access on the fast path (shared-key instance dicts hold at most 30).
    slow_callback_duration = 0.1
    _exception_handler: Callable[..., Any] | None = None
    _task_factory: Callable[..., Any] | None = None
    _default_executor: concurrent.futures.ThreadPoolExecutor | None = None
    _executor_shutdown_called = False
    _asyncgens_shutdown_called = False
    _current_handle: Handle | None = None
    _stall: introspect.StallWatch | None = None
    _dump_signal: int | None = None
    # Events of a batch interrupted by SystemExit/KeyboardInterrupt, served by the next run.
    _leftover: tuple[tuple[int, int], ...] | list[tuple[int, int]] = ()

    def __init__(
        self,
        *,
        backend: str | None = None,
        trigger: str | None = None,
        read_policy: str | None = None,
        stall_threshold: float | None = None,
    ) -> None:
        self._closed = True  # until construction succeeds: __del__ must not warn about a half loop
        if backend is None:
            backend = os.environ.get("EDGELOOP_BACKEND") or default_backend()
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {sorted(BACKENDS)}, not {backend!r}")
        poller_cls = BACKENDS[backend]
        if trigger is None:
            trigger = os.environ.get("EDGELOOP_TRIGGER") or (
                "edge" if poller_cls.edge_capable else "level"
            )
        if trigger not in TRIGGERS:
            raise ValueError(f"trigger must be 'edge' or 'level', not {trigger!r}")
        if trigger == "edge" and not poller_cls.edge_capable:
            raise ValueError(f"the {backend} backend cannot be edge-triggered; use trigger='level'")
        if read_policy is None:
            read_policy = os.environ.get("EDGELOOP_READ_POLICY") or "short"
        if read_policy not in ("short", "eagain"):
            raise ValueError(f"read_policy must be 'short' or 'eagain', not {read_policy!r}")
        if stall_threshold is None:
            stall_threshold = introspect.stall_threshold_from_env()
        elif isinstance(stall_threshold, bool) or not isinstance(stall_threshold, (int, float)):
            raise TypeError(f"stall_threshold must be a number of seconds, not {stall_threshold!r}")
        elif not stall_threshold > 0:
            raise ValueError(f"stall_threshold must be positive, not {stall_threshold!r}")
        dump_signal = introspect.dump_signal_from_env()

        self.backend = backend
        self.trigger = trigger
        self.read_policy = read_policy
        self._poller: Poller = poller_cls()
        self._handlers = self._poller.handlers
        # The ready queue: what runs in the next iteration.  ``_soon`` is where call_soon()
        # appends: the ready queue, except while an I/O batch is dispatched, when it is
        # ``_after_io`` (run right after the batch; see the ordering rule in the docstring).
        self._ready: collections.deque[Handle] = collections.deque()
        self._after_io: collections.deque[Handle] = collections.deque()
        self._soon = self._ready
        self._timers = TimerQueue()
        self._stats = Stats()
        #: The descriptor services: the one door from transports and handlers into the loop.
        self.io = IOServices(self, self._poller, self._stats)
        self._deferred = self.io.deferred  # the same list: io.defer() appends, we serve it
        # The poll of every iteration: the poller's ``poll`` (on epoll, epoll.poll itself: no
        # Python frame), or the stall detector's wrapper of it.
        self._poll: Callable[[float | None], list[tuple[int, int]]] = self._poller.poll
        self._stale = self._poller.stale
        self._stopping = False
        self._polling = False
        self._thread_id: int | None = None
        self._clock_resolution = time.get_clock_info("monotonic").resolution
        self._asyncgens: weakref.WeakSet[Any] = weakref.WeakSet()
        self._debug = _env_debug()
        # Time each callback (debug mode, or the stall detector after a stall): see io.run_handle.
        self._timing = self._debug
        if stall_threshold:
            self._stall = introspect.StallWatch(self, stall_threshold)
            self._poll = self._stall.watch_wait(self._poller.poll)
        if dump_signal is not None:
            self._dump_signal = dump_signal
        self._signals = SignalHandlers(self)
        try:
            self._waker = _Waker(self._poller)
        except BaseException:
            self._poller.close()
            raise
        self._closed = False

    def __repr__(self) -> str:
        return (
            f"<{type(self).__name__} {self.backend}/{self.trigger} running={self.is_running()} "
            f"closed={self._closed} debug={self._debug}>"
        )

    # ------------------------------------------------------------------ running and stopping

    def run_forever(self) -> None:
        self._check_closed()
        self._check_not_running()
        old_hooks = sys.get_asyncgen_hooks()
        self._thread_id = threading.get_ident()
        if self._debug:
            sys.set_coroutine_origin_tracking_depth(_DEBUG_STACK_DEPTH)
        try:
            sys.set_asyncgen_hooks(
                firstiter=self._asyncgen_firstiter_hook, finalizer=self._asyncgen_finalizer_hook
            )
            asyncio._set_running_loop(self)
            if self._dump_signal is not None:
                self._install_dump_signal()
            if self._leftover:
                self._dispatch_leftover()  # interrupted last time: the rest of that batch first
            self._run_until_stopped()
        finally:
            self._stopping = False
            self._polling = False
            if self._stall is not None:
                self._stall.end_run()
            self._thread_id = None
            asyncio._set_running_loop(None)
            if self._debug:
                sys.set_coroutine_origin_tracking_depth(0)
            sys.set_asyncgen_hooks(*old_hooks)

    def run_until_complete(self, future: Any) -> Any:
        self._check_closed()
        self._check_not_running()
        new_task = not asyncio.isfuture(future)
        future = asyncio.ensure_future(future, loop=self)
        if new_task:
            # Interrupted before completion: the caller sees the interruption, not a warning.
            future._log_destroy_pending = False
        future.add_done_callback(_run_until_complete_cb)
        try:
            self.run_forever()
        except BaseException:
            if new_task and future.done() and not future.cancelled():
                future.exception()  # retrieved, so that it is not logged as never retrieved
            raise
        finally:
            future.remove_done_callback(_run_until_complete_cb)
        if not future.done():
            raise RuntimeError("Event loop stopped before Future completed.")
        return future.result()

    def stop(self) -> None:
        self._stopping = True

    def is_running(self) -> bool:
        return self._thread_id is not None

    def is_closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        if self.is_running():
            raise RuntimeError("Cannot close a running event loop")
        if self._closed:
            return
        if self._debug:
            logger.debug("Close %r", self)
        self._closed = True
        self._ready.clear()
        self._after_io.clear()
        self._leftover = ()
        self._deferred.clear()
        self._timers.clear()
        self._executor_shutdown_called = True
        executor = self._default_executor
        if executor is not None:
            self._default_executor = None
            executor.shutdown(wait=False)
        self._signals.close()
        self._waker.close(self._poller)
        self._poller.close()

    def __del__(self, _warn: Callable[..., None] = warnings.warn) -> None:
        if not self._closed:
            _warn(f"unclosed event loop {self!r}", ResourceWarning, source=self)
            if not self.is_running():
                self.close()

    def _check_closed(self) -> None:
        if self._closed:
            raise RuntimeError("Event loop is closed")

    def _check_not_running(self) -> None:
        if self.is_running():
            raise RuntimeError("This event loop is already running")
        if asyncio._get_running_loop() is not None:
            raise RuntimeError("Cannot run the event loop while another loop is running")

    def _check_thread(self) -> None:
        if self._thread_id is not None and self._thread_id != threading.get_ident():
            raise RuntimeError(
                "Non-thread-safe operation invoked on an event loop other than the current one"
            )

    # ------------------------------------------------------------------ one iteration

    def _run_until_stopped(self) -> None:
        """Iterations (the module docstring's steps 1-7) until stop() is called.  One function
        for all of them rather than a call per iteration: the frame and the local names are
        set up once per run (an iteration with one callback ready is about 0.6 us)."""
        ready = self._ready
        timers = self._timers
        deferred = self._deferred
        stats = self._stats
        stale = self._stale
        poll = self._poll
        popleft = ready.popleft
        handlers = self._handlers
        # The stall detector times iterations from poll to poll: with it on, every one polls.
        skip_idle_poll = self._stall is None

        while True:
            # ``_polling`` is raised *before* the ready queue is inspected: a thread that appends a
            # callback and then sees it False knows the loop will find the callback without a wakeup.
            self._polling = True
            if stale:  # poll() leaves this to us (the poller's wait() empties it itself)
                stale.clear()
            if ready or deferred or self._stopping:
                if len(handlers) > 1 or not skip_idle_poll:
                    events = poll(0)
                    stats.polls += 1
                else:
                    # Nothing registered but the loop's own waker, which would only say that
                    # another thread queued a callback: the ready queue says it already.  No
                    # system call then (its bytes are read by the next blocking poll).
                    events = _NO_EVENTS
                    stats.idle_skips += 1
            else:
                timeout: float | None = None
                if timers._heap:
                    when = timers.next_deadline()
                    if when is not None:
                        timeout = when - self.time()  # the loop's clock: tests and libraries patch it
                        if timeout < 0.0:
                            timeout = 0.0
                        elif timeout > MAX_TIMEOUT:
                            timeout = MAX_TIMEOUT
                events = poll(timeout)
                stats.polls += 1
            self._polling = False

            if timers._heap:
                timers.pop_due(self.time() + self._clock_resolution, ready.append)

            # Callbacks queued before this poll run before the I/O it found: asyncio's loop gets the
            # same order by queueing I/O handles behind them.  (A coroutine woken in the previous
            # iteration, say the one awaiting connect_accepted_socket, must resume before a fast
            # peer's whole exchange is played to its protocol.)
            ntodo = len(ready)
            if ntodo:
                try:
                    if self._timing:
                        self._run_handles(ready, ntodo)
                    else:
                        # Handle._run inline: one Python frame less per callback (see handles.py).
                        # Kept in step with _run_handles (a call per iteration would cost a frame).
                        while ntodo:  # not range(): its iterator costs more than a short queue's run
                            ntodo -= 1
                            handle = popleft()
                            if handle._cancelled:
                                continue
                            args = handle._args
                            try:
                                # ``f(*args)`` is a slow call in CPython even for () or (x,): most
                                # callbacks are task steps (no argument) or future callbacks (one).
                                if not args:
                                    handle._context.run(handle._callback)  # type: ignore[attr-defined]
                                elif len(args) == 1:
                                    handle._context.run(handle._callback, args[0])  # type: ignore[attr-defined]
                                else:
                                    handle._context.run(handle._callback, *args)  # type: ignore[attr-defined]
                            except (SystemExit, KeyboardInterrupt):
                                raise
                            except BaseException as exc:
                                report_failure(handle, exc)
                        # This frame lives as long as the run: keep no callback's handle or
                        # arguments (a future, a task) alive past its turn (see io.run_handle).
                        handle = args = None  # type: ignore[assignment]
                except (SystemExit, KeyboardInterrupt):
                    # The poll's events are not lost with the interrupted run: edge-triggered, no
                    # one would report them again.  The next run serves them first.
                    if events:
                        self._leftover = events
                    raise

            if events:
                stats.events += len(events)
                self._dispatch(events)
                after_io = self._after_io
                if after_io:
                    self._run_handles(after_io, len(after_io))

            if deferred:
                self._serve_deferred()
            if self._stopping:
                return

    def _dispatch(self, events: list[tuple[int, int]]) -> None:
        """Hand each ``(fd, mask)`` to its handler, behind the exception barrier.

        What the handlers schedule meanwhile (typically the wakeup of a task waiting for the
        data) goes to ``_after_io``, run by the caller right after the batch: waiting for the
        next iteration would cost an extra poll per message.
        """
        handlers = self._handlers
        stale = self._poller.stale
        self._soon = self._after_io
        stall = self._stall
        it = iter(events) if stall is None or not stall.attributing else stall.timed(events, handlers)
        handler = fd = None  # bound for the except clauses, whenever an interrupt lands
        try:
            while True:
                # A try costs nothing on 3.11+ until something is raised; after a failing
                # handler the loop goes on with the same iterator, so the rest of the batch is
                # served in this iteration.
                try:
                    for fd, mask in it:
                        # ``stale``: unregistered since the poll; the number may be someone else's.
                        if stale and fd in stale:
                            continue
                        try:
                            handler = handlers[fd]  # a subscript costs less than .get()
                        except KeyError:
                            continue  # not registered (any more)
                        handler._on_events(mask)
                    return
                except (SystemExit, KeyboardInterrupt):
                    self._save_batch(it, handler)
                    raise
                except BaseException as exc:
                    try:
                        self._handler_failed(handler, fd, exc)  # type: ignore[arg-type]
                    except (SystemExit, KeyboardInterrupt):  # from the exception handler
                        self._save_batch(it, None)
                        raise
        finally:
            self._soon = self._ready

    def _save_batch(self, rest: Iterable[tuple[int, int]], interrupted: Handler | None) -> None:
        """SystemExit/KeyboardInterrupt in a batch: nothing is lost.  The rest of the batch is
        served by the next run, what the batch scheduled moves to the ready queue, and the
        interrupted handler is deferred, so that a drain it had not finished goes on."""
        self._leftover = list(rest)
        self._after_io_to_ready()
        if interrupted is not None:
            self._defer_again(interrupted)

    def _defer_again(self, handler: Handler) -> None:
        try:
            self.io.defer(handler)
        except AttributeError:
            pass  # a handler with __slots__ (add_reader callbacks, signals): never deferred

    def _dispatch_leftover(self) -> None:
        """Serve the events of a batch that SystemExit/KeyboardInterrupt cut short.  No poll has
        happened since, so ``stale`` still tells which of them are out of date."""
        events, self._leftover = self._leftover, ()
        self._dispatch(list(events))
        self._after_io_to_ready()

    def _after_io_to_ready(self) -> None:
        """What an interrupted or out-of-band batch scheduled runs in the next iteration."""
        self._ready.extend(self._after_io)
        self._after_io.clear()

    def _serve_deferred(self) -> None:
        """Call ``_on_deferred`` of each handler on the deferred list, behind the barrier.
        What they defer again waits for the next iteration."""
        todo = self._deferred[:]
        self._deferred.clear()
        stall = self._stall
        it = iter(todo) if stall is None or not stall.attributing else stall.timed(todo, None)
        deferred = self._deferred
        handler: Handler | None = None
        while True:
            try:
                for handler in it:
                    handler._on_deferred()
                return
            except (SystemExit, KeyboardInterrupt):
                # The rest are still deferred (their flag is still set), the interrupted one
                # first: a drain it had not finished goes on next run.
                rest = list(it)
                if handler is not None and handler not in deferred:
                    handler._deferred = True
                    rest.insert(0, handler)
                deferred[:0] = rest
                raise
            except BaseException as exc:
                assert handler is not None
                if handler not in deferred:  # it may have deferred itself again before failing
                    handler._deferred = False
                try:
                    self._handler_failed(handler, getattr(handler, "_fd", None), exc)
                except (SystemExit, KeyboardInterrupt):  # from the exception handler
                    deferred[:0] = it
                    raise

    def _handler_failed(self, handler: Handler, fd: int | None, exc: BaseException) -> None:
        """An exception escaped a handler: report it, then let the handler release its
        descriptor (a transport aborts with ``connection_lost(exc)``)."""
        context: dict[str, Any] = {
            "message": f"Exception in the I/O handler of fd {fd}",
            "exception": exc, "handler": handler, "fd": fd,
        }
        if handler._is_transport:
            context["transport"] = handler
            protocol = getattr(handler, "_protocol", None)
            if protocol is not None:
                context["protocol"] = protocol
        try:
            self.call_exception_handler(context)
        finally:
            # Released even when the exception handler lets SystemExit/KeyboardInterrupt out.
            try:
                handler._on_handler_error(exc)
            except (SystemExit, KeyboardInterrupt):
                raise
            except BaseException:
                logger.error("Exception while aborting the I/O handler of fd %s", fd,
                             exc_info=True)

    def _run_handles(self, queue: collections.deque[Handle], n: int) -> None:
        """Run the first ``n`` handles of ``queue``; on an escaping BaseException the rest of an
        I/O batch's callbacks move to the ready queue, so that nothing is lost."""
        popleft = queue.popleft
        try:
            if self._timing:
                run = self.io.run_handle
                for _ in range(n):
                    handle = popleft()
                    if not handle._cancelled:
                        run(handle)
                return
            while n:  # the ready queue's run in _run_until_stopped, in a function
                n -= 1
                handle = popleft()
                if handle._cancelled:
                    continue
                args = handle._args
                try:
                    if not args:
                        handle._context.run(handle._callback)  # type: ignore[attr-defined]
                    elif len(args) == 1:
                        handle._context.run(handle._callback, args[0])  # type: ignore[attr-defined]
                    else:
                        handle._context.run(handle._callback, *args)  # type: ignore[attr-defined]
                except (SystemExit, KeyboardInterrupt):
                    raise
                except BaseException as exc:
                    report_failure(handle, exc)
        finally:
            if queue is not self._ready and queue:
                self._ready.extend(queue)
                queue.clear()
            # A coroutine that failed in this call links its frame to ours (f_back): the last
            # handle and its arguments (a future) must not stay reachable from there.
            handle = args = None  # type: ignore[assignment]

    def _handle_ran(self, handle: Handle, seconds: float) -> None:
        """A timed callback finished (debug mode, or the stall detector attributing)."""
        if self._debug:
            self._warn_if_slow(handle, seconds)
        stall = self._stall
        if stall is not None and stall.attributing:
            stall.record_handle(handle, seconds)

    def _update_timing(self) -> None:
        stall = self._stall
        self._timing = self._debug or (stall is not None and stall.attributing)

    def _warn_if_slow(self, handle: Handle, seconds: float) -> None:
        if seconds >= self.slow_callback_duration:
            logger.warning("Executing %s took %.3f seconds", _format_handle(handle), seconds)

    # ------------------------------------------------------------------ looking inside

    def describe(self) -> list[dict[str, Any]]:
        """Every descriptor the loop watches, now: one dict each (see ``edgeloop.introspect``):
        ``fd``, ``kind``, ``local``/``peer``, ``state``, ``mask``, ``readable``/``writable``
        (what edge mode remembers), ``deferred``, ``write_buffer``, ``reads``/``writes``/
        ``bytes_in``/``bytes_out`` and ``age`` (seconds) where they apply."""
        return introspect.describe(self)

    def describe_text(self) -> str:
        """``describe()`` as an aligned table, one line per descriptor."""
        return introspect.format_table(self.describe())

    def _install_dump_signal(self) -> None:
        sig, self._dump_signal = self._dump_signal, None  # once per loop
        if threading.current_thread() is threading.main_thread() and sig is not None:
            introspect.install_dump_signal(self, sig)

    def stats(self) -> dict[str, int]:
        """Counters since the loop was created: a snapshot for benchmarks and tests.

        ``iterations``, ``polls`` (waits in the poller; an iteration with callbacks ready and no
        descriptor but the loop's own waker does not poll: ``idle_skips``), ``events`` (``(fd, mask)`` pairs
        delivered), ``ctl`` (register/modify/unregister calls: ``epoll_ctl`` on epoll), ``reads``
        (recv calls by transports), ``eagain`` (reads that found nothing), ``cutoffs`` (drains cut
        short by the budget, or otherwise put on the deferred list), ``accepts``,
        ``writes`` (send calls by transports), ``timers`` (live scheduled timers),
        ``fds`` (registered descriptors).
        """
        s = self._stats
        out = {"iterations": s.polls + s.idle_skips}
        out.update((name, getattr(s, name)) for name in Stats.__slots__)
        # Transports count their own reads and writes (loop.describe()); they fold them into
        # the totals when they close.
        forgotten = 0
        for handler in self._handlers.values():
            counts = getattr(handler, "_counts", None)
            if counts is not None:
                out["reads"] += counts[0]
                out["writes"] += counts[1]
            elif sockets.forgotten(handler):
                forgotten += 1  # sock_* socket closed since: no longer watched by the kernel
        out["ctl"] = self._poller.ctl_calls
        out["timers"] = len(self._timers)
        out["fds"] = len(self._handlers) - forgotten
        return out

    # ------------------------------------------------------------------ callbacks and timers

    def _check_callback(self, callback: Any, method: str) -> None:
        if asyncio.iscoroutine(callback) or asyncio.iscoroutinefunction(callback):
            raise TypeError(f"coroutines cannot be used with {method}()")
        if not callable(callback):
            raise TypeError(f"a callable object was expected by {method}(), got {callback!r}")

    def _check_call(self, callback: Any, method: str) -> None:
        """The checks of call_soon/call_later/call_at: a closed loop, and in debug mode the thread
        and the callback; a callback that is not callable is refused in every mode."""
        if self._closed:
            raise RuntimeError("Event loop is closed")
        if self._debug:
            self._check_thread()
            self._check_callback(callback, method)
        elif not callable(callback):
            self._check_callback(callback, method)

    def call_soon(self, callback: Callable[[Unpack[_Ts]], object], *args: Unpack[_Ts], context: contextvars.Context | None = None) -> Handle:
        if self._closed or self._debug or not callable(callback):
            self._check_call(callback, "call_soon")  # raises, unless in debug mode
            handle = Handle(callback, args, self, context)  # asyncio's: it records its origin
            if handle._source_traceback:  # type: ignore[attr-defined]
                del handle._source_traceback[-1]  # type: ignore[attr-defined]
            self._soon.append(handle)
            return handle
        # The hot path (every task step and every future callback comes here): the light handle
        # of edgeloop.handles, filled in here rather than by its __init__, one Python frame less
        # per callback (87 ns instead of 109 ns on 3.11).
        light: Any = _new_object(_LightHandle)
        light._callback = callback
        light._args = args
        light._context = _copy_context() if context is None else context
        light._loop = self
        light._cancelled = False
        light._repr = None
        light._source_traceback = None
        self._soon.append(light)
        return light

    def call_soon_threadsafe(self, callback: Callable[[Unpack[_Ts]], object], *args: Unpack[_Ts], context: contextvars.Context | None = None) -> Handle:
        self._check_closed()
        if self._debug or not callable(callback):
            self._check_callback(callback, "call_soon_threadsafe")
        handle = Handle(callback, args, self, context)
        if handle._source_traceback:  # type: ignore[attr-defined]
            del handle._source_traceback[-1]  # type: ignore[attr-defined]
        # The main queue, never the one swapped in while an I/O batch is dispatched: a thread
        # could append to that one just after the loop finished with it, and nothing would wake
        # the loop for it.  deque.append is atomic.
        self._ready.append(handle)
        if self._polling:
            self._waker.wake()
        return handle

    def _write_to_self(self) -> None:
        """Wake the loop from another thread or a signal handler (name kept from asyncio)."""
        self._waker.wake()

    def call_later(self, delay: float, callback: Callable[[Unpack[_Ts]], object], *args: Unpack[_Ts], context: contextvars.Context | None = None) -> TimerHandle:
        if delay is None:
            raise TypeError("delay must not be None")
        if self._closed or self._debug or not callable(callback):
            timer = self.call_at(self.time() + delay, callback, *args, context=context)
            if timer._source_traceback:  # type: ignore[attr-defined]
                del timer._source_traceback[-1]  # type: ignore[attr-defined]  # point at our caller, not at call_later itself
            return timer
        return self._timers.schedule(self.time() + delay, callback, args, self,
                                     _copy_context() if context is None else context)

    def call_at(self, when: float, callback: Callable[[Unpack[_Ts]], object], *args: Unpack[_Ts], context: contextvars.Context | None = None) -> TimerHandle:
        if when is None:
            raise TypeError("when cannot be None")
        if self._closed or self._debug or not callable(callback):
            self._check_call(callback, "call_at")  # raises, unless in debug mode
            timer = TimerHandle(when, callback, args, self, context)  # asyncio's: it records its origin
            if timer._source_traceback:  # type: ignore[attr-defined]
                del timer._source_traceback[-1]  # type: ignore[attr-defined]
            self._timers.push(timer)
            return timer
        return self._timers.schedule(when, callback, args, self,
                                     _copy_context() if context is None else context)

    def _timer_handle_cancelled(self, handle: TimerHandle) -> None:
        # Called by TimerHandle.cancel() before it marks itself cancelled.
        if handle._scheduled:  # type: ignore[attr-defined]
            self._timers.cancelled(handle)

    time = staticmethod(time.monotonic)  # aiohttp compares loop.time() with time.monotonic()

    # ------------------------------------------------------------------ futures and tasks

    def create_future(self) -> asyncio.Future[Any]:
        return asyncio.Future(loop=self)

    def create_task(self, coro: Coroutine[Any, Any, _T] | Generator[Any, None, _T], *, name: str | None = None,
                    context: contextvars.Context | None = None, **kwargs: Any) -> asyncio.Task[_T]:
        self._check_closed()
        factory = self._task_factory
        if factory is None:
            task = asyncio.Task(coro, loop=self, name=name, context=context, **kwargs)
            if task._source_traceback:  # type: ignore[attr-defined]
                del task._source_traceback[-1]  # type: ignore[attr-defined]
            return task
        if context is None:
            task = factory(self, coro, **kwargs)
        else:
            task = factory(self, coro, context=context, **kwargs)
        if name is not None:
            task.set_name(name)
        return task

    def set_task_factory(self, factory: Callable[..., Any] | None) -> None:
        if factory is not None and not callable(factory):
            raise TypeError("task factory must be a callable or None")
        self._task_factory = factory

    def get_task_factory(self) -> Callable[..., Any] | None:
        return self._task_factory

    # ------------------------------------------------------------------ executor

    def run_in_executor(self, executor: concurrent.futures.Executor | None, func: Callable[[Unpack[_Ts]], _T], *args: Unpack[_Ts]) -> asyncio.Future[_T]:
        self._check_closed()
        if self._debug:
            self._check_callback(func, "run_in_executor")
        if executor is None:
            executor = self._default_executor
            if executor is None:
                if self._executor_shutdown_called:
                    raise RuntimeError("Executor shutdown has been called")
                executor = concurrent.futures.ThreadPoolExecutor(thread_name_prefix="edgeloop")
                self._default_executor = executor
        return asyncio.wrap_future(executor.submit(func, *args), loop=self)

    def set_default_executor(self, executor: concurrent.futures.Executor) -> None:
        if not isinstance(executor, concurrent.futures.ThreadPoolExecutor):
            raise TypeError("executor must be ThreadPoolExecutor")
        self._default_executor = executor

    async def shutdown_default_executor(self, timeout: float | None = None) -> None:
        self._executor_shutdown_called = True
        executor = self._default_executor
        if executor is None:
            return
        done = self.create_future()
        thread = threading.Thread(target=self._join_executor, args=(executor, done))
        thread.start()
        try:
            async with asyncio.timeout(timeout):
                await done
        except TimeoutError:
            warnings.warn(
                f"The executor did not finish joining its threads within {timeout} seconds.",
                RuntimeWarning, stacklevel=2,
            )
            executor.shutdown(wait=False)
        else:
            thread.join()

    def _join_executor(self, executor: concurrent.futures.Executor, done: asyncio.Future[None]) -> None:
        try:
            executor.shutdown(wait=True)
            result: BaseException | None = None
        except Exception as exc:
            result = exc
        if self._closed:
            return

        def finish() -> None:
            if done.done():
                return
            if result is None:
                done.set_result(None)
            else:
                done.set_exception(result)

        try:
            self.call_soon_threadsafe(finish)
        except RuntimeError:
            pass  # closed meanwhile

    # ------------------------------------------------------------------ async generators

    def _asyncgen_firstiter_hook(self, agen: Any) -> None:
        if self._asyncgens_shutdown_called:
            warnings.warn(
                f"asynchronous generator {agen!r} was scheduled after loop.shutdown_asyncgens() call",
                ResourceWarning, source=self,
            )
        self._asyncgens.add(agen)

    def _asyncgen_finalizer_hook(self, agen: Any) -> None:
        self._asyncgens.discard(agen)
        if not self._closed:
            self.call_soon_threadsafe(self.create_task, agen.aclose())

    async def shutdown_asyncgens(self) -> None:
        self._asyncgens_shutdown_called = True
        if not self._asyncgens:
            return
        closing = list(self._asyncgens)
        self._asyncgens.clear()
        results = await asyncio.gather(*[ag.aclose() for ag in closing], return_exceptions=True)
        for result, agen in zip(results, closing):
            if isinstance(result, Exception):
                self.call_exception_handler({
                    "message": f"an error occurred during closing of asynchronous generator {agen!r}",
                    "exception": result,
                    "asyncgen": agen,
                })

    # ------------------------------------------------------------------ errors and debug

    def get_exception_handler(self) -> Callable[..., Any] | None:
        return self._exception_handler

    def set_exception_handler(self, handler: Callable[..., Any] | None) -> None:
        if handler is not None and not callable(handler):
            raise TypeError(f"A callable object or None is expected, got {handler!r}")
        self._exception_handler = handler

    def default_exception_handler(self, context: dict[str, Any]) -> None:
        message = context.get("message") or "Unhandled exception in event loop"
        exception = context.get("exception")
        exc_info: Any = (type(exception), exception, exception.__traceback__) if exception else False
        current = self._current_handle
        if "source_traceback" not in context and current is not None and current._source_traceback:  # type: ignore[attr-defined]
            context["handle_traceback"] = current._source_traceback  # type: ignore[attr-defined]
        lines = [message]
        for key in sorted(context):
            if key in ("message", "exception"):
                continue
            value = context[key]
            if key in ("source_traceback", "handle_traceback"):
                where = "Object" if key == "source_traceback" else "Handle"
                text = "".join(traceback.format_list(value)).rstrip()
                lines.append(f"{where} created at (most recent call last):\n{text}")
            else:
                lines.append(f"{key}: {value!r}")
        logger.error("\n".join(lines), exc_info=exc_info)

    def call_exception_handler(self, context: dict[str, Any]) -> None:
        handler = self._exception_handler
        if handler is None:
            try:
                self.default_exception_handler(context)
            except (SystemExit, KeyboardInterrupt):
                raise
            except BaseException:
                logger.error("Exception in default exception handler", exc_info=True)
            return
        try:
            # Run the handler in the context of what failed (a task, or a callback's handle), so
            # that it sees the same context variables; asyncio does the same from 3.12.
            run = self._context_of(context)
            if run is None:
                handler(self, context)
            else:
                run(handler, self, context)
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            try:
                self.default_exception_handler({
                    "message": "Unhandled error in exception handler",
                    "exception": exc,
                    "context": context,
                })
            except (SystemExit, KeyboardInterrupt):
                raise
            except BaseException:
                logger.error("Exception in default exception handler while handling an "
                             "unexpected error in custom exception handler", exc_info=True)

    @staticmethod
    def _context_of(context: dict[str, Any]) -> Callable[..., Any] | None:
        for key in ("task", "future", "handle"):
            source = context.get(key)
            if source is not None:
                get_context = getattr(source, "get_context", None)
                ctx = get_context() if get_context is not None else None
                return getattr(ctx, "run", None)
        return None

    def get_debug(self) -> bool:
        return self._debug

    def set_debug(self, enabled: bool) -> None:
        self._debug = enabled
        self._update_timing()
        if self.is_running():
            sys.set_coroutine_origin_tracking_depth(_DEBUG_STACK_DEPTH if enabled else 0)

    # ------------------------------------------------------------------ readers and writers

    def _fd_callbacks(self, fd: int) -> FdCallbacks | None:
        handler = self._handlers.get(fd)
        if handler is None or isinstance(handler, FdCallbacks):
            return handler
        if handler._is_transport:
            # Until its connection_lost the transport owns the fd, closing or not.
            raise RuntimeError(f"File descriptor {fd!r} is used by transport {handler!r}")
        raise RuntimeError(f"File descriptor {fd!r} is used internally by the event loop")

    def add_reader(self, fd: Any, callback: Callable[[Unpack[_Ts]], Any], *args: Unpack[_Ts]) -> None:
        self._check_closed()
        fileobj, fd = fd, fileobj_to_fd(fd)
        if self._debug:
            self._check_callback(callback, "add_reader")
        self._add_fd_callback(fd, Handle(callback, args, self, None), reader=True, fileobj=fileobj)

    def add_writer(self, fd: Any, callback: Callable[[Unpack[_Ts]], Any], *args: Unpack[_Ts]) -> None:
        self._check_closed()
        fileobj, fd = fd, fileobj_to_fd(fd)
        if self._debug:
            self._check_callback(callback, "add_writer")
        self._add_fd_callback(fd, Handle(callback, args, self, None), reader=False, fileobj=fileobj)

    def _add_fd_callback(self, fd: int, handle: Handle, reader: bool, fileobj: Any = None) -> None:
        waits = self._handlers.get(fd)
        if type(waits) is sockets.SockWaits:
            # Kept registered by sock_* (edge mode): callbacks are FdCallbacks' job; a wait in the
            # other direction moves along with the fd.
            waits.hand_over(self, reader)
        entry = self._fd_callbacks(fd)
        if entry is None:
            entry = FdCallbacks(self.io, fd, fileobj)
            if reader:
                entry.reader = handle
            else:
                entry.writer = handle
            entry.register()
            return
        entry.refresh()
        if fileobj is not None and not isinstance(fileobj, int):
            entry.fileobj = fileobj  # the object that now owns the number
        old = entry.reader if reader else entry.writer
        if reader:
            entry.reader = handle
        else:
            entry.writer = handle
        if old is not None:
            old.cancel()
        if not entry.update():
            # The fd was closed (and its number reused) behind our back: the entry's callbacks
            # belonged to the dead file.  Start over with only the new one.
            if reader:
                entry.reader = None
            else:
                entry.writer = None
            entry.drop()
            self._add_fd_callback(fd, handle, reader, fileobj)

    def _remove_fd_handle(self, fd: int, handle: Handle, reader: bool) -> None:
        """Remove ``handle`` if it is still the fd's reader (writer); used by the sock_* waits."""
        entry = self._handlers.get(fd)
        if isinstance(entry, FdCallbacks) and (entry.reader if reader else entry.writer) is handle:
            self._remove_fd_callback(fd, reader)

    def _fd_added_as(self, fileobj: Any) -> int | None:
        for fd, handler in self._handlers.items():
            if isinstance(handler, FdCallbacks) and handler.fileobj is fileobj:
                return fd
        return None

    def remove_reader(self, fd: Any) -> bool:
        return self._remove_fd_callback(fd, reader=True)

    def remove_writer(self, fd: Any) -> bool:
        return self._remove_fd_callback(fd, reader=False)

    def _remove_fd_callback(self, fd: Any, reader: bool) -> bool:
        if self._closed:
            return False
        fileobj, fd = fd, fileobj_to_fd(fd, closed_ok=True)
        if fd < 0:
            # A socket closed since it was added (fileno() is -1): asyncio's selector still
            # finds the registration by the object itself.
            found = self._fd_added_as(fileobj)
            if found is None:
                raise ValueError(f"Invalid file descriptor: {fd}")
            fd = found
        waits = self._handlers.get(fd)
        if type(waits) is sockets.SockWaits:
            return waits.drop_waiter(reader)  # the registration stays: it is only a cache
        entry = self._fd_callbacks(fd)
        if entry is None:
            return False
        handle = entry.reader if reader else entry.writer
        if handle is None:
            return False
        if reader:
            entry.reader = None
        else:
            entry.writer = None
        handle.cancel()
        entry.update()
        return True

    # ------------------------------------------------------------------ signals

    def add_signal_handler(self, sig: int, callback: Callable[[Unpack[_Ts]], object], *args: Unpack[_Ts]) -> None:
        self._check_closed()
        if asyncio.iscoroutine(callback) or asyncio.iscoroutinefunction(callback):
            raise TypeError("coroutines cannot be used with add_signal_handler()")
        self._signals.add(sig, callback, args)

    def remove_signal_handler(self, sig: int) -> bool:
        return self._signals.remove(sig)

    # ------------------------------------------------------------------ network (network.py)

    getaddrinfo = network.getaddrinfo
    getnameinfo = network.getnameinfo
    create_connection = network.create_connection
    create_server = network.create_server  # type: ignore[assignment]  # returns edgeloop's Server, not asyncio.Server
    create_unix_connection = network.create_unix_connection
    create_unix_server = network.create_unix_server  # type: ignore[assignment]  # returns edgeloop's Server, not asyncio.Server
    connect_accepted_socket = network.connect_accepted_socket
    from .transports.datagram import create_datagram_endpoint  # type: ignore[misc]
    from .transports.tls import start_tls  # type: ignore[misc]  # TLS upgrade lives with the TLS transport
    from .sendfile import sendfile  # type: ignore[misc]  # zero-copy file transfer over a transport
    from .transports.pipes import connect_read_pipe  # type: ignore[misc]
    from .transports.pipes import connect_write_pipe  # type: ignore[misc]
    from .transports.subprocess import subprocess_exec  # type: ignore[misc]
    from .transports.subprocess import subprocess_shell  # type: ignore[misc]

    # ------------------------------------------------------------------ sockets (sockets.py)

    sock_recv = sockets.sock_recv  # type: ignore[assignment]  # its parameter is n, not nbytes (renaming would break n=)
    sock_recv_into = sockets.sock_recv_into
    sock_recvfrom = sockets.sock_recvfrom
    sock_recvfrom_into = sockets.sock_recvfrom_into
    sock_sendall = sockets.sock_sendall
    sock_sendto = sockets.sock_sendto
    sock_connect = sockets.sock_connect
    sock_accept = sockets.sock_accept
    sock_sendfile = sockets.sock_sendfile
