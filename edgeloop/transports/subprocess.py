"""Child processes: ``subprocess_exec``, ``subprocess_shell`` and their SubprocessTransport.

Watching the exit
-----------------
The stdlib loop watches children with a helper thread per child (or, from 3.12, a pidfd behind a
child watcher object).  edgeloop puts the child's **pidfd** (``os.pidfd_open``) in the loop's own
poller: it becomes readable when the child exits, the loop reaps it with
``os.waitpid(pid, WNOHANG)`` and closes the pidfd.  No thread, no SIGCHLD handler, nothing global;
the exit is one more ``(fd, mask)`` in the batch, in edge and level mode alike.  Signals go
through ``signal.pidfd_send_signal`` while the pidfd is open, so they cannot reach a recycled pid.

Where ``pidfd_open`` is unavailable (kernel < 5.3, seccomp) a daemon thread waits with
``waitid(P_PID, pid, WEXITED | WNOWAIT)``: it notices the exit *without reaping*, and hands the
reaping to the loop thread (``call_soon_threadsafe``).  Until then the child is a zombie, so a
signal sent meanwhile with ``os.kill`` cannot hit a recycled pid either.  Either way the child is
reaped exactly once, by us; ``Popen.returncode`` is filled in so that the ``Popen`` object never
tries again.

Pipes
-----
The child's stdin/stdout/stderr pipes become edgeloop pipe transports (pipes.py) through
``loop.connect_write_pipe``/``connect_read_pipe``, as in the stdlib (code that wraps those
methods sees the subprocess pipes too), with small internal protocols forwarding to the
transport.

Order of the protocol callbacks (the stdlib's)
----------------------------------------------
``connection_made`` first, once every pipe transport exists; then ``pipe_data_received(fd, data)``
and ``pipe_connection_lost(fd, exc)`` per pipe, and ``process_exited()`` as soon as the exit is
seen, *not* after the pipes are closed (a child may exit while a grandchild still holds its
stdout, or close its stdout long before exiting); ``connection_lost(None)`` last, once the child
has exited *and* every pipe is closed.  One refinement: when the exit is seen, the output the
child left in its pipes is read first (up to one read budget per pipe), so ``pipe_data_received``
for it comes before ``process_exited``; the stdlib loop gives no order there.  ``_wait()`` (behind ``asyncio.subprocess.Process.wait``)
returns the return code at once after the exit, or else when ``connection_lost`` is called.  The
protocol calls go through one FIFO of the transport's own (held until ``connection_made``), so
they arrive in the order the transport decided them whatever the loop does with callbacks
scheduled from I/O handlers and from other callbacks.

``close()`` closes the pipes and kills a child that is still running (``Popen.poll()`` and
``Popen.kill()``, like the stdlib); the transport still reaps it and reports ``process_exited``
and ``connection_lost``.  A transport closed while (or after) its loop is closed hands the reaping
to a daemon thread, so that no zombie is left behind.
"""
from __future__ import annotations

import asyncio
import collections
import contextvars
import logging
import os
import signal
import subprocess
import threading
import warnings
from typing import TYPE_CHECKING, Any

from ..descriptors import HandlerBase
from ..poller import EPOLLIN
from .pipes import ReadPipeTransport

if TYPE_CHECKING:
    from ..loop import EventLoop

logger = logging.getLogger("asyncio")

_HAVE_PIDFD = hasattr(os, "pidfd_open") and hasattr(signal, "pidfd_send_signal")


def _exit_code(status: int) -> int:
    return os.waitstatus_to_exitcode(status)


def _reap_now(proc: subprocess.Popen) -> int | None:
    """``waitpid(pid, WNOHANG)``: the exit code, or None if the child is still running.

    A child reaped behind our back by the Popen object itself (``Popen.poll()``, which
    ``Popen.kill()`` calls) has its code in ``proc.returncode``; one reaped by someone else (a
    ``waitpid(-1)`` user) is reported as 255, like the stdlib."""
    try:
        got, status = os.waitpid(proc.pid, os.WNOHANG)
    except ChildProcessError:
        if proc.returncode is not None:
            return proc.returncode
        logger.warning("Unknown child process pid %d, will report returncode 255", proc.pid)
        return 255
    if got == 0:
        return None
    return _exit_code(status)


def _reap_in_thread(pid: int) -> None:
    """Reap a child the loop can no longer wait for (its loop is closed)."""
    def wait() -> None:
        try:
            os.waitpid(pid, 0)
        except ChildProcessError:
            pass
    threading.Thread(target=wait, name=f"edgeloop-reap-{pid}", daemon=True).start()


class _PidfdWatcher(HandlerBase):
    """The handler registered for a child's pidfd: readable once the child has exited."""

    __slots__ = ("fd", "proc", "_loop", "_callback")

    def __init__(self, loop: EventLoop, proc: subprocess.Popen[Any], callback: Any) -> None:
        self.proc = proc
        self._loop = loop
        self._callback = callback
        self.fd = os.pidfd_open(proc.pid)  # close-on-exec by definition
        try:
            loop.io.register(self.fd, self, EPOLLIN, edge=loop.io.edge)
        except BaseException:
            os.close(self.fd)
            self.fd = -1  # closed: __del__ must not close the number again
            raise

    def _on_events(self, mask: int) -> None:
        returncode = _reap_now(self.proc)
        self.close()
        if returncode is None:
            # Readable but not reapable: cannot happen for a child of ours; never spin on it.
            _start_thread_watcher(self._loop, self.proc, self._callback)
            return
        self._callback(returncode)

    def send_signal(self, sig: int) -> None:
        signal.pidfd_send_signal(self.fd, sig)

    def _describe(self) -> dict[str, Any]:
        return {"kind": "pidfd", "state": [f"pid={self.proc.pid}"]}

    def close(self) -> None:
        if self.fd < 0:
            return
        if not self._loop.is_closed():
            self._loop.io.unregister(self.fd)
        os.close(self.fd)
        self.fd = -1

    def __del__(self) -> None:
        # Collected without having fired: the loop was closed under a running child.  Close the
        # pidfd and leave no zombie (unless the Popen reaped the child: then the pid is not ours).
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
            if self.proc.returncode is None:
                _reap_in_thread(self.proc.pid)


def _start_thread_watcher(loop: EventLoop, proc: subprocess.Popen, callback: Any) -> None:
    """Fallback: a daemon thread notices the exit (without reaping) and the loop reaps."""
    pid = proc.pid

    def reap_on_loop() -> None:
        returncode = _reap_now(proc)
        if returncode is None:  # cannot happen after waitid said it exited; wait again
            _start_thread_watcher(loop, proc, callback)
            return
        callback(returncode)

    def wait() -> None:
        try:
            os.waitid(os.P_PID, pid, os.WEXITED | os.WNOWAIT)
        except ChildProcessError:
            pass  # reaped by someone else: reap_on_loop reports it
        try:
            loop.call_soon_threadsafe(reap_on_loop)
        except RuntimeError:  # the loop is closed: reap here, leave no zombie
            try:
                os.waitpid(pid, 0)
            except ChildProcessError:
                pass

    threading.Thread(target=wait, name=f"edgeloop-waitpid-{pid}", daemon=True).start()


class _PipeProtocol(asyncio.Protocol):
    """Forwards one pipe's events to the SubprocessTransport."""

    def __init__(self, owner: "SubprocessTransport", fd: int) -> None:
        self.owner: SubprocessTransport | None = owner
        self.fd = fd
        self.pipe: Any = None
        self.disconnected = False

    def __repr__(self) -> str:
        return f"<{type(self).__name__} fd={self.fd} pipe={self.pipe!r}>"

    def data_received(self, data: bytes) -> None:
        self.owner._pipe_data_received(self.fd, data)  # type: ignore[union-attr]

    def connection_lost(self, exc: BaseException | None) -> None:
        self.disconnected = True
        owner, self.owner = self.owner, None
        owner._pipe_connection_lost(self.fd, exc)  # type: ignore[union-attr]

    def pause_writing(self) -> None:
        self.owner._protocol.pause_writing()  # type: ignore[union-attr]

    def resume_writing(self) -> None:
        self.owner._protocol.resume_writing()  # type: ignore[union-attr]


class SubprocessTransport(asyncio.SubprocessTransport):
    """A child process started with ``subprocess.Popen``, its pipes, and its exit."""

    _extra: dict[str, Any]  # set by asyncio.BaseTransport.__init__(extra)

    def __init__(self, loop: EventLoop, protocol: asyncio.BaseProtocol, args: Any, shell: bool,
                 stdin: Any, stdout: Any, stderr: Any, bufsize: int,
                 extra: dict[str, Any] | None = None, **kwargs: Any) -> None:
        super().__init__(extra)
        self._closed = True  # until the child exists: __del__ has nothing to do before that
        self._loop = loop
        self._protocol: Any = protocol
        # The protocol's calls run in a copy of the caller's context (as its pipes' do).
        self._context = contextvars.copy_context()
        self._proc: subprocess.Popen | None = None
        self._pid: int | None = None
        self._returncode: int | None = None
        self._pipes: dict[int, _PipeProtocol] = {}
        # Protocol calls, delivered in order by _flush() (see _call); held until connection_made.
        self._calls: collections.deque[tuple[Any, tuple[Any, ...]]] = collections.deque()
        self._is_connected = False
        self._flush_scheduled = False
        self._exit_waiters: list[asyncio.Future] = []   # _wait(): resolved at connection_lost
        self._exit_futures: list[asyncio.Future] = []   # _wait_exit(): resolved at the exit
        self._finished = False
        self._pidfd: _PidfdWatcher | None = None

        self._proc = subprocess.Popen(
            args, shell=shell, stdin=stdin, stdout=stdout, stderr=stderr,
            universal_newlines=False, bufsize=bufsize, **kwargs,
        )
        self._closed = False
        self._pid = self._proc.pid
        self._extra["subprocess"] = self._proc
        try:
            self._watch_exit()
        except BaseException:
            self.close()
            raise
        if loop.get_debug():
            program = args if isinstance(args, (str, bytes)) else args[0]
            logger.debug("process %r created: pid %s", program, self._pid)

    def _watch_exit(self) -> None:
        if _HAVE_PIDFD:
            try:
                self._pidfd = _PidfdWatcher(self._loop, self._proc, self._process_exited)  # type: ignore[arg-type]
                return
            except (OSError, ValueError):
                pass  # ENOSYS, EPERM under seccomp, EMFILE, a poller refusal: use the thread
        _start_thread_watcher(self._loop, self._proc, self._process_exited)  # type: ignore[arg-type]

    async def _connect_pipes(self) -> None:
        """Wrap the child's pipes in pipe transports, through ``loop.connect_*_pipe`` like the
        stdlib (so that code wrapping those methods sees them), then call connection_made."""
        proc: subprocess.Popen[Any] = self._proc  # type: ignore[assignment]
        loop = self._loop
        for fd, pipe, connect in ((0, proc.stdin, loop.connect_write_pipe),
                                  (1, proc.stdout, loop.connect_read_pipe),
                                  (2, proc.stderr, loop.connect_read_pipe)):
            if pipe is None:
                continue
            proto = _PipeProtocol(self, fd)
            self._pipes[fd] = proto
            proto.pipe, _ = await connect(lambda: proto, pipe)
        self._connected()

    def _connected(self) -> None:
        self._is_connected = True
        self._run_protocol_call(self._protocol.connection_made, (self,))
        if self._calls:
            self._schedule_flush()
        if self._returncode is not None:
            self._report_exit()

    def __repr__(self) -> str:
        info = [type(self).__name__]
        if self._closed:
            info.append("closed")
        if self._pid is not None:
            info.append(f"pid={self._pid}")
        if self._returncode is not None:
            info.append(f"returncode={self._returncode}")
        elif self._pid is not None:
            info.append("running")
        else:
            info.append("not started")
        return f"<{' '.join(info)}>"

    # ------------------------------------------------------------------ public API

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self._protocol = protocol

    def get_protocol(self) -> asyncio.BaseProtocol:
        return self._protocol

    def is_closing(self) -> bool:
        return self._closed

    def get_pid(self) -> int | None:  # type: ignore[override]  # None only before Popen() succeeded
        return self._pid

    def get_returncode(self) -> int | None:
        return self._returncode

    def get_pipe_transport(self, fd: int) -> Any:
        proto = self._pipes.get(fd)
        return None if proto is None else proto.pipe

    def send_signal(self, signal: int) -> None:
        if self._proc is None:
            raise ProcessLookupError()
        if self._returncode is not None:
            return  # reaped: the pid may belong to someone else now
        try:
            if self._pidfd is not None and self._pidfd.fd >= 0:
                self._pidfd.send_signal(signal)
            else:
                os.kill(self._pid, signal)  # type: ignore[arg-type]
        except ProcessLookupError:
            pass

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for fd in (0, 1, 2):
            proto = self._pipes.get(fd)
            if proto is not None and proto.pipe is not None:
                proto.pipe.close()
            elif self._proc is not None:
                # Not wrapped in a transport (yet): close the Popen's file object itself.
                raw = (self._proc.stdin, self._proc.stdout, self._proc.stderr)[fd]
                if raw is not None:
                    raw.close()
        # Popen.poll() and Popen.kill(), as the stdlib does: a child that has exited is not
        # signalled even if we have not seen its exit yet (poll() may reap it: _reap_now() then
        # learns the code from the Popen), and code that wraps Popen.kill() sees the kill.
        if self._proc is not None and self._returncode is None and self._proc.poll() is None:
            if self._loop.get_debug():
                logger.warning("Close running child process: kill %r", self)
            try:
                self._proc.kill()
            except (ProcessLookupError, PermissionError):
                pass
            if self._loop.is_closed():
                self._abandon()

    def _abandon(self) -> None:
        """The loop will not run again: stop watching and let a thread reap the child."""
        if self._pidfd is not None:
            self._pidfd.close()
            self._pidfd = None
            _reap_in_thread(self._pid)  # type: ignore[arg-type]
        # (the fallback thread, if any, reaps by itself once call_soon_threadsafe fails)

    def __del__(self, _warn: Any = warnings.warn) -> None:
        if not getattr(self, "_closed", True):
            _warn(f"unclosed transport {self!r}", ResourceWarning, source=self)
            self.close()
            if self._returncode is None:
                self._abandon()

    # ------------------------------------------------------------------ events

    def _call(self, callback: Any, *args: Any) -> None:
        """Deliver a protocol call soon, in the order of the _call()s.

        One FIFO of our own rather than one call_soon per call: the loop runs what I/O handlers
        schedule right after their batch, ahead of what callbacks scheduled earlier in the same
        iteration, so separate call_soon()s from a pipe's close (a callback) and from the pidfd
        (an I/O event) could reach the protocol out of order: connection_lost before the last
        pipe_connection_lost."""
        self._calls.append((callback, args))
        if self._is_connected:
            self._schedule_flush()

    def _schedule_flush(self) -> None:
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self._loop.call_soon(self._flush, context=self._context)

    def _flush(self) -> None:
        self._flush_scheduled = False
        calls = self._calls
        while calls:
            callback, args = calls.popleft()
            self._run_protocol_call(callback, args)

    def _run_protocol_call(self, callback: Any, args: tuple[Any, ...]) -> None:
        try:
            callback(*args)
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            # As if the call had been a callback handle of its own: report, carry on.
            self._loop.call_exception_handler({
                "message": f"Exception in callback {getattr(callback, '__qualname__', callback)}",
                "exception": exc, "transport": self, "protocol": self._protocol,
            })

    def _pipe_data_received(self, fd: int, data: bytes) -> None:
        self._call(self._protocol.pipe_data_received, fd, data)

    def _pipe_connection_lost(self, fd: int, exc: BaseException | None) -> None:
        self._call(self._protocol.pipe_connection_lost, fd, exc)
        self._try_finish()

    def _process_exited(self, returncode: int) -> None:
        self._pidfd = None
        self._returncode = returncode
        proc = self._proc
        if proc is not None and proc.returncode is None:
            proc.returncode = returncode  # reaped by us: Popen must not waitpid again
        futures, self._exit_futures = self._exit_futures, []
        for fut in futures:
            if not fut.done():
                fut.set_result(returncode)
        if self._loop.get_debug():
            logger.info("%r exited with return code %r", self, returncode)
        if self._is_connected:
            self._report_exit()
        # else _connected() reports it, after the output the pipes hold by then

    def _report_exit(self) -> None:
        # What the child wrote before exiting is already in its pipes: deliver it first, so
        # that process_exited() follows the output (up to one read budget per pipe).
        for fd in (1, 2):
            proto = self._pipes.get(fd)
            pipe = None if proto is None else proto.pipe
            if isinstance(pipe, ReadPipeTransport):
                pipe._read_queued()
        self._exit_reported = True
        self._call(self._protocol.process_exited)
        self._try_finish()

    _exit_reported = False

    def _try_finish(self) -> None:
        if self._finished or not self._exit_reported:
            return
        if all(proto.disconnected for proto in self._pipes.values()):
            self._finished = True
            self._call(self._call_connection_lost, None)

    def _call_connection_lost(self, exc: BaseException | None) -> None:
        try:
            self._protocol.connection_lost(exc)
        finally:
            for waiter in self._exit_waiters:
                if not waiter.done():
                    waiter.set_result(self._returncode)
            self._exit_waiters = []
            self._proc = None
            self._protocol = None

    async def _wait(self) -> int:
        """The return code, once the child has exited (used by asyncio.subprocess.Process)."""
        if self._returncode is not None:
            return self._returncode
        waiter = self._loop.create_future()
        self._exit_waiters.append(waiter)
        return await waiter

    async def _wait_exit(self) -> int:
        """The return code as soon as the child has exited, pipes or not."""
        if self._returncode is not None:
            return self._returncode
        fut = self._loop.create_future()
        self._exit_futures.append(fut)
        return await fut


# ---------------------------------------------------------------------- loop methods
#
# Bound as ``EventLoop.subprocess_exec`` / ``subprocess_shell``; ``self`` is the loop.  The
# argument checks, and their ValueErrors, are the stdlib's: asyncio speaks bytes to pipes.

def _check_binary(bufsize: int, text: Any, encoding: Any, errors: Any) -> None:
    if bufsize != 0:
        raise ValueError("bufsize must be 0")
    if text:
        raise ValueError("text must be False")
    if encoding is not None:
        raise ValueError("encoding must be None")
    if errors is not None:
        raise ValueError("errors must be None")


async def subprocess_exec(
    self: EventLoop, protocol_factory: Any, program: Any, *args: Any, stdin: Any = subprocess.PIPE,
    stdout: Any = subprocess.PIPE, stderr: Any = subprocess.PIPE, universal_newlines: bool = False,
    shell: bool = False, bufsize: int = 0, encoding: str | None = None, errors: str | None = None,
    text: bool | None = None, **kwargs: Any,
) -> tuple[asyncio.SubprocessTransport, asyncio.BaseProtocol]:
    self._check_closed()
    if universal_newlines:
        raise ValueError("universal_newlines must be False")
    if shell:
        raise ValueError("shell must be False")
    _check_binary(bufsize, text, encoding, errors)
    protocol = protocol_factory()
    transport = await _start(self, protocol, (program, *args), False, stdin, stdout, stderr,
                             bufsize, kwargs)
    return transport, protocol


async def subprocess_shell(
    self: EventLoop, protocol_factory: Any, cmd: str | bytes, *, stdin: Any = subprocess.PIPE,
    stdout: Any = subprocess.PIPE, stderr: Any = subprocess.PIPE, universal_newlines: bool = False,
    shell: bool = True, bufsize: int = 0, encoding: str | None = None, errors: str | None = None,
    text: bool | None = None, **kwargs: Any,
) -> tuple[asyncio.SubprocessTransport, asyncio.BaseProtocol]:
    self._check_closed()
    if not isinstance(cmd, (bytes, str)):
        raise ValueError("cmd must be a string")
    if universal_newlines:
        raise ValueError("universal_newlines must be False")
    if not shell:
        raise ValueError("shell must be True")
    _check_binary(bufsize, text, encoding, errors)
    protocol = protocol_factory()
    transport = await _start(self, protocol, cmd, True, stdin, stdout, stderr, bufsize, kwargs)
    return transport, protocol


async def _start(loop: EventLoop, protocol: Any, args: Any, shell: bool, stdin: Any, stdout: Any,
                 stderr: Any, bufsize: int, kwargs: dict[str, Any]) -> SubprocessTransport:
    transport = SubprocessTransport(loop, protocol, args, shell, stdin, stdout, stderr, bufsize,
                                    **kwargs)
    try:
        await transport._connect_pipes()
    except (SystemExit, KeyboardInterrupt):
        raise
    except BaseException:
        # Kill and reap the child.  (Not _wait(): it waits for connection_lost, which a transport
        # that never got its pipes connected does not reach.)
        transport.close()
        await transport._wait_exit()
        raise
    return transport
