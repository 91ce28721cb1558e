"""The select backend on its own (edgeloop.poller.SelectPoller, edgeloop.cselect).

Below FD_SETSIZE (1024) it calls ``select.select``; once a watched descriptor is >= 1024, libc's
select through ctypes with bitmaps sized to the highest descriptor.  Both paths must report the
same masks, round timeouts up, retry on EINTR with the time left (a raising signal handler ends
the wait), and report a descriptor closed behind the loop's back as POLLNVAL.  Without ctypes a
descriptor >= 1024 is refused at registration.  The loop-level behaviour (transports, servers,
pipes, add_reader on descriptors >= 1024) is in test_dropin.py and test_dispatch.py.
"""
from __future__ import annotations

import os
import signal
import socket
import sys
import threading
import time

import pytest

from edgeloop import cselect
from edgeloop.poller import EPOLLERR, EPOLLIN, EPOLLOUT, POLLNVAL, SelectPoller
from tests._looputil import edgeloop_only

pytestmark = [edgeloop_only, pytest.mark.usefixtures("high_fd_limit")]


H = object()  # a handler: the poller only keeps it


def _open() -> set[int]:
    return {int(x) for x in os.listdir("/proc/self/fd")}


def _pair_at(fd: int | None = None) -> tuple[socket.socket, socket.socket]:
    """A connected socket pair, the first moved to descriptor ``fd`` (None: wherever it is)."""
    a, b = socket.socketpair()
    if fd is not None and a.fileno() != fd:
        assert fd not in _open()
        os.dup2(a.fileno(), fd, inheritable=False)
        moved = socket.socket(fileno=fd)
        a.close()
        a = moved
    a.setblocking(False)
    return a, b


@pytest.fixture
def poller():
    p = SelectPoller()
    yield p
    p.close()


@pytest.fixture
def libc_calls(monkeypatch):
    """How many times the ctypes path was taken."""
    calls = []
    real = cselect.LibcSelect.wait

    def counting(self, rbits, wbits, timeout):
        calls.append(timeout)
        return real(self, rbits, wbits, timeout)

    monkeypatch.setattr(cselect.LibcSelect, "wait", counting)
    return calls


# ---------------------------------------------------------------------------------- the paths

def test_below_1024_the_ctypes_path_is_not_used(poller, libc_calls):
    """All descriptors < 1024: ``select.select`` only, and libc is not even loaded for this poller;
    one descriptor >= 1024: the ctypes path; unregistered again: back to select.select."""
    low = [_pair_at() for _ in range(5)]
    high = _pair_at(1500)
    try:
        for a, _ in low:
            poller.register(a.fileno(), H, EPOLLIN)
        low[2][1].send(b"x")
        for _ in range(100):
            assert poller.wait(0) == [(low[2][0].fileno(), EPOLLIN)]
        assert libc_calls == [] and poller._libc is None

        poller.register(high[0].fileno(), H, EPOLLIN)
        high[1].send(b"y")
        assert sorted(poller.wait(0)) == [(low[2][0].fileno(), EPOLLIN), (1500, EPOLLIN)]
        assert len(libc_calls) == 1

        poller.unregister(1500)
        assert poller.wait(0) == [(low[2][0].fileno(), EPOLLIN)]
        assert len(libc_calls) == 1
    finally:
        for a, b in low + [high]:
            a.close()
            b.close()


@pytest.mark.parametrize("where", ["low", "high"])
def test_masks_on_both_paths(poller, where):
    """Readable, writable, both and neither report the same masks on both paths, with sparse
    descriptors around the 64-bit word boundaries of the bitmaps (1087/1088, 1151/1152)."""
    numbers = [300, 363, 364, 401] if where == "low" else [1087, 1088, 1151, 5000]
    pairs = [_pair_at(fd) for fd in numbers]
    try:
        # 1st: read interest, data pending; 2nd: read interest, nothing pending;
        # 3rd: read and write interest, data pending; 4th: write interest only.
        poller.register(numbers[0], H, EPOLLIN)
        poller.register(numbers[1], H, EPOLLIN)
        poller.register(numbers[2], H, EPOLLIN | EPOLLOUT)
        poller.register(numbers[3], H, EPOLLOUT)
        pairs[0][1].send(b"a")
        pairs[2][1].send(b"c")
        assert sorted(poller.wait(0)) == [(numbers[0], EPOLLIN), (numbers[2], EPOLLIN | EPOLLOUT),
                                          (numbers[3], EPOLLOUT)]
        # interest changes are seen by the next wait
        poller.modify(numbers[0], EPOLLOUT)
        poller.modify(numbers[2], 0)
        poller.unregister(numbers[3])
        pairs[1][1].send(b"b")
        assert sorted(poller.wait(0)) == [(numbers[0], EPOLLOUT), (numbers[1], EPOLLIN)]
        assert poller._libc is (None if where == "low" else cselect.load())
    finally:
        for a, b in pairs:
            a.close()
            b.close()


def test_bitmaps_are_whole_longs_up_to_the_highest_descriptor():
    """nfds is the highest descriptor + 1 and each set ``ceil(nfds / 64)`` longs, bit n of the
    buffer for descriptor n (the kernel reads and writes whole longs: a shorter buffer would be
    overrun); no write set is passed when nothing waits for writability."""
    import copy
    import ctypes

    seen = []

    def fake_select(nfds, rbuf, wbuf, xbuf, tvp):
        seen.append((nfds, rbuf and rbuf.raw, wbuf and wbuf.raw, xbuf, tvp))
        return 0

    if ctypes.sizeof(ctypes.c_ulong) != 8:
        pytest.skip("written for 64-bit longs")
    lib = copy.copy(cselect.load())
    lib._select = fake_select
    for top, words in ((1024, 17), (1087, 17), (1088, 18), (5000, 79)):
        seen.clear()
        assert lib.wait((1 << top) | (1 << 3), 0, None) == ([], [])
        [(nfds, rbuf, wbuf, xbuf, tvp)] = seen
        assert nfds == top + 1 and len(rbuf) == words * 8
        assert int.from_bytes(rbuf, "little") == (1 << top) | (1 << 3)
        assert wbuf is None and xbuf is None and tvp is None
    seen.clear()
    lib.wait(1 << 3, 1 << 2000, 0.25)
    [(nfds, rbuf, wbuf, _, tvp)] = seen
    assert nfds == 2001 and len(rbuf) == len(wbuf) == 32 * 8
    assert int.from_bytes(wbuf, "little") == 1 << 2000
    assert tvp is not None


def test_fds_of_reads_every_word():
    assert cselect.fds_of(0) == []
    bits = (1 << 0) | (1 << 63) | (1 << 64) | (1 << 1023) | (1 << 1024) | (1 << 10000)
    assert cselect.fds_of(bits) == [10000, 1024, 1023, 64, 63, 0]
    assert cselect.fds_of((1 << 20000) - 1) == list(range(19999, -1, -1))


# ---------------------------------------------------------------------------------- timeouts

def test_timeval_rounds_up_to_the_microsecond():
    assert cselect.timeval(0) == (0, 0)
    assert cselect.timeval(-1.0) == (0, 0)
    assert cselect.timeval(1e-9) == (0, 1)  # never zero: a near timer is not a busy loop
    assert cselect.timeval(1e-7) == (0, 1)
    assert cselect.timeval(0.375) == (0, 375000)
    assert cselect.timeval(1.25) == (1, 250000)
    assert cselect.timeval(2.0000005) == (2, 1)
    assert cselect.timeval(86400.0) == (86400, 0)


@pytest.mark.parametrize("where", ["low", "high"])
def test_a_near_timeout_sleeps_at_least_that_long(poller, where):
    a, b = _pair_at(None if where == "low" else 2000)
    try:
        poller.register(a.fileno(), H, EPOLLIN)
        for timeout in (0.0004, 0.02):
            t0 = time.monotonic()
            assert poller.wait(timeout) == []
            assert time.monotonic() - t0 >= timeout
    finally:
        a.close()
        b.close()


# ---------------------------------------------------------------------------------- EINTR

def _signal_main_thread_after(delay: float) -> threading.Timer:
    """SIGUSR1 to the main thread itself (where the wait blocks) after ``delay`` seconds."""
    timer = threading.Timer(delay, signal.pthread_kill, (threading.main_thread().ident,
                                                         signal.SIGUSR1))
    timer.start()
    return timer


@pytest.mark.parametrize("where", ["low", "high"])
def test_eintr_retries_with_the_time_left(poller, where):
    """A signal whose handler returns: the handler runs during the wait, which then goes on
    until its timeout (PEP 475), not longer."""
    a, b = _pair_at(None if where == "low" else 2000)
    ran: list[float] = []
    old = signal.signal(signal.SIGUSR1, lambda *args: ran.append(time.monotonic()))
    try:
        poller.register(a.fileno(), H, EPOLLIN)
        t0 = time.monotonic()
        timer = _signal_main_thread_after(0.05)
        assert poller.wait(0.3) == []
        t1 = time.monotonic()
        timer.join()
        assert len(ran) == 1 and ran[0] < t1 - 0.1, "the handler did not run during the wait"
        assert 0.3 <= t1 - t0 < 1.0
    finally:
        signal.signal(signal.SIGUSR1, old)
        a.close()
        b.close()


@pytest.mark.parametrize("where", ["low", "high"])
def test_a_raising_signal_handler_ends_the_wait(poller, where):
    a, b = _pair_at(None if where == "low" else 2000)

    def handler(*args):
        raise RuntimeError("from the handler")

    old = signal.signal(signal.SIGUSR1, handler)
    try:
        poller.register(a.fileno(), H, EPOLLIN)
        t0 = time.monotonic()
        timer = _signal_main_thread_after(0.05)
        with pytest.raises(RuntimeError, match="from the handler"):
            poller.wait(5)
        assert time.monotonic() - t0 < 2
        timer.join()
        b.send(b"x")  # the poller still works
        assert poller.wait(1) == [(a.fileno(), EPOLLIN)]
    finally:
        signal.signal(signal.SIGUSR1, old)
        a.close()
        b.close()


# ---------------------------------------------------------------------------------- EBADF

@pytest.mark.parametrize("where", ["low", "high"])
def test_a_descriptor_closed_behind_our_back_is_reported_as_pollnval(poller, where):
    """select() fails with EBADF: the closed descriptor is reported as POLLNVAL|EPOLLERR (so its
    handler can drop it) and left out of the next waits; the others are served as before."""
    closed = _pair_at(None if where == "low" else 3000)
    alive = _pair_at(None if where == "low" else 1200)
    try:
        fd = closed[0].fileno()
        poller.register(fd, H, EPOLLIN)
        poller.register(alive[0].fileno(), H, EPOLLIN)
        closed[0].close()  # no unregister
        assert poller.wait(0) == [(fd, POLLNVAL | EPOLLERR)]
        assert poller.wait(0) == []
        alive[1].send(b"x")
        assert poller.wait(0) == [(alive[0].fileno(), EPOLLIN)]
        poller.unregister(fd)  # what the handler does: no error for the closed number
    finally:
        for a, b in (closed, alive):
            a.close()
            b.close()


# ---------------------------------------------------------------------------------- fallback

def test_without_ctypes_a_descriptor_over_1023_is_refused(poller, monkeypatch):
    """ctypes missing (as on a Python built without it): ValueError at registration, nothing
    registered, and descriptors below 1024 still served."""
    monkeypatch.setattr(cselect, "_loaded", None)
    monkeypatch.setitem(sys.modules, "ctypes", None)
    high = _pair_at(1500)
    low = _pair_at()
    try:
        with pytest.raises(ValueError, match=r"1500 is out of range for select\(\) "
                                             r"\(>= 1024\): .*ctypes.*not available"):
            poller.register(1500, H, EPOLLIN)
        assert 1500 not in poller.handlers and 1500 not in poller.masks
        poller.register(low[0].fileno(), H, EPOLLIN)
        low[1].send(b"x")
        assert poller.wait(0) == [(low[0].fileno(), EPOLLIN)]
    finally:
        for a, b in (high, low):
            a.close()
            b.close()


def test_without_libc_a_descriptor_over_1023_is_refused(poller, monkeypatch):
    import ctypes

    def no_library(*args, **kwargs):
        raise OSError("no such library")

    monkeypatch.setattr(cselect, "_loaded", None)
    monkeypatch.setattr(ctypes, "CDLL", no_library)
    a, b = _pair_at(1500)
    try:
        with pytest.raises(ValueError, match=r"out of range for select\(\) .*cannot be loaded"):
            poller.register(1500, H, EPOLLIN)
        assert not poller.handlers
    finally:
        a.close()
        b.close()
