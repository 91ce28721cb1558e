"""add_signal_handler / remove_signal_handler, argument checks, threads, what close() restores,
BaseException from a signal handler, and Ctrl-C (SIGINT) against run_forever and run()."""
from __future__ import annotations

import asyncio
import os
import select
import signal
import sys
import textwrap
import threading
import time

import pytest

try:
    from tests._looputil import LOOP_CONFIGS, REFERENCE, popen_python
except ImportError:  # tests/ itself on sys.path
    from _looputil import LOOP_CONFIGS, REFERENCE, popen_python


def _noop(*args):
    pass


def _installed(sig) -> bool:
    """Something will catch ``sig`` (so sending it cannot kill the test process)."""
    handler = signal.getsignal(sig)
    return handler not in (signal.SIG_DFL, signal.SIG_IGN, None)


def _wakeup_fd() -> int:
    """The process's signal wakeup fd, reset to -1 (only called where -1 is expected)."""
    return signal.set_wakeup_fd(-1)


@pytest.fixture(autouse=True)
def _signal_state():
    """Every test starts and ends with default SIGUSR1/SIGUSR2 and no wakeup fd."""
    assert signal.getsignal(signal.SIGUSR1) is signal.SIG_DFL
    assert signal.getsignal(signal.SIGUSR2) is signal.SIG_DFL
    yield
    for sig in (signal.SIGUSR1, signal.SIGUSR2):
        if signal.getsignal(sig) is not signal.SIG_DFL:
            signal.signal(sig, signal.SIG_DFL)
            pytest.fail(f"{sig!r} handler left installed")
    if signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        signal.signal(signal.SIGINT, signal.default_int_handler)
        pytest.fail("SIGINT handler left installed")


# --------------------------------------------------------------------------------------------
# delivery


@pytest.mark.asyncio
async def test_handler_called_with_args_on_the_loop():
    loop = asyncio.get_running_loop()
    got = loop.create_future()

    def handler(*args):
        got.set_result((args, threading.get_ident(), asyncio.get_running_loop()))

    loop.add_signal_handler(signal.SIGUSR1, handler, "a", 1)
    try:
        assert _installed(signal.SIGUSR1)
        os.kill(os.getpid(), signal.SIGUSR1)
        args, tid, running = await asyncio.wait_for(got, 5)
    finally:
        assert loop.remove_signal_handler(signal.SIGUSR1) is True
    assert args == ("a", 1)
    assert tid == threading.get_ident()
    assert running is loop
    assert signal.getsignal(signal.SIGUSR1) is signal.SIG_DFL
    assert loop.remove_signal_handler(signal.SIGUSR1) is False


@pytest.mark.asyncio
async def test_signal_wakes_a_sleeping_loop():
    loop = asyncio.get_running_loop()
    got = loop.create_future()
    loop.add_signal_handler(signal.SIGUSR1, lambda: got.done() or got.set_result(time.monotonic()))
    sent = []

    def sender():
        time.sleep(0.05)  # let the loop block in its poll (nothing else scheduled)
        sent.append(time.monotonic())
        os.kill(os.getpid(), signal.SIGUSR1)

    t = threading.Thread(target=sender)
    try:
        assert _installed(signal.SIGUSR1)
        t.start()
        handled = await asyncio.wait_for(got, 10)
    finally:
        t.join()
        loop.remove_signal_handler(signal.SIGUSR1)
    assert handled - sent[0] < 1.0


@pytest.mark.asyncio
async def test_two_signals_two_handlers_and_replacement():
    loop = asyncio.get_running_loop()
    seen = asyncio.Queue()
    loop.add_signal_handler(signal.SIGUSR1, seen.put_nowait, "old-usr1")
    loop.add_signal_handler(signal.SIGUSR1, seen.put_nowait, "usr1")  # replaces
    loop.add_signal_handler(signal.SIGUSR2, seen.put_nowait, "usr2")
    try:
        assert _installed(signal.SIGUSR1) and _installed(signal.SIGUSR2)
        os.kill(os.getpid(), signal.SIGUSR1)
        assert await asyncio.wait_for(seen.get(), 5) == "usr1"
        os.kill(os.getpid(), signal.SIGUSR2)
        assert await asyncio.wait_for(seen.get(), 5) == "usr2"
        assert loop.remove_signal_handler(signal.SIGUSR2) is True
        # SIGUSR1 still handled after SIGUSR2's removal
        os.kill(os.getpid(), signal.SIGUSR1)
        assert await asyncio.wait_for(seen.get(), 5) == "usr1"
    finally:
        loop.remove_signal_handler(signal.SIGUSR1)
        loop.remove_signal_handler(signal.SIGUSR2)
    assert seen.empty()


def test_remove_sigint_restores_default_int_handler(loop):
    loop.add_signal_handler(signal.SIGINT, _noop)
    assert signal.getsignal(signal.SIGINT) is not signal.default_int_handler
    assert loop.remove_signal_handler(signal.SIGINT) is True
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


class GracefulExit(SystemExit):
    """aiohttp's run_app stops the loop by raising this from a signal handler."""


def test_base_exception_from_signal_handler_propagates(loop):
    def handler():
        raise GracefulExit()

    loop.add_signal_handler(signal.SIGUSR1, handler)
    try:
        assert _installed(signal.SIGUSR1)
        loop.call_soon(os.kill, os.getpid(), signal.SIGUSR1)
        with pytest.raises(GracefulExit):
            loop.run_forever()
    finally:
        loop.remove_signal_handler(signal.SIGUSR1)
    assert loop.run_until_complete(asyncio.sleep(0, "usable")) == "usable"


# --------------------------------------------------------------------------------------------
# argument checks


@pytest.mark.parametrize("sig", [0, -1, signal.NSIG + 5, 100_000])
def test_invalid_signal_raises_value_error(loop, sig):
    with pytest.raises(ValueError):
        loop.add_signal_handler(sig, _noop)
    with pytest.raises(ValueError):
        loop.remove_signal_handler(sig)


def test_non_int_signal_raises_type_error(loop):
    with pytest.raises(TypeError):
        loop.add_signal_handler("SIGUSR1", _noop)


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGSTOP])
def test_uncatchable_signal_raises_runtime_error(loop, sig):
    with pytest.raises(RuntimeError):
        loop.add_signal_handler(sig, _noop)
    assert loop.remove_signal_handler(sig) is False
    assert signal.getsignal(sig) is signal.SIG_DFL


async def _coro_handler():
    pass


def test_coroutine_callback_raises_type_error(loop):
    with pytest.raises(TypeError):
        loop.add_signal_handler(signal.SIGUSR1, _coro_handler)
    coro = _coro_handler()
    try:
        with pytest.raises(TypeError):
            loop.add_signal_handler(signal.SIGUSR1, coro)
    finally:
        coro.close()
    assert signal.getsignal(signal.SIGUSR1) is signal.SIG_DFL
    assert loop.remove_signal_handler(signal.SIGUSR1) is False


def test_closed_loop_raises_runtime_error(loop):
    loop.close()
    with pytest.raises(RuntimeError):
        loop.add_signal_handler(signal.SIGUSR1, _noop)
    assert signal.getsignal(signal.SIGUSR1) is signal.SIG_DFL


def test_non_main_thread_raises_runtime_error(loop_factory):
    # asyncio: signal.set_wakeup_fd() only works in the main thread -> RuntimeError
    result = {}

    def worker():
        lp = loop_factory()
        try:
            lp.add_signal_handler(signal.SIGUSR1, _noop)
            result["outcome"] = "accepted"
        except Exception as exc:
            result["outcome"] = type(exc)
        finally:
            lp.close()

    t = threading.Thread(target=worker)
    t.start()
    t.join(10)
    assert result.get("outcome") is RuntimeError
    assert signal.getsignal(signal.SIGUSR1) is signal.SIG_DFL


# --------------------------------------------------------------------------------------------
# close() restores the process's signal state


def test_close_removes_handlers_and_wakeup_fd(loop_factory):
    w0 = _wakeup_fd()
    lp = loop_factory()
    lp.add_signal_handler(signal.SIGUSR1, _noop)
    lp.add_signal_handler(signal.SIGINT, _noop)
    assert _installed(signal.SIGUSR1)
    lp.close()
    assert signal.getsignal(signal.SIGUSR1) is signal.SIG_DFL
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    assert _wakeup_fd() == w0


def test_handlers_can_be_added_again_after_all_were_removed(loop):
    loop.add_signal_handler(signal.SIGUSR1, _noop)
    loop.add_signal_handler(signal.SIGUSR2, _noop)
    assert loop.remove_signal_handler(signal.SIGUSR1)
    assert loop.remove_signal_handler(signal.SIGUSR2)
    got = []
    loop.add_signal_handler(signal.SIGUSR1, lambda: (got.append(1), loop.stop()))
    try:
        assert _installed(signal.SIGUSR1)
        loop.call_soon(os.kill, os.getpid(), signal.SIGUSR1)
        loop.call_later(5, loop.stop)
        loop.run_forever()
    finally:
        loop.remove_signal_handler(signal.SIGUSR1)
    assert got == [1]


# --------------------------------------------------------------------------------------------
# Ctrl-C in a child process


def _loop_expr(config: str) -> str:
    if REFERENCE:
        return "asyncio.new_event_loop()"
    cfg = LOOP_CONFIGS[config]
    return f"edgeloop.new_event_loop(backend={cfg['backend']!r}, trigger={cfg['trigger']!r})"


PRELUDE = """
import asyncio, os, signal, sys, time
signal.signal(signal.SIGINT, signal.default_int_handler)  # whatever the parent ignores
def say(*words):
    print(*words, flush=True)
if {edgeloop}:
    import edgeloop
"""


def _child(body: str, config: str = "edge") -> str:
    return (PRELUDE.format(edgeloop=not REFERENCE)
            + textwrap.dedent(body).replace("LOOP", _loop_expr(config)))


def _wait_line(proc, expected: str, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([proc.stdout], [], [], deadline - time.monotonic())
        if not ready:
            break
        line = proc.stdout.readline()
        if not line:
            break
        if line.strip() == expected:
            return
    proc.kill()
    out, err = proc.communicate()
    pytest.fail(f"child did not print {expected!r}; stdout={out!r} stderr={err[-2000:]!r}")


def _interrupt(code: str, *, sig=signal.SIGINT) -> tuple[str, str, float]:
    proc = popen_python(code)
    try:
        _wait_line(proc, "ready")
        time.sleep(0.05)  # give the loop time to block in its poll (not required for correctness)
        t0 = time.monotonic()
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=15)
        elapsed = time.monotonic() - t0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    return out, err, elapsed


@pytest.mark.parametrize("config", list(LOOP_CONFIGS))
def test_ctrl_c_stops_run_forever_with_keyboard_interrupt(config):
    code = _child("""
        loop = LOOP
        loop.call_soon(say, "ready")
        try:
            loop.run_forever()
        except KeyboardInterrupt:
            print("KeyboardInterrupt", loop.is_running(), flush=True)
        finally:
            loop.close()
    """, config)
    out, err, elapsed = _interrupt(code)
    assert out.split() == ["KeyboardInterrupt", "False"]
    assert elapsed < 5


@pytest.mark.parametrize("config", list(LOOP_CONFIGS))
def test_sigint_to_itself_stops_run_forever(config):
    code = _child("""
        loop = LOOP
        loop.call_later(0.05, os.kill, os.getpid(), signal.SIGINT)
        t0 = time.monotonic()
        try:
            loop.run_forever()
        except KeyboardInterrupt:
            print("KeyboardInterrupt", round(time.monotonic() - t0) < 5, flush=True)
        loop.close()
    """, config)
    proc = popen_python(code)
    out, err = proc.communicate(timeout=15)
    assert proc.returncode == 0, err
    assert out.split() == ["KeyboardInterrupt", "True"]


@pytest.mark.parametrize("config", list(LOOP_CONFIGS))
def test_ctrl_c_with_a_sigint_handler_like_aiohttp(config):
    code = _child("""
        class GracefulExit(SystemExit):
            pass
        def on_sigint():
            raise GracefulExit()
        loop = LOOP
        loop.add_signal_handler(signal.SIGINT, on_sigint)
        loop.call_soon(say, "ready")
        try:
            loop.run_forever()
        except GracefulExit:
            print("GracefulExit", flush=True)
        finally:
            loop.close()
        print(signal.getsignal(signal.SIGINT) is signal.default_int_handler, flush=True)
    """, config)
    out, err, elapsed = _interrupt(code)
    assert out.split() == ["GracefulExit", "True"]
    assert elapsed < 5


def test_run_cancels_the_main_task_on_ctrl_c():
    run = "asyncio.run" if REFERENCE else "edgeloop.run"
    code = _child(f"""
        async def main():
            print("ready", flush=True)
            try:
                await asyncio.sleep(30)
            except asyncio.CancelledError:
                await asyncio.sleep(0.01)  # cleanup can still await
                print("cancelled", flush=True)
                raise
        try:
            {run}(main())
        except KeyboardInterrupt:
            print("KeyboardInterrupt", flush=True)
    """)
    out, err, elapsed = _interrupt(code)
    assert out.split() == ["cancelled", "KeyboardInterrupt"]
    assert elapsed < 5
