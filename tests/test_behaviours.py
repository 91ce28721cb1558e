"""The stream behaviours of /work/shared/EPOLL_NOTES.md the loop must survive (1-9 and 12).

Numbers in the test names refer to that list.  Each runs on every loop configuration where it
applies; the counters of ``loop.stats()`` are asserted only on edgeloop (skipped on the reference).
"""
from __future__ import annotations

import asyncio
import errno
import os
import resource
import socket
import threading
import time

import pytest

try:
    from tests._streamutil import (
        REFERENCE, ExceptionCatcher, ReaderThread, Recorder, SenderThread, sock_pair,
        sock_recv_until_eof, stats,
    )
except ModuleNotFoundError:  # tests/ on sys.path rather than a package
    from _streamutil import (
        REFERENCE, ExceptionCatcher, ReaderThread, Recorder, SenderThread, sock_pair,
        sock_recv_until_eof, stats,
    )

pytestmark = pytest.mark.timeout(60)

KINDS = ["tcp", "unix"]


async def wrap(kind: str, sock: socket.socket, factory=Recorder):
    """A loop transport around an already connected socket."""
    loop = asyncio.get_running_loop()
    if kind == "unix":
        return await loop.create_unix_connection(factory, sock=sock)
    return await loop.create_connection(factory, sock=sock)


async def idle_polls(seconds: float = 0.25) -> int | None:
    """How many polls the loop makes while the test just sleeps (None on the reference)."""
    before = stats()
    await asyncio.sleep(seconds)
    after = stats()
    return None if before is None else after["polls"] - before["polls"]


async def join_thread(t: threading.Thread, timeout: float = 20.0) -> None:
    """Wait for a thread without blocking the loop (no executor: only loop time passes)."""
    deadline = time.monotonic() + timeout
    while t.is_alive():
        assert time.monotonic() < deadline, f"{t!r} did not finish"
        await asyncio.sleep(0.005)


def grab_fd_number(n: int) -> tuple[socket.socket, socket.socket]:
    """A socketpair whose first socket has descriptor number ``n`` (which must be free)."""
    spare: list[socket.socket] = []
    try:
        for _ in range(200):
            a, b = socket.socketpair()
            if a.fileno() == n:
                return a, b
            if b.fileno() == n:
                return b, a
            spare += [a, b]
        raise AssertionError(f"descriptor {n} was not reused")
    finally:
        for s in spare:
            s.close()


# --------------------------------------------------------------------------------------------
# 1. a 4 MiB burst, then silence

@pytest.mark.asyncio
@pytest.mark.parametrize("kind", KINDS)
async def test_1_burst_then_silence(kind):
    a, b = sock_pair(kind)
    tr, pr = await wrap(kind, a)
    payload = os.urandom(4 << 20)
    sender = SenderThread(b, payload)  # the peer stays open and silent afterwards
    sender.start()
    try:
        got = await pr.wait_bytes(len(payload), timeout=30)
        assert got == payload
        await join_thread(sender)
        assert sender.error is None
        assert pr.eof_count == 0 and not pr.lost.done()
    finally:
        tr.close()
        await asyncio.wait_for(pr.lost, 5)
        b.close()


@pytest.mark.asyncio
@pytest.mark.parametrize("kind", KINDS)
async def test_1_data_queued_before_registration(kind):
    """Bytes already waiting when the transport is made produce no new edge: still delivered."""
    a, b = sock_pair(kind)
    b.sendall(b"queued before the transport existed")
    tr, pr = await wrap(kind, a)
    try:
        assert await pr.wait_bytes(35, timeout=5) == b"queued before the transport existed"
    finally:
        tr.close()
        await asyncio.wait_for(pr.lost, 5)
        b.close()


# --------------------------------------------------------------------------------------------
# 2. fairness

class _Served(asyncio.Protocol):
    """Server side; every instance is kept so the test can wait for all of them to close."""
    alive: set = set()

    def connection_made(self, transport):
        self.transport = transport
        _Served.alive.add(self)

    def connection_lost(self, exc):
        _Served.alive.discard(self)


class _Echo(_Served):
    def data_received(self, data):
        self.transport.write(data)


class _Sink(_Served):
    received = 0

    def data_received(self, data):
        _Sink.received += len(data)


class _PingPong(asyncio.Protocol):
    MSG = b"p" * 32

    def __init__(self):
        self.loop = asyncio.get_running_loop()
        self.rtts: list[float] = []
        self.pending = b""
        self.sent_at = 0.0
        self.stopped = False
        self.lost = self.loop.create_future()

    def connection_made(self, transport):
        self.transport = transport
        self.ping()

    def ping(self):
        self.sent_at = time.perf_counter()
        self.transport.write(self.MSG)

    def data_received(self, data):
        self.pending += data
        if len(self.pending) >= len(self.MSG):
            self.pending = self.pending[len(self.MSG):]
            self.rtts.append(time.perf_counter() - self.sent_at)
            if not self.stopped:
                self.ping()

    def connection_lost(self, exc):
        self.lost.set_result(exc)


@pytest.mark.asyncio
async def test_2_fairness_stream_pingpong_timer():
    loop = asyncio.get_running_loop()
    duration = 1.0
    _Sink.received = 0
    sink_server = await loop.create_server(_Sink, "127.0.0.1", 0)
    echo_server = await loop.create_server(_Echo, "127.0.0.1", 0)
    server_transports = []
    # The stream comes from a thread writing flat out (blocking sendall releases the GIL), so the
    # sink's socket is refilled while the loop drains it: only a read budget keeps it fair.
    streamer = socket.create_connection(sink_server.sockets[0].getsockname())
    stop = threading.Event()

    def stream():
        chunk = b"s" * (256 * 1024)
        try:
            while not stop.is_set():
                streamer.sendall(chunk)
        except OSError:
            pass

    thread = threading.Thread(target=stream, daemon=True)
    thread.start()

    late: list[float] = []
    timer_handle = None

    def tick(when):  # each timer's own lateness: the next is due 10 ms after this one ran
        nonlocal timer_handle
        now = loop.time()
        late.append(now - when)
        timer_handle = loop.call_at(now + 0.01, tick, now + 0.01)

    timer_handle = loop.call_at(loop.time() + 0.01, tick, loop.time() + 0.01)
    pingers = []
    try:
        addr = echo_server.sockets[0].getsockname()
        conns = await asyncio.gather(*(loop.create_connection(_PingPong, *addr)
                                       for _ in range(50)))
        pingers = [p for _, p in conns]
        start_bytes = _Sink.received
        t0 = loop.time()
        await asyncio.sleep(duration)
        elapsed = loop.time() - t0
        streamed = _Sink.received - start_bytes
    finally:
        timer_handle.cancel()
        stop.set()
        streamer.shutdown(socket.SHUT_RDWR)
        await join_thread(thread)
        streamer.close()
        for p in pingers:
            p.stopped = True
            p.transport.close()
        sink_server.close()
        echo_server.close()
        await asyncio.gather(*(p.lost for p in pingers))
        for _ in range(500):  # server-side transports see EOF and close
            if not _Served.alive:
                break
            await asyncio.sleep(0.01)
        await sink_server.wait_closed()
        await echo_server.wait_closed()

    counts = sorted(len(p.rtts) for p in pingers)
    worst_rtt = max(max(p.rtts) for p in pingers if p.rtts) if counts[-1] else None
    assert counts[0] >= 3, f"a ping-pong connection starved: round trips {counts[:5]}..."
    assert sum(counts) >= 50 * 5
    assert worst_rtt is not None and worst_rtt < 1.0, worst_rtt
    assert len(late) >= 0.2 * elapsed / 0.01, f"timer fired {len(late)} times in {elapsed:.2f}s"
    assert max(late) < 0.5, f"timer up to {max(late):.3f}s late"
    assert streamed >= 1 << 20, f"stream made {streamed} bytes of progress"


# --------------------------------------------------------------------------------------------
# 3. pause_reading mid-burst, resume_reading with no new data

@pytest.mark.asyncio
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("then_eof", [False, True], ids=["open", "eof"])
async def test_3_pause_mid_burst_resume_without_new_data(kind, then_eof):
    a, b = sock_pair(kind)
    # room in the kernel for the whole burst while the reader is paused
    b.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
    a.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    paused = []
    first = asyncio.get_running_loop().create_future()

    def on_data(p, data):
        assert not paused, "data_received after pause_reading()"
        p.transport.pause_reading()
        paused.append(len(p.data))
        first.set_result(None)

    tr, pr = await wrap(kind, a, lambda: Recorder(on_data=on_data))
    payload = os.urandom(1 << 20)
    sender = SenderThread(b, payload, shut_wr=then_eof)
    sender.start()
    try:
        await asyncio.wait_for(first, 10)
        await join_thread(sender)  # the rest of the burst now sits in the kernel
        assert sender.error is None
        assert len(paused) == 1 and paused[0] < len(payload)
        await asyncio.sleep(0.05)  # any edge the burst raised has been seen by now
        assert len(pr.data) == paused[0] and pr.eof_count == 0
        paused.clear()
        pr.on_data = None
        tr.resume_reading()
        assert await pr.wait_bytes(len(payload), timeout=10) == payload
        if then_eof:
            assert await asyncio.wait_for(pr.eof, 5) == payload
        else:
            assert pr.eof_count == 0
    finally:
        tr.close()
        await asyncio.wait_for(pr.lost, 5)
        b.close()


@pytest.mark.asyncio
@pytest.mark.parametrize("kind", KINDS)
async def test_3_pause_resume_every_chunk(kind):
    """Pause in every data_received and resume from a later callback: nothing is stranded."""
    loop = asyncio.get_running_loop()

    def on_data(p, data):
        p.transport.pause_reading()
        loop.call_soon(p.transport.resume_reading)

    a, b = sock_pair(kind)
    tr, pr = await wrap(kind, a, lambda: Recorder(on_data=on_data))
    payload = os.urandom(2 << 20)
    sender = SenderThread(b, payload, shut_wr=True)
    sender.start()
    try:
        assert await asyncio.wait_for(pr.eof, 30) == payload
        await join_thread(sender)
    finally:
        tr.close()
        await asyncio.wait_for(pr.lost, 5)
        b.close()


# --------------------------------------------------------------------------------------------
# 4. 64 MiB to a slow reader

@pytest.mark.asyncio
async def test_4_big_write_to_slow_reader(loop_config):
    loop = asyncio.get_running_loop()
    total = (64 << 20) if loop_config in ("edge", "level") else (16 << 20)
    chunk = os.urandom(1 << 20)
    with socket.create_server(("127.0.0.1", 0)) as lsock:
        reader_sock = None
        writer = None
        try:
            _, writer = await asyncio.open_connection(*lsock.getsockname())
            reader_sock, _ = lsock.accept()
            slow = ReaderThread(reader_sock, chunk=64 * 1024, pause_every=256 * 1024, pause=0.001)
            slow.start()
            tr = writer.transport
            low, high = tr.get_write_buffer_limits()
            biggest = 0
            sampled = []

            def sample():
                nonlocal biggest
                biggest = max(biggest, tr.get_write_buffer_size())
                if not tr.is_closing():
                    sampled.append(loop.call_later(0.005, sample))

            sample()
            mid = end = None
            t_mid = t_end = 0.0
            written = 0
            while written < total:
                writer.write(chunk)
                written += len(chunk)
                biggest = max(biggest, tr.get_write_buffer_size())
                await asyncio.wait_for(writer.drain(), 20)
                if mid is None and written >= total // 4:
                    mid, t_mid = stats(), time.monotonic()
            end, t_end = stats(), time.monotonic()
            for h in sampled:
                h.cancel()
            writer.write_eof()
            await join_thread(slow, timeout=30)
            assert slow.error is None
            assert slow.total == total
        finally:
            if writer is not None:
                writer.close()
                await writer.wait_closed()
            if reader_sock is not None:
                reader_sock.close()
    assert biggest <= high + len(chunk), (biggest, high)
    if mid is not None:
        polls = end["polls"] - mid["polls"]
        rate = polls / max(t_end - t_mid, 1e-3)
        assert rate < 20_000, f"{polls} polls in {t_end - t_mid:.2f}s: busy loop?"
        if loop_config == "edge":
            assert end["ctl"] == mid["ctl"], "epoll_ctl calls in the steady state"


# --------------------------------------------------------------------------------------------
# 5. a callback closes fd N; a new socket reuses N within the same dispatched batch

@pytest.mark.asyncio
async def test_5_closed_transport_gets_no_event_from_same_batch():
    """Two connections readable in one iteration; whichever runs first closes the other."""
    loop = asyncio.get_running_loop()
    order = []
    prs: dict[str, Recorder] = {}

    def on_data(name):
        def cb(p, data):
            order.append(name)
            if len(order) == 1:
                prs["B" if name == "A" else "A"].transport.close()
        return cb

    pairs = [socket.socketpair() for _ in range(2)]
    for name, (s, _) in zip("AB", pairs):
        _, prs[name] = await loop.create_unix_connection(
            lambda name=name: Recorder(on_data=on_data(name)), sock=s)
    try:
        # both readable (and the second at EOF) before the loop polls again
        pairs[0][1].send(b"to A")
        pairs[1][1].send(b"to B")
        pairs[0][1].shutdown(socket.SHUT_WR)
        pairs[1][1].shutdown(socket.SHUT_WR)
        first = None
        done, _ = await asyncio.wait([prs["A"].lost, prs["B"].lost],
                                     return_when=asyncio.FIRST_COMPLETED, timeout=5)
        assert done
        await asyncio.sleep(0.05)
        first = order[0]
        closed = prs["B" if first == "A" else "A"]
        assert order == [first], order
        assert closed.data == b"" and closed.eof_count == 0
        assert closed.events == ["made", "lost"]
        assert await asyncio.wait_for(closed.lost, 1) is None
    finally:
        for p in prs.values():
            p.transport.close()
        await asyncio.gather(*(p.lost for p in prs.values()))
        for _, peer in pairs:
            peer.close()


@pytest.mark.asyncio
async def test_5_reused_fd_number_within_batch_sees_no_stale_event():
    """fd N is closed and its number reused (and registered) inside one batch: no stale event."""
    loop = asyncio.get_running_loop()
    pairs = {name: socket.socketpair() for name in "AB"}
    for s, _ in pairs.values():
        s.setblocking(False)
    state = {"first": None, "new": None, "new_calls": 0, "fd": None}
    done = loop.create_future()

    def new_ready():
        state["new_calls"] += 1
        sock = state["new"][0]
        try:
            data = sock.recv(100)
        except BlockingIOError:
            data = None
        if not done.done():
            done.set_result(data)
        else:
            state.setdefault("got", []).append(data)

    def ready(name):
        if state["first"] is not None:
            state.setdefault("late", []).append(name)
            return
        other = "B" if name == "A" else "A"
        mine = pairs[name][0]
        mine.recv(100)
        loop.remove_reader(mine.fileno())
        state["first"] = name
        victim = pairs[other][0]
        n = victim.fileno()
        loop.remove_reader(n)
        victim.close()
        new, new_peer = grab_fd_number(n)  # the number of a socket reported in this batch
        new.setblocking(False)
        state["new"], state["fd"] = (new, new_peer), n
        loop.add_reader(n, new_ready)

    for name, (s, _) in pairs.items():
        loop.add_reader(s.fileno(), ready, name)
    try:
        pairs["A"][1].send(b"a")
        pairs["B"][1].send(b"b")
        pairs["B"][1].shutdown(socket.SHUT_WR)
        pairs["A"][1].shutdown(socket.SHUT_WR)
        for _ in range(5):
            await asyncio.sleep(0)
        await asyncio.sleep(0.05)
        assert state["first"] is not None
        assert "late" not in state, "the closed socket's callback ran"
        assert state["new_calls"] == 0, "stale event delivered to the reused descriptor"
        # the new registration itself works
        state["new"][1].send(b"fresh")
        assert await asyncio.wait_for(done, 5) == b"fresh"
    finally:
        if state["fd"] is not None:
            loop.remove_reader(state["fd"])
            for s in state["new"]:
                s.close()
        for name, (s, peer) in pairs.items():
            if s.fileno() != -1:
                loop.remove_reader(s.fileno())
            s.close()
            peer.close()


# --------------------------------------------------------------------------------------------
# 6. half-close

@pytest.mark.asyncio
@pytest.mark.parametrize("kind", KINDS)
async def test_6_half_close_then_reply(kind):
    loop = asyncio.get_running_loop()
    payload = os.urandom(1 << 20)
    seen_at_eof = []

    def on_eof(p):
        seen_at_eof.append(len(p.data))
        p.transport.write(b"got %d bytes" % len(p.data))

    a, b = sock_pair(kind)
    tr, pr = await wrap(kind, a, lambda: Recorder(eof_result=True, on_eof=on_eof))
    sender = SenderThread(b, payload, shut_wr=True)
    sender.start()
    try:
        assert await asyncio.wait_for(pr.eof, 20) == payload
        await join_thread(sender)
        assert seen_at_eof == [len(payload)]
        assert not tr.is_closing()
        b.setblocking(False)
        expected = b"got %d bytes" % len(payload)
        # the write side still works, also for a large write after the peer's EOF
        big = os.urandom(2 << 20)
        tr.write(big)
        # the half-closed connection does not spin while the transport keeps it open
        polls = await idle_polls(0.2)
        if polls is not None:
            assert polls < 100, f"{polls} polls in 0.2s with a half-closed connection"
        tr.close()
        got = await sock_recv_until_eof(b, timeout=20)
        assert got == expected + big
        assert await asyncio.wait_for(pr.lost, 5) is None
        assert pr.eof_count == 1 and pr.lost_count == 1
    finally:
        if not tr.is_closing():
            tr.close()
        await asyncio.wait_for(pr.lost, 5)
        b.close()


@pytest.mark.asyncio
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("result", [None, False])
async def test_6_half_close_default_closes(kind, result):
    loop = asyncio.get_running_loop()
    a, b = sock_pair(kind)
    tr, pr = await wrap(kind, a, lambda: Recorder(eof_result=result))
    try:
        b.sendall(b"last words")
        b.shutdown(socket.SHUT_WR)
        assert await asyncio.wait_for(pr.eof, 5) == b"last words"
        assert await asyncio.wait_for(pr.lost, 5) is None
        b.setblocking(False)
        assert await sock_recv_until_eof(b) == b""
        assert pr.events[-2:] == ["eof", "lost"]
    finally:
        tr.close()
        await asyncio.wait_for(pr.lost, 5)
        b.close()


# --------------------------------------------------------------------------------------------
# 7. peer reset with writes pending

@pytest.mark.asyncio
async def test_7_peer_reset_with_pending_writes():
    a, b = sock_pair("tcp")
    tr, pr = await wrap("tcp", a)
    try:
        tr.write(b"w" * (8 << 20))
        assert tr.get_write_buffer_size() > 0
        b.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        b.close()  # RST: the peer's receive queue is not empty and linger is 0
        exc = await asyncio.wait_for(pr.lost, 5)
        assert isinstance(exc, OSError), exc
        assert exc.errno in (errno.ECONNRESET, errno.EPIPE), exc
        assert tr.is_closing()
        tr.write(b"more")  # ignored on a lost connection
        tr.close()
        polls = await idle_polls(0.25)
        assert pr.lost_count == 1
        if polls is not None:
            assert polls < 50, f"{polls} polls in 0.25s after the reset"
    finally:
        tr.abort()
        b.close()


@pytest.mark.asyncio
async def test_7_peer_reset_while_idle():
    a, b = sock_pair("tcp")
    tr, pr = await wrap("tcp", a)
    try:
        b.send(b"hello")
        await pr.wait_bytes(5)
        tr.write(b"unread by the peer")  # the peer's queue is not empty: close() sends RST
        await asyncio.sleep(0.01)
        b.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        b.close()
        exc = await asyncio.wait_for(pr.lost, 5)
        assert exc is None or isinstance(exc, OSError)
        polls = await idle_polls(0.25)
        assert pr.lost_count == 1
        if polls is not None:
            assert polls < 50, f"{polls} polls in 0.25s after the reset"
    finally:
        tr.abort()
        b.close()


# --------------------------------------------------------------------------------------------
# 8. connect to a closed port

@pytest.mark.asyncio
async def test_8_connect_refused():
    loop = asyncio.get_running_loop()
    with socket.socket() as bound:  # bound, not listening: the kernel answers with RST
        bound.bind(("127.0.0.1", 0))
        addr = bound.getsockname()
        fds = len(os.listdir("/proc/self/fd"))
        for _ in range(20):
            with pytest.raises(ConnectionRefusedError):
                await asyncio.wait_for(loop.create_connection(asyncio.Protocol, *addr), 5)
        with pytest.raises(ConnectionRefusedError):
            await asyncio.wait_for(asyncio.open_connection(*addr), 5)
        assert len(os.listdir("/proc/self/fd")) == fds
    polls = await idle_polls(0.25)
    if polls is not None:
        assert polls < 50, f"{polls} polls in 0.25s after refused connects"


# --------------------------------------------------------------------------------------------
# 9. 1,000 simultaneous connects under a budget; EMFILE back-off

class _Counting(asyncio.Protocol):
    def __init__(self, box):
        self.box = box

    def connection_made(self, transport):
        self.box["transports"].append(transport)
        if len(self.box["transports"]) >= self.box["want"] and not self.box["all"].done():
            self.box["all"].set_result(None)

    def connection_lost(self, exc):
        self.box["lost"] += 1


async def _close_all(box):
    for t in box["transports"]:
        t.abort()
    while box["lost"] < len(box["transports"]):
        await asyncio.sleep(0.005)


@pytest.mark.asyncio
@pytest.mark.usefixtures("high_fd_limit")  # 1,000 connections are 2,000 descriptors, past 1024
async def test_9_thousand_connects_while_timers_fire(loop_config):
    loop = asyncio.get_running_loop()
    n = 1000
    box = {"transports": [], "want": n, "all": loop.create_future(), "lost": 0}
    server = await loop.create_server(lambda: _Counting(box), "127.0.0.1", 0, backlog=n + 100)
    addr = server.sockets[0].getsockname()
    late: list[float] = []
    handle = None

    def tick(when):
        nonlocal handle
        now = loop.time()
        late.append(now - when)
        handle = loop.call_at(now + 0.01, tick, now + 0.01)

    handle = loop.call_at(loop.time() + 0.01, tick, loop.time() + 0.01)
    clients = []
    try:
        await asyncio.sleep(0.03)
        before = stats()
        for _ in range(n):  # all SYNs go out before the loop polls again
            c = socket.socket()
            c.setblocking(False)
            clients.append(c)
            assert c.connect_ex(addr) in (0, errno.EINPROGRESS)
        ticks_before = len(late)
        await asyncio.wait_for(box["all"], 30)
        after = stats()
        assert len(box["transports"]) == n
        await asyncio.sleep(0.03)
        assert len(late) > ticks_before, "the timer never fired during the accept storm"
        assert max(late) < 0.5, f"timer up to {max(late):.3f}s late"
        if before is not None:
            assert after["accepts"] - before["accepts"] == n
            if loop_config == "edge":
                assert after["cutoffs"] > before["cutoffs"], "the accept budget never cut in"
    finally:
        handle.cancel()
        for c in clients:
            c.close()
        server.close()
        await server.wait_closed()
        await _close_all(box)


@pytest.mark.asyncio
async def test_9_emfile_backs_off_then_accepts_backlog():
    loop = asyncio.get_running_loop()
    k = 8
    box = {"transports": [], "want": k, "all": loop.create_future(), "lost": 0}
    server = await loop.create_server(lambda: _Counting(box), "127.0.0.1", 0, backlog=100)
    addr = server.sockets[0].getsockname()
    clients = [socket.socket() for _ in range(k)]
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    catcher = ExceptionCatcher(loop)
    try:
        with catcher:
            lowest_free = 0
            while True:
                try:
                    os.fstat(lowest_free)
                except OSError:
                    break
                lowest_free += 1
            # no free descriptor number below the limit: every accept() fails with EMFILE
            resource.setrlimit(resource.RLIMIT_NOFILE, (lowest_free, hard))
            try:
                with pytest.raises(OSError) as info:
                    socket.socket().close()
                assert info.value.errno == errno.EMFILE
                for c in clients:
                    c.setblocking(False)
                    assert c.connect_ex(addr) in (0, errno.EINPROGRESS)
                polls = await idle_polls(0.3)
                assert box["transports"] == []
                if polls is not None:
                    assert polls < 100, f"{polls} polls in 0.3s while accept() hits EMFILE"
            finally:
                resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
            await asyncio.wait_for(box["all"], 10)  # the backlog is accepted once fds are free
            assert len(box["transports"]) == k
            for c in clients:  # and the connections work
                c.setblocking(True)
                c.settimeout(5)
            for t in box["transports"]:
                t.write(b"hi")
            for c in clients:
                assert c.recv(2) == b"hi"
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
        for c in clients:
            c.close()
        server.close()
        await server.wait_closed()
        await _close_all(box)


# --------------------------------------------------------------------------------------------
# 12. a registered descriptor dup'ed; the number later reused by another transport

@pytest.mark.asyncio
async def test_12_dup_survives_close_no_events_to_new_owner_of_number():
    loop = asyncio.get_running_loop()
    old, old_peer = socket.socketpair()
    tr, pr = await loop.create_unix_connection(Recorder, sock=old)
    n = tr.get_extra_info("socket").fileno()
    dup = os.dup(n)  # the open file description (and any epoll registration) outlives close
    new_peer = tr2 = None
    try:
        tr.close()
        assert await asyncio.wait_for(pr.lost, 5) is None
        new, new_peer = grab_fd_number(n)
        tr2, pr2 = await loop.create_unix_connection(Recorder, sock=new)
        assert tr2.get_extra_info("socket").fileno() == n
        # traffic and hang-up on the *old* description, still alive through the dup
        old_peer.send(b"for the old socket")
        old_peer.close()
        polls = await idle_polls(0.2)
        assert pr2.data == b"" and pr2.eof_count == 0 and not pr2.lost.done()
        if polls is not None:
            assert polls < 50, f"{polls} polls in 0.2s: a stale registration keeps firing"
        assert os.read(dup, 100) == b"for the old socket"
        # the new transport does work
        new_peer.send(b"for the new socket")
        assert await pr2.wait_bytes(18) == b"for the new socket"
        assert bytes(pr.data) == b""
    finally:
        os.close(dup)
        old_peer.close()
        if tr2 is not None:
            tr2.close()
            await asyncio.wait_for(pr2.lost, 5)
        if new_peer is not None:
            new_peer.close()
