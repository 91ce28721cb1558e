"""The timer queue: a binary heap of ``(when, seq, handle)`` tuples.

* Tuples compare in C: ``when`` first, then ``seq`` (a counter) so that timers with equal deadlines
  fire in the order they were scheduled and the handles themselves are never compared.
* Cancellation is lazy: ``TimerHandle.cancel()`` tells the loop (``_timer_handle_cancelled``), which
  only counts it here.  Cancelled entries are skipped when they reach the top of the heap.
* So that a burst of cancelled timers (timeouts that did not fire: the common case) cannot keep the
  heap large, it is rebuilt without them once they are both numerous and the majority.

The queue also makes the loop's timer handles (``schedule``) when the loop is not in debug mode:
``TimerHandle`` below is asyncio's, built in one step, and its ``cancel()`` does the queue's
counting itself.  A timeout set and cancelled (most of them never fire) then costs two Python
frames instead of six: asyncio's ``TimerHandle.__init__`` and ``Handle.__init__`` (which asks
``loop.get_debug()``), ``push``, ``TimerHandle.cancel``, ``Handle.cancel`` (``get_debug()``
again) and ``loop._timer_handle_cancelled``.  On 3.11: a stock TimerHandle takes 255 ns to
build, this one 119 ns.  Debug mode makes asyncio's own (they record where they were created).
"""
from __future__ import annotations

import asyncio
import heapq
import itertools
from contextvars import Context
from typing import TYPE_CHECKING, Any, Callable

if TYPE_CHECKING:
    from .loop import EventLoop

_new_object = object.__new__

# Rebuild when more than this many cancelled entries make up more than half of the heap.
_COMPACT_MIN = 100


class TimerHandle(asyncio.TimerHandle):
    """asyncio's TimerHandle (its ``when()``, comparisons, ``repr()``), without the debug-mode
    questions; no state of its own.  Made by ``TimerQueue.schedule``."""

    __slots__ = ()

    def cancel(self) -> None:
        if not self._cancelled:
            if self._scheduled:  # type: ignore[attr-defined]
                # TimerQueue.cancelled inlined; before the flag is set, as compact() expects.
                queue = self._loop._timers  # type: ignore[attr-defined]
                queue._cancelled += 1
                if queue._cancelled > _COMPACT_MIN and 2 * queue._cancelled > len(queue._heap):
                    queue.compact(self)
            self._cancelled = True
            if self._loop._debug:  # type: ignore[attr-defined]
                self._repr = repr(self)  # debug turned on since: keep what the warning names
            self._callback = None
            self._args = None  # type: ignore[assignment]


class TimerQueue:
    __slots__ = ("_heap", "_seq", "_cancelled")

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, asyncio.TimerHandle]] = []
        self._seq = itertools.count()
        self._cancelled = 0

    def __len__(self) -> int:
        """Scheduled timers that are still live."""
        return len(self._heap) - self._cancelled

    def push(self, handle: asyncio.TimerHandle) -> None:
        """Schedule a handle made elsewhere (asyncio's own, in debug mode)."""
        heapq.heappush(self._heap, (handle._when, next(self._seq), handle))  # type: ignore[attr-defined]
        handle._scheduled = True  # type: ignore[attr-defined]

    def schedule(self, when: float, callback: Callable[..., object], args: tuple[Any, ...],
                 loop: EventLoop, context: Context) -> TimerHandle:
        """Make a ``TimerHandle`` and push it: the fields set here, not by an ``__init__`` (one
        frame for both)."""
        timer: Any = _new_object(TimerHandle)
        timer._when = when
        timer._callback = callback
        timer._args = args
        timer._context = context
        timer._loop = loop
        timer._cancelled = False
        timer._repr = None
        timer._source_traceback = None
        timer._scheduled = True
        heapq.heappush(self._heap, (when, next(self._seq), timer))
        return timer

    def cancelled(self, handle: asyncio.TimerHandle) -> None:
        """A scheduled handle was cancelled (asyncio's own; ours count themselves)."""
        self._cancelled += 1
        if self._cancelled > _COMPACT_MIN and 2 * self._cancelled > len(self._heap):
            self.compact(handle)

    def compact(self, handle: asyncio.TimerHandle) -> None:
        """Dead entries dominate: rebuild the heap without them."""
        live = []
        for entry in self._heap:
            h = entry[2]
            # ``handle`` is being cancelled: its ``_cancelled`` flag is set just after this call.
            if h._cancelled or h is handle:
                h._scheduled = False  # type: ignore[attr-defined]
            else:
                live.append(entry)
        heapq.heapify(live)
        self._heap = live
        self._cancelled = 0

    def next_deadline(self) -> float | None:
        """The deadline of the earliest live timer, dropping cancelled ones from the top."""
        heap = self._heap
        while heap:
            entry = heap[0]
            if not entry[2]._cancelled:
                return entry[0]
            heapq.heappop(heap)
            entry[2]._scheduled = False  # type: ignore[attr-defined]
            self._cancelled -= 1
        return None

    def pop_due(self, end: float, ready_append: Callable[[asyncio.TimerHandle], object]) -> None:
        """Move every live timer due at or before ``end`` to the ready queue."""
        heap = self._heap
        pop = heapq.heappop
        while heap and heap[0][0] <= end:
            handle = pop(heap)[2]
            handle._scheduled = False  # type: ignore[attr-defined]
            if handle._cancelled:
                self._cancelled -= 1
            else:
                ready_append(handle)

    def clear(self) -> None:
        for entry in self._heap:
            entry[2]._scheduled = False  # type: ignore[attr-defined]
        self._heap.clear()
        self._cancelled = 0
