"""gunicorn + aiohttp on edgeloop: ``edgeloop.worker.GunicornWebWorker`` in several processes.

Real gunicorn (``python -m gunicorn``) serving ``examples/gunicorn_app.py`` on a free port chosen by
the kernel (``--bind 127.0.0.1:0``; the arbiter prints the real address).  The clients run on
edgeloop in the test process: plain HTTP/1.1 over asyncio streams for the 2,000 requests (cheap,
one connection each), aiohttp's client around the reload and the shutdown.  Readiness comes from
lines the children print: the arbiter's "Listening at", each worker's "serving on edgeloop..."
and each slow request's "started".
"""
from __future__ import annotations

import asyncio
import os
import re
import signal
import sys

import pytest

pytest.importorskip("gunicorn")
aiohttp = pytest.importorskip("aiohttp")

from tests._servers import EXAMPLES, Child, http_get  # noqa: E402

pytestmark = [
    pytest.mark.timeout(60),
    pytest.mark.skipif(os.environ.get("EDGELOOP_TESTS_REFERENCE") == "asyncio",
                       reason="the worker class is edgeloop's"),
]

import edgeloop  # noqa: E402

SERVING = r"worker (\d+) serving on edgeloop\.loop\.EventLoop"
SLOW_STARTED = r"slow request started in worker (\d+)"


def _gunicorn_args(workers: int) -> list[str]:
    from gunicorn.config import KNOWN_SETTINGS

    args = ["-m", "gunicorn", "gunicorn_app:make_app", "--chdir", str(EXAMPLES),
            "--bind", "127.0.0.1:0", "--workers", str(workers),
            "--worker-class", "edgeloop.worker.GunicornWebWorker",
            "--graceful-timeout", "20", "--log-level", "info"]
    if any(s.name == "control_socket_disable" for s in KNOWN_SETTINGS):
        args.append("--no-control-socket")  # else recent gunicorn opens one in ~/.gunicorn
    return args


def start_gunicorn(workers: int = 2) -> tuple[Child, str, set[int]]:
    child = Child.python(*_gunicorn_args(workers))
    try:
        port = int(child.expect(r"Listening at: http://127\.0\.0\.1:(\d+)").group(1))
        pids = {int(child.expect(SERVING).group(1)) for _ in range(workers)}
    except BaseException:
        child.close()
        raise
    return child, f"http://127.0.0.1:{port}", pids


async def _get(session, url: str) -> tuple[int, str]:
    async with session.get(url) as resp:
        return resp.status, await resp.text()


def test_worker_module_imports_lazily():
    """The core package imports neither gunicorn nor aiohttp; the worker subclasses aiohttp's."""
    code = ("import sys, edgeloop; "
            "assert not {'gunicorn', 'aiohttp'} & set(sys.modules), 'imported by edgeloop'")
    with Child.python("-c", code) as child:
        assert child.wait() == 0, child.output()
    import aiohttp.worker
    import edgeloop.worker
    assert issubclass(edgeloop.worker.GunicornWebWorker, aiohttp.worker.GunicornWebWorker)


def test_two_workers_answer_2000_requests_then_sigterm_finishes_in_flight():
    child, base, pids = start_gunicorn(workers=2)
    with child:
        assert len(pids) == 2

        port = int(base.rsplit(":", 1)[1])

        async def client() -> list[tuple[int, bytes]]:
            # A new connection per request, 16 at a time: each is a fresh accept on the shared
            # socket, which is what spreads the load over the workers.
            limit = asyncio.Semaphore(16)

            async def one() -> tuple[int, bytes]:
                async with limit:
                    return await http_get(port, "/")

            return await asyncio.gather(*[one() for _ in range(2000)])

        results = edgeloop.run(client())
        assert all(status == 200 for status, _ in results)
        served: dict[int, int] = {}
        for _, body in results:
            pid, loop_name = body.decode().split()
            assert loop_name == "EventLoop"
            served[int(pid)] = served.get(int(pid), 0) + 1
        assert sum(served.values()) == 2000
        assert set(served) == pids, f"answers per worker: {served}"

        # SIGTERM (graceful shutdown) while requests are inside their handlers: all are answered.
        async def shutdown() -> list:
            connector = aiohttp.TCPConnector(force_close=True, limit=32)
            async with aiohttp.ClientSession(connector=connector) as session:
                slow = await _in_flight(child, base, session, n=8, seconds=0.5)
                child.signal(signal.SIGTERM)
                return await slow

        slow = edgeloop.run(shutdown())
        assert [s for s, _ in slow] == [200] * 8
        assert {int(t.split()[0]) for _, t in slow} <= pids
        assert child.wait() == 0, child.output()
    out = child.output()
    assert "Traceback" not in out, out
    assert "Shutting down: Master" in out, out


async def _in_flight(child: Child, base: str, session, n: int, seconds: float):
    """Start ``n`` slow requests and return their task once every one is inside a handler."""
    task = asyncio.ensure_future(asyncio.gather(
        *[_get(session, f"{base}/slow?s={seconds}") for _ in range(n)]))
    loop = asyncio.get_running_loop()
    for _ in range(n):
        await loop.run_in_executor(None, child.expect, SLOW_STARTED)
    return task


def test_sighup_reload_loses_no_request():
    child, base, old_pids = start_gunicorn(workers=2)
    with child:
        async def scenario() -> tuple[list, list]:
            connector = aiohttp.TCPConnector(force_close=True, limit=32)
            async with aiohttp.ClientSession(connector=connector) as session:
                slow = await _in_flight(child, base, session, n=8, seconds=0.5)
                child.signal(signal.SIGHUP)
                # Requests keep coming while gunicorn replaces the workers.
                loop = asyncio.get_running_loop()
                booted = loop.run_in_executor(
                    None, lambda: {int(child.expect(SERVING).group(1)) for _ in range(2)})
                fast: list[tuple[int, str]] = []
                while not booted.done():
                    fast += await asyncio.gather(*[_get(session, base + "/") for _ in range(8)])
                new_pids = await booted
                # The old workers stop accepting within about a second of their SIGTERM (aiohttp's
                # worker checks once a second); until then either generation may answer.
                deadline = loop.time() + 15
                while loop.time() < deadline:
                    batch = await asyncio.gather(*[_get(session, base + "/") for _ in range(8)])
                    fast += batch
                    if any(int(text.split()[0]) in new_pids for _, text in batch):
                        break
                return await slow, fast, new_pids

        slow, fast, new_pids = edgeloop.run(scenario())
        assert not new_pids & old_pids
        assert [s for s, _ in slow] == [200] * 8
        assert {int(t.split()[0]) for _, t in slow} <= old_pids  # finished by the old workers
        assert all(s == 200 for s, _ in fast)
        served_by = {int(t.split()[0]) for _, t in fast}
        assert served_by <= old_pids | new_pids
        assert served_by & new_pids, "no request reached the new workers"

        child.signal(signal.SIGTERM)
        assert child.wait() == 0, child.output()
    out = child.output()
    assert "Traceback" not in out, out
    for pid in old_pids:  # the old workers left gracefully, not killed after the timeout
        assert re.search(rf"Worker exiting \(pid: {pid}\)", out), out


# ----------------------------------------------------------------------- shared listening sockets

def _epoll_interest(epfd: int, fd: int) -> int:
    """The event mask the kernel holds for ``fd`` in epoll instance ``epfd`` (from fdinfo)."""
    with open(f"/proc/self/fdinfo/{epfd}") as f:
        for line in f:
            m = re.match(r"tfd:\s+(\d+)\s+events:\s+([0-9a-f]+)", line)
            if m and int(m.group(1)) == fd:
                return int(m.group(2), 16)
    raise AssertionError(f"fd {fd} is not in epoll {epfd}")


@pytest.mark.parametrize("trigger", ["edge", "level"])
def test_listening_socket_is_an_exclusive_waiter(trigger):
    from edgeloop.poller import EPOLLET, EPOLLEXCLUSIVE, EPOLLIN

    async def main() -> int:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(asyncio.Protocol, "127.0.0.1", 0)
        try:
            return _epoll_interest(loop._poller.fileno(), server.sockets[0].fileno())
        finally:
            server.close()
            await server.wait_closed()

    mask = edgeloop.run(main(), trigger=trigger)
    assert mask & EPOLLEXCLUSIVE and mask & EPOLLIN
    assert bool(mask & EPOLLET) == (trigger == "edge")


def test_exclusive_benchmark_runs():
    """benchmarks/exclusive.py: both modes answer every connection (its numbers are not checked
    here: they depend on scheduling)."""
    args = ["-m", "benchmarks.exclusive", "--workers", "2", "--connections", "200"]
    with Child.python(*args) as child:
        assert child.wait(40) == 0, child.output()
    out = child.output()
    assert re.search(r"shared: 200 accepts", out) and re.search(r"exclusive: 200 accepts", out), out
    assert "EPOLLEXCLUSIVE: polls/accept" in out, out


if sys.platform != "linux":  # pragma: no cover
    pytestmark.append(pytest.mark.skip(reason="edgeloop runs on Linux"))
