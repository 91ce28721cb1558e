"""Give edgeloop's internals the exemptions `blockbuster`_ gives asyncio's own loop.

Its one job: :func:`blockbuster_exemptions`.  blockbuster flags blocking calls made while an event
loop runs, and exempts the stdlib loop's internals by file and function name (``os.sendfile`` in
``asyncio/base_events.py:sendfile``, ``os.stat`` in ``asyncio/unix_events.py:create_unix_server``,
...).  edgeloop does the same work from functions of its own, so without these exemptions a test
suite under blockbuster fails on edgeloop where it passes on asyncio (``BlockingError: Blocking call
to os.sendfile`` for an aiohttp ``FileResponse``, ``... to os.stat`` for a ``UnixSite``).  Each entry
below mirrors one stdlib exemption of blockbuster's, for the edgeloop function doing that work, and
nothing more: edgeloop's other I/O is on non-blocking descriptors, which blockbuster lets through.
What blockbuster flags in asyncio stays flagged in edgeloop: ``os.remove`` of a stale socket file
(``create_unix_server``, Unix datagram endpoints), ``os.stat`` in ``create_datagram_endpoint``, and
every blocking call made by user code, including callbacks the loop runs.

Usage::

    with blockbuster_ctx() as bb:
        edgeloop.blockbuster_exemptions(bb)

blockbuster is not a dependency of edgeloop: this module does not import it.

.. _blockbuster: https://github.com/cbornet/blockbuster
"""
from __future__ import annotations

import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from blockbuster import BlockBuster

__all__ = ["blockbuster_exemptions"]

# (key in BlockBuster.functions, edgeloop file relative to the package, function names).
# blockbuster matches a frame by the end of its file name and its code object's bare name.
_EXEMPTIONS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    # loop.sendfile(): mirrors asyncio/base_events.py:sendfile (and unix_events.py:
    # _sock_sendfile_native_impl, which it reaches).  _FilePump._send is edgeloop's only
    # os.sendfile call for a transport, whether run from sendfile() or from write readiness.
    ("os.sendfile", "sendfile.py", ("_send",)),
    # loop.sock_sendfile(): mirrors asyncio/unix_events.py:_sock_sendfile_native_impl.  The call is
    # in the ``attempt`` closure of _sock_sendfile_native (run at once, then on write readiness);
    # sockets.py's other ``attempt`` closures make no os.sendfile call.
    ("os.sendfile", "sockets.py", ("attempt",)),
    # loop.create_unix_server(): mirrors asyncio/unix_events.py:create_unix_server (os.stat of
    # the path for a stale socket file; Server.__init__ records its inode from inside this call,
    # as 3.13's create_unix_server does).
    ("os.stat", "network.py", ("create_unix_server",)),
    # Server.close() removing its socket file if it is still the one it bound: mirrors
    # asyncio/unix_events.py:_stop_serving (3.13's cleanup_socket; os.stat, then os.unlink).
    ("os.stat", "server.py", ("_cleanup_unix_path",)),
    ("os.unlink", "server.py", ("_cleanup_unix_path",)),
    # loop.subprocess_exec()/subprocess_shell(): mirrors asyncio/base_events.py:subprocess_exec
    # and subprocess_shell (subprocess.Popen reads its exec-error pipe, a blocking descriptor).
    ("os.read", "transports/subprocess.py", ("subprocess_exec", "subprocess_shell")),
    # loop.shutdown_default_executor(): mirrors asyncio/base_events.py:shutdown_default_executor
    # (thread.join() of the thread that shut the executor down).
    ("threading.Lock.acquire", "loop.py", ("shutdown_default_executor",)),
)

_PACKAGE_DIR = os.path.dirname(__file__)


def blockbuster_exemptions(bb: BlockBuster) -> None:
    """Let ``bb`` (a ``blockbuster.BlockBuster``, e.g. from ``blockbuster_ctx()``) allow in edgeloop
    the blocking calls it allows in asyncio's loop internals, and only those.

    Calling it again, or with the stdlib loop running, is harmless.  Blocking functions that this
    version of blockbuster does not watch are skipped.
    """
    for name, relpath, functions in _EXEMPTIONS:
        watched = bb.functions.get(name)
        if watched is None:
            continue
        # The full path of the edgeloop file: matches only this copy of edgeloop.
        filename = os.path.join(_PACKAGE_DIR, *relpath.split("/"))
        names = set(functions)
        if (filename, names) not in watched.can_block_functions:
            watched.can_block_in(filename, names)
