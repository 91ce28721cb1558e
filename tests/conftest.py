"""Shared test machinery.

* Every async test (``@pytest.mark.asyncio``) runs on each edgeloop configuration through
  pytest-asyncio's ``pytest_asyncio_loop_factories`` hook: epoll edge-triggered (the default),
  epoll level-triggered, and the poll and select backends.  Pick a subset per test with
  ``@pytest.mark.asyncio(loop_factories=["edge", "level"])``.
* Synchronous tests that need to build loops themselves take the ``loop_factory`` fixture, which is
  parametrized the same way.
* ``_no_fd_leaks`` (autouse) fails any test that leaves file descriptors open.
"""
from __future__ import annotations

import functools
import gc
import os
import time

import asyncio
import ssl

import pytest

# EDGELOOP_TESTS_REFERENCE=asyncio runs the same tests on the stdlib loop: a test that fails there is
# testing something asyncio does not promise (edgeloop-only tests check ``REFERENCE`` and skip).
REFERENCE = os.environ.get("EDGELOOP_TESTS_REFERENCE") == "asyncio"
if not REFERENCE:
    import edgeloop

LOOP_CONFIGS: dict[str, dict[str, str]] = {
    "edge": {"backend": "epoll", "trigger": "edge"},
    "level": {"backend": "epoll", "trigger": "level"},
    "poll": {"backend": "poll", "trigger": "level"},
    "select": {"backend": "select", "trigger": "level"},
}


def _factory(name: str):
    if REFERENCE:
        return asyncio.new_event_loop
    return functools.partial(edgeloop.new_event_loop, **LOOP_CONFIGS[name])


def pytest_asyncio_loop_factories(config, item):
    return {name: _factory(name) for name in LOOP_CONFIGS}


@pytest.fixture(params=list(LOOP_CONFIGS))
def loop_factory(request):
    """A callable building a fresh edgeloop in one configuration (edge, level, poll, select)."""
    return _factory(request.param)


@pytest.fixture
def loop(loop_factory):
    """A fresh edgeloop for synchronous tests; closed afterwards."""
    lp = loop_factory()
    yield lp
    if not lp.is_closed():
        lp.close()


def _open_fds() -> set[int]:
    return {int(x) for x in os.listdir("/proc/self/fd")}


def _describe(fds: set[int]) -> str:
    out = []
    for fd in sorted(fds):
        try:
            out.append(f"{fd} -> {os.readlink(f'/proc/self/fd/{fd}')}")
        except OSError:
            out.append(f"{fd} -> ?")
    return ", ".join(out)


@pytest.fixture(autouse=True)
def _no_fd_leaks(request):
    if request.node.get_closest_marker("allow_fd_leak"):
        yield
        return
    before = _open_fds()
    yield
    # Cheap check first; only when something looks leaked, collect garbage (an unreferenced socket
    # object) and wait a little (transports close on the loop's next iteration).
    for attempt in range(20):
        leaked = _open_fds() - before
        if not leaked:
            return
        gc.collect()
        if not _open_fds() - before:
            return
        time.sleep(0.01)
    pytest.fail(f"test leaked file descriptors: {_describe(leaked)}", pytrace=False)


def pytest_configure(config):
    config.addinivalue_line("markers", "allow_fd_leak: the fd-leak check does not apply to this test")


@pytest.fixture
def loop_config(request) -> str:
    """Name of the configuration (edge, level, poll, select) the current async test runs on."""
    name = request.node.name
    ids = name[name.index("[") + 1:-1].split("-") if "[" in name else []
    for part in ids:
        if part in LOOP_CONFIGS:
            return part
    marker = request.node.get_closest_marker("asyncio")
    selected = marker.kwargs.get("loop_factories") if marker else None
    if selected and len(selected) == 1:  # pytest hides the id when only one factory is selected
        return selected[0]
    return "edge"


@pytest.fixture
def high_fd_limit():
    """RLIMIT_NOFILE's soft limit raised to at least 4096 for the test, restored afterwards, so that
    descriptors >= 1024 (select's FD_SETSIZE) can be opened even where the default soft limit is
    1024; skipped where the hard limit is lower."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = 4096
    if hard != resource.RLIM_INFINITY and hard < wanted:
        pytest.skip(f"RLIMIT_NOFILE hard limit {hard} < {wanted}")
    if soft != resource.RLIM_INFINITY and soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


# ------------------------------------------------------------------ TLS (test_tls, test_sendfile...)

@pytest.fixture(scope="module")
def ca():
    """A throw-away certificate authority (trustme is in the test extra)."""
    trustme = pytest.importorskip("trustme")
    return trustme.CA()


@pytest.fixture(scope="module")
def server_ctx(ca):
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost", "127.0.0.1").configure_cert(ctx)
    return ctx


@pytest.fixture(scope="module")
def client_ctx(ca):
    ctx = ssl.create_default_context()
    ca.configure_trust(ctx)
    return ctx
