"""Run one test module on one loop; report each test as a JSON line (the child process).

Usage (the driver builds this command line)::

    python -m tests.conformance.child --module test_events --loop edge --events FILE \
        --traceback-file FILE [--timeout S] [--skip-file FILE] [--only-file FILE] [-k PAT]...
        [--subset]

Events, one JSON object a line in ``--events``:

* ``plan``     - every selected test id with its class kind (hook/policy) and exclusion reason;
* ``start``    - a test began (the driver uses the last unmatched one to blame a hang or crash);
* ``end``      - its outcome, error head, traceback tail, and how many loops under test it built;
* ``fixture``  - a setUpClass/setUpModule/tearDown* error, which belongs to no single test;
* ``fatal``    - the module could not be set up at all (import error, no such loop).

A per-test watchdog (:func:`faulthandler.dump_traceback_later` with ``exit=True``) kills the
process when a test outlives ``--timeout``; the tracebacks go to ``--traceback-file``.
"""
from __future__ import annotations

import argparse
import faulthandler
import fnmatch
import importlib
import json
import os
import sys
import time
import traceback
import unittest
from pathlib import Path
from typing import IO, Any

from . import lists, loops, selection, substitute

SHORT_PREFIX = selection.PACKAGE + "."


def short_id(test: unittest.TestCase) -> str:
    """``test_events.EventLoopTests.test_x`` for ``test.test_asyncio.test_events...``."""
    test_id = test.id()
    return test_id[len(SHORT_PREFIX):] if test_id.startswith(SHORT_PREFIX) else test_id


class Emitter:
    """Writes events as JSON lines, flushed one by one so that a killed process loses none."""

    def __init__(self, stream: IO[str]) -> None:
        self.stream = stream

    def __call__(self, event: str, **fields: Any) -> None:
        self.stream.write(json.dumps({"ev": event, **fields}) + "\n")
        self.stream.flush()


def _error_text(err: Any) -> tuple[str, str]:
    """(first line of the exception, tail of the formatted traceback) for an ``exc_info``."""
    exc_type, exc, tb = err
    lines = traceback.format_exception(exc_type, exc, tb)
    text = "".join(lines)
    head = traceback.format_exception_only(exc_type, exc)[-1].strip().splitlines()
    first = head[0] if head else exc_type.__name__
    return first[:500], text[-4000:]


class EventResult(unittest.TestResult):
    """A TestResult that turns each test into one ``end`` event and re-arms the watchdog."""

    def __init__(self, emit: Emitter, timeout: float, tb_file: IO[str]) -> None:
        super().__init__()
        self.emit = emit
        self.timeout = timeout
        self.tb_file = tb_file
        self._outcome: str = "passed"
        self._msg = ""
        self._tb = ""
        self._started = 0.0
        self._count_before = 0

    def _arm(self) -> None:
        faulthandler.dump_traceback_later(self.timeout, exit=True, file=self.tb_file)

    def startTest(self, test: unittest.TestCase) -> None:
        super().startTest(test)
        self._outcome, self._msg, self._tb = "passed", "", ""
        self._started = time.monotonic()
        self.emit("start", id=short_id(test))
        self._arm()

    def stopTest(self, test: unittest.TestCase) -> None:
        super().stopTest(test)
        touched = substitute.COUNTER.value - self._count_before
        self._count_before = substitute.COUNTER.value
        self.emit("end", id=short_id(test), outcome=self._outcome, msg=self._msg, tb=self._tb,
                  touched=touched, dur=round(time.monotonic() - self._started, 3))
        self._arm()  # also watch the class/module fixtures that run before the next test

    def _record(self, outcome: str, err: Any = None, msg: str = "") -> None:
        # The worst outcome wins: error > failed > skipped > passed.
        rank = {"passed": 0, "skipped": 1, "failed": 2, "error": 3}
        if rank[outcome] < rank[self._outcome]:
            return
        self._outcome = outcome
        if err is not None:
            self._msg, self._tb = _error_text(err)
        else:
            self._msg = msg[:500]

    def _is_fixture(self, test: Any) -> bool:
        return not isinstance(test, unittest.TestCase) or isinstance(
            test, unittest.suite._ErrorHolder)  # type: ignore[attr-defined]

    def addError(self, test: Any, err: Any) -> None:
        super().addError(test, err)
        if self._is_fixture(test):
            msg, tb = _error_text(err)
            self.emit("fixture", id=str(test), msg=msg, tb=tb)
            return
        self._record("error", err)

    def addFailure(self, test: unittest.TestCase, err: Any) -> None:
        super().addFailure(test, err)
        self._record("failed", err)

    def addSkip(self, test: Any, reason: str) -> None:
        super().addSkip(test, reason)
        if self._is_fixture(test):
            self.emit("fixture", id=str(test), msg=f"skipped: {reason}", tb="", skipped=True)
            return
        self._record("skipped", msg=reason)

    def addSubTest(self, test: unittest.TestCase, subtest: Any, err: Any) -> None:
        super().addSubTest(test, subtest, err)
        if err is not None:
            failed = issubclass(err[0], test.failureException)
            self._record("failed" if failed else "error", err)

    def addExpectedFailure(self, test: unittest.TestCase, err: Any) -> None:
        super().addExpectedFailure(test, err)
        self._record("passed", msg="expected failure")

    def addUnexpectedSuccess(self, test: unittest.TestCase) -> None:
        super().addUnexpectedSuccess(test)
        self._record("failed", msg="unexpected success of an expectedFailure test")


def _cases(suite: unittest.TestSuite) -> list[unittest.TestCase]:
    """The test cases of a flat suite, as ``loadTestsFromTestCase`` returns it."""
    return [test for test in suite if isinstance(test, unittest.TestCase)]


def collect(spec: selection.ModuleSpec, module: Any, factory: substitute.LoopFactory
            ) -> tuple[list[unittest.TestCase], set[str], list[dict[str, str]]]:
    """All tests of the module's selection, the ids of hook-class tests, and a description."""
    loader = unittest.TestLoader()
    tests: list[unittest.TestCase] = []
    hook_ids: set[str] = set()
    described: list[dict[str, str]] = []
    for hook in spec.hooks:
        bases = selection.hook_bases(hook, module)
        if bases is None:
            continue
        cls = substitute.hook_class(hook.name, bases, hook.method, module.__name__, factory,
                                    hook.adapt)
        found = _cases(loader.loadTestsFromTestCase(cls))
        tests.extend(found)
        hook_ids.update(short_id(t) for t in found)
        described.append({"class": hook.name, "kind": "hook",
                          "how": f"{'+'.join(hook.bases)}; {hook.method}() -> loop under test"
                                 + (f" ({hook.note})" if hook.note else ""),
                          "tests": str(len(found))})
    for cls in selection.policy_classes(spec, module):
        found = _cases(loader.loadTestsFromTestCase(cls))
        tests.extend(found)
        described.append({"class": cls.__name__, "kind": "policy",
                          "how": "default policy's new_event_loop() -> loop under test",
                          "tests": str(len(found))})
    return tests, hook_ids, described


def subset_patterns(module: str) -> list[str] | None:
    """The ``--subset`` globs for ``module`` (``[]`` = all of it; ``None`` = not in the subset)."""
    for entry in selection.SUBSET:
        if entry.module == module:
            return list(entry.patterns)
    return None


def _read_ids(path: str | None) -> set[str]:
    if not path:
        return set()
    return {line.strip() for line in Path(path).read_text().splitlines() if line.strip()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.conformance.child")
    parser.add_argument("--module", required=True)
    parser.add_argument("--loop", required=True, choices=loops.LOOP_NAMES)
    parser.add_argument("--events", required=True)
    parser.add_argument("--traceback-file", required=True)
    parser.add_argument("--timeout", type=float, default=30.0)
    parser.add_argument("--skip-file", help="ids already reported by an earlier child")
    parser.add_argument("--only-file", help="run only these ids")
    parser.add_argument("-k", dest="patterns", action="append", default=[])
    parser.add_argument("--subset", action="store_true")
    args = parser.parse_args(argv)

    with open(args.events, "a", encoding="utf-8") as events, \
            open(args.traceback_file, "a", encoding="utf-8") as tb_file:
        emit = Emitter(events)
        spec = selection.BY_NAME.get(args.module)
        if spec is None:
            emit("fatal", msg=f"module {args.module!r} is not in the selection")
            return 2
        try:
            factory = loops.loop_factory(args.loop, substitute.STDLIB_FACTORY)
            patched = substitute.install(factory)
            module = importlib.import_module(f"{selection.PACKAGE}.{args.module}")
            tests, hook_ids, described = collect(spec, module, factory)
            exclusions = lists.load(lists.EXCLUSIONS_FILE)
            pending = lists.load(lists.PENDING_FILE)
        except Exception:  # noqa: BLE001 - reported to the driver as a module-level failure
            emit("fatal", msg=traceback.format_exc()[-4000:])
            return 2

        wanted_subset = subset_patterns(args.module) if args.subset else None
        only, skip = _read_ids(args.only_file), _read_ids(args.skip_file)
        plan, to_run = [], []
        for test in tests:
            tid = short_id(test)
            if args.patterns and not lists.k_matches(args.patterns, tid):
                continue
            if only and tid not in only:
                continue
            if args.subset:
                if wanted_subset is None or (wanted_subset and not any(
                        fnmatch.fnmatchcase(tid, p) for p in wanted_subset)):
                    continue
                if lists.find(pending, tid):
                    continue
            excluded = lists.find(exclusions, tid)
            plan.append({"id": tid, "kind": "hook" if tid in hook_ids else "policy",
                         "excluded": excluded.reason if excluded else None})
            if excluded is None and tid not in skip:
                to_run.append(test)
        if not skip:
            emit("plan", tests=plan, classes=described, patched=patched,
                 loop=loops.describe(args.loop), python=sys.version.split()[0])

        result = EventResult(emit, args.timeout, tb_file)
        result._arm()
        try:
            unittest.TestSuite(to_run).run(result)
        finally:
            faulthandler.cancel_dump_traceback_later()
        emit("done")
    sys.stdout.flush()
    sys.stderr.flush()
    # Leftover non-daemon threads of a broken test must not hang the exit.
    os._exit(0)


if __name__ == "__main__":
    sys.exit(main())
