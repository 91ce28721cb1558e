"""call_soon / call_soon_threadsafe, handles, contexts, the exception handler, debug mode, and
fairness between the ready queue, timers and I/O."""
from __future__ import annotations

import asyncio
import contextvars
import logging
import os
import socket
import sys
import threading
import time

import pytest

try:
    from tests._looputil import REFERENCE, run_python
except ImportError:  # tests/ itself on sys.path
    from _looputil import REFERENCE, run_python

if not REFERENCE:
    import edgeloop  # noqa: F401  (the subprocess probes import it by name)

var = contextvars.ContextVar("var", default="unset")


# --------------------------------------------------------------------------------------------
# call_soon


def test_call_soon_fifo_order_and_args(loop):
    seen = []
    for i in range(100):
        loop.call_soon(seen.append, i)
    loop.call_soon(lambda *a: seen.append(a), "x", 1, None)
    loop.call_soon(loop.stop)
    loop.run_forever()
    assert seen == list(range(100)) + [("x", 1, None)]


def test_call_soon_returns_handle_that_cancels(loop):
    seen = []
    h1 = loop.call_soon(seen.append, 1)
    h2 = loop.call_soon(seen.append, 2)
    h3 = loop.call_soon(seen.append, 3)
    assert isinstance(h2, asyncio.Handle)
    assert not h2.cancelled()
    h2.cancel()
    assert h2.cancelled()
    h2.cancel()  # idempotent
    loop.call_soon(loop.stop)
    loop.run_forever()
    assert seen == [1, 3]
    assert not h1.cancelled() and not h3.cancelled()


def test_cancel_from_an_earlier_callback_in_the_same_batch(loop):
    seen = []
    later = []
    loop.call_soon(lambda: later[0].cancel())
    later.append(loop.call_soon(seen.append, "cancelled"))
    loop.call_soon(seen.append, "kept")
    loop.call_soon(loop.stop)
    loop.run_forever()
    assert seen == ["kept"]


def test_call_soon_context_default_is_a_copy_at_call_time(loop):
    seen = []
    token = var.set("at-call")
    try:
        loop.call_soon(lambda: seen.append(var.get()))
        var.set("changed-after")

        def setter():
            var.set("set-in-callback")

        loop.call_soon(setter)
        loop.call_soon(lambda: seen.append(var.get()))
    finally:
        var.reset(token)
    loop.call_soon(loop.stop)
    loop.run_forever()
    # each callback ran in its own copy: the first saw the value at call time, the setter's
    # change stayed in its copy, and nothing leaked back to the caller
    assert seen == ["at-call", "changed-after"]
    assert var.get() == "unset"


def test_call_soon_explicit_context(loop):
    ctx = contextvars.copy_context()
    ctx.run(var.set, "in-ctx")
    seen = []

    def cb(tag):
        seen.append((tag, var.get()))
        var.set(f"written-by-{tag}")

    loop.call_soon(cb, "a", context=ctx)
    loop.call_soon(cb, "b", context=ctx)
    loop.call_later(0.001, cb, "timer", context=ctx)
    loop.call_later(0.002, loop.stop)
    loop.run_forever()
    assert seen == [("a", "in-ctx"), ("b", "written-by-a"), ("timer", "written-by-b")]
    assert ctx[var] == "written-by-timer"
    assert var.get() == "unset"


async def _coro_fn():
    pass


@pytest.mark.parametrize("method", ["call_soon", "call_later", "call_at", "call_soon_threadsafe"])
@pytest.mark.parametrize("bad", ["coroutine-function", "coroutine", "non-callable"])
def test_bad_callback_raises_type_error_in_debug_mode(loop, method, bad):
    # asyncio checks callbacks in debug mode (outside it, it only fails when the callback runs)
    loop.set_debug(True)
    obj = {"coroutine-function": lambda: _coro_fn, "coroutine": _coro_fn,
           "non-callable": lambda: 42}[bad]()
    lead = {"call_soon": (), "call_soon_threadsafe": (), "call_later": (0.01,),
            "call_at": (loop.time() + 0.01,)}[method]
    try:
        with pytest.raises(TypeError):
            getattr(loop, method)(*lead, obj)
    finally:
        if bad == "coroutine":
            obj.close()


# --------------------------------------------------------------------------------------------
# call_soon_threadsafe


@pytest.mark.asyncio
@pytest.mark.timeout(30)
async def test_call_soon_threadsafe_100k_from_a_thread():
    loop = asyncio.get_running_loop()
    n = 100_000
    count = 0
    done = asyncio.Event()

    def inc():
        nonlocal count
        count += 1

    def producer():
        for _ in range(n):
            loop.call_soon_threadsafe(inc)
        loop.call_soon_threadsafe(done.set)

    t = threading.Thread(target=producer)
    t.start()
    try:
        await asyncio.wait_for(done.wait(), 25)
    finally:
        t.join()
    # callbacks from one thread run in order: everything before done.set has run
    assert count == n


@pytest.mark.asyncio
async def test_call_soon_threadsafe_wakes_a_sleeping_loop():
    loop = asyncio.get_running_loop()
    fut = loop.create_future()
    sent = []

    def waker():
        time.sleep(0.05)  # let the loop block in its poll (nothing else to do for 10 s)
        sent.append(time.monotonic())
        loop.call_soon_threadsafe(fut.set_result, None)

    t = threading.Thread(target=waker)
    t.start()
    try:
        await asyncio.wait_for(fut, 10)
        woke = time.monotonic()
    finally:
        t.join()
    assert woke - sent[0] < 1.0  # promptly, not at the 10 s timeout


def test_call_soon_threadsafe_before_run_forever(loop):
    seen = []

    def feeder():
        loop.call_soon_threadsafe(seen.append, "from-thread")
        loop.call_soon_threadsafe(loop.stop)

    t = threading.Thread(target=feeder)
    t.start()
    t.join()
    loop.run_forever()
    assert seen == ["from-thread"]


def test_call_soon_threadsafe_context(loop):
    ctx = contextvars.copy_context()
    ctx.run(var.set, "thread-ctx")
    seen = []

    def feeder():
        loop.call_soon_threadsafe(lambda: seen.append(var.get()), context=ctx)
        loop.call_soon_threadsafe(loop.stop)

    t = threading.Thread(target=feeder)
    t.start()
    t.join()
    loop.run_forever()
    assert seen == ["thread-ctx"]


# --------------------------------------------------------------------------------------------
# exception handler


def test_exception_handler_get_set(loop):
    assert loop.get_exception_handler() is None

    def handler(lp, context):
        pass

    loop.set_exception_handler(handler)
    assert loop.get_exception_handler() is handler
    loop.set_exception_handler(None)
    assert loop.get_exception_handler() is None
    with pytest.raises(TypeError):
        loop.set_exception_handler("not callable")
    assert loop.get_exception_handler() is None


@pytest.mark.parametrize("how", ["call_soon", "call_later", "reader"])
def test_exception_handler_receives_context(loop, how):
    calls = []
    a, b = socket.socketpair()
    a.setblocking(False)
    try:
        def handler(lp, context):
            calls.append((lp, dict(context)))

        def bad():
            if how == "reader":
                loop.remove_reader(a.fileno())
            raise ZeroDivisionError("in callback")

        loop.set_exception_handler(handler)
        if how == "call_soon":
            handle = loop.call_soon(bad)
        elif how == "call_later":
            handle = loop.call_later(0.001, bad)
        else:
            b.send(b"x")
            loop.add_reader(a.fileno(), bad)
            handle = None
        loop.call_later(0.02, loop.stop)
        loop.run_forever()
    finally:
        a.close()
        b.close()
    assert len(calls) == 1
    lp, context = calls[0]
    assert lp is loop
    assert isinstance(context["exception"], ZeroDivisionError)
    assert isinstance(context["message"], str) and context["message"]
    assert isinstance(context["handle"], asyncio.Handle)
    if handle is not None:
        assert context["handle"] is handle


def test_default_exception_handler_logs(loop, caplog):
    def bad():
        raise ZeroDivisionError("logged by default")

    with caplog.at_level(logging.ERROR, logger="asyncio"):
        loop.call_soon(bad)
        loop.call_soon(loop.stop)
        loop.run_forever()
    records = [r for r in caplog.records if r.name == "asyncio" and r.levelno >= logging.ERROR]
    assert len(records) == 1
    assert records[0].exc_info and records[0].exc_info[0] is ZeroDivisionError


def test_call_exception_handler_passes_context_through(loop):
    calls = []
    loop.set_exception_handler(lambda lp, ctx: calls.append(ctx))
    ctx = {"message": "custom", "exception": KeyError("k"), "extra": 1}
    loop.call_exception_handler(ctx)
    assert calls == [ctx]


def test_default_exception_handler_method(loop, caplog):
    with caplog.at_level(logging.ERROR, logger="asyncio"):
        loop.default_exception_handler({"message": "direct call", "exception": KeyError("k")})
    assert any("direct call" in r.getMessage() for r in caplog.records if r.name == "asyncio")


def test_custom_handler_can_delegate_to_default(loop, caplog):
    def handler(lp, context):
        lp.default_exception_handler(context)

    loop.set_exception_handler(handler)
    with caplog.at_level(logging.ERROR, logger="asyncio"):
        loop.call_soon(lambda: 1 / 0)
        loop.call_soon(loop.stop)
        loop.run_forever()
    assert any(r.exc_info and r.exc_info[0] is ZeroDivisionError
               for r in caplog.records if r.name == "asyncio")


def test_failing_exception_handler_does_not_stop_the_loop(loop, caplog):
    def handler(lp, context):
        raise RuntimeError("handler is broken")

    loop.set_exception_handler(handler)
    seen = []
    with caplog.at_level(logging.ERROR, logger="asyncio"):
        loop.call_soon(lambda: 1 / 0)
        loop.call_soon(seen.append, "next")
        loop.call_soon(loop.stop)
        loop.run_forever()
    assert seen == ["next"]
    # the handler's own failure is logged, not raised
    assert any(r.name == "asyncio" for r in caplog.records)


# --------------------------------------------------------------------------------------------
# debug mode


def _env_debug() -> bool:
    return bool(sys.flags.dev_mode
                or (not sys.flags.ignore_environment and os.environ.get("PYTHONASYNCIODEBUG")))


def test_set_get_debug(loop):
    assert loop.get_debug() is _env_debug()
    loop.set_debug(True)
    assert loop.get_debug() is True
    loop.set_debug(False)
    assert loop.get_debug() is False


def _slow_cb():
    time.sleep(0.08)


def _fast_cb():
    pass


@pytest.mark.parametrize("debug", [True, False])
@pytest.mark.parametrize("how", ["call_soon", "call_later", "reader"])
def test_slow_callback_warning(loop, caplog, debug, how, request):
    loop.set_debug(debug)
    loop.slow_callback_duration = 0.05  # a no-op is far below, even on a loaded machine
    a, b = socket.socketpair()
    a.setblocking(False)

    def _slow_reader():
        loop.remove_reader(a.fileno())
        _slow_cb()

    try:
        with caplog.at_level(logging.WARNING, logger="asyncio"):
            loop.call_soon(_fast_cb)
            if how == "call_soon":
                loop.call_soon(_slow_cb)
            elif how == "call_later":
                loop.call_later(0.001, _slow_cb)
            else:
                b.send(b"x")
                loop.add_reader(a.fileno(), _slow_reader)
            loop.call_later(0.1, loop.stop)
            loop.run_forever()
    finally:
        a.close()
        b.close()
    name = "_slow_reader" if how == "reader" else "_slow_cb"
    slow = [r for r in caplog.records
            if r.name == "asyncio" and r.levelno == logging.WARNING and name in r.getMessage()]
    fast = [r for r in caplog.records if "_fast_cb" in r.getMessage()]
    assert len(slow) == (1 if debug else 0)
    assert fast == []


def test_slow_callback_duration_attribute(loop):
    assert loop.slow_callback_duration == pytest.approx(0.1)
    loop.slow_callback_duration = 0.5
    assert loop.slow_callback_duration == 0.5


DEBUG_PROBE = """
import asyncio{extra}
lp = {factory}
a = lp.get_debug()
lp.close()
async def main():
    return asyncio.get_running_loop().get_debug()
print(a, {run}(main()), {run}(main(), debug=False))
"""


def _debug_probe() -> str:
    if REFERENCE:
        return DEBUG_PROBE.format(extra="", factory="asyncio.new_event_loop()", run="asyncio.run")
    return DEBUG_PROBE.format(extra=", edgeloop", factory="edgeloop.new_event_loop()",
                              run="edgeloop.run")


@pytest.mark.parametrize("how", ["none", "PYTHONASYNCIODEBUG", "-X dev"])
def test_debug_from_environment(how):
    env = {"PYTHONASYNCIODEBUG": "1"} if how == "PYTHONASYNCIODEBUG" else {}
    args = ("-X", "dev") if how == "-X dev" else ()
    proc = run_python(_debug_probe(), env=env, args=args)
    assert proc.returncode == 0, proc.stderr
    on = how != "none"
    # the loop's own default, asyncio.run-style default, and an explicit debug=False override
    assert proc.stdout.split() == [str(on), str(on), "False"]


@pytest.mark.parametrize("method", ["call_soon", "call_later", "call_at"])
def test_debug_mode_rejects_calls_from_another_thread(loop, method):
    # in debug mode asyncio refuses non-thread-safe scheduling from a foreign thread
    loop.set_debug(True)
    errors = []

    def foreign():
        args = {"call_soon": (), "call_later": (0.01,), "call_at": (loop.time() + 0.01,)}[method]
        try:
            getattr(loop, method)(*args, _fast_cb)
        except RuntimeError as exc:
            errors.append(exc)
        loop.call_soon_threadsafe(loop.stop)

    thread = threading.Thread(target=foreign)
    loop.call_soon(thread.start)
    loop.call_later(5, loop.stop)
    loop.run_forever()
    thread.join()
    assert len(errors) == 1


# --------------------------------------------------------------------------------------------
# scheduling while running; fairness


def test_callbacks_added_while_running_run_on_the_next_iteration(loop):
    order = []

    def first():
        order.append("first")
        loop.call_soon(order.append, "added-by-first")

    loop.call_soon(first)
    loop.call_soon(order.append, "second")
    loop.call_soon(loop.stop)  # stops after this batch: added-by-first is not part of it
    loop.run_forever()
    assert order == ["first", "second"]
    loop.call_soon(loop.stop)
    loop.run_forever()
    assert order == ["first", "second", "added-by-first"]


@pytest.mark.asyncio
@pytest.mark.timeout(20)
async def test_self_rescheduling_callback_does_not_starve_timers_or_io():
    loop = asyncio.get_running_loop()
    spins = 0
    running = True

    def spin():
        nonlocal spins
        spins += 1
        if running:
            loop.call_soon(spin)

    a, b = socket.socketpair()
    a.setblocking(False)
    b.setblocking(False)
    try:
        loop.call_soon(spin)
        await asyncio.sleep(0)
        before = spins
        # a timer fires
        t0 = loop.time()
        await asyncio.sleep(0.02)
        assert loop.time() - t0 < 5
        # I/O is served: a reader callback and a sock_recv
        got = loop.create_future()
        loop.add_reader(a.fileno(), lambda: got.done() or got.set_result(a.recv(100)))
        b.send(b"ping")
        assert await got == b"ping"
        assert loop.remove_reader(a.fileno())
        b.send(b"pong")
        assert await loop.sock_recv(a, 100) == b"pong"
        # and the spinner kept running meanwhile (so the test really had a busy ready queue)
        assert spins - before > 10
    finally:
        running = False
        a.close()
        b.close()
    await asyncio.sleep(0)
