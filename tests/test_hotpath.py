"""The loop's hot path behaves like asyncio's (issue 11): light handles, inline callbacks, the
skipped idle poll.

* ``call_soon``/``call_later``/``call_at`` return light subclasses of asyncio's ``Handle`` and
  ``TimerHandle`` outside debug mode: the same ``repr()``, ``when()``, ``cancel()``,
  ``cancelled()``, ``get_context()`` (3.12+); debug mode still gives asyncio's own, with their origin.
* A callback run inline by the ready queue that raises is reported exactly as ``Handle._run``
  reports it (message, keys), whatever its number of arguments, and the loop goes on.
* Cancelled light timers are counted by the queue (``stats()["timers"]``) and compacted.
* An iteration with callbacks ready and no descriptor but the waker does not poll; with any
  descriptor watched, with the stall detector on, every iteration polls, and a thread's
  ``call_soon_threadsafe`` and a signal still reach the loop.
"""
from __future__ import annotations

import asyncio
import contextvars
import os
import signal
import socket
import threading
import time

import pytest

from tests._looputil import REFERENCE, edgeloop_only


def _noop(*args: object) -> None:
    pass


def test_handles_are_asyncio_handles_with_asyncio_repr(loop):
    h = loop.call_soon(_noop, 1)
    t = loop.call_later(10, _noop)
    a = loop.call_at(loop.time() + 20, _noop, "x")
    assert isinstance(h, asyncio.Handle) and not isinstance(h, asyncio.TimerHandle)
    assert isinstance(t, asyncio.TimerHandle) and isinstance(a, asyncio.TimerHandle)
    # asyncio's own handles for the same calls are the oracle (3.13 hides arguments outside
    # debug mode, earlier versions show them).
    assert repr(h) == repr(asyncio.Handle(_noop, (1,), loop, None))
    assert repr(t) == repr(asyncio.TimerHandle(t.when(), _noop, (), loop, None))
    assert repr(h).startswith("<Handle _noop(") and repr(t).startswith("<TimerHandle when=")
    assert a.when() == pytest.approx(loop.time() + 20, abs=1.0)
    if hasattr(asyncio.Handle, "get_context"):  # 3.12+
        assert isinstance(h.get_context(), contextvars.Context)
    h.cancel()
    t.cancel()
    t.cancel()  # twice: counted once
    assert h.cancelled() and t.cancelled() and not a.cancelled()
    assert repr(h) == "<Handle cancelled>"
    assert repr(t) == f"<TimerHandle cancelled when={t.when()}>"
    if not REFERENCE:
        assert loop.stats()["timers"] == 1
    a.cancel()
    if not REFERENCE:
        assert loop.stats()["timers"] == 0


def test_debug_mode_handles_record_their_origin(loop):
    loop.set_debug(True)
    h = loop.call_soon(_noop)
    t = loop.call_later(10, _noop)
    for handle in (h, t):
        tb = handle._source_traceback
        assert tb and tb[-1].name == "test_debug_mode_handles_record_their_origin"
        assert "created at" in repr(handle)
    h.cancel()
    t.cancel()


def test_cancel_after_debug_turned_on_keeps_the_repr(loop):
    """A handle made outside debug mode, cancelled after set_debug(True), keeps a repr naming
    its callback (the slow-callback warning needs it), like asyncio's."""
    h = loop.call_soon(_noop, 7)
    t = loop.call_later(5, _noop, 8)
    loop.set_debug(True)
    h.cancel()
    t.cancel()
    assert "_noop(7)" in repr(h) and "cancelled" in repr(h)
    assert "_noop(8)" in repr(t) and "cancelled" in repr(t)
    assert h._callback is None and t._args is None
    loop.set_debug(False)


@pytest.mark.parametrize("args", [(), (1,), (1, 2, 3)], ids=["0-args", "1-arg", "3-args"])
def test_failing_callback_is_reported_like_handle_run(loop, args):
    seen: list[dict] = []
    loop.set_exception_handler(lambda lp, ctx: seen.append(ctx))
    got: list[tuple] = []

    def boom(*a: object) -> None:
        got.append(a)
        raise ZeroDivisionError("boom")

    def after() -> None:
        got.append(("after",))
        loop.stop()

    h = loop.call_soon(boom, *args)
    loop.call_soon(after)
    loop.run_forever()
    assert got == [args, ("after",)]  # the next callback ran in the same iteration
    got.clear()
    assert len(seen) == 1
    ctx = seen[0]
    assert set(ctx) == {"message", "exception", "handle"}
    assert ctx["handle"] is h
    assert isinstance(ctx["exception"], ZeroDivisionError)
    # The oracle: what asyncio's Handle._run reports for the same callback.
    oracle: list[dict] = []
    loop.set_exception_handler(lambda lp, c: oracle.append(c))
    asyncio.Handle(boom, args, loop, None)._run()
    assert ctx["message"] == oracle[0]["message"]
    assert ctx["message"].startswith("Exception in callback ")
    assert set(oracle[0]) == set(ctx)


def test_failing_callback_in_debug_mode_has_source_traceback(loop):
    seen: list[dict] = []
    loop.set_exception_handler(lambda lp, ctx: seen.append(ctx))
    loop.set_debug(True)

    def boom() -> None:
        raise ValueError("x")

    loop.call_soon(boom)
    loop.call_soon(loop.stop)
    loop.run_forever()
    assert seen and seen[0]["source_traceback"]
    assert isinstance(seen[0]["exception"], ValueError)


def test_keyboard_interrupt_from_a_callback_keeps_the_rest(loop):
    ran: list[int] = []

    def interrupt() -> None:
        raise KeyboardInterrupt

    loop.call_soon(ran.append, 1)
    loop.call_soon(interrupt)
    loop.call_soon(ran.append, 2)
    with pytest.raises(KeyboardInterrupt):
        loop.run_forever()
    assert ran == [1]
    loop.call_soon(loop.stop)
    loop.run_forever()
    assert ran == [1, 2]


def test_callbacks_run_in_their_context(loop):
    var: contextvars.ContextVar[str] = contextvars.ContextVar("var", default="outer")
    ctx = contextvars.copy_context()
    ctx.run(var.set, "inner")
    seen: list[str] = []
    loop.call_soon(lambda: seen.append(var.get()), context=ctx)
    loop.call_soon(lambda x: seen.append(var.get() + x), "!", context=ctx)
    loop.call_later(0, lambda: seen.append(var.get()), context=ctx)
    loop.call_soon(lambda: seen.append(var.get()))
    loop.call_later(0.01, loop.stop)
    loop.run_forever()
    assert seen == ["inner", "inner!", "outer", "inner"]


def test_many_cancelled_light_timers_are_compacted(loop):
    handles = [loop.call_later(100 + i, _noop) for i in range(1000)]
    for h in handles[:990]:
        h.cancel()
    if not REFERENCE:
        assert loop.stats()["timers"] == 10
        assert len(loop._timers._heap) < 500  # rebuilt without the dead entries
    fired: list[int] = []
    early = [loop.call_later(0.001 * i, fired.append, i) for i in range(5)]
    early[2].cancel()
    loop.call_later(0.05, loop.stop)
    loop.run_forever()
    assert fired == [0, 1, 3, 4]
    for h in handles[990:]:
        h.cancel()


# --- the idle poll ----------------------------------------------------------------------------


def _chain(loop, n: int) -> None:
    left = [n]

    def step() -> None:
        left[0] -= 1
        if left[0]:
            loop.call_soon(step)
        else:
            loop.stop()

    loop.call_soon(step)
    loop.run_forever()


@edgeloop_only
def test_iterations_without_descriptors_do_not_poll(loop):
    before = loop.stats()
    _chain(loop, 1000)
    after = loop.stats()
    assert after["iterations"] - before["iterations"] >= 1000
    assert after["polls"] - before["polls"] < 5
    assert after["idle_skips"] - before["idle_skips"] >= 995
    assert after["iterations"] == after["polls"] + after["idle_skips"]


@edgeloop_only
def test_iterations_poll_when_a_descriptor_is_watched(loop):
    a, b = socket.socketpair()
    try:
        loop.add_reader(a.fileno(), _noop)
        before = loop.stats()
        _chain(loop, 1000)
        after = loop.stats()
        assert after["polls"] - before["polls"] >= 1000
        assert after["idle_skips"] == before["idle_skips"]
        loop.remove_reader(a.fileno())
    finally:
        a.close()
        b.close()


@edgeloop_only
def test_iterations_poll_under_the_stall_detector():
    import edgeloop

    lp = edgeloop.new_event_loop(stall_threshold=10.0)
    try:
        before = lp.stats()
        _chain(lp, 500)
        assert lp.stats()["polls"] - before["polls"] >= 500
    finally:
        lp.close()


def test_io_is_served_during_a_callback_chain(loop):
    """A reader that becomes ready while a callback chain runs is called within an iteration
    or two: the chain does not starve I/O."""
    a, b = socket.socketpair()
    try:
        a.setblocking(False)
        at: list[int] = []
        count = [0]

        def on_read() -> None:
            a.recv(100)
            at.append(count[0])
            loop.remove_reader(a.fileno())

        def step() -> None:
            count[0] += 1
            if count[0] == 100:
                b.send(b"x")
            if count[0] < 1000 and not at:
                loop.call_soon(step)
            else:
                loop.stop()

        loop.add_reader(a.fileno(), on_read)
        loop.call_soon(step)
        loop.run_forever()
        assert at and at[0] - 100 <= 2
    finally:
        a.close()
        b.close()


def test_threadsafe_calls_reach_a_loop_running_callbacks_then_idle(loop):
    """Another thread queues callbacks while the loop runs a chain (no poll needed to find
    them), then while it blocks: both reach it, and the waker's bytes do not spin it."""
    got: list[str] = []
    done = threading.Event()

    def worker() -> None:
        for i in range(50):
            loop.call_soon_threadsafe(got.append, f"busy{i}")
        done.set()
        time.sleep(0.05)  # the loop is blocked in its poll by now
        loop.call_soon_threadsafe(got.append, "idle")
        loop.call_soon_threadsafe(loop.stop)

    count = [0]

    def step() -> None:
        count[0] += 1
        if not done.is_set() and count[0] < 5_000_000:
            loop.call_soon(step)

    t = threading.Thread(target=worker)
    loop.call_soon(step)
    t.start()
    try:
        loop.run_forever()
    finally:
        t.join()
    assert got == [f"busy{i}" for i in range(50)] + ["idle"]
    if not REFERENCE:
        # Idle again: the waker was drained by a blocking poll, not left to spin the loop.
        before = loop.stats()["polls"]
        loop.call_later(0.05, loop.stop)
        loop.run_forever()
        assert loop.stats()["polls"] - before < 10


@pytest.mark.skipif(not hasattr(signal, "SIGUSR1"), reason="needs SIGUSR1")
def test_signal_reaches_a_loop_running_callbacks(loop):
    got: list[int] = []
    loop.add_signal_handler(signal.SIGUSR1, got.append, 1)
    try:
        count = [0]

        def step() -> None:
            count[0] += 1
            if count[0] == 10:
                os.kill(os.getpid(), signal.SIGUSR1)
            if not got and count[0] < 100_000:
                loop.call_soon(step)
            else:
                loop.stop()

        loop.call_soon(step)
        loop.run_forever()
        assert got == [1] and count[0] < 20
    finally:
        loop.remove_signal_handler(signal.SIGUSR1)
