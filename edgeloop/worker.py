"""A gunicorn worker class that serves aiohttp applications on edgeloop.

    gunicorn app:make_app --worker-class edgeloop.worker.GunicornWebWorker --workers 2

The counterpart of aiohttp's ``GunicornUVLoopWebWorker``.  Everything except the loop is aiohttp's
own ``GunicornWebWorker``: application factories, ``SockSite`` on each inherited listener, signal
handling through the loop, graceful shutdown within gunicorn's ``graceful_timeout``.

Decisions
---------
* **The loop is created directly, not through a policy.**  aiohttp's worker builds its loop with
  ``asyncio.new_event_loop()`` in ``init_process``, and the uvloop worker installs uvloop's
  policy first so that this call returns a uvloop.  Policies are deprecated from Python 3.14, so
  this worker instead does what aiohttp's ``init_process`` does (make a loop, set it current) with
  ``edgeloop.new_event_loop()``, then continues with gunicorn's ``Worker.init_process``, which
  installs the signal handlers and calls ``run()``.  No process-wide state is changed beyond the
  current loop of the worker's main thread.
* **Loop options come from the environment**: ``EDGELOOP_TRIGGER=level``, ``EDGELOOP_BACKEND``,
  ``EDGELOOP_READ_POLICY`` (read by ``EventLoop``), or a subclass that sets ``loop_options``.
* **Shared listener.**  gunicorn's workers inherit the arbiter's listening sockets; edgeloop
  registers listening sockets with ``EPOLLEXCLUSIVE`` (see ``edgeloop/server.py``), so a
  connection wakes one waiting worker instead of all of them.
* **Dependencies stay optional.**  The core package depends on nothing; this module needs gunicorn
  and aiohttp and says so when either is missing.
"""
from __future__ import annotations

import asyncio
from typing import Any, ClassVar

try:
    from aiohttp.worker import GunicornWebWorker as _AiohttpGunicornWebWorker
    from gunicorn.workers.base import Worker as _GunicornWorker
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "edgeloop.worker needs gunicorn and aiohttp (pip install gunicorn aiohttp): "
        f"{exc}"
    ) from exc

from . import new_event_loop

__all__ = ["GunicornWebWorker"]


class GunicornWebWorker(_AiohttpGunicornWebWorker):
    """aiohttp's gunicorn worker with an edgeloop as its event loop."""

    #: Keyword arguments for ``edgeloop.new_event_loop`` (backend, trigger, read_policy).
    loop_options: ClassVar[dict[str, Any]] = {}

    def init_process(self) -> None:
        # In place of aiohttp's init_process (which would call asyncio.new_event_loop()); the
        # gunicorn base class's init_process ends by calling self.run(), which runs this loop.
        self.loop = new_event_loop(**self.loop_options)
        asyncio.set_event_loop(self.loop)
        _GunicornWorker.init_process(self)
