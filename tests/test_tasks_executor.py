"""Futures and tasks (create_future, create_task, task factories, eager tasks), executors
(run_in_executor, set_default_executor, shutdown_default_executor), async generator finalization,
and getaddrinfo / getnameinfo."""
from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import gc
import re
import socket
import sys
import threading
import time
import warnings

import pytest

try:
    from tests._looputil import REFERENCE
except ImportError:  # tests/ itself on sys.path
    from _looputil import REFERENCE

var = contextvars.ContextVar("var", default="unset")


# --------------------------------------------------------------------------------------------
# futures and tasks


@pytest.mark.asyncio
async def test_create_future():
    loop = asyncio.get_running_loop()
    fut = loop.create_future()
    assert isinstance(fut, asyncio.Future)
    assert fut.get_loop() is loop
    assert not fut.done()
    loop.call_soon(fut.set_result, "value")
    assert await fut == "value"


@pytest.mark.asyncio
async def test_create_task_basics():
    loop = asyncio.get_running_loop()
    inside = {}

    async def coro():
        inside["task"] = asyncio.current_task()
        await asyncio.sleep(0)
        return "done"

    task = loop.create_task(coro())
    assert isinstance(task, asyncio.Task)
    assert task.get_loop() is loop
    assert re.fullmatch(r"Task-\d+", task.get_name())
    assert task in asyncio.all_tasks()
    assert await task == "done"
    assert inside["task"] is task


@pytest.mark.asyncio
async def test_create_task_name():
    loop = asyncio.get_running_loop()
    task = loop.create_task(asyncio.sleep(0), name="my-task")
    assert task.get_name() == "my-task"
    await task


@pytest.mark.asyncio
async def test_create_task_context():
    loop = asyncio.get_running_loop()
    ctx = contextvars.copy_context()
    ctx.run(var.set, "task-ctx")

    async def coro():
        seen = var.get()
        var.set("written-in-task")
        await asyncio.sleep(0)
        return seen

    assert await loop.create_task(coro(), context=ctx) == "task-ctx"
    assert ctx[var] == "written-in-task"
    assert var.get() == "unset"


@pytest.mark.asyncio
async def test_create_task_rejects_non_coroutine():
    loop = asyncio.get_running_loop()
    with pytest.raises(TypeError):
        loop.create_task(lambda: None)
    with pytest.raises(TypeError):
        loop.create_task(42)


@pytest.mark.asyncio
async def test_task_cancellation():
    loop = asyncio.get_running_loop()
    started = asyncio.Event()

    async def sleeper():
        started.set()
        await asyncio.sleep(30)

    task = loop.create_task(sleeper())
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert task.cancelled()


@pytest.mark.asyncio
async def test_task_factory():
    loop = asyncio.get_running_loop()
    assert loop.get_task_factory() is None
    made = []

    def factory(lp, coro, **kwargs):
        made.append((lp, kwargs))
        return asyncio.Task(coro, loop=lp, **kwargs)

    loop.set_task_factory(factory)
    try:
        assert loop.get_task_factory() is factory
        t1 = loop.create_task(asyncio.sleep(0, "one"), name="named")
        t2 = asyncio.create_task(asyncio.sleep(0, "two"))
        ctx = contextvars.copy_context()
        t3 = loop.create_task(asyncio.sleep(0, "three"), context=ctx)
        assert [await t for t in (t1, t2, t3)] == ["one", "two", "three"]
        assert len(made) == 3 and all(lp is loop for lp, _ in made)
        assert t1.get_name() == "named"  # the name is applied to the factory's task
        assert made[2][1].get("context") is ctx
    finally:
        loop.set_task_factory(None)
    assert loop.get_task_factory() is None
    await loop.create_task(asyncio.sleep(0))
    assert len(made) == 3


@pytest.mark.asyncio
async def test_task_factory_must_be_callable():
    loop = asyncio.get_running_loop()
    with pytest.raises(TypeError):
        loop.set_task_factory("not callable")
    assert loop.get_task_factory() is None


@pytest.mark.skipif(sys.version_info < (3, 12), reason="asyncio.eager_task_factory is new in 3.12")
@pytest.mark.asyncio
async def test_eager_task_factory():
    loop = asyncio.get_running_loop()
    steps = []

    async def no_suspend():
        steps.append("no_suspend ran")
        return 1

    async def suspends():
        steps.append("before await")
        await asyncio.sleep(0)
        steps.append("after await")
        return 2

    loop.set_task_factory(asyncio.eager_task_factory)
    try:
        t1 = loop.create_task(no_suspend())
        assert t1.done() and t1.result() == 1
        t2 = loop.create_task(suspends())
        assert steps == ["no_suspend ran", "before await"]
        assert not t2.done()
        assert await t2 == 2
        assert steps[-1] == "after await"
    finally:
        loop.set_task_factory(None)


# --------------------------------------------------------------------------------------------
# executors


@pytest.mark.asyncio
async def test_run_in_executor_default():
    loop = asyncio.get_running_loop()
    main_thread = threading.get_ident()

    def work(a, b):
        return a + b, threading.get_ident()

    result, tid = await loop.run_in_executor(None, work, 2, 3)
    assert result == 5
    assert tid != main_thread
    fut = loop.run_in_executor(None, work, 1, 1)
    assert isinstance(fut, asyncio.Future)
    assert (await fut)[0] == 2


@pytest.mark.asyncio
async def test_run_in_executor_exception():
    loop = asyncio.get_running_loop()

    def fail():
        raise KeyError("from thread")

    with pytest.raises(KeyError, match="from thread"):
        await loop.run_in_executor(None, fail)


@pytest.mark.asyncio
async def test_run_in_executor_custom_executor():
    loop = asyncio.get_running_loop()
    with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="custom-pool") as pool:
        name = await loop.run_in_executor(pool, lambda: threading.current_thread().name)
    assert name.startswith("custom-pool")


@pytest.mark.asyncio
async def test_set_default_executor():
    loop = asyncio.get_running_loop()
    pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="default-pool")
    try:
        loop.set_default_executor(pool)
        name = await loop.run_in_executor(None, lambda: threading.current_thread().name)
        assert name.startswith("default-pool")
    finally:
        await loop.shutdown_default_executor()
        pool.shutdown(wait=True)


class _NotAThreadPool(concurrent.futures.Executor):
    def submit(self, fn, /, *args, **kwargs):
        fut = concurrent.futures.Future()
        fut.set_result(fn(*args, **kwargs))
        return fut


def test_set_default_executor_rejects_other_executors(loop):
    # 3.11, 3.12 and 3.13 all raise TypeError for anything but a ThreadPoolExecutor
    with pytest.raises(TypeError):
        loop.set_default_executor(_NotAThreadPool())
    with pytest.raises(TypeError):
        loop.set_default_executor(None)


@pytest.mark.asyncio
async def test_shutdown_default_executor_joins_threads():
    loop = asyncio.get_running_loop()
    worker = await loop.run_in_executor(None, threading.current_thread)
    assert worker.is_alive()
    await loop.shutdown_default_executor()
    assert not worker.is_alive()
    with pytest.raises(RuntimeError):
        loop.run_in_executor(None, lambda: None)
    # an explicit executor still works
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        assert await loop.run_in_executor(pool, lambda: "explicit") == "explicit"


@pytest.mark.asyncio
async def test_shutdown_default_executor_unused():
    await asyncio.get_running_loop().shutdown_default_executor()


@pytest.mark.skipif(REFERENCE and sys.version_info < (3, 13),
                    reason="shutdown_default_executor(timeout) is the 3.12+ signature; CPython 3.12.1 "
                           "awaits the executor before applying the timeout (3.13 does as documented)")
@pytest.mark.asyncio
async def test_shutdown_default_executor_timeout():
    loop = asyncio.get_running_loop()
    release = threading.Event()
    started = threading.Event()

    def blocker():
        started.set()
        release.wait(10)

    fut = loop.run_in_executor(None, blocker)
    safety = loop.call_later(3, release.set)  # an implementation that ignores timeout fails in 3 s
    try:
        await loop.run_in_executor(None, started.wait, 5)
        t0 = time.monotonic()
        with pytest.warns(RuntimeWarning):
            await loop.shutdown_default_executor(timeout=0.1)
        assert time.monotonic() - t0 < 2.5
    finally:
        release.set()
        safety.cancel()
    await fut


# --------------------------------------------------------------------------------------------
# async generators


def test_shutdown_asyncgens_finalizes_pending_generators(loop):
    events = []

    async def agen(tag):
        try:
            yield 1
            yield 2
        finally:
            await asyncio.sleep(0)
            events.append(tag)

    gens = [agen("a"), agen("b")]

    async def start():
        for g in gens:
            assert await g.__anext__() == 1

    loop.run_until_complete(start())
    assert events == []
    loop.run_until_complete(loop.shutdown_asyncgens())
    assert sorted(events) == ["a", "b"]


def test_garbage_collected_asyncgen_is_closed_by_the_loop(loop):
    events = []

    async def agen():
        try:
            yield 1
            yield 2
        finally:
            await asyncio.sleep(0)  # needs the loop: only an aclose() scheduled on it gets here
            events.append("finalized")

    async def main():
        g = agen()
        assert await g.__anext__() == 1
        del g
        gc.collect()
        for _ in range(5):
            await asyncio.sleep(0)

    loop.run_until_complete(main())
    assert events == ["finalized"]


def test_asyncgen_hooks_installed_while_running_and_restored(loop):
    before = sys.get_asyncgen_hooks()

    async def main():
        return sys.get_asyncgen_hooks()

    during = loop.run_until_complete(main())
    assert during.firstiter is not None and during.finalizer is not None
    assert during != before
    assert sys.get_asyncgen_hooks() == before


def test_asyncgen_first_iterated_after_shutdown_warns(loop):
    async def agen():
        yield 1

    loop.run_until_complete(loop.shutdown_asyncgens())

    async def main():
        g = agen()
        await g.__anext__()
        await g.aclose()

    with pytest.warns(ResourceWarning):
        loop.run_until_complete(main())


# --------------------------------------------------------------------------------------------
# getaddrinfo / getnameinfo: the same answers and errors as the socket module

GAI_CASES = {
    "localhost": (("localhost", 80), {}),
    "localhost-stream": (("localhost", 80), {"type": socket.SOCK_STREAM}),
    "ipv4": (("127.0.0.1", 80), {"type": socket.SOCK_STREAM}),
    "ipv4-str-port": (("127.0.0.1", "8080"), {}),
    "ipv4-service-name": (("127.0.0.1", "http"), {"type": socket.SOCK_STREAM}),
    "ipv4-no-port": (("127.0.0.1", None), {}),
    "ipv4-bytes-host": ((b"127.0.0.1", 80), {}),
    "ipv4-short-form": (("1.2.3", 80), {"type": socket.SOCK_DGRAM}),
    "ipv6": (("::1", 443), {"family": socket.AF_INET6}),
    "ipv6-scoped": (("fe80::1%lo", 80), {"type": socket.SOCK_STREAM}),
    "passive": ((None, 0), {"flags": socket.AI_PASSIVE, "type": socket.SOCK_STREAM}),
    "ipv4-asked-as-ipv6": (("127.0.0.1", 80), {"family": socket.AF_INET6}),
    "bad-service": (("localhost", "no-such-service-xyz"), {}),
    "numerichost-name": (("localhost", 80), {"flags": socket.AI_NUMERICHOST}),
    "no-host-no-port": ((None, None), {}),
    "trailing-space": (("127.0.0.1 ", 80), {}),
    "float-port": (("127.0.0.1", 80.5), {}),
}


def _outcome(fn):
    try:
        return "ok", fn()
    except Exception as exc:  # compare the exception type and errno, not the text
        return type(exc), getattr(exc, "errno", None)


@pytest.mark.asyncio
@pytest.mark.parametrize("case", list(GAI_CASES))
async def test_getaddrinfo_matches_socket_module(case):
    loop = asyncio.get_running_loop()
    (host, port), kw = GAI_CASES[case]
    expected = _outcome(lambda: socket.getaddrinfo(host, port, **kw))
    try:
        got = "ok", await loop.getaddrinfo(host, port, **kw)
    except Exception as exc:
        got = type(exc), getattr(exc, "errno", None)
    assert got == expected


@pytest.mark.asyncio
async def test_getaddrinfo_localhost_resolves_to_loopback():
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo("localhost", 80, type=socket.SOCK_STREAM)
    addrs = {info[4][0] for info in infos}
    assert addrs & {"127.0.0.1", "::1"}
    for family, type_, proto, canonname, sockaddr in infos:
        assert type_ == socket.SOCK_STREAM
        assert sockaddr[1] == 80


@pytest.mark.asyncio
async def test_getaddrinfo_error_is_gaierror():
    loop = asyncio.get_running_loop()
    with pytest.raises(socket.gaierror):
        await loop.getaddrinfo("localhost", "no-such-service-xyz")
    with pytest.raises(socket.gaierror):
        await loop.getaddrinfo("localhost", 80, flags=socket.AI_NUMERICHOST)


GNI_CASES = {
    "numeric": (("127.0.0.1", 80), socket.NI_NUMERICHOST | socket.NI_NUMERICSERV),
    "names": (("127.0.0.1", 80), 0),
    "ipv6-numeric": (("::1", 443, 0, 0), socket.NI_NUMERICHOST | socket.NI_NUMERICSERV),
    "not-an-address": (("not an ip", 80), socket.NI_NUMERICHOST),
    "not-a-tuple": ("127.0.0.1", 0),
    "short-tuple": (("127.0.0.1",), 0),
}


@pytest.mark.asyncio
@pytest.mark.parametrize("case", list(GNI_CASES))
async def test_getnameinfo_matches_socket_module(case):
    loop = asyncio.get_running_loop()
    sockaddr, flags = GNI_CASES[case]
    expected = _outcome(lambda: socket.getnameinfo(sockaddr, flags))
    try:
        got = "ok", await loop.getnameinfo(sockaddr, flags)
    except Exception as exc:
        got = type(exc), getattr(exc, "errno", None)
    assert got == expected


@pytest.mark.asyncio
async def test_getnameinfo_numeric():
    loop = asyncio.get_running_loop()
    assert await loop.getnameinfo(("127.0.0.1", 80),
                                  socket.NI_NUMERICHOST | socket.NI_NUMERICSERV) == ("127.0.0.1", "80")
    with pytest.raises(socket.gaierror):
        await loop.getnameinfo(("not an ip", 80), socket.NI_NUMERICHOST)


def test_getaddrinfo_on_closed_loop(loop):
    loop.close()
    coro = loop.getaddrinfo("127.0.0.1", 80)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        with pytest.raises(RuntimeError):
            # a coroutine: the error surfaces when it runs (or at call time); drive it by hand
            coro.send(None)
    coro.close()
