"""edgeloop where asyncio users already are: uvicorn, hypercorn, pytest-asyncio, anyio.

Each test runs the real tool over loopback, the way a user would (gunicorn + aiohttp is in
test_worker.py; aiohttp's server and client in one process are in test_aiohttp.py, and
``web.run_app(app, loop=edgeloop.new_event_loop())`` stopped by SIGINT and SIGTERM in
test_examples.py).  Servers started as child processes bind port 0 and print the address they got;
the tests wait for that line, and ``Child`` kills the process group whatever happens.
"""
from __future__ import annotations

import asyncio
import importlib.util
import os
import signal
import socket
import threading
import urllib.request

import pytest

from tests._servers import EXAMPLES, Child, http_get

pytestmark = [
    pytest.mark.timeout(60),
    pytest.mark.skipif(os.environ.get("EDGELOOP_TESTS_REFERENCE") == "asyncio",
                       reason="checks that the tools run on edgeloop"),
]

import edgeloop  # noqa: E402

LOOP_NAME = "edgeloop.loop.EventLoop"


def _fetch(url: str, data: bytes | None = None) -> tuple[int, bytes]:
    with urllib.request.urlopen(url, data=data, timeout=10) as resp:
        return resp.status, resp.read()


def _check_asgi_app(base: str) -> None:
    assert _fetch(base + "/") == (200, LOOP_NAME.encode())
    body = os.urandom(2 << 20)  # large enough to exercise the server's flow control
    assert _fetch(base + "/echo", body) == (200, body)


def _load_example(name: str):
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# ------------------------------------------------------------------------------- uvicorn

def test_uvicorn_loop_option_serves_asgi_app():
    pytest.importorskip("uvicorn")
    with Child.python("-m", "uvicorn", "asgi_app:app", "--app-dir", str(EXAMPLES),
                      "--loop", "edgeloop:new_event_loop", "--host", "127.0.0.1",
                      "--port", "0") as child:
        port = child.expect(r"Uvicorn running on http://127\.0\.0\.1:(\d+)").group(1)
        _check_asgi_app(f"http://127.0.0.1:{port}")
        child.signal(signal.SIGTERM)
        # uvicorn shuts down gracefully, then re-raises the signal it caught (on every loop), so
        # the process ends "killed by SIGTERM" after its last log line.
        assert child.wait() in (0, -signal.SIGTERM), child.output()
    out = child.output()
    assert "Application shutdown complete" in out and "Finished server process" in out, out
    assert "Traceback" not in out, out


def test_uvicorn_workers_share_the_socket_on_edgeloop():
    """``--workers 2``: uvicorn binds in the parent and spawns two processes that each serve the
    inherited socket on their own edgeloop (registered with EPOLLEXCLUSIVE)."""
    pytest.importorskip("uvicorn")
    with Child.python("-m", "uvicorn", "asgi_app:app", "--app-dir", str(EXAMPLES),
                      "--loop", "edgeloop:new_event_loop", "--host", "127.0.0.1",
                      "--port", "0", "--workers", "2") as child:
        port = int(child.expect(r"Uvicorn running on http://127\.0\.0\.1:(\d+)").group(1))
        for _ in range(2):
            child.expect(r"Application startup complete")

        async def client() -> list[tuple[int, bytes]]:
            limit = asyncio.Semaphore(16)

            async def one(path: str) -> tuple[int, bytes]:
                async with limit:
                    return await http_get(port, path)

            return await asyncio.gather(one("/"), *[one("/pid") for _ in range(400)])

        results = edgeloop.run(client())
        assert results[0] == (200, LOOP_NAME.encode())
        assert all(status == 200 for status, _ in results)
        pids = {body for _, body in results[1:]}
        assert len(pids) == 2, f"answered by {pids}"
        child.signal(signal.SIGTERM)
        assert child.wait() in (0, -signal.SIGTERM), child.output()
    assert "Traceback" not in child.output(), child.output()


# ------------------------------------------------------------------------------- hypercorn

def test_hypercorn_serve_under_edgeloop_run():
    pytest.importorskip("hypercorn")
    with Child.python(str(EXAMPLES / "hypercorn_serve.py"), "--port", "0") as child:
        port = child.expect(r"Running on http://127\.0\.0\.1:(\d+)").group(1)
        _check_asgi_app(f"http://127.0.0.1:{port}")
        child.signal(signal.SIGINT)
        assert child.wait() == 0, child.output()
    out = child.output()
    assert "hypercorn stopped" in out and "Traceback" not in out, out


def test_hypercorn_in_asyncio_runner_with_loop_factory():
    """In-process: ``asyncio.Runner(loop_factory=edgeloop.new_event_loop)``, graceful shutdown
    through hypercorn's ``shutdown_trigger``, a client on the same loop."""
    pytest.importorskip("hypercorn")
    from hypercorn.asyncio import serve
    from hypercorn.config import Config

    asgi_app = _load_example("asgi_app")

    async def main() -> tuple[tuple[int, bytes], str]:
        # Bind here, so the port is known, and hand hypercorn the descriptor (it takes ownership).
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        config = Config()
        config.bind = [f"fd://{sock.detach()}"]
        config.accesslog = None
        config.errorlog = None
        config.graceful_timeout = 5.0
        stop = asyncio.Event()
        served = asyncio.ensure_future(serve(asgi_app.app, config, shutdown_trigger=stop.wait))
        try:
            # Connections made before hypercorn listens are refused: retry until one is taken.
            for _ in range(200):
                try:
                    answer = await http_get(port, "/")
                    break
                except ConnectionRefusedError:
                    if served.done():
                        served.result()
                    await asyncio.sleep(0.02)
            else:
                raise AssertionError("hypercorn never listened")
        finally:
            stop.set()
            await asyncio.wait_for(served, 10)
        return answer, type(asyncio.get_running_loop()).__name__

    with asyncio.Runner(loop_factory=edgeloop.new_event_loop) as runner:
        answer, loop_name = runner.run(main())
    assert answer == (200, LOOP_NAME.encode())
    assert loop_name == "EventLoop"


# ------------------------------------------------------------------------------- pytest-asyncio

def test_pytest_asyncio_user_suite_runs_on_edgeloop():
    """A user's own suite (examples/pytest_edgeloop: the conftest hook, an async fixture, a
    ``loop_factories`` mark) under a separate pytest run, as the user would start it."""
    project = EXAMPLES / "pytest_edgeloop"
    with Child.python("-m", "pytest", "-v", "-p", "no:cacheprovider", "--rootdir", str(project),
                      str(project), cwd=project, env={"PYTHONDONTWRITEBYTECODE": "1"}) as child:
        rc = child.wait(40)
    out = child.output()
    assert rc == 0, out
    assert "test_runs_on_edgeloop PASSED" in out, out
    assert "test_echo_on_every_loop[edgeloop] PASSED" in out, out
    assert "test_echo_on_every_loop[asyncio] PASSED" in out, out
    assert " 3 passed" in out, out


@pytest.mark.asyncio
async def test_this_suite_runs_on_edgeloop(loop_config):
    """tests/conftest.py's ``pytest_asyncio_loop_factories``: each async test, once per config."""
    from tests.conftest import LOOP_CONFIGS

    loop = asyncio.get_running_loop()
    assert type(loop) is edgeloop.EventLoop
    assert (loop.backend, loop.trigger) == (LOOP_CONFIGS[loop_config]["backend"],
                                            LOOP_CONFIGS[loop_config]["trigger"])


@pytest.mark.asyncio(loop_factories=["level"])
async def test_loop_factories_mark_picks_one_config():
    assert asyncio.get_running_loop().trigger == "level"


# ------------------------------------------------------------------------------- anyio

def test_anyio_run_with_loop_factory_tcp_streams_and_threads():
    anyio = pytest.importorskip("anyio")
    example = _load_example("anyio_echo")
    result = anyio.run(example.main, backend="asyncio",
                       backend_options={"loop_factory": edgeloop.new_event_loop})
    assert result["loop"] == "EventLoop"
    assert result["echoed"] is True
    assert result["thread"].startswith("AnyIO worker thread")
    assert len(result["sha256"]) == 64


@pytest.fixture
def anyio_backend():
    """anyio's pytest plugin: run ``@pytest.mark.anyio`` tests on edgeloop."""
    return "asyncio", {"loop_factory": edgeloop.new_event_loop}


@pytest.mark.anyio
async def test_anyio_pytest_plugin_with_loop_factory():
    import anyio

    assert type(asyncio.get_running_loop()) is edgeloop.EventLoop
    async with await anyio.create_tcp_listener(local_host="127.0.0.1") as listener:
        port = listener.extra(anyio.abc.SocketAttribute.local_port)

        async def serve_one(stream):
            async with stream:
                await stream.send(b"hello " + await stream.receive())

        async with anyio.create_task_group() as tg:
            tg.start_soon(listener.serve, serve_one)
            async with await anyio.connect_tcp("127.0.0.1", port) as client:
                await client.send(b"anyio")
                assert await client.receive() == b"hello anyio"
            assert await anyio.to_thread.run_sync(threading.get_ident) != threading.get_ident()
            tg.cancel_scope.cancel()
