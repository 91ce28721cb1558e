"""A light ``Handle`` class for the loop's hot path, and the report of a failed callback.

Every ``call_soon`` (each task step, each future's done callback) creates a handle, so what
creating and running one costs is most of what a callback costs.  asyncio's ``Handle.__init__``
asks ``loop.get_debug()`` each time, and ``cancel()`` asks again: a loop that is not in debug
mode does not need either.  Measured on 3.11 (timeit, 300,000 calls): a stock Handle 134 ns to
build, this one 87 ns, filled in by ``call_soon`` itself (109 ns through an ``__init__``).  The timer
handles, built the same way, live with their queue in ``edgeloop.timers``.

The class subclasses asyncio's (``isinstance(h, asyncio.Handle)``, ``cancelled()``,
``get_context()``, ``repr()`` are asyncio's own) and adds no state (``__slots__ = ()``).  The
loop uses it when it is not in debug mode; in debug mode it makes asyncio's own handles, which
record where they were created.  Its class name is asyncio's, so ``repr()`` reads the same.

The loop runs a handle inline (``handle._context.run(handle._callback, *handle._args)``) rather
than through ``Handle._run``, which saves a Python frame per callback; ``report_failure`` is what
``_run`` does when the callback raises, for that inline path.
"""
from __future__ import annotations

import asyncio
import inspect
from asyncio import format_helpers
from typing import TYPE_CHECKING, Any, Callable

if TYPE_CHECKING:
    from contextvars import Context

    from .loop import EventLoop

# _format_callback_source(..., debug=): in 3.13, and in late 3.12 releases (not in 3.12.1).
_DEBUG_ARG = "debug" in inspect.signature(format_helpers._format_callback_source).parameters


class Handle(asyncio.Handle):
    """asyncio's Handle, built without the debug-mode question (see the module docstring).

    No ``__init__`` of its own: ``EventLoop.call_soon`` fills the fields in itself, which saves
    the frame an ``__init__`` call would cost (the timer queue does the same for timers)."""

    __slots__ = ()

    def cancel(self) -> None:
        if not self._cancelled:
            self._cancelled = True
            if self._loop._debug:  # type: ignore[attr-defined]
                self._repr = repr(self)  # debug turned on since: keep what the warning names
            self._callback = None
            self._args = None  # type: ignore[assignment]


def report_failure(handle: asyncio.Handle, exc: BaseException) -> None:
    """A callback run inline raised ``exc``: report it as ``Handle._run`` would (same message,
    same context keys), through the loop's exception handler."""
    loop: Any = handle._loop  # type: ignore[attr-defined]
    callback, args = handle._callback, handle._args  # type: ignore[attr-defined]
    if _DEBUG_ARG:
        where = format_helpers._format_callback_source(  # type: ignore[call-arg]
            callback, args, debug=loop.get_debug())
    else:
        where = format_helpers._format_callback_source(callback, args)
    context: dict[str, Any] = {
        "message": f"Exception in callback {where}",
        "exception": exc,
        "handle": handle,
    }
    source = handle._source_traceback  # type: ignore[attr-defined]
    if source:
        context["source_traceback"] = source
    loop.call_exception_handler(context)
