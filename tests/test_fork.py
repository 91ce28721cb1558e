"""Behaviour 13: ``os.fork()`` with a live loop.

After a fork the child shares the parent's epoll instance (one kernel object reached through two
descriptors) and holds duplicates of every socket the parent's loop has registered.  The child must
be able to build its own loop and work, and whatever it does with the parent's loop object must
not reach the parent: no ``epoll_ctl`` on the shared instance, no socket of the parent closed.

The child reports through a pipe (a traceback, if any) and its exit status; it always leaves with
``os._exit`` so that no pytest machinery runs twice.
"""
from __future__ import annotations

import asyncio
import os
import signal
import socket
import time
import traceback
import warnings

import pytest

try:
    from tests._streamutil import REFERENCE
    from tests.conftest import LOOP_CONFIGS
except ModuleNotFoundError:  # tests/ on sys.path rather than a package
    from _streamutil import REFERENCE
    from conftest import LOOP_CONFIGS

if not REFERENCE:
    import edgeloop

pytestmark = [pytest.mark.timeout(60),
              pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork()")]

PAYLOAD = bytes(range(256)) * 4096  # 1 MiB


def new_loop(config: str) -> asyncio.AbstractEventLoop:
    if REFERENCE:
        return asyncio.new_event_loop()
    return edgeloop.new_event_loop(**LOOP_CONFIGS[config])


def fork() -> int:
    with warnings.catch_warnings():
        # 3.12+ warns when other threads exist (executor threads of earlier tests may linger);
        # the child below only touches objects it creates itself, plus the parent's loop object.
        warnings.simplefilter("ignore", DeprecationWarning)
        return os.fork()


def run_child(report_fd: int, work) -> None:
    """In the child: run ``work()``, report a traceback on failure, and never return."""
    code = 1
    try:
        work()
        code = 0
    except BaseException:
        try:
            os.write(report_fd, traceback.format_exc().encode())
        except BaseException:
            pass
    finally:
        os._exit(code)


def child_report(read_fd: int) -> str:
    os.set_blocking(read_fd, False)
    try:
        return os.read(read_fd, 1 << 16).decode(errors="replace")
    except BlockingIOError:
        return ""


async def wait_child(pid: int, timeout: float = 30.0) -> int:
    """Wait for the child without blocking the (running) parent loop: its exit code."""
    deadline = time.monotonic() + timeout
    while True:
        got, status = os.waitpid(pid, os.WNOHANG)
        if got:
            return os.waitstatus_to_exitcode(status)
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            raise AssertionError("the forked child hung")
        await asyncio.sleep(0.005)


async def socketpair_echo() -> None:
    """Real work on the current loop: 1 MiB echoed over a socketpair through stream
    transports on one side and loop.sock_* on the other."""
    loop = asyncio.get_running_loop()
    a, b = socket.socketpair()
    b.setblocking(False)
    reader, writer = await asyncio.open_connection(sock=a)

    async def echo():
        while True:
            data = await loop.sock_recv(b, 1 << 16)
            if not data:
                return
            await loop.sock_sendall(b, data)

    task = loop.create_task(echo())
    try:
        writer.write(PAYLOAD)
        assert await reader.readexactly(len(PAYLOAD)) == PAYLOAD
        writer.close()
        await writer.wait_closed()
        await asyncio.wait_for(task, 10)
    finally:
        b.close()


async def echo_handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while line := await reader.readline():
            writer.write(line)
            await writer.drain()
    finally:
        writer.close()


async def round_trips(reader, writer, tag: str, n: int = 10) -> None:
    for i in range(n):
        line = f"{tag} {i}\n".encode()
        writer.write(line)
        assert await asyncio.wait_for(reader.readline(), 10) == line


@pytest.mark.asyncio
async def test_fork_from_a_running_loop(loop_config):
    """Fork inside a coroutine of a running loop that serves a TCP connection.  The child builds
    its own loop and echoes 1 MiB over a socketpair; meanwhile and afterwards the parent's
    connection and server keep working."""
    loop = asyncio.get_running_loop()
    server = await asyncio.start_server(echo_handler, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    rfd, wfd = os.pipe()
    try:
        await round_trips(reader, writer, "before")

        pid = fork()
        if pid == 0:
            def work():
                child_loop = new_loop(loop_config)
                try:
                    if not REFERENCE:
                        assert loop._poller.forked and not child_loop._poller.forked
                        if loop.backend == "epoll":  # a fresh epoll instance of its own
                            assert child_loop._poller.fileno() != loop._poller.fileno()
                    child_loop.run_until_complete(asyncio.wait_for(socketpair_echo(), 15))
                finally:
                    child_loop.close()
            run_child(wfd, work)

        os.close(wfd)
        wfd = -1
        await round_trips(reader, writer, "during")
        code = await wait_child(pid)
        assert code == 0, child_report(rfd)
        # The child has exited and closed its copies of every descriptor: nothing changed here.
        await round_trips(reader, writer, "after")
        r2, w2 = await asyncio.open_connection("127.0.0.1", port)
        await round_trips(r2, w2, "new connection")
        w2.close()
        await w2.wait_closed()
    finally:
        writer.close()
        await writer.wait_closed()
        server.close()
        await server.wait_closed()
        os.close(rfd)
        if wfd >= 0:
            os.close(wfd)


@pytest.mark.parametrize("loop_factory", ["edge", "level", "poll"], indirect=True)
@pytest.mark.skipif(REFERENCE, reason="the stdlib loop unregisters from the epoll instance it "
                                      "shares with the parent (epoll_ctl DEL) when used in a child")
def test_child_closes_the_parents_loop_without_disturbing_it(loop_factory):
    """The child closes the parent's transports, server and loop object: the closing paths run
    (unregister, close) but issue no epoll_ctl on the shared instance and close only the child's
    copies.  Then it works with a loop of its own.  The parent's loop then serves the same
    connection, a new one, and a UDP endpoint as before."""
    loop = loop_factory()
    state: dict = {}

    class Udp(asyncio.DatagramProtocol):
        def __init__(self):
            self.got: asyncio.Queue = asyncio.Queue()

        def datagram_received(self, data, addr):
            self.got.put_nowait(data)

    async def setup():
        state["server"] = await asyncio.start_server(echo_handler, "127.0.0.1", 0)
        state["port"] = state["server"].sockets[0].getsockname()[1]
        state["conn"] = await asyncio.open_connection("127.0.0.1", state["port"])
        state["udp"] = await loop.create_datagram_endpoint(Udp, local_addr=("127.0.0.1", 0))
        await round_trips(*state["conn"], "before")
        await asyncio.sleep(0.02)  # no event of ours left pending in the shared epoll

    async def check_parent():
        await round_trips(*state["conn"], "after")
        r2, w2 = await asyncio.open_connection("127.0.0.1", state["port"])
        await round_trips(r2, w2, "new connection")
        w2.close()
        await w2.wait_closed()
        udp_tr, udp_pr = state["udp"]
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.sendto(b"udp still served", udp_tr.get_extra_info("sockname"))
            assert await asyncio.wait_for(udp_pr.got.get(), 5) == b"udp still served"

    async def teardown():
        _, writer = state["conn"]
        writer.close()
        await writer.wait_closed()
        state["udp"][0].close()
        state["server"].close()
        await state["server"].wait_closed()

    rfd, wfd = os.pipe()
    try:
        loop.run_until_complete(setup())
        fds_before = loop.stats()["fds"]
        ctl_before = loop.stats()["ctl"]

        pid = fork()
        if pid == 0:
            def work():
                assert loop._poller.forked
                _, writer = state["conn"]
                writer.transport.abort()
                state["udp"][0].abort()
                state["server"].close()
                loop.run_until_complete(asyncio.sleep(0.01))  # connection_lost: unregister+close
                assert loop.stats()["ctl"] == ctl_before, "epoll_ctl issued in the child"
                assert loop.stats()["fds"] < fds_before
                loop.close()
                child_loop = loop_factory()
                try:
                    child_loop.run_until_complete(asyncio.wait_for(socketpair_echo(), 15))
                finally:
                    child_loop.close()
            run_child(wfd, work)

        os.close(wfd)
        wfd = -1
        _, status = os.waitpid(pid, 0)  # the parent's loop is idle meanwhile: nothing to steal
        assert os.waitstatus_to_exitcode(status) == 0, child_report(rfd)
        assert loop.stats()["fds"] == fds_before
        loop.run_until_complete(check_parent())
    finally:
        if "server" in state and not loop.is_closed():
            loop.run_until_complete(teardown())
        loop.close()
        os.close(rfd)
        if wfd >= 0:
            os.close(wfd)
