"""``loop.sock_*`` coroutines on sockets the caller owns.

Each operation is tried at once (most succeed: data is often already there, the send buffer
rarely full); only when it would block do we wait for readiness, retry the operation and resolve
a future.  How the wait is made depends on the mode.

Level mode, and the poll and select backends
--------------------------------------------
A one-shot readiness callback on the descriptor (``FdCallbacks``, ``EPOLLONESHOT`` on epoll),
removed when the operation completes, fails, or the awaiting task is cancelled: two
``epoll_ctl`` per wait, as in the stdlib, and nothing stays registered between calls.  Edge mode
takes this path too while the descriptor has ``add_reader``/``add_writer`` callbacks.

Edge mode: a socket stays registered between calls (``SockWaits``)
------------------------------------------------------------------
The first wait on a socket registers a ``SockWaits`` handler for its fd, ``EPOLLIN | EPOLLOUT |
EPOLLRDHUP | EPOLLET`` like a loop-owned stream socket, and it stays registered when the wait
ends: a later wait on the same socket parks its future on the handler and costs no ``epoll_ctl``.
The epoll decisions, one by one:

* **Interest never changes; readiness is remembered.**  Edge-triggered epoll reports a change
  once, so the handler keeps ``readable``/``writable``: set by events, cleared when an operation
  hits EAGAIN, when a send is partial, or (``sock_recv``/``sock_recv_into`` on a stream socket,
  read policy "short") when a read is shorter than asked: on Linux every arrival on a stream
  socket raises a new edge, so the socket is empty and will be reported again.  As in the stream
  transport, the short-read rule is suspended for good once RDHUP/HUP/ERR has been seen (EOF or an
  error queued behind the data raises no further edge) and never used for datagrams.  A
  ``sock_recv``/``sock_recvfrom``/``sock_accept`` that knows the socket is empty parks at once,
  without the read that would raise BlockingIOError; sends always try first (rarely full).
  A wrong ``True`` costs one EAGAIN; a wrong ``False`` would hang, and cannot happen: the flags
  start False, the registration (``EPOLL_CTL_ADD``) reports the current state, and every later
  arrival is an event.
* **One reader and one writer waiter**, as ``add_reader``/``add_writer`` keep one callback per
  direction: a second ``sock_recv`` on the socket while one waits takes the reader's place and the
  first is never woken (what the stdlib and the one-shot path do).  ``_on_events`` retries the
  waiting operation of each direction the mask wakes; a spurious wakeup (EAGAIN, or a connect
  still in progress) keeps waiting.  A cancelled task's cleanup clears its slot: no registration
  change.
* **The socket is held by weak reference** (a closed socket answers ``fileno() == -1``): between
  calls nothing of ours keeps it alive, and a waiter's retry holds it only while a task awaits.
  A call uses the handler only if it belongs to its socket object (``handler.sock() is sock``).
* **Closed behind our back.**  Nothing tells us when the user closes the socket.  The kernel drops
  the registration with the last descriptor of the file; our map keeps a stale handler, replaced
  when the number is registered again: by a sock_* call on the new socket (the identity check
  fails), by ``io.register`` (transports, servers, pipes: see ``_evict``), by ``add_reader``.
  Unregistering it then is needed after ``sock.detach()``, when the number still names the file
  (the new owner's ``EPOLL_CTL_ADD`` would fail with EEXIST), and harmless otherwise: the DEL
  names whatever file has the number now, one we never registered (ENOENT), one epoll cannot
  watch (EPERM) or none (EBADF).  Until then ``stats()`` and ``describe()`` leave an idle stale
  handler out.  A wait still parked on a closed socket fails with EBADF when its handler is
  replaced (the stdlib's would wait forever).
* **Kept alive by a duplicate** (``os.dup``, a forked child, SCM_RIGHTS): then the kernel keeps
  the old entry, and we cannot remove it any more (``EPOLL_CTL_DEL`` needs a descriptor of that
  file under that number).  Its events arrive under the number, at whichever handler holds it
  next.  Edge-triggered, it reports only changes of the old file: no spin.  Every handler takes
  an event as a hint and retries; a retry on the new socket finds EAGAIN and waits on (a connect
  checks ``getpeername``: SO_ERROR is 0 while in progress too); a transport's read or send finds
  EAGAIN too.  An ``add_reader``/``add_writer`` callback, which may not expect a spurious call
  (it may read a blocking descriptor), is not called on such an event: the number is remembered
  (``io.lingering``) when a handler finds its socket closed behind its back, and FdCallbacks on
  such a number ask ``poll()`` for the descriptor's real state before calling (one system call
  per event, on those numbers only).  The one-shot path cannot leave such an entry behind once
  its wait is over; this is the price of staying registered.
* **Taken over.**  ``create_connection(sock=...)``, ``connect_accepted_socket``,
  ``create_server(sock=...)`` and every other transport register the fd through ``io.register``,
  which asks the handler in place to give it up (``_evict``): an idle ``SockWaits`` unregisters
  (one ``EPOLL_CTL_DEL``) and the new owner adds its own registration.  One whose socket has a
  wait in progress refuses, and the registration fails with the ``ValueError`` it gave before
  this handler existed.  ``add_reader``/``add_writer`` turn the fd over to ``FdCallbacks``
  (``hand_over``): a wait in progress in the other direction moves there as a one-shot callback;
  one in the same direction is replaced by the user's callback, as in the stdlib.
  ``remove_reader``/``remove_writer`` drop the waiter of that direction (True) or find none
  (False), as the stdlib's do, without touching the registration.  A transport's fd stays
  refused (RuntimeError), as before.
"""
from __future__ import annotations

import asyncio
import errno
import os
import socket
import weakref
from typing import TYPE_CHECKING, Any, Callable, Coroutine

from .callbacks import FdCallbacks
from .descriptors import HandlerBase
from .poller import EDGE_STREAM, EPOLLERR, EPOLLHUP, EPOLLRDHUP, READ_EVENTS, WRITE_EVENTS
from .transports.stream import _short_reads_safe

if TYPE_CHECKING:
    from .descriptors import IOServices
    from .loop import EventLoop

try:
    from ssl import SSLSocket
except ImportError:  # Python built without ssl
    SSLSocket = None  # type: ignore[assignment, misc]

_AGAIN = (BlockingIOError, InterruptedError)
_HUP_EVENTS = EPOLLRDHUP | EPOLLHUP | EPOLLERR
# Returned by an attempt that must wait again although it did not raise BlockingIOError: a
# partial send (sendall) or a connect still in progress.
_WAIT: Any = object()
Attempt = Callable[[], Any]


def _check(loop: EventLoop, sock: socket.socket) -> None:
    loop._check_closed()
    if SSLSocket is not None and isinstance(sock, SSLSocket):
        raise TypeError("Socket cannot be of type SSLSocket")
    if sock.gettimeout() != 0:
        raise ValueError("the socket must be non-blocking")


def _bad_fd() -> OSError:
    return OSError(errno.EBADF, os.strerror(errno.EBADF))


class SockWaits(HandlerBase):
    """Edge mode: the registration of a socket used with ``loop.sock_*``, kept between calls, with
    the readiness it remembers and the waiting operations (see the module docstring)."""

    __slots__ = ("fd", "sock", "readable", "writable", "short", "rfut", "rattempt", "rname",
                 "wfut", "wattempt", "wname", "moved", "_io", "_deferred")

    def __init__(self, io: IOServices, sock: socket.socket, fd: int) -> None:
        self.fd = fd
        self.sock: weakref.ref[socket.socket] = weakref.ref(sock)
        self.readable = False   # set by events, cleared by EAGAIN / a short stream read
        self.writable = False   # set by events, cleared by EAGAIN / a partial send
        # May a short read clear ``readable``?  The stream transport's rule: stream sockets
        # (TCP; Unix without SO_PASSCRED) under the "short" policy, until RDHUP/HUP/ERR is seen.
        self.short = (io.read_policy == "short" and sock.type == socket.SOCK_STREAM
                      and _short_reads_safe(sock))
        self.rfut: asyncio.Future[Any] | None = None
        self.rattempt: Attempt | None = None
        self.rname = ""
        self.wfut: asyncio.Future[Any] | None = None
        self.wattempt: Attempt | None = None
        self.wname = ""
        # Waits handed over to FdCallbacks by add_reader/add_writer: future -> Handle, so that a
        # cancelled task can remove its callback there (rare; None otherwise).
        self.moved: dict[asyncio.Future[Any], asyncio.Handle] | None = None
        self._io = io
        self._deferred = False

    # events -------------------------------------------------------------------------------

    def _on_events(self, mask: int) -> None:
        if mask & READ_EVENTS:
            self.readable = True
            if mask & _HUP_EVENTS:
                self.short = False
            if self.rfut is not None:
                self._retry_read()
        if mask & WRITE_EVENTS:
            self.writable = True
            if self.wfut is not None:
                self._retry_write()

    def _retry_read(self) -> None:
        # The future is read here, not passed in: a failure's traceback keeps this frame and,
        # through f_back, the caller's; neither may hold the future (see below).
        fut = self.rfut
        if fut is None:
            return
        if fut.done():  # cancelled; its task has not run its cleanup yet
            self.rfut = self.rattempt = None
            return
        try:
            result = self.rattempt()  # type: ignore[misc]  # set with rfut
        except _AGAIN:
            self.readable = False
            return
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            fut.set_exception(exc)
            self.rfut = self.rattempt = None
            # The traceback keeps this frame: it must not keep the future that holds the
            # exception (a cycle that outlives the failed call).
            del fut
            return
        self.rfut = self.rattempt = None
        fut.set_result(result)

    def _retry_write(self) -> None:
        # The future is read here, not passed in: a failure's traceback keeps this frame and,
        # through f_back, the caller's; neither may hold the future (see below).
        fut = self.wfut
        if fut is None:
            return
        if fut.done():
            self.wfut = self.wattempt = None
            return
        try:
            result = self.wattempt()  # type: ignore[misc]  # set with wfut
        except _AGAIN:
            self.writable = False
            return
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            fut.set_exception(exc)
            self.wfut = self.wattempt = None
            # The traceback keeps this frame: it must not keep the future that holds the
            # exception (a cycle that outlives the failed call).
            del fut
            return
        if result is _WAIT:
            self.writable = False
            return
        self.wfut = self.wattempt = None
        fut.set_result(result)

    def _on_deferred(self) -> None:
        # Only after SystemExit/KeyboardInterrupt cut a retry short (the loop defers the
        # interrupted handler): no new edge will come for the readiness it was serving.
        self._deferred = False
        if self.readable and self.rfut is not None:
            self._retry_read()
        if self.writable and self.wfut is not None:
            self._retry_write()

    def _on_handler_error(self, exc: BaseException) -> None:
        # Reported by the loop already; only our bookkeeping can get here (the operations' own
        # errors go to their futures).  Give the fd up and let no waiter hang.
        self._unregister()
        self._fail_waiters(exc)

    # ownership ----------------------------------------------------------------------------

    def owns(self, sock: socket.socket) -> bool:
        return self.sock() is sock

    def stale(self) -> bool:
        """The socket was closed or collected: the registration is about a dead file."""
        sock = self.sock()
        return sock is None or sock.fileno() != self.fd

    def waiting(self) -> bool:
        return self.rfut is not None or self.wfut is not None

    def _evict(self) -> bool:
        """``io.register`` wants the fd for another handler (a transport, a server...)."""
        if self.waiting() and not self.stale():
            return False  # a sock_* wait in progress on this very socket: refuse, as before
        self._unregister()
        self._fail_waiters(_bad_fd())
        return True

    def register_again(self) -> None:
        """Watch the file the number names now (``_take``): EPOLL_CTL_ADD reports its state."""
        self._io.lingering.add(self.fd)  # which file the old registration was about: unknown
        self._unregister()
        self.readable = self.writable = False
        self._io.register(self.fd, self, EDGE_STREAM)

    def _unregister(self) -> None:
        if self._io.handler_of(self.fd) is self:
            if self.stale():
                # Closed behind our back: a duplicate may keep the kernel's entry alive.
                self._io.lingering.add(self.fd)
            self._io.unregister(self.fd)

    def _fail_waiters(self, exc: BaseException) -> None:
        for fut in (self.rfut, self.wfut):
            if fut is not None and not fut.done():
                try:
                    fut.set_exception(exc)
                except TypeError:  # StopIteration cannot be set on a future
                    fut.set_exception(RuntimeError(f"sock_* wait aborted: {exc!r}"))
        self.rfut = self.rattempt = self.wfut = self.wattempt = None

    def hand_over(self, loop: EventLoop, reader: bool) -> FdCallbacks | None:
        """``add_reader`` (``reader``) or ``add_writer`` on our fd: leave it to ``FdCallbacks``.
        A wait in the other direction moves there as a one-shot callback (returned registered);
        one in the same direction is left unwoken: the user's callback takes its place, as in
        the stdlib."""
        self._unregister()
        if self.stale():
            self._fail_waiters(_bad_fd())
            return None
        keep = (self.wfut, self.wattempt) if reader else (self.rfut, self.rattempt)
        self.rfut = self.rattempt = self.wfut = self.wattempt = None
        fut, attempt = keep
        if fut is None or attempt is None or fut.done():
            return None
        handle = _fd_wait(loop, self.fd, fut, attempt, not reader)
        if self.moved is None:
            self.moved = {}
        self.moved[fut] = handle
        entry = FdCallbacks(loop.io, self.fd)
        if reader:
            entry.writer = handle
        else:
            entry.reader = handle
        entry.register()
        return entry

    def drop_waiter(self, reader: bool) -> bool:
        """``remove_reader``/``remove_writer``: the stdlib removes the wait's callback, and the
        wait is never woken; True if there was one."""
        if reader:
            had = self.rfut is not None
            self.rfut = self.rattempt = None
        else:
            had = self.wfut is not None
            self.wfut = self.wattempt = None
        return had

    def unpark_moved(self, fut: asyncio.Future[Any], reading: bool, loop: EventLoop) -> None:
        assert self.moved is not None
        handle = self.moved.pop(fut, None)
        if handle is not None:
            loop._remove_fd_handle(self.fd, handle, reading)

    def _describe(self) -> dict[str, Any]:
        sock = self.sock()
        state = []
        local = peer = None
        if sock is None or sock.fileno() != self.fd:
            state.append("closed")
        else:
            try:
                local = sock.getsockname()
                peer = sock.getpeername()
            except OSError:
                pass
        if self.rfut is not None:
            state.append(f"reader={self.rname}")
        if self.wfut is not None:
            state.append(f"writer={self.wname}")
        return {"kind": "sock", "local": local, "peer": peer, "state": state or ["idle"],
                "readable": self.readable, "writable": self.writable,
                "deferred": self._deferred}


def forgotten(handler: Any) -> bool:
    """An idle ``SockWaits`` whose socket was closed since its last wait: a leftover of our map
    (the kernel dropped the registration with the file), replaced when the number is registered
    again.  ``stats()`` and ``describe()`` leave it out, without a system call: they may run in
    a signal handler, in the middle of anything."""
    return type(handler) is SockWaits and not handler.waiting() and handler.stale()


def _waits_of(loop: EventLoop, sock: socket.socket) -> SockWaits | None:
    """The handler that keeps ``sock`` registered (edge mode), if there is one."""
    handler = loop._handlers.get(sock.fileno())
    if type(handler) is SockWaits and handler.sock() is sock:
        return handler
    return None


def _take(loop: EventLoop, sock: socket.socket) -> SockWaits | None:
    """The handler to park a wait on: ``sock``'s own, registered now if needed.  None means the
    one-shot path: level mode, other backends, or ``add_reader`` callbacks on the fd.  A
    transport's fd raises RuntimeError, as the stdlib does."""
    io = loop.io
    if not io.edge:
        return None
    fd = sock.fileno()
    handler = io.handler_of(fd)
    if handler is not None:
        if type(handler) is SockWaits:
            if handler.sock() is sock:
                return handler
            if not handler.stale():
                # Another live socket object on the number: a second object on one descriptor
                # (socket.socket(fileno=...)), or a number closed under its first object's feet
                # (os.close) and reused.  Which file the kernel watches under it we cannot
                # tell: register again (rare; two epoll_ctl).  Waits parked by the other
                # object go on; a new one replaces its direction's.
                handler.sock = weakref.ref(sock)
                handler.register_again()
                return handler
            # Closed (and the number reused): io.register below evicts it.
        elif isinstance(handler, FdCallbacks):
            return None
        else:
            loop._fd_callbacks(fd)  # raises: a transport's or the loop's own descriptor
    waits = SockWaits(io, sock, fd)
    io.register(fd, waits, EDGE_STREAM)
    return waits


async def _wait(loop: EventLoop, sock: socket.socket, reading: bool, attempt: Attempt,
                name: str) -> Any:
    """Wait until ``attempt()``, retried on readiness, returns something else than ``_WAIT``
    without raising BlockingIOError, and return that."""
    waits = _take(loop, sock)
    if waits is None:
        return await _wait_oneshot(loop, sock.fileno(), reading, attempt)
    return await _park(loop, waits, reading, attempt, name)


def _wait_known(loop: EventLoop, sock: socket.socket, waits: SockWaits | None, reading: bool,
                attempt: Attempt, name: str) -> Coroutine[Any, Any, Any]:
    """``_wait`` when the caller has looked the handler up already (``_waits_of``)."""
    if waits is not None:
        return _park(loop, waits, reading, attempt, name)
    return _wait(loop, sock, reading, attempt, name)


async def _park(loop: EventLoop, waits: SockWaits, reading: bool, attempt: Attempt,
                name: str) -> Any:
    """Edge mode: park the wait on ``waits``, whose ``_on_events`` retries it."""
    fut = loop.create_future()
    if reading:
        waits.readable = False
        waits.rfut = fut
        waits.rattempt = attempt
        waits.rname = name
    else:
        waits.writable = False
        waits.wfut = fut
        waits.wattempt = attempt
        waits.wname = name
    try:
        return await fut
    finally:
        # Only our own slot: a newer wait may have taken it.
        if reading:
            if waits.rfut is fut:
                waits.rfut = waits.rattempt = None
        elif waits.wfut is fut:
            waits.wfut = waits.wattempt = None
        if waits.moved is not None:
            waits.unpark_moved(fut, reading, loop)
        # A failure leaves with a traceback that keeps this frame: drop the future that holds
        # the exception, as asyncio's sock_* do.
        fut = None  # type: ignore[assignment]


def _fd_wait(loop: EventLoop, fd: int, fut: asyncio.Future[Any] | None, attempt: Attempt,
             reading: bool) -> asyncio.Handle:
    """The one-shot path's callback: retry ``attempt`` on readiness, resolve ``fut``, remove
    itself once done."""

    def on_ready() -> None:
        nonlocal fut
        if fut is None or fut.done():
            return
        try:
            result = attempt()
        except _AGAIN:
            return  # spurious wakeup: keep waiting
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            loop._remove_fd_handle(fd, handle, reading)
            fut.set_exception(exc)
            fut = None  # the traceback keeps this frame: see SockWaits._retry_read
            return
        if result is not _WAIT:
            loop._remove_fd_handle(fd, handle, reading)
            fut.set_result(result)
            fut = None

    handle = asyncio.Handle(on_ready, (), loop, None)
    return handle


async def _wait_oneshot(loop: EventLoop, fd: int, reading: bool, attempt: Attempt) -> Any:
    fut = loop.create_future()
    handle = _fd_wait(loop, fd, fut, attempt, reading)
    loop._add_fd_callback(fd, handle, reading)
    try:
        return await fut
    finally:
        # Only our own registration: a newer sock_* call on the same fd may have replaced it.
        loop._remove_fd_handle(fd, handle, reading)
        fut = None  # type: ignore[assignment]


# ---------------------------------------------------------------------- receiving

def _recv_attempt(sock: socket.socket, n: int, waits: SockWaits) -> Attempt:
    if not waits.short:
        return lambda: sock.recv(n)

    def attempt() -> bytes:
        data = sock.recv(n)
        if 0 < len(data) < n and waits.short:
            waits.readable = False  # short read: drained (see the module docstring)
        return data
    return attempt


async def sock_recv(self: EventLoop, sock: socket.socket, n: int) -> bytes:
    _check(self, sock)
    waits = _waits_of(self, sock)
    if waits is None or waits.readable:
        try:
            data = sock.recv(n)
        except _AGAIN:
            pass
        else:
            if waits is not None and 0 < len(data) < n and waits.short:
                waits.readable = False
            return data
    if waits is None:
        waits = _take(self, sock)
        if waits is None:
            return await _wait_oneshot(self, sock.fileno(), True, lambda: sock.recv(n))
    return await _park(self, waits, True, _recv_attempt(sock, n, waits), "sock_recv")


def _recv_into_attempt(sock: socket.socket, buf: Any, waits: SockWaits) -> Attempt:
    if not waits.short:
        return lambda: sock.recv_into(buf)

    def attempt() -> int:
        nbytes = sock.recv_into(buf)
        # len() counts items, never more than bytes: a view of wider items never looks short.
        if 0 < nbytes < len(buf) and waits.short:
            waits.readable = False
        return nbytes
    return attempt


async def sock_recv_into(self: EventLoop, sock: socket.socket, buf: Any) -> int:
    _check(self, sock)
    waits = _waits_of(self, sock)
    if waits is None or waits.readable:
        try:
            nbytes = sock.recv_into(buf)
        except _AGAIN:
            pass
        else:
            if waits is not None and 0 < nbytes < len(buf) and waits.short:
                waits.readable = False
            return nbytes
    if waits is None:
        waits = _take(self, sock)
        if waits is None:
            return await _wait_oneshot(self, sock.fileno(), True, lambda: sock.recv_into(buf))
    return await _park(self, waits, True, _recv_into_attempt(sock, buf, waits), "sock_recv_into")


async def sock_recvfrom(self: EventLoop, sock: socket.socket, bufsize: int) -> tuple[bytes, Any]:
    _check(self, sock)
    waits = _waits_of(self, sock)
    if waits is None or waits.readable:
        try:
            return sock.recvfrom(bufsize)
        except _AGAIN:
            pass
    return await _wait_known(self, sock, waits, True, lambda: sock.recvfrom(bufsize),
                             "sock_recvfrom")


async def sock_recvfrom_into(self: EventLoop, sock: socket.socket, buf: Any, nbytes: int = 0) -> tuple[int, Any]:
    _check(self, sock)
    if not nbytes:
        nbytes = len(buf)
    waits = _waits_of(self, sock)
    if waits is None or waits.readable:
        try:
            return sock.recvfrom_into(buf, nbytes)
        except _AGAIN:
            pass
    return await _wait_known(self, sock, waits, True, lambda: sock.recvfrom_into(buf, nbytes),
                       "sock_recvfrom_into")


# ---------------------------------------------------------------------- sending

async def sock_sendall(self: EventLoop, sock: socket.socket, data: Any) -> None:
    _check(self, sock)
    # Sends always try first: a full send buffer is rare, and this skips the handler lookup.
    try:
        sent = sock.send(data)
    except _AGAIN:
        sent = 0
    view = memoryview(data).cast("B")
    total = len(view)
    if sent == total:
        return
    progress = [sent]

    def attempt() -> Any:
        progress[0] += sock.send(view[progress[0]:])
        return None if progress[0] == total else _WAIT

    await _wait(self, sock, False, attempt, "sock_sendall")


async def sock_sendto(self: EventLoop, sock: socket.socket, data: Any, address: Any) -> int:
    _check(self, sock)
    try:
        return sock.sendto(data, address)
    except _AGAIN:
        pass
    return await _wait(self, sock, False, lambda: sock.sendto(data, address), "sock_sendto")


# ---------------------------------------------------------------------- connecting, accepting

async def _resolve(loop: EventLoop, sock: socket.socket, address: Any) -> Any:
    """Resolve a host name in an (host, port, ...) address the way sock.connect would, but in the
    executor instead of blocking the loop."""
    if sock.family not in (socket.AF_INET, socket.AF_INET6) or not isinstance(address, tuple):
        return address
    host, port = address[:2]
    infos = await loop.getaddrinfo(host, port, family=sock.family, type=sock.type, proto=sock.proto)
    if not infos:
        raise OSError(f"getaddrinfo({host!r}) returned empty list")
    resolved = infos[0][4]
    if sock.family == socket.AF_INET6 and len(address) > 2:
        resolved = resolved[:2] + tuple(address[2:])
    return resolved


async def sock_connect(self: EventLoop, sock: socket.socket, address: Any) -> None:
    _check(self, sock)
    address = await _resolve(self, sock, address)
    try:
        sock.connect(address)
        return
    except _AGAIN:
        pass
    # An event may be spurious (see "kept alive by a duplicate"), and SO_ERROR is 0 while the
    # connection is still in progress: an INET stream socket must also have a peer.
    check_peer = sock.type == socket.SOCK_STREAM and sock.family in (socket.AF_INET, socket.AF_INET6)

    def attempt() -> Any:
        err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if err == errno.EINPROGRESS or err == errno.EALREADY:
            return _WAIT
        if err:
            raise OSError(err, f"Connect call failed {address}")
        if check_peer:
            try:
                sock.getpeername()
            except OSError as exc:
                if exc.errno == errno.ENOTCONN:
                    return _WAIT
                raise
        return None

    await _wait(self, sock, False, attempt, "sock_connect")


def _accept(sock: socket.socket) -> tuple[socket.socket, Any]:
    conn, addr = sock.accept()
    conn.setblocking(False)
    return conn, addr


async def sock_accept(self: EventLoop, sock: socket.socket) -> tuple[socket.socket, Any]:
    _check(self, sock)
    waits = _waits_of(self, sock)
    if waits is None or waits.readable:
        try:
            return _accept(sock)
        except _AGAIN:
            pass
    return await _wait_known(self, sock, waits, True, lambda: _accept(sock), "sock_accept")


async def sock_sendfile(self: EventLoop, sock: socket.socket, file: Any, offset: int = 0,
                        count: int | None = None, *, fallback: bool | None = True) -> int:
    """Send a file over a connected stream socket: ``os.sendfile`` (zero-copy) when possible,
    else (``fallback=True``) read-and-send in chunks.  Same rules as asyncio: TypeError/ValueError
    for bad arguments, SendfileNotAvailableError (fallback=False) when the file cannot be sent
    that way, the file position left after the last byte sent."""
    from .sendfile import check_params, file_descriptor  # sendfile.py imports the transports

    _check(self, sock)
    if sock.type != socket.SOCK_STREAM:
        raise ValueError("only SOCK_STREAM type sockets are supported")
    check_params(file, offset, count)
    try:
        return await _sock_sendfile_native(self, sock, file_descriptor(file), file, offset, count)
    except asyncio.SendfileNotAvailableError:
        if not fallback:
            raise
    return await _sendfile_fallback(self, sock, file, offset, count)


async def _sock_sendfile_native(loop: EventLoop, sock: socket.socket, fileno: int, file: Any,
                                offset: int, count: int | None) -> int:
    from .sendfile import NOT_AVAILABLE_ERRNOS

    if count is None and not os.fstat(fileno).st_size:
        return 0
    end = None if count is None else offset + count
    position = [offset]
    chunk = 4 * 1024 * 1024

    def attempt() -> None:
        # Until EOF (os.sendfile returns 0) or ``count`` bytes; BlockingIOError waits for the socket.
        while end is None or position[0] < end:
            want = chunk if end is None else min(chunk, end - position[0])
            n = os.sendfile(sock.fileno(), fileno, position[0], want)
            if n == 0:
                break
            position[0] += n

    try:
        try:
            attempt()
        except _AGAIN:
            await _wait(loop, sock, False, attempt, "sock_sendfile")
    except OSError as exc:
        if position[0] == offset and exc.errno in NOT_AVAILABLE_ERRNOS:
            raise asyncio.SendfileNotAvailableError(f"os.sendfile call failed: {exc}") from exc
        if exc.errno == errno.ENOTCONN and type(exc) is not ConnectionError:
            raise ConnectionError(errno.ENOTCONN, "socket is not connected") from exc
        raise
    finally:
        if position[0] > offset:
            if hasattr(file, "seek"):
                file.seek(position[0])
            else:
                os.lseek(fileno, position[0], os.SEEK_SET)
    return position[0] - offset


async def _sendfile_fallback(loop: EventLoop, sock: socket.socket, file: Any, offset: int, count: int | None) -> int:
    chunk = 256 * 1024
    if offset:
        file.seek(offset)
    total = 0
    try:
        while count is None or total < count:
            want = chunk if count is None else min(chunk, count - total)
            data = await loop.run_in_executor(None, file.read, want)
            if not data:
                break
            await loop.sock_sendall(sock, data)
            total += len(data)
    finally:
        if total and hasattr(file, "seek"):
            file.seek(offset + total)
    return total
