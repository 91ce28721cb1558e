"""The timer queue: a binary heap of ``(when, seq, handle)`` tuples.

* Tuples compare in C: ``when`` first, then ``seq`` (a counter) so that timers with equal deadlines
  fire in the order they were scheduled and the handles themselves are never compared.
* Cancellation is lazy: ``TimerHandle.cancel()`` tells the loop (``_timer_handle_cancelled``), which
  only counts it here.  Cancelled entries are skipped when they reach the top of the heap.
* So that a burst of cancelled timers (timeouts that did not fire: the common case) cannot keep the
  heap large, it is rebuilt without them once they are both numerous and the majority.
"""
from __future__ import annotations

import heapq
import itertools
from asyncio import TimerHandle
from typing import Callable

# Rebuild when more than this many cancelled entries make up more than half of the heap.
_COMPACT_MIN = 100


class TimerQueue:
    __slots__ = ("_heap", "_seq", "_cancelled")

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, TimerHandle]] = []
        self._seq = itertools.count()
        self._cancelled = 0

    def __len__(self) -> int:
        """Scheduled timers that are still live."""
        return len(self._heap) - self._cancelled

    def push(self, handle: TimerHandle) -> None:
        heapq.heappush(self._heap, (handle._when, next(self._seq), handle))  # type: ignore[attr-defined]
        handle._scheduled = True  # type: ignore[attr-defined]

    def cancelled(self, handle: TimerHandle) -> None:
        """A scheduled handle was cancelled; compact when dead entries dominate."""
        self._cancelled += 1
        heap = self._heap
        if self._cancelled > _COMPACT_MIN and 2 * self._cancelled > len(heap):
            live = []
            for entry in heap:
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

    def pop_due(self, end: float, ready_append: Callable[[TimerHandle], object]) -> None:
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
