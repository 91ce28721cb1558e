"""Which of CPython's ``test.test_asyncio`` classes run against edgeloop, and how.

Two ways of putting the loop under test into a stdlib test class:

* **hook** - the module has a loop-generic mixin that takes its loop from a factory method
  (``create_event_loop`` in ``EventLoopTestsMixin``, ``BaseSockTestsMixin``, ``SendfileTestsBase``;
  ``new_loop`` in ``FunctionalTestCaseMixin`` users).  A class is built from the same bases as the
  stdlib's own concrete class (e.g. ``EPollEventLoopTests``), with that method returning the loop.
* **policy** - the class gets its loop from ``asyncio.new_event_loop()``, ``asyncio.run()``,
  ``asyncio.Runner`` or ``IsolatedAsyncioTestCase``; all of these end in the default policy's
  ``_loop_factory``, which the child process replaces (see :mod:`tests.conformance.substitute`).
  Classes that build ``TestLoop``/``BaseEventLoop``/``SelectorEventLoop`` themselves never reach it:
  each test records whether it built a loop under test, and one that did not is reported ``n/a``.

Only classes named here run; a name missing from this interpreter's copy of the module is ignored.
"""
from __future__ import annotations

import unittest
from dataclasses import dataclass, field
from types import ModuleType

PACKAGE = "test.test_asyncio"


@dataclass(frozen=True)
class Hook:
    """A class built from ``bases`` whose ``method`` returns the loop under test."""

    name: str
    bases: tuple[str, ...]
    method: str
    note: str = ""
    #: name of a :data:`tests.conformance.substitute.ADAPTERS` entry applied to each new loop
    adapt: str = ""


@dataclass(frozen=True)
class ModuleSpec:
    """The selection for one ``test.test_asyncio`` module."""

    name: str
    hooks: tuple[Hook, ...] = ()
    #: classes taken as they are, fed through the default policy; ``("*",)`` = every TestCase
    #: class defined in the module.
    policy: tuple[str, ...] = ()
    #: what the module is about, for grouping failures ("core", "ssl", "subprocess", ...)
    area: str = "core"
    note: str = ""


_UTILS = "utils.TestCase"
_UNITTEST = "unittest.TestCase"

MODULES: tuple[ModuleSpec, ...] = (
    ModuleSpec(
        "test_events",
        hooks=(Hook("EventLoopTests", ("EventLoopTestsMixin", "SubprocessTestsMixin", _UTILS),
                    "create_event_loop",
                    "the bases of EPollEventLoopTests minus UnixEventLoopTestsMixin, which only "
                    "attaches a SafeChildWatcher"),),
        policy=("HandleTests", "AbstractEventLoopTests", "PolicyTests", "TestPyGetEventLoop",
                "TestCGetEventLoop", "TestServer")),
    ModuleSpec(
        "test_sock_lowlevel",
        hooks=(Hook("SockTests", ("BaseSockTestsMixin", _UTILS), "create_event_loop",
                    "bases of EPollEventLoopTests"),)),
    ModuleSpec(
        "test_streams", policy=("StreamTests",)),
    ModuleSpec(
        "test_server",
        hooks=(Hook("StartServerTests", ("BaseStartServer", _UNITTEST), "new_loop",
                    "bases of SelectorStartServerTests"),),
        policy=("TestServer2", "UnixServerCleanupTests")),
    ModuleSpec(
        "test_buffered_proto",
        hooks=(Hook("BufferedProtocolTests", ("BaseTestBufferedProtocol", _UNITTEST), "new_loop",
                    "bases of BufferedProtocolSelectorTests"),)),
    ModuleSpec(
        "test_unix_events",
        policy=("TestFunctional", "TestFork"),
        note="SelectorEventLoopUnixSockSendfileTests is left out: all its tests call "
             "BaseSelectorEventLoop._sock_sendfile_native*() or read loop._selector"),
    ModuleSpec(
        "test_base_events", policy=("RunningLoopTests", "BaseEventLoopTests"),
        note="BaseEventLoopTests mostly uses a mocked BaseEventLoop (n/a); a few tests call "
             "asyncio.new_event_loop()"),
    ModuleSpec(
        "test_tasks",
        policy=("CTask_CFuture_Tests", "CTask_CFuture_SubclassTests",
                "CTaskSubclass_PyFuture_Tests", "PyTask_CFutureSubclass_Tests",
                "CTask_PyFuture_Tests", "PyTask_CFuture_Tests", "PyTask_PyFuture_Tests",
                "PyTask_PyFuture_SubclassTests", "CTask_Future_Tests", "PyCurrentLoopTests",
                "CCurrentLoopTests", "GenericTaskTests", "FutureGatherTests",
                "CoroutineGatherTests", "RunCoroutineThreadsafeTests", "SleepTests"),
        note="setUp builds a TestLoop; tests that call asyncio.new_event_loop() are the "
             "applicable ones"),
    ModuleSpec("test_eager_task_factory", policy=("*",)),
    ModuleSpec("test_futures2", policy=("*",)),
    ModuleSpec("test_locks", policy=("*",)),
    ModuleSpec("test_queues", policy=("*",)),
    ModuleSpec("test_taskgroups", policy=("*",)),
    ModuleSpec("test_timeouts", policy=("*",)),
    ModuleSpec("test_waitfor", policy=("*",)),
    ModuleSpec("test_threads", policy=("*",)),
    ModuleSpec("test_staggered", policy=("*",)),
    ModuleSpec("test_context", policy=("*",)),
    ModuleSpec(
        "test_runners",
        hooks=tuple(Hook(name, (name,), "new_loop",
                         "the stdlib's new_loop() builds a mocked BaseEventLoop; here the loop "
                         "under test, with the same shutdown_ag_run spy (the real "
                         "shutdown_asyncgens still runs)", adapt="runners")
                    for name in ("RunTests", "RunnerTests"))),
    ModuleSpec(
        "test_sendfile", area="sendfile",
        hooks=(Hook("SendfileTests", ("SendfileTestsBase", _UTILS), "create_event_loop",
                    "bases of EPollEventLoopTests"),)),
    ModuleSpec(
        "test_subprocess", area="subprocess",
        policy=("SubprocessThreadedWatcherTests", "SubprocessPidfdWatcherTests",
                "GenericWatcherTests"),
        note="Safe/Fast/MultiLoop watcher variants repeat the same tests; skipped"),
    ModuleSpec("test_ssl", area="ssl", policy=("TestSSL",)),
    ModuleSpec(
        "test_sslproto", area="ssl",
        hooks=(Hook("StartTLSTests", ("BaseStartTLS", _UNITTEST), "new_loop",
                    "bases of SelectorStartTLSTests"),),
        policy=("SslProtoHandshakeTests",)),
)

#: Modules left out on purpose, with the reason (printed by ``--list-selection``).
NOT_SELECTED: dict[str, str] = {
    "test_selector_events": "unit tests of BaseSelectorEventLoop and its transports (mocked selector)",
    "test_proactor_events": "Windows proactor loop",
    "test_windows_events": "Windows only",
    "test_windows_utils": "Windows only",
    "test_protocols": "abstract protocol classes; no loop",
    "test_futures": "every test runs on test_utils.TestLoop or a mock (0 of 155-162 tests built a "
                    "loop through the policy on 3.11-3.13)",
    "test_pep492": "a mocked BaseEventLoop (0 of 10-11 tests built a loop through the policy)",
    "test_transports": "abstract transport classes; no loop",
}

BY_NAME: dict[str, ModuleSpec] = {spec.name: spec for spec in MODULES}


@dataclass(frozen=True)
class SubsetEntry:
    """Part of the bounded CI subset: a module and the test-id globs to run from it."""

    module: str
    patterns: tuple[str, ...] = field(default=())


#: The bounded subset for CI (``--subset``, about 1.5 minutes with ``-j 2``): the core loop,
#: sockets, streams, servers, the high-level primitives, and one class each for sendfile, TLS
#: upgrade and subprocesses.  Tests of features listed in pending.txt are deselected.
SUBSET: tuple[SubsetEntry, ...] = (
    SubsetEntry("test_events", ("*.EventLoopTests.*",)),
    SubsetEntry("test_sock_lowlevel"),
    SubsetEntry("test_streams"),
    SubsetEntry("test_server"),
    SubsetEntry("test_buffered_proto"),
    SubsetEntry("test_unix_events", ("*.TestFunctional.*",)),
    SubsetEntry("test_base_events", ("*.RunningLoopTests.*",)),
    SubsetEntry("test_tasks", ("*.CTask_CFuture_Tests.*", "*.FutureGatherTests.*",
                               "*.RunCoroutineThreadsafeTests.*", "*.SleepTests.*")),
    SubsetEntry("test_futures2"),
    SubsetEntry("test_locks"),
    SubsetEntry("test_queues"),
    SubsetEntry("test_taskgroups"),
    SubsetEntry("test_timeouts"),
    SubsetEntry("test_waitfor"),
    SubsetEntry("test_threads"),
    SubsetEntry("test_context"),
    SubsetEntry("test_runners"),
    SubsetEntry("test_sendfile"),
    SubsetEntry("test_sslproto", ("*.StartTLSTests.*",)),
    SubsetEntry("test_subprocess", ("*.SubprocessThreadedWatcherTests.*",)),
)


def module_exists(name: str) -> bool:
    """Whether this interpreter ships ``test.test_asyncio.<name>``."""
    import importlib.util

    return importlib.util.find_spec(f"{PACKAGE}.{name}") is not None


def _resolve(module: ModuleType, dotted: str) -> type | None:
    if dotted == _UTILS:
        from test.test_asyncio import utils

        return utils.TestCase
    if dotted == _UNITTEST:
        return unittest.TestCase
    obj = getattr(module, dotted, None)
    return obj if isinstance(obj, type) else None


def policy_classes(spec: ModuleSpec, module: ModuleType) -> list[type[unittest.TestCase]]:
    """The policy-substituted classes of ``spec`` present in ``module``, in spec order."""
    if spec.policy == ("*",):
        return [obj for obj in vars(module).values()
                if isinstance(obj, type) and issubclass(obj, unittest.TestCase)
                and obj.__module__ == module.__name__
                and unittest.TestLoader().getTestCaseNames(obj)]
    found = []
    for name in spec.policy:
        cls = _resolve(module, name)
        if cls is not None and issubclass(cls, unittest.TestCase):
            found.append(cls)
    return found


def hook_bases(hook: Hook, module: ModuleType) -> tuple[type, ...] | None:
    """The resolved bases of ``hook`` in ``module``, or ``None`` if one is missing."""
    bases = tuple(_resolve(module, name) for name in hook.bases)
    if any(base is None for base in bases):
        return None
    return bases  # type: ignore[return-value]
