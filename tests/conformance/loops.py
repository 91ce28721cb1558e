"""The loops that the conformance runner can put under test, by name."""
from __future__ import annotations

import asyncio
import importlib
from collections.abc import Callable

#: Loop name -> keyword arguments for ``edgeloop.new_event_loop``.
EDGELOOP_CONFIGS: dict[str, dict[str, str]] = {
    "edge": {"trigger": "edge"},
    "level": {"trigger": "level"},
    "poll": {"backend": "poll", "trigger": "level"},
    "select": {"backend": "select", "trigger": "level"},
}

#: Every name accepted by ``--loop``: edgeloop's configurations, the stdlib loop (the reference)
#: and uvloop (an optional second non-selector reference, when installed).
LOOP_NAMES: tuple[str, ...] = (*EDGELOOP_CONFIGS, "asyncio", "uvloop")
DEFAULT_LOOPS: tuple[str, ...] = ("edge", "level", "asyncio")
REFERENCE = "asyncio"


def describe(name: str) -> str:
    """A one-line description of how a loop of this name is built."""
    if name in EDGELOOP_CONFIGS:
        args = ", ".join(f"{k}={v!r}" for k, v in EDGELOOP_CONFIGS[name].items())
        return f"edgeloop.new_event_loop({args})"
    if name == "asyncio":
        return "the stdlib loop (asyncio.unix_events._UnixSelectorEventLoop, default selector)"
    if name == "uvloop":
        return "uvloop.new_event_loop()"
    raise ValueError(f"unknown loop {name!r}")


def loop_factory(name: str, stdlib_factory: Callable[[], asyncio.AbstractEventLoop]
                 ) -> Callable[[], asyncio.AbstractEventLoop]:
    """Return a zero-argument callable that builds a new loop named ``name``.

    ``stdlib_factory`` is the stdlib's own loop class, passed in because the caller may already
    have replaced it in the default policy.
    """
    if name in EDGELOOP_CONFIGS:
        edgeloop = importlib.import_module("edgeloop")
        kwargs = EDGELOOP_CONFIGS[name]
        return lambda: edgeloop.new_event_loop(**kwargs)
    if name == "asyncio":
        return stdlib_factory
    if name == "uvloop":
        uvloop = importlib.import_module("uvloop")
        return uvloop.new_event_loop
    raise ValueError(f"unknown loop {name!r}")


def importable(name: str) -> str | None:
    """``None`` if the loop can be built in this interpreter, else the reason it cannot."""
    module = "edgeloop" if name in EDGELOOP_CONFIGS else "uvloop" if name == "uvloop" else None
    if module is None:
        return None
    try:
        importlib.import_module(module)
    except Exception as exc:  # noqa: BLE001 - any import failure means "not available"
        return f"cannot import {module}: {type(exc).__name__}: {exc}"
    return None
