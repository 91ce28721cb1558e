"""call_later / call_at: ordering, cancellation, TimerHandle.when(), negative and zero delays,
sub-millisecond timers (not early, no busy polling), compaction of cancelled timers, and the clock
(loop.time() is time.monotonic(): aiohttp stamps connections with time.monotonic())."""
from __future__ import annotations

import asyncio
import gc
import random
import time
import weakref

import pytest

try:
    from tests._looputil import REFERENCE, edgeloop_only
except ImportError:  # tests/ itself on sys.path
    from _looputil import REFERENCE, edgeloop_only


# asyncio runs a timer when its deadline is within the monotonic clock's resolution of now
CLOCK_RESOLUTION = time.get_clock_info("monotonic").resolution


def _noop(*args):
    pass


def test_call_later_fires_in_deadline_order(loop):
    seen = []
    handles = {d: loop.call_later(d, seen.append, d) for d in (0.03, 0.01, 0.02, 0.005, 0.015)}
    loop.call_later(0.04, loop.stop)
    loop.run_forever()
    # deadlines are relative to when each call_later ran (a GC pause may separate them): the
    # firing order is the order of the handles' when()
    assert seen == sorted(handles, key=lambda d: handles[d].when())
    assert sorted(seen) == [0.005, 0.01, 0.015, 0.02, 0.03]


def test_call_at_fires_in_deadline_order(loop):
    seen = []
    base = loop.time()
    order = list(range(30))
    random.Random(1).shuffle(order)
    for i in order:
        loop.call_at(base + 0.001 * i, seen.append, i)
    loop.call_at(base + 0.04, loop.stop)
    loop.run_forever()
    assert seen == list(range(30))


@edgeloop_only  # asyncio's heap compares deadlines only: equal deadlines come out in any order
def test_equal_deadlines_keep_fifo_order(loop):
    seen = []
    when = loop.time() + 0.005
    for i in range(200):
        loop.call_at(when, seen.append, i)
    loop.call_at(when + 0.005, loop.stop)
    loop.run_forever()
    assert seen == list(range(200))


def test_many_timers_fire_in_order(loop):
    rng = random.Random(7)
    base = loop.time()
    seen = []
    whens = [base + rng.choice(range(50)) * 0.001 for _ in range(10_000)]
    for w in whens:
        loop.call_at(w, seen.append, w)
    loop.call_at(base + 0.06, loop.stop)
    loop.run_forever()
    assert len(seen) == len(whens)
    assert seen == sorted(whens)


def test_timer_handle_when_and_type(loop):
    when = loop.time() + 10
    h = loop.call_at(when, _noop)
    assert isinstance(h, asyncio.TimerHandle)
    assert h.when() == when
    t0 = loop.time()
    h2 = loop.call_later(5, _noop)
    t1 = loop.time()
    assert t0 + 5 <= h2.when() <= t1 + 5
    h.cancel()
    h2.cancel()


def test_cancel(loop):
    seen = []
    h = loop.call_later(0.005, seen.append, "cancelled")
    loop.call_later(0.005, seen.append, "kept")
    assert not h.cancelled()
    h.cancel()
    assert h.cancelled()
    h.cancel()  # idempotent
    loop.call_later(0.02, loop.stop)
    loop.run_forever()
    assert seen == ["kept"]


def test_cancel_by_a_timer_due_in_the_same_iteration(loop):
    seen = []
    when = loop.time() + 0.005
    victim = []

    def killer():
        seen.append("killer")
        victim[0].cancel()

    loop.call_at(when, killer)
    victim.append(loop.call_at(when + 1e-6, seen.append, "victim"))
    loop.call_at(when + 0.01, loop.stop)
    loop.run_forever()
    assert seen == ["killer"]


def test_cancel_after_firing_is_harmless(loop):
    seen = []
    h = loop.call_later(0.001, seen.append, "fired")
    loop.call_later(0.01, loop.stop)
    loop.run_forever()
    assert seen == ["fired"]
    h.cancel()
    loop.call_later(0.001, seen.append, "again")
    loop.call_later(0.01, loop.stop)
    loop.run_forever()
    assert seen == ["fired", "again"]


def test_negative_and_zero_delays(loop):
    seen = []
    loop.call_later(0, seen.append, "zero")
    loop.call_later(-1, seen.append, "minus-one")
    loop.call_at(loop.time() - 5, seen.append, "past")
    loop.call_later(-0.5, seen.append, "minus-half")
    stopper = loop.call_later(5, loop.stop)  # only if they did not fire
    loop.call_later(0.001, loop.stop)
    t0 = time.monotonic()
    loop.run_forever()
    stopper.cancel()
    assert time.monotonic() - t0 < 2
    assert seen == ["past", "minus-one", "minus-half", "zero"]


def test_call_at_none_and_call_later_none_raise_type_error(loop):
    with pytest.raises(TypeError):
        loop.call_at(None, _noop)
    with pytest.raises(TypeError):
        loop.call_later(None, _noop)


def test_timer_args(loop):
    seen = []
    loop.call_later(0.001, lambda *a: seen.append(a), 1, "two", None)
    loop.call_later(0.01, loop.stop)
    loop.run_forever()
    assert seen == [(1, "two", None)]


# --------------------------------------------------------------------------------------------
# precision: not early, not busy


@pytest.mark.asyncio
@pytest.mark.parametrize("delay", [0.0004, 0.0015, 0.0104])
async def test_short_timer_not_early_and_not_busy_polling(delay):
    loop = asyncio.get_running_loop()
    polls = 0
    for _ in range(10):
        fut = loop.create_future()

        def fire():
            fut.set_result((loop.time(), time.monotonic(),
                            None if REFERENCE else loop.stats()["polls"]))

        before = None if REFERENCE else loop.stats()["polls"]
        h = loop.call_later(delay, fire)
        fired_loop_time, fired_mono, polls_at_fire = await asyncio.wait_for(fut, 5)
        assert fired_loop_time >= h.when() - CLOCK_RESOLUTION
        assert fired_mono >= h.when() - CLOCK_RESOLUTION
        if not REFERENCE:
            polls += polls_at_fire - before
    if not REFERENCE:
        # a poll whose timeout was rounded down would spin until the deadline: hundreds of polls
        assert polls < 50, f"{polls} polls for 10 timers of {delay} s"


# --------------------------------------------------------------------------------------------
# cancelled timers do not accumulate


@pytest.mark.asyncio
async def test_cancelled_timers_are_not_retained():
    loop = asyncio.get_running_loop()
    handles = [loop.call_later(3600 + i, _noop, bytearray(100)) for i in range(10_000)]
    fired = []
    all_fired = loop.create_future()

    def fire(d):
        fired.append(d)
        if len(fired) == 3:
            all_fired.set_result(None)

    base = loop.time()
    live = [loop.call_at(base + d, fire, d) for d in (0.03, 0.01, 0.02)]
    refs = [weakref.ref(h) for h in handles]
    for h in handles:
        h.cancel()
    del handles, h
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    gc.collect()
    retained = sum(r() is not None for r in refs)
    # the loop may hold a few cancelled handles lazily, but not the 10,000
    assert retained < 1000, f"{retained} cancelled timer handles still referenced"
    if not REFERENCE:
        assert loop.stats()["timers"] == 3 - len(fired)
    # the live timers survived whatever compaction happened, and fire in deadline order
    await asyncio.wait_for(all_fired, 5)
    assert fired == [0.01, 0.02, 0.03]
    assert not any(h.cancelled() for h in live)


@pytest.mark.asyncio
async def test_timeout_churn_does_not_accumulate():
    """The asyncio.timeout / wait_for pattern: schedule a timeout, cancel it, again and again."""
    loop = asyncio.get_running_loop()
    refs = []
    for i in range(10_000):
        h = loop.call_later(30, _noop)
        refs.append(weakref.ref(h))
        h.cancel()
        if i % 500 == 0:
            await asyncio.sleep(0)
    del h
    await asyncio.sleep(0)
    gc.collect()
    retained = sum(r() is not None for r in refs)
    assert retained < 1000, f"{retained} cancelled timer handles still referenced"
    if not REFERENCE:
        assert loop.stats()["timers"] == 0


# --------------------------------------------------------------------------------------------
# the clock


def test_loop_time_is_time_monotonic(loop):
    for _ in range(100):
        t1 = time.monotonic()
        lt = loop.time()
        t2 = time.monotonic()
        assert t1 <= lt <= t2


@pytest.mark.asyncio
async def test_call_at_with_a_monotonic_deadline():
    loop = asyncio.get_running_loop()
    fut = loop.create_future()
    deadline = time.monotonic() + 0.02
    loop.call_at(deadline, lambda: fut.set_result(time.monotonic()))
    fired = await asyncio.wait_for(fut, 5)
    assert fired >= deadline - CLOCK_RESOLUTION
    assert fired - deadline < 2


@pytest.mark.asyncio
async def test_short_timer_behind_a_long_one_fires_on_time():
    loop = asyncio.get_running_loop()
    long = loop.call_later(30, _noop)
    fut = loop.create_future()
    t0 = loop.time()
    loop.call_later(0.01, fut.set_result, None)
    try:
        await asyncio.wait_for(fut, 5)
    finally:
        long.cancel()
    assert loop.time() - t0 < 2


@pytest.mark.asyncio
async def test_timer_scheduled_from_another_thread_via_threadsafe():
    import threading

    loop = asyncio.get_running_loop()
    fut = loop.create_future()

    def other():
        loop.call_soon_threadsafe(loop.call_later, 0.01, fut.set_result, "timer")

    t = threading.Thread(target=other)
    t.start()
    try:
        assert await asyncio.wait_for(fut, 5) == "timer"
    finally:
        t.join()
