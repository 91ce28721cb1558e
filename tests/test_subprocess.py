"""Child processes: loop.subprocess_exec/subprocess_shell, their transport, and asyncio.subprocess.

Children are small shell or Python programs.  Besides the autouse fd-leak check, tests check that
every child they started has been reaped (``os.waitpid`` says it is no child of ours any more),
i.e. that no zombie is left behind.  Every test runs on the four loop configurations and, with
``EDGELOOP_TESTS_REFERENCE=asyncio``, on the stdlib loop.
"""
from __future__ import annotations

import asyncio
import hashlib
import os
import signal
import subprocess
import sys
import tempfile

import pytest

try:
    from tests._streamutil import REFERENCE
except ModuleNotFoundError:  # tests/ on sys.path rather than a package
    from _streamutil import REFERENCE

pytestmark = pytest.mark.timeout(60)
edgeloop_only = pytest.mark.skipif(REFERENCE, reason="edgeloop-only behaviour")

PY = sys.executable
PIPE = asyncio.subprocess.PIPE


class ProcRecorder(asyncio.SubprocessProtocol):
    """Records every callback in order; ``done`` resolves at connection_lost."""

    def __init__(self):
        self.loop = asyncio.get_running_loop()
        self.events: list[tuple] = []
        self.output: dict[int, bytearray] = {1: bytearray(), 2: bytearray()}
        self.done = self.loop.create_future()
        self.exited = self.loop.create_future()
        self.transport = None

    def connection_made(self, transport):
        self.transport = transport
        self.events.append(("made",))

    def pipe_data_received(self, fd, data):
        self.events.append(("data", fd))
        self.output[fd] += data

    def pipe_connection_lost(self, fd, exc):
        self.events.append(("pipe_lost", fd, exc))

    def process_exited(self):
        self.events.append(("exited",))
        self.exited.set_result(self.transport.get_returncode())

    def connection_lost(self, exc):
        self.events.append(("lost", exc))
        self.done.set_result(exc)

    def kinds(self) -> list[str]:
        return [e[0] for e in self.events]


def assert_reaped(*pids: int) -> None:
    """Each pid was waited for by the loop: not a zombie, not a child any more."""
    for pid in pids:
        with pytest.raises(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)


async def finish(tr, pr, timeout: float = 10.0):
    await asyncio.wait_for(asyncio.shield(pr.done), timeout)
    tr.close()


def check_order(pr: ProcRecorder, fds=(0, 1, 2)) -> None:
    """The stdlib's contract: made first, lost last, process_exited once, each pipe's data before
    its pipe_connection_lost, every pipe closed before connection_lost."""
    kinds = pr.kinds()
    assert kinds[0] == "made" and kinds[-1] == "lost" and kinds.count("lost") == 1
    assert kinds.count("exited") == 1
    for fd in fds:
        lost_at = pr.events.index(next(e for e in pr.events if e[:2] == ("pipe_lost", fd)))
        assert all(i < lost_at for i, e in enumerate(pr.events) if e == ("data", fd))


# --------------------------------------------------------------------------------------------
# the protocol API

@pytest.mark.asyncio
async def test_echo_through_stdin_and_stdout():
    loop = asyncio.get_running_loop()
    tr, pr = await loop.subprocess_exec(ProcRecorder, "cat")
    try:
        assert isinstance(tr, asyncio.SubprocessTransport)
        pid = tr.get_pid()
        assert isinstance(pid, int) and pid > 0
        assert tr.get_returncode() is None
        assert tr.get_extra_info("subprocess").pid == pid
        stdin = tr.get_pipe_transport(0)
        assert isinstance(stdin, asyncio.WriteTransport)
        assert isinstance(tr.get_pipe_transport(1), asyncio.ReadTransport)
        assert tr.get_pipe_transport(3) is None
        stdin.write(b"hello ")
        stdin.write(b"child\n")
        stdin.close()
        await finish(tr, pr)
        assert pr.output[1] == b"hello child\n" and pr.output[2] == b""
        assert tr.get_returncode() == 0
        assert pr.done.result() is None
        check_order(pr)
    finally:
        tr.close()
    assert_reaped(pid)


@pytest.mark.asyncio
async def test_stdout_and_stderr_and_exit_code():
    loop = asyncio.get_running_loop()
    tr, pr = await loop.subprocess_shell(ProcRecorder, "printf out; printf err >&2; exit 7",
                                         stdin=None)
    await finish(tr, pr)
    assert pr.output == {1: b"out", 2: b"err"}
    assert tr.get_returncode() == 7 and await pr.exited == 7
    assert tr.get_pipe_transport(0) is None
    check_order(pr, fds=(1, 2))
    assert_reaped(tr.get_pid())


@pytest.mark.asyncio
async def test_callback_order_holds_for_fast_children():
    """Short-lived children race their pipes' EOF against their exit: whatever the timing,
    connection_lost comes last and each pipe's data precedes its pipe_connection_lost."""
    loop = asyncio.get_running_loop()
    for _ in range(25):
        tr, pr = await loop.subprocess_shell(ProcRecorder, "printf out; printf err >&2")
        await finish(tr, pr)
        await asyncio.sleep(0)  # anything delivered late would show up now
        await asyncio.sleep(0)
        check_order(pr)
        assert pr.output == {1: b"out", 2: b"err"}
        assert_reaped(tr.get_pid())


@pytest.mark.asyncio
async def test_ten_megabytes_of_output():
    loop = asyncio.get_running_loop()
    code = ("import hashlib, sys\n"
            "data = hashlib.sha256(b'seed').digest() * (10 * 1024 * 1024 // 32)\n"
            "sys.stdout.buffer.write(data)\n")
    tr, pr = await loop.subprocess_exec(ProcRecorder, PY, "-c", code, stdin=None, stderr=None)
    await finish(tr, pr, timeout=30)
    expected = hashlib.sha256(b"seed").digest() * (10 * 1024 * 1024 // 32)
    assert len(pr.output[1]) == len(expected)
    assert pr.output[1] == expected
    assert tr.get_returncode() == 0
    assert_reaped(tr.get_pid())


@pytest.mark.asyncio
async def test_kill_terminate_send_signal():
    loop = asyncio.get_running_loop()
    results = {}
    for how, expected in (("kill", -signal.SIGKILL), ("terminate", -signal.SIGTERM),
                          ("send_signal", -signal.SIGUSR1)):
        tr, pr = await loop.subprocess_exec(ProcRecorder, "sleep", "30", stdin=None)
        if how == "send_signal":
            tr.send_signal(signal.SIGUSR1)
        else:
            getattr(tr, how)()
        await finish(tr, pr)
        results[how] = (tr.get_returncode(), expected)
        assert_reaped(tr.get_pid())
        # After connection_lost the process is gone for good: ProcessLookupError.
        with pytest.raises(ProcessLookupError):
            tr.kill()
    assert all(got == want for got, want in results.values()), results


@pytest.mark.asyncio
async def test_signals_after_exit_but_before_connection_lost_are_ignored():
    loop = asyncio.get_running_loop()
    tr, pr = await loop.subprocess_exec(ProcRecorder, "true")
    try:
        await asyncio.wait_for(asyncio.shield(pr.exited), 10)
        if not pr.done.done():
            tr.kill()       # exited, not finished: no error, nothing sent
            tr.terminate()
        await finish(tr, pr)
        assert tr.get_returncode() == 0
    finally:
        tr.close()
    assert_reaped(tr.get_pid())


@pytest.mark.asyncio
async def test_close_kills_a_running_child():
    loop = asyncio.get_running_loop()
    tr, pr = await loop.subprocess_exec(ProcRecorder, "sleep", "30")
    assert not tr.is_closing()
    tr.close()
    assert tr.is_closing()
    tr.close()
    await asyncio.wait_for(asyncio.shield(pr.done), 10)
    assert tr.get_returncode() == -signal.SIGKILL
    assert set(e[1] for e in pr.events if e[0] == "pipe_lost") == {0, 1, 2}
    assert_reaped(tr.get_pid())


@pytest.mark.asyncio
async def test_process_exited_does_not_wait_for_the_pipes():
    """The child exits while a grandchild keeps its stdout open: process_exited comes at the
    exit; connection_lost only once the pipe is closed too."""
    loop = asyncio.get_running_loop()
    r, w = os.pipe()
    try:
        grandchild = f"import os; os.read({r}, 1); print('late')"
        child = (f"import subprocess, sys; "
                 f"subprocess.Popen([sys.executable, '-c', {grandchild!r}], pass_fds=({r},)); "
                 f"sys.exit(3)")
        tr, pr = await loop.subprocess_exec(ProcRecorder, PY, "-c", child, stdin=None,
                                            pass_fds=(r,))
        os.close(r)
        r = -1
        assert await asyncio.wait_for(asyncio.shield(pr.exited), 10) == 3
        await asyncio.sleep(0.05)
        assert not pr.done.done() and ("pipe_lost", 1, None) not in pr.events, pr.output
        os.write(w, b"go\n")  # the grandchild prints and exits: stdout closes
        await finish(tr, pr)
        assert pr.output[1] == b"late\n"
        assert pr.kinds().index("exited") < pr.events.index(("pipe_lost", 1, None))
    finally:
        if r >= 0:
            os.close(r)
        os.close(w)
    assert_reaped(tr.get_pid())


@pytest.mark.asyncio
@edgeloop_only
async def test_output_written_before_exit_comes_before_process_exited():
    loop = asyncio.get_running_loop()
    for _ in range(5):
        tr, pr = await loop.subprocess_shell(ProcRecorder, "echo one; echo two >&2", stdin=None)
        await finish(tr, pr)
        kinds = pr.kinds()
        assert kinds.index("exited") > max(i for i, k in enumerate(kinds) if k == "data"), kinds


@pytest.mark.asyncio
async def test_pass_fds_cwd_env():
    loop = asyncio.get_running_loop()
    r, w = os.pipe()
    with tempfile.TemporaryDirectory() as d:
        code = ("import os, sys\n"
                f"os.write({w}, b'via pass_fds')\n"
                "print(os.getcwd(), os.environ.get('EDGELOOP_TEST_VAR'))\n")
        try:
            tr, pr = await loop.subprocess_exec(
                ProcRecorder, PY, "-c", code, stdin=None, pass_fds=(w,), cwd=d,
                env={**os.environ, "EDGELOOP_TEST_VAR": "forty-two"})
            os.close(w)
            w = -1
            await finish(tr, pr)
            assert os.read(r, 100) == b"via pass_fds"
            assert pr.output[1].decode().split() == [os.path.realpath(d), "forty-two"]
            assert tr.get_returncode() == 0
        finally:
            os.close(r)
            if w >= 0:
                os.close(w)


@pytest.mark.asyncio
async def test_stderr_to_stdout_and_devnull():
    loop = asyncio.get_running_loop()
    tr, pr = await loop.subprocess_shell(ProcRecorder, "echo a; echo b >&2",
                                         stdin=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    await finish(tr, pr)
    assert sorted(pr.output[1].split()) == [b"a", b"b"]
    assert tr.get_pipe_transport(0) is None and tr.get_pipe_transport(2) is None
    check_order(pr, fds=(1,))


@pytest.mark.asyncio
async def test_stdin_broken_pipe_when_the_child_does_not_read():
    loop = asyncio.get_running_loop()
    tr, pr = await loop.subprocess_exec(ProcRecorder, "true", stdout=None, stderr=None)
    stdin = tr.get_pipe_transport(0)
    await asyncio.wait_for(asyncio.shield(pr.exited), 10)
    stdin.write(b"x" * 1_000_000)  # nobody will ever read this
    await finish(tr, pr)
    lost = [e for e in pr.events if e[0] == "pipe_lost"]
    assert len(lost) == 1 and lost[0][1] == 0
    assert lost[0][2] is None or isinstance(lost[0][2], BrokenPipeError)
    assert_reaped(tr.get_pid())


# --------------------------------------------------------------------------------------------
# arguments

@pytest.mark.asyncio
async def test_argument_errors_are_the_stdlibs():
    loop = asyncio.get_running_loop()
    exec_bad = [dict(universal_newlines=True), dict(shell=True), dict(bufsize=1),
                dict(text=True), dict(encoding="utf-8"), dict(errors="strict")]
    for kwargs in exec_bad:
        with pytest.raises(ValueError):
            await loop.subprocess_exec(ProcRecorder, "true", **kwargs)
    shell_bad = [dict(universal_newlines=True), dict(shell=False), dict(bufsize=1),
                 dict(text=True), dict(encoding="utf-8"), dict(errors="strict")]
    for kwargs in shell_bad:
        with pytest.raises(ValueError):
            await loop.subprocess_shell(ProcRecorder, "true", **kwargs)
    with pytest.raises(ValueError, match="cmd must be a string"):
        await loop.subprocess_shell(ProcRecorder, ["true"])
    with pytest.raises(FileNotFoundError):
        await loop.subprocess_exec(ProcRecorder, "/nonexistent/edgeloop-program")
    with pytest.raises(FileNotFoundError):
        await asyncio.create_subprocess_exec("/nonexistent/edgeloop-program")


# --------------------------------------------------------------------------------------------
# asyncio.subprocess on top

@pytest.mark.asyncio
async def test_create_subprocess_exec_communicate():
    proc = await asyncio.create_subprocess_exec(
        PY, "-c", "import sys; d = sys.stdin.buffer.read(); "
                  "sys.stdout.buffer.write(d.upper()); sys.stderr.write('done')",
        stdin=PIPE, stdout=PIPE, stderr=PIPE)
    out, err = await asyncio.wait_for(proc.communicate(b"x" * 200_000 + b"end"), 20)
    assert out == b"X" * 200_000 + b"END" and err == b"done"
    assert proc.returncode == 0
    assert await proc.wait() == 0
    assert_reaped(proc.pid)


@pytest.mark.asyncio
async def test_create_subprocess_shell_streams_and_wait():
    proc = await asyncio.create_subprocess_shell(
        "read line; echo got $line; exit 5", stdin=PIPE, stdout=PIPE)
    proc.stdin.write(b"something\n")
    await proc.stdin.drain()
    assert await asyncio.wait_for(proc.stdout.readline(), 10) == b"got something\n"
    assert await asyncio.wait_for(proc.wait(), 10) == 5
    assert await proc.stdout.read() == b""
    assert proc.returncode == 5
    assert_reaped(proc.pid)


@pytest.mark.asyncio
async def test_process_kill_and_wait():
    proc = await asyncio.create_subprocess_exec("sleep", "30", stdout=PIPE)
    assert proc.returncode is None
    proc.terminate()
    assert await asyncio.wait_for(proc.wait(), 10) == -signal.SIGTERM
    with pytest.raises(ProcessLookupError):  # the transport is finished: no process any more
        proc.kill()
    assert await proc.wait() == -signal.SIGTERM
    assert_reaped(proc.pid)


@pytest.mark.asyncio
async def test_communicate_ten_megabytes_and_stdin_ignored_by_child():
    proc = await asyncio.create_subprocess_exec(
        PY, "-c", "import sys; sys.stdout.buffer.write(b'y' * (10 << 20))",
        stdin=PIPE, stdout=PIPE)
    # The child never reads stdin and exits: communicate() swallows the broken pipe.
    out, err = await asyncio.wait_for(proc.communicate(b"z" * (1 << 20)), 30)
    assert len(out) == 10 << 20 and err is None and proc.returncode == 0


@pytest.mark.asyncio
async def test_one_hundred_concurrent_children():
    async def one(i: int) -> tuple[int, bytes, int]:
        proc = await asyncio.create_subprocess_exec(
            "sh", "-c", f"read x; echo $x {i}; exit {i % 7}", stdin=PIPE, stdout=PIPE)
        out, _ = await proc.communicate(b"child\n")
        return proc.pid, out, proc.returncode

    fds_before = len(os.listdir("/proc/self/fd"))
    results = await asyncio.wait_for(asyncio.gather(*(one(i) for i in range(100))), 45)
    for i, (pid, out, rc) in enumerate(results):
        assert out == f"child {i}\n".encode() and rc == i % 7
    assert len({pid for pid, _, _ in results}) == 100
    assert_reaped(*(pid for pid, _, _ in results))
    assert len(os.listdir("/proc/self/fd")) <= fds_before


# --------------------------------------------------------------------------------------------
# edgeloop internals: the exit watcher

@pytest.mark.asyncio(loop_factories=["edge", "level"])
@edgeloop_only
async def test_exit_seen_without_pidfd(monkeypatch):
    """Where pidfd_open is unavailable a thread notices the exit (waitid WNOWAIT) and the loop
    reaps: same results, no zombie."""
    from edgeloop.transports import subprocess as esub
    monkeypatch.setattr(esub, "_HAVE_PIDFD", False)
    proc = await asyncio.create_subprocess_exec("sh", "-c", "echo hi; exit 4", stdout=PIPE)
    out, _ = await asyncio.wait_for(proc.communicate(), 10)
    assert out == b"hi\n" and proc.returncode == 4
    proc2 = await asyncio.create_subprocess_exec("sleep", "30")
    proc2.kill()
    assert await asyncio.wait_for(proc2.wait(), 10) == -signal.SIGKILL
    assert_reaped(proc.pid, proc2.pid)


@pytest.mark.asyncio(loop_factories=["edge", "level"])
@edgeloop_only
async def test_pidfd_is_registered_in_the_loop_while_the_child_runs():
    loop = asyncio.get_running_loop()
    fds = loop.stats()["fds"]
    proc = await asyncio.create_subprocess_exec("sleep", "30")
    assert loop.stats()["fds"] == fds + 1  # the pidfd, in the same poller
    proc.kill()
    await asyncio.wait_for(proc.wait(), 10)
    assert loop.stats()["fds"] == fds


@edgeloop_only
def test_loop_closed_under_a_running_child(loop_factory):
    """The loop is closed while a child runs and nobody closes its transport: collecting the
    transport kills the child, closes its pipes and pidfd, and a thread reaps it.  (The stdlib's
    transport raises "Event loop is closed" from __del__ before killing and leaves it running.)"""
    import gc
    import time
    import warnings

    loop = loop_factory()

    async def start():
        return await asyncio.create_subprocess_exec("sleep", "30", stdin=PIPE, stdout=PIPE)

    proc = loop.run_until_complete(start())
    pid = proc.pid
    loop.close()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)  # "unclosed transport": on purpose
        del proc
        gc.collect()
    deadline = time.monotonic() + 10
    while True:
        try:
            got, _ = os.waitpid(pid, os.WNOHANG)  # racing the reaper thread is fine
        except ChildProcessError:
            break
        if got:
            break
        assert time.monotonic() < deadline, "the child was neither killed nor reaped"
        time.sleep(0.01)
