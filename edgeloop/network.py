"""Connections and servers: name resolution, ``create_connection`` (with Happy Eyeballs),
``create_server``, the Unix-socket variants and ``connect_accepted_socket``.

These functions are bound as methods of ``EventLoop``; ``self`` is the loop.
"""
from __future__ import annotations

import asyncio
import collections
import errno
import os
import socket
import stat
import sys
from typing import TYPE_CHECKING, Any, Callable, Iterable, TypeVar

from .server import Server
from .transports import tls as _tls
from .transports.stream import StreamTransport

if TYPE_CHECKING:
    from .loop import EventLoop

ProtocolFactory = Callable[[], asyncio.BaseProtocol]
_ProtocolT = TypeVar("_ProtocolT", bound=asyncio.BaseProtocol)  # as in typeshed's AbstractEventLoop
_HAS_IPV6 = hasattr(socket, "AF_INET6")
_PY313 = sys.version_info >= (3, 13)


# ---------------------------------------------------------------------- name resolution

def _numeric_host(host: Any) -> bool:
    if host is None:
        return True
    if isinstance(host, bytes):
        host = host.decode("idna")
    if not isinstance(host, str):
        return False
    for family in (socket.AF_INET, socket.AF_INET6):
        try:
            socket.inet_pton(family, host.partition("%")[0])
            return True
        except (OSError, ValueError):
            pass
    return False


async def getaddrinfo(self: EventLoop, host: Any, port: Any, *, family: int = 0, type: int = 0,
                      proto: int = 0, flags: int = 0) -> list[Any]:
    self._check_closed()
    if _numeric_host(host) and (isinstance(port, int) or port is None or str(port).isdigit()):
        # No lookup can happen: answer without a round trip through the executor.
        return socket.getaddrinfo(host, port, family, type, proto, flags | socket.AI_NUMERICHOST)
    return await self.run_in_executor(None, socket.getaddrinfo, host, port, family, type, proto, flags)


async def getnameinfo(self: EventLoop, sockaddr: Any, flags: int = 0) -> tuple[str, str]:
    self._check_closed()
    return await self.run_in_executor(None, socket.getnameinfo, sockaddr, flags)


def _interleave(infos: list[Any], first_family_count: int) -> list[Any]:
    """Alternate address families (RFC 8305 section 4), starting with the first one returned."""
    by_family: dict[int, collections.deque[Any]] = {}
    for info in infos:
        by_family.setdefault(info[0], collections.deque()).append(info)
    queues = list(by_family.values())
    out: list[Any] = []
    if queues:
        for _ in range(first_family_count - 1):
            if queues[0]:
                out.append(queues[0].popleft())
    while any(queues):
        for q in queues:
            if q:
                out.append(q.popleft())
    return out


def _check_ssl_args(ssl: Any, server_hostname: Any = None, handshake: Any = None,
                    shutdown: Any = None) -> None:
    if server_hostname is not None and not ssl:
        raise ValueError("server_hostname is only meaningful with ssl")
    if handshake is not None and not ssl:
        raise ValueError("ssl_handshake_timeout is only meaningful with ssl")
    if shutdown is not None and not ssl:
        raise ValueError("ssl_shutdown_timeout is only meaningful with ssl")
    if ssl:
        _tls.check_timeouts(handshake, shutdown)


# ---------------------------------------------------------------------- connecting

async def _connect_one(loop: EventLoop, info: Any, local_infos: list[Any] | None) -> socket.socket:
    family, type_, proto, _, address = info
    sock = socket.socket(family, type_, proto)
    try:
        sock.setblocking(False)
        if local_infos is not None:
            for lfamily, _, _, _, laddr in local_infos:
                if lfamily != family:
                    continue
                try:
                    sock.bind(laddr)
                    break
                except OSError as exc:
                    raise OSError(exc.errno, f"error while attempting to bind on address "
                                             f"{laddr!r}: {exc.strerror.lower()}") from None  # type: ignore[union-attr]
            else:
                raise OSError(f"no matching local address with family={family} found")
        await loop.sock_connect(sock, address)
        return sock
    except BaseException:
        sock.close()
        raise


async def _staggered(loop: EventLoop, infos: list[Any], delay: float,
                     connect: Callable[[Any], Any]) -> tuple[socket.socket | None, list[BaseException]]:
    """Happy Eyeballs: start an attempt, and another one each time ``delay`` passes or an attempt
    fails, until one connects; the losers are cancelled and their sockets closed."""
    todo = collections.deque(infos)
    running: set[asyncio.Task[socket.socket]] = set()
    errors: list[BaseException] = []
    winner: socket.socket | None = None
    try:
        while winner is None and (todo or running):
            if todo:
                running.add(loop.create_task(connect(todo.popleft())))
            done, _ = await asyncio.wait(
                running, timeout=delay if todo else None, return_when=asyncio.FIRST_COMPLETED
            )
            for task in done:
                running.discard(task)
                exc = task.exception()
                if exc is not None:
                    errors.append(exc)
                elif winner is None:
                    winner = task.result()
                else:
                    task.result().close()
    finally:
        for task in running:
            task.cancel()
        if running:
            await asyncio.wait(running)
            for task in running:
                if not task.cancelled() and task.exception() is None:
                    task.result().close()
    return winner, errors


def _combine_errors(errors: list[BaseException], all_errors: bool) -> BaseException:
    if all_errors:
        return ExceptionGroup("create_connection failed", errors)  # type: ignore[type-var]
    if len(errors) == 1:
        return errors[0]
    first = str(errors[0])
    if all(str(exc) == first for exc in errors):
        return errors[0]
    return OSError(f"Multiple exceptions: {', '.join(str(exc) for exc in errors)}")


async def create_connection(
    self: EventLoop, protocol_factory: Callable[[], _ProtocolT], host: Any = None, port: Any = None, *,
    ssl: Any = None, family: int = 0, proto: int = 0, flags: int = 0, sock: socket.socket | None = None,
    local_addr: Any = None, server_hostname: str | None = None,
    ssl_handshake_timeout: float | None = None, ssl_shutdown_timeout: float | None = None,
    happy_eyeballs_delay: float | None = None, interleave: int | None = None,
    all_errors: bool = False,
) -> tuple[asyncio.Transport, _ProtocolT]:
    self._check_closed()
    _check_ssl_args(ssl, server_hostname, ssl_handshake_timeout, ssl_shutdown_timeout)
    if ssl and server_hostname is None:
        # Verify the host we connect to; '' disables the name check (and SNI).
        if not host:
            raise ValueError("You must set server_hostname when using ssl without a host")
        server_hostname = host
    if happy_eyeballs_delay is not None and interleave is None:
        interleave = 1
    if host is not None or port is not None:
        if sock is not None:
            raise ValueError("host/port and sock can not be specified at the same time")
        infos = await self.getaddrinfo(host, port, family=family, type=socket.SOCK_STREAM,
                                       proto=proto, flags=flags)
        if not infos:
            raise OSError("getaddrinfo() returned empty list")
        local_infos = None
        if local_addr is not None:
            local_infos = await self.getaddrinfo(*local_addr, family=family,
                                                 type=socket.SOCK_STREAM, proto=proto, flags=flags)
            if not local_infos:
                raise OSError("getaddrinfo() returned empty list")
        if interleave:
            infos = _interleave(infos, interleave)

        def connect(info: Any) -> Any:
            return _connect_one(self, info, local_infos)

        errors: list[BaseException] = []
        if happy_eyeballs_delay is None:
            for info in infos:
                try:
                    sock = await connect(info)
                    break
                except OSError as exc:
                    errors.append(exc)
        else:
            sock, errors = await _staggered(self, infos, happy_eyeballs_delay, connect)
        if sock is None:
            try:
                raise _combine_errors(errors, all_errors)
            finally:
                # The traceback keeps this frame: it must not keep the errors (gh-124859).
                errors = None  # type: ignore[assignment]
    else:
        if sock is None:
            raise ValueError("host and port was not specified and no sock specified")
        if sock.type != socket.SOCK_STREAM:
            raise ValueError(f"A Stream Socket was expected, got {sock!r}")
    return await _make_stream(self, sock, protocol_factory,
                              tls=_tls_args(ssl, False, server_hostname, ssl_handshake_timeout,
                                            ssl_shutdown_timeout),
                              owned=host is not None or port is not None)


def _tls_args(ssl: Any, server_side: bool, server_hostname: str | None, handshake: float | None,
              shutdown: float | None) -> dict[str, Any] | None:
    if not ssl:
        return None
    return {"context": _tls.make_context(ssl, server_side, server_hostname),
            "server_side": server_side, "server_hostname": server_hostname,
            "ssl_handshake_timeout": handshake, "ssl_shutdown_timeout": shutdown}


async def _make_stream(loop: EventLoop, sock: socket.socket, protocol_factory: Callable[[], _ProtocolT],
                       extra: dict[str, Any] | None = None, tls: dict[str, Any] | None = None,
                       owned: bool = True) -> tuple[asyncio.Transport, _ProtocolT]:
    """``owned``: we made ``sock``.  Until a transport holds it, a failure (the protocol factory,
    the poller refusing it) closes only a socket of ours: a ``sock=`` stays the caller's, as in
    asyncio."""
    sock.setblocking(False)
    waiter = loop.create_future()
    try:
        protocol = protocol_factory()
        if tls is not None:
            # The TLS layer is the raw transport's protocol; it resolves the waiter once the
            # handshake is done, and the application gets its own (plaintext) transport.
            tls_protocol = _tls.TLSProtocol(loop, protocol, tls.pop("context"), waiter, **tls)
        if tls is None:
            transport = StreamTransport(loop, sock, protocol, waiter, extra)
            result: asyncio.Transport = transport
        else:
            transport = StreamTransport(loop, sock, tls_protocol, None, extra)
            result = tls_protocol.app_transport
    except BaseException:
        if owned:
            sock.close()
        raise
    try:
        await waiter
    except BaseException:
        transport.close()
        raise
    finally:
        # It holds the failure, whose traceback keeps this frame.
        waiter = None  # type: ignore[assignment]
    return result, protocol


async def create_unix_connection(
    self: EventLoop, protocol_factory: Callable[[], _ProtocolT], path: str | None = None, *, ssl: Any = None,
    sock: socket.socket | None = None, server_hostname: str | None = None,
    ssl_handshake_timeout: float | None = None, ssl_shutdown_timeout: float | None = None,
) -> tuple[asyncio.Transport, _ProtocolT]:
    self._check_closed()
    _check_ssl_args(ssl, server_hostname, ssl_handshake_timeout, ssl_shutdown_timeout)
    if ssl and server_hostname is None:
        raise ValueError("you have to pass server_hostname when using ssl")
    if path is not None:
        if sock is not None:
            raise ValueError("path and sock can not be specified at the same time")
        path = os.fspath(path)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM, 0)
        try:
            sock.setblocking(False)
            await self.sock_connect(sock, path)
        except BaseException:
            sock.close()
            raise
    else:
        if sock is None:
            raise ValueError("no path and sock were specified")
        if sock.family != socket.AF_UNIX or sock.type != socket.SOCK_STREAM:
            raise ValueError(f"A UNIX Domain Stream Socket was expected, got {sock!r}")
    return await _make_stream(self, sock, protocol_factory,
                              tls=_tls_args(ssl, False, server_hostname, ssl_handshake_timeout,
                                            ssl_shutdown_timeout),
                              owned=path is not None)


async def connect_accepted_socket(
    self: EventLoop, protocol_factory: Callable[[], _ProtocolT], sock: socket.socket, *, ssl: Any = None,
    ssl_handshake_timeout: float | None = None, ssl_shutdown_timeout: float | None = None,
) -> tuple[asyncio.Transport, _ProtocolT]:
    self._check_closed()
    if sock.type != socket.SOCK_STREAM:
        raise ValueError(f"A Stream Socket was expected, got {sock!r}")
    _check_ssl_args(ssl, None, ssl_handshake_timeout, ssl_shutdown_timeout)
    return await _make_stream(self, sock, protocol_factory,
                              tls=_tls_args(ssl, True, None, ssl_handshake_timeout,
                                            ssl_shutdown_timeout), owned=False)


# ---------------------------------------------------------------------- servers

def _hosts(host: Any) -> list[Any]:
    if host == "" or host is None:
        return [None]
    if isinstance(host, str) or not isinstance(host, Iterable):
        return [host]
    return list(host)


async def create_server(
    self: EventLoop, protocol_factory: ProtocolFactory, host: Any = None, port: Any = None, *,
    family: int = socket.AF_UNSPEC, flags: int = socket.AI_PASSIVE, sock: socket.socket | None = None,
    backlog: int = 100, ssl: Any = None, reuse_address: bool | None = None,
    reuse_port: bool | None = None, keep_alive: bool | None = None,
    ssl_handshake_timeout: float | None = None, ssl_shutdown_timeout: float | None = None,
    start_serving: bool = True,
) -> Server:
    self._check_closed()
    if isinstance(ssl, bool):
        raise TypeError("ssl argument must be an SSLContext or None")
    _check_ssl_args(ssl, None, ssl_handshake_timeout, ssl_shutdown_timeout)
    if host is not None or port is not None:
        if sock is not None:
            raise ValueError("host/port and sock can not be specified at the same time")
        if reuse_address is None:
            reuse_address = True
        infos: list[Any] = []
        for h in _hosts(host):
            infos.extend(await self.getaddrinfo(h, port, family=family,
                                                type=socket.SOCK_STREAM, flags=flags))
        infos = list(dict.fromkeys(infos))  # the same address from two host names binds once
        sockets = []
        try:
            for af, type_, proto, _, sa in infos:
                try:
                    s = socket.socket(af, type_, proto)
                except OSError:
                    continue  # e.g. IPv6 disabled in the kernel
                sockets.append(s)
                if reuse_address:
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, True)
                if reuse_port:
                    if not hasattr(socket, "SO_REUSEPORT"):
                        raise ValueError("reuse_port not supported by socket module")
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, True)
                if keep_alive:
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, True)
                if _HAS_IPV6 and af == socket.AF_INET6 and hasattr(socket, "IPPROTO_IPV6"):
                    # Let an IPv4 socket on the same port coexist, as every asyncio loop does.
                    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, True)
                try:
                    s.bind(sa)
                except OSError as exc:
                    raise OSError(exc.errno, f"error while attempting to bind on address "
                                             f"{sa!r}: {(exc.strerror or '').lower()}") from None
            if not sockets:
                raise OSError("could not bind on any address out of " + repr([i[4] for i in infos]))
        except BaseException:
            for s in sockets:
                s.close()
            raise
    else:
        if sock is None:
            raise ValueError("Neither host/port nor sock were specified")
        if sock.type != socket.SOCK_STREAM:
            raise ValueError(f"A Stream Socket was expected, got {sock!r}")
        sockets = [sock]
    for s in sockets:
        s.setblocking(False)
    server = Server(self, sockets, protocol_factory, backlog, ssl=ssl,
                    ssl_handshake_timeout=ssl_handshake_timeout,
                    ssl_shutdown_timeout=ssl_shutdown_timeout)
    if start_serving:
        _start_or_abandon(server, owned=sock is None)
        await asyncio.sleep(0)
    return server


def _start_or_abandon(server: Server, owned: bool) -> None:
    """Start serving; if the poller refuses a listening socket (select past FD_SETSIZE without
    ctypes), nothing stays registered, our sockets are closed and a ``sock=`` is left to the
    caller."""
    try:
        server._start_serving()
    except BaseException:
        if owned:
            server.close()
        raise


async def create_unix_server(
    self: EventLoop, protocol_factory: ProtocolFactory, path: str | None = None, *,
    sock: socket.socket | None = None, backlog: int = 100, ssl: Any = None,
    ssl_handshake_timeout: float | None = None, ssl_shutdown_timeout: float | None = None,
    start_serving: bool = True, cleanup_socket: bool = True,
) -> Server:
    self._check_closed()
    if isinstance(ssl, bool):
        raise TypeError("ssl argument must be an SSLContext or None")
    _check_ssl_args(ssl, None, ssl_handshake_timeout, ssl_shutdown_timeout)
    bound_path = None
    if path is not None:
        if sock is not None:
            raise ValueError("path and sock can not be specified at the same time")
        path = os.fspath(path)
        abstract = path[:1] in ("\0", b"\0")
        if not abstract:
            # A socket file left by a previous run would make bind() fail: replace it.
            try:
                if stat.S_ISSOCK(os.stat(path).st_mode):
                    os.remove(path)
            except FileNotFoundError:
                pass
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.bind(path)
        except OSError as exc:
            sock.close()
            if exc.errno == errno.EADDRINUSE:
                raise OSError(errno.EADDRINUSE, f"Address {path!r} is already in use") from None
            raise
        except BaseException:
            sock.close()
            raise
        if not abstract and cleanup_socket:
            bound_path = path
    else:
        if sock is None:
            raise ValueError("path was not specified, and no sock specified")
        if sock.family != socket.AF_UNIX or sock.type != socket.SOCK_STREAM:
            raise ValueError(f"A UNIX Domain Stream Socket was expected, got {sock!r}")
        if cleanup_socket:
            name = sock.getsockname()
            if isinstance(name, str) and name and not name.startswith("\0"):
                bound_path = name
    sock.setblocking(False)
    server = Server(self, [sock], protocol_factory, backlog, unix_path=bound_path, ssl=ssl,
                    ssl_handshake_timeout=ssl_handshake_timeout,
                    ssl_shutdown_timeout=ssl_shutdown_timeout)
    if start_serving:
        _start_or_abandon(server, owned=path is not None)
        await asyncio.sleep(0)
    return server


if not _PY313:
    _create_unix_server = create_unix_server

    async def create_unix_server(  # type: ignore[misc]
        self: Any, protocol_factory: ProtocolFactory, path: str | None = None, *,
        sock: socket.socket | None = None, backlog: int = 100, ssl: Any = None,
        ssl_handshake_timeout: float | None = None, ssl_shutdown_timeout: float | None = None,
        start_serving: bool = True,
    ) -> Server:
        """Before 3.13 asyncio has no ``cleanup_socket`` (an unknown keyword is a TypeError) and
        leaves the socket file behind when the server closes."""
        return await _create_unix_server(
            self, protocol_factory, path, sock=sock, backlog=backlog, ssl=ssl,
            ssl_handshake_timeout=ssl_handshake_timeout, ssl_shutdown_timeout=ssl_shutdown_timeout,
            start_serving=start_serving, cleanup_socket=False)
