"""What the loop can tell about itself, cheaply enough to leave on in production.

Three views, all built on the descriptor contract (``edgeloop.descriptors``):

* ``loop.describe()`` / ``loop.describe_text()``: every descriptor the loop watches, now: fd,
  kind, addresses, state, the readiness edge mode remembers, the registered mask, counters and
  age.  Each handler answers ``_describe()``; the per-transport counters are the ones the loop's
  ``stats()`` adds up, so keeping them costs one addition per read drain and per send.
* The stall detector (``EventLoop(stall_threshold=...)``, ``EDGELOOP_STALL_MS``): the loop times
  each iteration from the end of its poll (waiting is not a stall), with two clock reads in the
  poll call and nothing in the iteration itself.  Nothing else is timed until an iteration is
  slow.  The first slow iteration is reported with what it ran, without times: the callbacks and
  tasks queued before its poll, the descriptors the poll reported, the deferred handlers (a
  C-level copy of the queues per iteration; timing each callback would cost two clock reads
  each).  From then on the loop times every callback and handler, so the next stall names the
  slowest, timers and I/O-scheduled callbacks included, with the time each took.  After
  ``CALM_ITERATIONS`` iterations without a stall the timing is switched off again.
* The operator's snapshot (``EDGELOOP_DUMP_SIGNAL=SIGUSR2``): on that signal the loop logs its
  ``stats()`` and ``describe_text()`` (logger ``edgeloop``), without any change to the program.
"""
from __future__ import annotations

import asyncio
import logging
import os
import signal
import time
from asyncio import Handle
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator

from . import sockets
from .poller import (EPOLLERR, EPOLLET, EPOLLEXCLUSIVE, EPOLLHUP, EPOLLIN, EPOLLONESHOT,
                     EPOLLOUT, EPOLLRDHUP)

if TYPE_CHECKING:
    from .descriptors import Handler
    from .loop import EventLoop

logger = logging.getLogger("edgeloop")

CALM_ITERATIONS = 10_000
_MASK_BITS = ((EPOLLIN, "IN"), (EPOLLOUT, "OUT"), (EPOLLRDHUP, "RDHUP"), (EPOLLERR, "ERR"),
              (EPOLLHUP, "HUP"), (EPOLLET, "ET"), (EPOLLONESHOT, "ONESHOT"),
              (EPOLLEXCLUSIVE, "EXCLUSIVE"))


def mask_names(mask: int) -> str:
    return "|".join(name for bit, name in _MASK_BITS if mask & bit) or "-"


# ---------------------------------------------------------------------- describe()

def describe(loop: EventLoop) -> list[dict[str, Any]]:
    now = time.monotonic()
    masks = loop._poller.masks
    rows = []
    for fd, handler in sorted(loop._poller.handlers.items()):
        if sockets.forgotten(handler):
            continue  # a sock_* socket closed since its last wait: no longer watched
        row: dict[str, Any] = {"fd": fd, "mask": mask_names(masks.get(fd, 0))}
        try:
            row.update(handler._describe())
        except Exception as exc:  # a view must never break the program it looks at
            row.update(kind=type(handler).__name__, state=[f"describe failed: {exc!r}"])
        created = row.pop("created", None)
        if created:
            row["age"] = now - created
        rows.append(row)
    return rows


def _address(addr: Any) -> str:
    if addr is None or addr == "":
        return ""
    if isinstance(addr, tuple) and len(addr) >= 2:
        host = f"[{addr[0]}]" if ":" in str(addr[0]) else str(addr[0])
        return f"{host}:{addr[1]}"
    return str(addr)


def _age(seconds: float | None) -> str:
    if seconds is None:
        return ""
    if seconds < 60:
        return f"{seconds:.1f}s"
    if seconds < 3600:
        return f"{seconds / 60:.1f}m"
    return f"{seconds / 3600:.1f}h"


def _ready(row: dict[str, Any]) -> str:
    flags = []
    if row.get("readable"):
        flags.append("r")
    if row.get("writable"):
        flags.append("w")
    if row.get("deferred"):
        flags.append("deferred")
    return ",".join(flags)


_COLUMNS = ("fd", "kind", "local", "peer", "state", "mask", "ready", "wbuf", "in", "out", "age")


def format_table(rows: list[dict[str, Any]]) -> str:
    """The text form of ``describe()``: one line per descriptor, aligned columns."""
    lines = [_COLUMNS]
    for r in rows:
        io_in = f"{r['bytes_in']}B/{r['reads']}" if "bytes_in" in r else str(r.get("accepted", ""))
        io_out = f"{r['bytes_out']}B/{r['writes']}" if "bytes_out" in r else ""
        lines.append((
            str(r["fd"]), str(r.get("kind", "?")), _address(r.get("local")),
            _address(r.get("peer")), ",".join(r.get("state") or ()), r.get("mask", ""),
            _ready(r), str(r.get("write_buffer") or ""), io_in, io_out, _age(r.get("age")),
        ))
    widths = [max(len(line[i]) for line in lines) for i in range(len(_COLUMNS))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(line, widths)).rstrip()
                     for line in lines)


# ---------------------------------------------------------------------- naming what ran

def name_handle(handle: Handle) -> str:
    """``task 'name' coro()`` for a task step, else the callback's qualified name."""
    cb = getattr(handle, "_callback", None)
    owner = getattr(cb, "__self__", None)
    if isinstance(owner, asyncio.Task):
        coro = owner.get_coro()
        code = getattr(coro, "cr_code", None) or getattr(coro, "gi_code", None)
        where = f" at {code.co_filename}:{code.co_firstlineno}" if code is not None else ""
        qualname = getattr(coro, "__qualname__", type(coro).__name__)
        return f"task {owner.get_name()!r} {qualname}(){where}"
    name = getattr(cb, "__qualname__", None) or repr(cb)
    code = getattr(cb, "__code__", None)
    if code is not None:
        return f"callback {name} at {code.co_filename}:{code.co_firstlineno}"
    return f"callback {name}"


def name_handler(fd: int | None, handler: Any) -> str:
    try:
        info = handler._describe()
    except Exception:
        info = {"kind": type(handler).__name__}
    parts = [f"fd {fd}", str(info.get("kind", "?"))]
    if info.get("peer"):
        parts.append(f"peer {_address(info['peer'])}")
    elif info.get("local"):
        parts.append(f"local {_address(info['local'])}")
    if info.get("protocol"):
        parts.append(f"[{info['protocol']}]")
    return " ".join(parts)


# ---------------------------------------------------------------------- the stall detector

class StallWatch:
    """Times iterations; after a slow one, times everything that runs (see module docstring)."""

    def __init__(self, loop: EventLoop, threshold: float) -> None:
        self.loop = loop
        self.threshold = threshold
        self.attributing = False
        self.calm = 0
        self.stalls = 0
        # (label source, seconds) while attributing: a Handle, or (fd, handler).
        self.records: list[tuple[Any, float]] = []

    # called by the loop ----------------------------------------------------------------------
    def watch_wait(self, wait: Callable[[float | None], list[tuple[int, int]]]
                   ) -> Callable[[float | None], list[tuple[int, int]]]:
        """The loop's poll under the detector, and all of the detector's per-iteration cost:
        two clock reads.  An iteration's work runs from the return of one poll to the call of
        the next (waiting is not a stall), so each call checks the iteration that just ended.
        Until a first stall it also remembers, with C-level copies, what the new iteration will
        run: the callbacks queued before the poll, the descriptors it reports, the deferred
        handlers.  Nothing of this is in the loop's own iteration (``_run_until_stopped``)."""
        loop = self.loop
        ready, deferred = loop._ready, loop._deferred
        clock = time.monotonic
        threshold = self.threshold
        # Closure cells, not attributes: this runs once per iteration.
        t0 = 0.0
        last: tuple[Any, ...] = ()

        def watched(timeout: float | None) -> list[tuple[int, int]]:
            nonlocal t0, last
            if t0:
                seconds = clock() - t0
                if seconds >= threshold:
                    self._stalled(seconds, *last)
                elif self.attributing:
                    self._calm()
            events = wait(timeout)
            t0 = clock()
            if self.attributing:
                if self.records:
                    self.records = []
                last = (events,)
            else:
                last = (events, ready.copy(), deferred[:] if deferred else ())
            return events

        def end_run() -> None:
            nonlocal t0
            if t0:
                seconds = clock() - t0
                if seconds >= threshold:
                    self._stalled(seconds, *last)
                t0 = 0.0

        self.end_run = end_run  # type: ignore[method-assign]
        return watched

    def end_run(self) -> None:
        """``run_forever`` returns: check its last iteration, and start afresh next run (set
        by ``watch_wait``, which holds the state)."""

    def _calm(self) -> None:
        self.calm += 1
        if self.calm >= CALM_ITERATIONS:
            self.attributing = False
            self.loop._update_timing()

    def _stalled(self, seconds: float, events: list[tuple[int, int]] | None = None,
                 ran: Iterable[Handle] = (), deferred: Iterable[Handler] = ()) -> None:
        self.stalls += 1
        self.calm = 0
        try:
            self._report(seconds, events, ran, deferred)
        finally:
            if not self.attributing:
                self.attributing = True
                self.loop._update_timing()

    def record_handle(self, handle: Handle, seconds: float) -> None:
        self.records.append((handle, seconds))

    def timed(self, items: Iterable[Any], handlers: dict[int, Any] | None) -> Iterator[Any]:
        """Yield ``items`` (events, or deferred handlers), recording for each the time until
        the next one is asked for: the time its handler took."""
        clock = time.monotonic
        records = self.records
        last: Any = None
        t_last = 0.0
        for item in items:
            now = clock()
            if last is not None:
                records.append((last, now - t_last))
            if handlers is not None:
                fd = item[0]
                last = (fd, handlers.get(fd))
            else:
                last = (getattr(item, "_fd", None), item)
            t_last = now
            yield item
        if last is not None:
            records.append((last, clock() - t_last))

    # the report ------------------------------------------------------------------------------
    def _label(self, source: Any) -> str:
        if isinstance(source, Handle):
            return name_handle(source)
        fd, handler = source
        return name_handler(fd, handler)

    def _report(self, seconds: float, events: list[tuple[int, int]] | None,
                ran: Iterable[Handle], deferred: Iterable[Handler]) -> None:
        head = (f"an event loop iteration took {seconds:.3f} s "
                f"(stall threshold {self.threshold:.3f} s)")
        if self.attributing and self.records:
            slowest = sorted(self.records, key=lambda r: r[1], reverse=True)[:10]
            lines = [f"  {dt:.3f} s  {self._label(src)}" for src, dt in slowest]
            logger.warning("%s; what ran, slowest first:\n%s", head, "\n".join(lines))
            return
        labels = [name_handle(h) for h in ran if not h._cancelled]
        handlers = self.loop._poller.handlers
        for fd, _ in events or ():
            handler = handlers.get(fd)
            if handler is not None:
                labels.append(name_handler(fd, handler))
        labels.extend(name_handler(getattr(h, "_fd", None), h) for h in deferred)
        listing = "\n".join(f"  {label}" for label in labels[:50]) or "  (nothing recorded)"
        more = f"\n  ... and {len(labels) - 50} more" if len(labels) > 50 else ""
        logger.warning("%s; it ran (per-callback times are recorded from now on, the next stall "
                       "names the slowest):\n%s%s", head, listing, more)


def stall_threshold_from_env() -> float | None:
    value = os.environ.get("EDGELOOP_STALL_MS")
    if not value:
        return None
    try:
        ms = float(value)
    except ValueError:
        raise ValueError(f"EDGELOOP_STALL_MS must be a number of milliseconds, not {value!r}")
    return ms / 1000 if ms > 0 else None


# ---------------------------------------------------------------------- the operator's snapshot

def dump_signal_from_env() -> int | None:
    value = os.environ.get("EDGELOOP_DUMP_SIGNAL")
    if not value:
        return None
    if value.isdigit():
        return int(value)
    name = value.upper()
    if not name.startswith("SIG"):
        name = "SIG" + name
    try:
        return int(signal.Signals[name])
    except KeyError:
        raise ValueError(f"EDGELOOP_DUMP_SIGNAL: unknown signal {value!r}") from None


def snapshot(loop: EventLoop) -> str:
    stats = loop.stats()
    counters = " ".join(f"{k}={v}" for k, v in stats.items())
    return f"edgeloop snapshot of {loop!r}\nstats: {counters}\n{loop.describe_text()}"


def log_snapshot(loop: EventLoop) -> None:
    logger.warning("%s", snapshot(loop))


def install_dump_signal(loop: EventLoop, sig: int, log: Callable[[EventLoop], None] = log_snapshot) -> bool:
    """Log a snapshot on ``sig``; False (and a warning) where signals cannot be handled."""
    try:
        loop.add_signal_handler(sig, log, loop)
    except (RuntimeError, ValueError, OSError) as exc:
        logger.warning("EDGELOOP_DUMP_SIGNAL: cannot handle signal %s here: %s", sig, exc)
        return False
    return True
