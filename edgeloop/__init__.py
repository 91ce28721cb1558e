"""edgeloop: an asyncio event loop that drives sockets straight through Linux epoll.

Public face, mirroring uvloop::

    edgeloop.run(main())                                   # like asyncio.run
    asyncio.Runner(loop_factory=edgeloop.new_event_loop)   # any Python >= 3.11
    asyncio.set_event_loop_policy(edgeloop.EventLoopPolicy())
"""
from __future__ import annotations

import asyncio
import sys
import warnings
from typing import Any, Coroutine, TypeVar

from .blockbuster import blockbuster_exemptions  # does not import blockbuster
from .loop import EventLoop

__all__ = ["EventLoop", "EventLoopPolicy", "new_event_loop", "run", "install",
           "blockbuster_exemptions", "__version__"]
__version__ = "0.1.0"

_T = TypeVar("_T")


def new_event_loop(**kwargs: Any) -> EventLoop:
    """A new edgeloop; keyword arguments as for ``EventLoop`` (backend, trigger, read_policy)."""
    return EventLoop(**kwargs)


def run(main: Coroutine[Any, Any, _T], *, debug: bool | None = None, **loop_kwargs: Any) -> _T:
    """Run a coroutine on a fresh edgeloop, like ``asyncio.run``.

    Built on ``asyncio.Runner(loop_factory=...)``, so no event loop policy is involved (policies are
    deprecated from Python 3.14).  ``loop_kwargs`` go to ``EventLoop`` (backend, trigger, ...).
    """
    if asyncio._get_running_loop() is not None:
        # Checked before a loop exists, so that nothing is left half-created.
        raise RuntimeError("edgeloop.run() cannot be called from a running event loop")
    if not asyncio.iscoroutine(main):
        raise ValueError(f"a coroutine was expected, got {main!r}")

    def factory() -> EventLoop:
        return EventLoop(**loop_kwargs)

    with asyncio.Runner(debug=debug, loop_factory=factory) as runner:
        return runner.run(main)


# The policy machinery's base class is public up to 3.13 and private (deprecated) from 3.14;
# take whichever exists without touching the deprecated public names.
_BasePolicy = getattr(asyncio.events, "BaseDefaultEventLoopPolicy", None) or getattr(
    asyncio.events, "_BaseDefaultEventLoopPolicy"
)


class EventLoopPolicy(_BasePolicy):  # type: ignore[misc, valid-type]
    """An event loop policy whose loops are edgeloops (``asyncio.set_event_loop_policy``)."""

    def _loop_factory(self) -> EventLoop:  # called by the base class's new_event_loop()
        return EventLoop()

    def __repr__(self) -> str:
        return f"<{type(self).__name__}>"


def install() -> None:
    """Make edgeloop the default through the event loop policy (deprecated like uvloop's)."""
    if sys.version_info >= (3, 12):
        warnings.warn(
            "edgeloop.install() is deprecated in favor of edgeloop.run() "
            "or asyncio.Runner(loop_factory=edgeloop.new_event_loop)",
            DeprecationWarning, stacklevel=2,
        )
    asyncio.set_event_loop_policy(EventLoopPolicy())
