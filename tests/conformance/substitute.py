"""Put the loop under test into the stdlib's test classes (runs inside the child process).

* :func:`install` replaces the default event loop policy's ``_loop_factory``, so that every
  ``asyncio.new_event_loop()``, ``asyncio.run()``, ``asyncio.Runner()`` and
  ``IsolatedAsyncioTestCase`` in the process builds the loop under test - including policies
  created after a test resets the policy with ``set_event_loop_policy(None)``.
* :func:`hook_class` builds a test class whose ``create_event_loop``/``new_loop`` returns it.
* Every loop built either way is counted (:data:`COUNTER`), so the child can tell which tests
  really ran on the loop under test.
"""
from __future__ import annotations

import asyncio
import asyncio.unix_events
from collections.abc import Callable
from typing import Any

LoopFactory = Callable[[], asyncio.AbstractEventLoop]


class Counter:
    """How many loops under test have been requested so far."""

    def __init__(self) -> None:
        self.value = 0


COUNTER = Counter()

#: The stdlib loop class, as the default policy builds it (captured before patching).
STDLIB_FACTORY: LoopFactory = (
    asyncio.unix_events._UnixDefaultEventLoopPolicy._loop_factory)  # type: ignore[attr-defined]


def counted(factory: LoopFactory) -> LoopFactory:
    """Wrap ``factory`` so that each call is counted (before it runs: a failing one counts)."""

    def new_loop() -> asyncio.AbstractEventLoop:
        COUNTER.value += 1
        return factory()

    return new_loop


def _close_loop_without_default_executor(original: Callable[[Any], None]
                                         ) -> Callable[[Any], None]:
    """Adapt ``test_utils.TestCase.close_loop`` to loops without ``_default_executor``.

    The stdlib helper reads the private ``loop._default_executor`` only to decide whether to
    await ``loop.shutdown_default_executor()`` before closing; a loop that does not expose that
    attribute gets the public call unconditionally instead.
    """

    def close_loop(loop: asyncio.AbstractEventLoop) -> None:
        if hasattr(loop, "_default_executor"):
            original(loop)
            return
        if not loop.is_closed():
            loop.run_until_complete(loop.shutdown_default_executor())
        loop.close()

    return close_loop


def install(factory: LoopFactory) -> list[str]:
    """Make ``factory`` the default policy's loop factory; return what was patched."""
    from test.test_asyncio import utils

    policy_cls = asyncio.unix_events._UnixDefaultEventLoopPolicy
    policy_cls._loop_factory = staticmethod(counted(factory))  # type: ignore[attr-defined]
    original = utils.TestCase.__dict__["close_loop"].__func__
    utils.TestCase.close_loop = staticmethod(  # type: ignore[method-assign]
        _close_loop_without_default_executor(original))
    return [
        "asyncio.DefaultEventLoopPolicy._loop_factory -> loop under test (counted)",
        "test_asyncio.utils.TestCase.close_loop: no loop._default_executor needed",
    ]


def _spy_shutdown_asyncgens(loop: asyncio.AbstractEventLoop) -> asyncio.AbstractEventLoop:
    """Give ``loop`` the ``shutdown_ag_run`` flag that test_runners' tearDown asserts.

    test_runners.BaseTest.new_loop returns a mocked BaseEventLoop whose shutdown_asyncgens()
    only sets that flag; here the loop's real shutdown_asyncgens() runs after setting it.
    """
    real = loop.shutdown_asyncgens
    loop.shutdown_ag_run = False  # type: ignore[attr-defined]

    async def shutdown_asyncgens() -> None:
        loop.shutdown_ag_run = True  # type: ignore[attr-defined]
        await real()

    loop.shutdown_asyncgens = shutdown_asyncgens  # type: ignore[method-assign]
    return loop


#: Adapters a :class:`~tests.conformance.selection.Hook` can name, applied to each new loop.
ADAPTERS: dict[str, Callable[[asyncio.AbstractEventLoop], asyncio.AbstractEventLoop]] = {
    "runners": _spy_shutdown_asyncgens,
}


def hook_class(name: str, bases: tuple[type, ...], method: str, module: str,
               factory: LoopFactory, adapt: str = "") -> type:
    """A test class built from ``bases`` whose ``method()`` returns a new loop under test."""
    make = counted(factory)
    adapter = ADAPTERS[adapt] if adapt else None

    def build_loop(self: Any) -> asyncio.AbstractEventLoop:
        loop = make()
        return adapter(loop) if adapter else loop

    build_loop.__name__ = method
    namespace = {method: build_loop, "__module__": module, "__qualname__": name,
                 "__doc__": f"{', '.join(b.__name__ for b in bases)} on the loop under test."}
    return type(name, bases, namespace)
