"""Loop lifecycle: run_forever / run_until_complete / stop / close, running-state errors, the
closed-loop contract, unclosed-loop warnings, the ways users obtain an edgeloop (edgeloop.run,
asyncio.Runner, asyncio.run(loop_factory=...), the policy, install(), environment variables), and
BaseException propagation out of the loop."""
from __future__ import annotations

import asyncio
import gc
import json
import os
import socket
import sys
import threading
import warnings
import weakref

import pytest

try:
    from tests._looputil import LOOP_CONFIGS, REFERENCE, edgeloop_only, known_bug, run_python
except ImportError:  # tests/ itself on sys.path
    from _looputil import LOOP_CONFIGS, REFERENCE, edgeloop_only, known_bug, run_python

if not REFERENCE:
    import edgeloop

# The function under test for "run a coroutine on a fresh loop"; asyncio.run on the reference.
RUN = asyncio.run if REFERENCE else edgeloop.run


# --------------------------------------------------------------------------------------------
# run_forever / run_until_complete / stop


def test_run_until_complete_returns_result(loop):
    async def coro():
        await asyncio.sleep(0)
        return 42

    assert loop.run_until_complete(coro()) == 42
    fut = loop.create_future()
    loop.call_soon(fut.set_result, "fut")
    assert loop.run_until_complete(fut) == "fut"
    assert not loop.is_running()


def test_run_until_complete_raises_the_exception(loop):
    async def coro():
        await asyncio.sleep(0)
        raise ZeroDivisionError("boom")

    with pytest.raises(ZeroDivisionError, match="boom"):
        loop.run_until_complete(coro())
    # the loop is still usable
    assert loop.run_until_complete(asyncio.sleep(0, "next")) == "next"


def test_run_until_complete_done_future_returns_immediately(loop):
    fut = loop.create_future()
    fut.set_result(7)
    assert loop.run_until_complete(fut) == 7


def test_run_until_complete_rejects_non_awaitable(loop):
    with pytest.raises(TypeError):
        loop.run_until_complete(42)


def test_run_until_complete_rejects_future_of_other_loop(loop_factory):
    lp1, lp2 = loop_factory(), loop_factory()
    try:
        fut = lp2.create_future()
        with pytest.raises(ValueError):
            lp1.run_until_complete(fut)
    finally:
        lp1.close()
        lp2.close()


def test_run_forever_until_stop(loop):
    seen = []

    def cb():
        seen.append((loop.is_running(), asyncio.get_running_loop() is loop,
                     asyncio.get_event_loop() is loop))
        loop.stop()

    assert not loop.is_running()
    loop.call_soon(cb)
    loop.run_forever()
    assert seen == [(True, True, True)]
    assert not loop.is_running()
    with pytest.raises(RuntimeError):
        asyncio.get_running_loop()


def test_stop_runs_current_batch_but_not_new_callbacks(loop):
    order = []

    def first():
        order.append("first")
        loop.stop()
        loop.call_soon(order.append, "scheduled-by-first")

    loop.call_soon(first)
    loop.call_soon(order.append, "second")
    loop.run_forever()
    assert order == ["first", "second"]
    # the callback scheduled during the last iteration runs on the next run
    loop.call_soon(loop.stop)
    loop.run_forever()
    assert order == ["first", "second", "scheduled-by-first"]


def test_stop_before_run_forever_runs_one_iteration(loop):
    order = []

    def cb():
        order.append("cb")
        loop.call_soon(order.append, "child")

    loop.call_soon(cb)
    loop.stop()
    loop.run_forever()
    assert order == ["cb"]
    assert not loop.is_running()
    # stop() was consumed: the next run_forever does not return before its own stop()
    loop.call_soon(loop.call_soon, loop.stop)
    loop.run_forever()
    assert order == ["cb", "child"]


def test_run_until_complete_stopped_before_future_done(loop):
    fut = loop.create_future()
    loop.call_soon(loop.stop)
    with pytest.raises(RuntimeError):
        loop.run_until_complete(fut)
    assert not fut.done()
    assert not loop.is_running()
    # the future can still be completed by a later run
    loop.call_soon(fut.set_result, "late")
    assert loop.run_until_complete(fut) == "late"


@pytest.mark.parametrize("method", ["run_forever", "run_until_complete"])
def test_running_a_running_loop_raises(loop, method):
    if REFERENCE and sys.version_info[:3] == (3, 13, 0) and method == "run_forever":
        pytest.skip("CPython 3.13.0 bug: a refused nested run_forever() resets the running state")
    errors = []

    async def main():
        coro = asyncio.sleep(0)
        try:
            if method == "run_forever":
                loop.run_forever()
            else:
                loop.run_until_complete(coro)
        except RuntimeError as exc:
            errors.append(exc)
        finally:
            coro.close()
        # the refused call did not disturb the running loop
        state = (loop.is_running(), asyncio.get_running_loop() is loop)
        await asyncio.sleep(0.001)
        return state

    assert loop.run_until_complete(main()) == (True, True)
    assert len(errors) == 1
    assert not loop.is_running()


def test_running_another_loop_inside_a_running_loop_raises(loop_factory):
    outer, inner = loop_factory(), loop_factory()
    try:
        errors = []

        def cb():
            coro = asyncio.sleep(0)
            try:
                inner.run_until_complete(coro)
            except RuntimeError as exc:
                errors.append(exc)
            finally:
                coro.close()
            outer.stop()

        outer.call_soon(cb)
        outer.run_forever()
        assert len(errors) == 1
        assert not inner.is_running()
        # once the outer loop has stopped, the inner loop runs fine
        assert inner.run_until_complete(asyncio.sleep(0, "inner")) == "inner"
    finally:
        outer.close()
        inner.close()


# --------------------------------------------------------------------------------------------
# close


def test_close(loop):
    assert not loop.is_closed()
    loop.close()
    assert loop.is_closed()
    loop.close()  # idempotent
    assert loop.is_closed()


def test_close_while_running_raises(loop):
    errors = []

    def cb():
        try:
            loop.close()
        except RuntimeError as exc:
            errors.append(exc)
        loop.stop()

    loop.call_soon(cb)
    loop.run_forever()
    assert len(errors) == 1
    assert not loop.is_closed()
    assert loop.run_until_complete(asyncio.sleep(0, "alive")) == "alive"


def _noop(*args):
    pass


def test_close_releases_pending_callbacks_and_timers(loop):
    class Payload:
        pass

    p1, p2 = Payload(), Payload()
    r1, r2 = weakref.ref(p1), weakref.ref(p2)
    loop.call_soon(_noop, p1)
    loop.call_later(3600, _noop, p2)
    del p1, p2
    loop.close()
    gc.collect()
    assert r1() is None, "a callback scheduled with call_soon outlived close()"
    assert r2() is None, "a timer outlived close()"


def test_close_shuts_down_the_default_executor(loop):
    worker = loop.run_until_complete(loop.run_in_executor(None, threading.current_thread))
    assert worker is not threading.current_thread()
    loop.close()
    worker.join(5)
    assert not worker.is_alive()


CLOSED_LOOP_CALLS = {
    "call_soon": lambda lp: lp.call_soon(_noop),
    "call_later": lambda lp: lp.call_later(0.01, _noop),
    "call_at": lambda lp: lp.call_at(lp.time() + 0.01, _noop),
    "call_soon_threadsafe": lambda lp: lp.call_soon_threadsafe(_noop),
    "run_forever": lambda lp: lp.run_forever(),
    "run_in_executor": lambda lp: lp.run_in_executor(None, _noop),
}


@pytest.mark.parametrize("name", list(CLOSED_LOOP_CALLS))
def test_closed_loop_raises(loop, name):
    loop.close()
    with pytest.raises(RuntimeError):
        CLOSED_LOOP_CALLS[name](loop)


@pytest.mark.parametrize("method", ["run_until_complete", "create_task"])
def test_closed_loop_rejects_coroutines(loop, method):
    loop.close()
    coro = asyncio.sleep(0)
    try:
        with pytest.raises(RuntimeError):
            getattr(loop, method)(coro)
    finally:
        coro.close()


def test_unclosed_loop_warns_resource_warning(loop_factory):
    lp = loop_factory()
    lp.run_until_complete(asyncio.sleep(0))
    with pytest.warns(ResourceWarning, match="unclosed"):
        del lp
        gc.collect()
    # the autouse fd-leak check also verifies that the collected loop released its descriptors


def test_closed_loop_does_not_warn(loop_factory):
    lp = loop_factory()
    lp.run_until_complete(asyncio.sleep(0))
    lp.close()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        del lp
        gc.collect()
    assert not [w for w in caught if issubclass(w.category, ResourceWarning)]


# --------------------------------------------------------------------------------------------
# edgeloop.run, asyncio.Runner, asyncio.run(loop_factory=...)


def test_run_returns_result_and_closes_loop():
    seen = {}

    async def main():
        seen["loop"] = asyncio.get_running_loop()
        await asyncio.sleep(0.001)
        return "result"

    assert RUN(main()) == "result"
    assert seen["loop"].is_closed()
    if not REFERENCE:
        assert isinstance(seen["loop"], edgeloop.EventLoop)
    with pytest.raises(RuntimeError):
        asyncio.get_running_loop()


def test_run_propagates_exception():
    async def main():
        await asyncio.sleep(0)
        raise LookupError("from main")

    with pytest.raises(LookupError, match="from main"):
        RUN(main())


def test_run_cancels_leftover_tasks():
    events = []

    async def leftover():
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            events.append("cancelled")
            raise

    async def main():
        asyncio.get_running_loop().create_task(leftover())
        await asyncio.sleep(0)

    RUN(main())
    assert events == ["cancelled"]


def test_run_finalizes_async_generators():
    events = []

    async def agen():
        try:
            yield 1
            yield 2
        finally:
            await asyncio.sleep(0)
            events.append("finalized")

    async def main():
        g = agen()
        assert await g.__anext__() == 1
        main.keep = g  # keep it alive past main(): only shutdown_asyncgens can finalize it

    RUN(main())
    assert events == ["finalized"]
    del main.keep


@pytest.mark.parametrize("debug", [True, False])
def test_run_debug_flag(debug):
    async def main():
        return asyncio.get_running_loop().get_debug()

    assert RUN(main(), debug=debug) is debug


def test_run_inside_running_loop_raises(loop):
    async def main():
        coro = asyncio.sleep(0)
        try:
            with pytest.raises(RuntimeError):
                RUN(coro)
        finally:
            coro.close()
        return "ok"

    assert loop.run_until_complete(main()) == "ok"


def test_run_inside_running_loop_leaves_no_unawaited_coroutine(loop, request):
    async def main():
        coro = asyncio.sleep(0)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                with pytest.raises(RuntimeError):
                    RUN(coro)
            finally:
                coro.close()
            gc.collect()
        return [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]

    assert loop.run_until_complete(main()) == []


@edgeloop_only
@pytest.mark.parametrize("config", list(LOOP_CONFIGS))
def test_run_passes_loop_kwargs(config):
    cfg = LOOP_CONFIGS[config]

    async def main():
        lp = asyncio.get_running_loop()
        await asyncio.sleep(0.001)
        return lp.backend, lp.trigger

    assert RUN(main(), **cfg) == (cfg["backend"], cfg["trigger"])


def test_asyncio_runner_with_loop_factory(loop_factory):
    async def which_loop():
        await asyncio.sleep(0)
        return asyncio.get_running_loop()

    with asyncio.Runner(loop_factory=loop_factory) as runner:
        lp = runner.get_loop()
        if not REFERENCE:
            assert isinstance(lp, edgeloop.EventLoop)
        assert runner.run(which_loop()) is lp
        assert runner.run(asyncio.sleep(0.001, "second run")) == "second run"
    assert lp.is_closed()


@pytest.mark.skipif(sys.version_info < (3, 12),
                    reason="asyncio.run() accepts loop_factory from Python 3.12")
def test_asyncio_run_with_loop_factory(loop_factory):
    async def main():
        await asyncio.sleep(0)
        return asyncio.get_running_loop()

    lp = asyncio.run(main(), loop_factory=loop_factory)
    assert lp.is_closed()
    if not REFERENCE:
        assert isinstance(lp, edgeloop.EventLoop)


# --------------------------------------------------------------------------------------------
# policy and install()


@pytest.fixture
def restore_policy():
    old = asyncio.get_event_loop_policy()
    try:
        yield
    finally:
        asyncio.set_event_loop_policy(old)


@edgeloop_only
def test_policy(restore_policy):
    asyncio.set_event_loop_policy(edgeloop.EventLoopPolicy())
    lp = asyncio.new_event_loop()
    try:
        assert isinstance(lp, edgeloop.EventLoop)
        assert lp.run_until_complete(asyncio.sleep(0.001, "policy")) == "policy"
    finally:
        lp.close()

    async def main():
        return asyncio.get_running_loop()

    # asyncio.run without loop_factory goes through the policy
    ran_on = asyncio.run(main())
    assert isinstance(ran_on, edgeloop.EventLoop)
    assert ran_on.is_closed()


@edgeloop_only
def test_install(restore_policy):
    if sys.version_info >= (3, 12):
        with pytest.warns(DeprecationWarning):
            edgeloop.install()
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("error", DeprecationWarning)
            edgeloop.install()
    assert isinstance(asyncio.get_event_loop_policy(), edgeloop.EventLoopPolicy)
    lp = asyncio.new_event_loop()
    try:
        assert isinstance(lp, edgeloop.EventLoop)
    finally:
        lp.close()


# --------------------------------------------------------------------------------------------
# subprocess: the one-liner, environment variables


@edgeloop_only
def test_one_liner_in_subprocess():
    proc = run_python("import asyncio, edgeloop; print(edgeloop.run(asyncio.sleep(0.1, 'ok')))")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "ok\n"


ENV_PROBE = """
import asyncio, json, edgeloop
a = edgeloop.new_event_loop()
b = edgeloop.EventLoop()
c = edgeloop.EventLoop(backend="epoll", trigger="edge")
async def main():
    lp = asyncio.get_running_loop()
    return [lp.backend, lp.trigger]
print(json.dumps({"new_event_loop": [a.backend, a.trigger], "EventLoop": [b.backend, b.trigger],
                  "explicit": [c.backend, c.trigger], "run": edgeloop.run(main())}))
for lp in (a, b, c):
    lp.close()
"""


@edgeloop_only
@pytest.mark.parametrize("env, backend, trigger", [
    ({}, "epoll", "edge"),
    ({"EDGELOOP_TRIGGER": "level"}, "epoll", "level"),
    ({"EDGELOOP_BACKEND": "poll"}, "poll", None),
    ({"EDGELOOP_BACKEND": "select", "EDGELOOP_TRIGGER": "level"}, "select", "level"),
    ({"EDGELOOP_BACKEND": "epoll", "EDGELOOP_TRIGGER": "level"}, "epoll", "level"),
], ids=["defaults", "trigger-level", "backend-poll", "select-level", "epoll-level"])
def test_environment_variables_set_defaults(env, backend, trigger):
    proc = run_python(ENV_PROBE, env=env)
    assert proc.returncode == 0, proc.stderr
    got = json.loads(proc.stdout)
    for key in ("new_event_loop", "EventLoop", "run"):
        assert got[key][0] == backend, (key, got)
        if trigger is not None:
            assert got[key][1] == trigger, (key, got)
    # explicit arguments win over the environment
    assert got["explicit"] == ["epoll", "edge"]


@edgeloop_only
@pytest.mark.parametrize("kwargs", [
    {"backend": "kqueue"},
    {"backend": ""},
    {"trigger": "both"},
    {"trigger": "EDGE-ish"},
    {"backend": "epoll", "trigger": "sideways"},
])
def test_bad_backend_or_trigger_raises_value_error(kwargs):
    with pytest.raises(ValueError):
        edgeloop.EventLoop(**kwargs)
    with pytest.raises(ValueError):
        edgeloop.new_event_loop(**kwargs)
    coro = asyncio.sleep(0)
    try:
        with pytest.raises(ValueError):
            edgeloop.run(coro, **kwargs)
    finally:
        coro.close()
    # the autouse fd-leak check verifies that the failed constructions released their descriptors


# --------------------------------------------------------------------------------------------
# BaseException raised by a callback


class GracefulExit(SystemExit):
    """What aiohttp's run_app raises from its signal handler to stop the loop."""


@pytest.mark.parametrize("exc_type", [SystemExit, KeyboardInterrupt, GracefulExit])
@pytest.mark.parametrize("where", ["call_soon", "call_later", "reader", "task"])
def test_base_exception_propagates_and_loop_stays_usable(loop, exc_type, where, request):
    calls = []
    hooks_before = sys.get_asyncgen_hooks()
    a, b = socket.socketpair()
    a.setblocking(False)
    b.setblocking(False)
    try:
        def raiser():
            calls.append("raiser")
            raise exc_type()

        def reader():
            calls.append("reader")
            if calls.count("reader") == 1:
                raise exc_type()
            a.recv(10)
            loop.remove_reader(a.fileno())

        if where == "call_soon":
            loop.call_soon(raiser)
        elif where == "call_later":
            loop.call_later(0.001, raiser)
        elif where == "reader":
            b.send(b"x")
            loop.add_reader(a.fileno(), reader)
        loop.call_soon(calls.append, "after")

        if where == "task":
            async def coro():
                await asyncio.sleep(0)
                raise exc_type()

            with pytest.raises(exc_type):
                loop.run_until_complete(coro())
        else:
            with pytest.raises(exc_type):
                loop.run_forever()

        assert not loop.is_running()
        assert sys.get_asyncgen_hooks() == hooks_before
        with pytest.raises(RuntimeError):
            asyncio.get_running_loop()

        # usable afterwards: timers run, nothing scheduled before the exception is lost, and a
        # reader that raised is still registered (level-triggered: its data is still unread)
        assert loop.run_until_complete(asyncio.sleep(0.01, "again")) == "again"
        assert calls.count("after") == 1
        if where == "reader":
            assert calls.count("reader") == 2
            assert loop.remove_reader(a.fileno()) is False
    finally:
        a.close()
        b.close()
    loop.close()
    assert loop.is_closed()
