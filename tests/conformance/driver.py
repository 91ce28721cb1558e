"""Run test modules in child processes; turn hangs and crashes into recorded failures.

For one (loop, module) pair the driver starts :mod:`tests.conformance.child`, reads its events,
and when the child dies in the middle of a test (watchdog timeout or crash) records that test
as ``timeout``/``crash`` and starts a new child that skips every test already reported.  A
whole-module wall-clock limit bounds the total; tests not reached by then are ``notrun``.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[2]

#: Outcomes a test can end with.
OUTCOMES = ("passed", "failed", "error", "skipped", "timeout", "crash", "notrun")


@dataclass
class TestRecord:
    """What happened to one test on one loop."""

    outcome: str
    msg: str = ""
    tb: str = ""
    touched: int = 0
    dur: float = 0.0
    kind: str = "policy"
    excluded: str | None = None

    @property
    def applicable(self) -> bool:
        """Ran on the loop under test: not excluded, and a hook test or one that built a loop."""
        if self.excluded:
            return False
        if self.outcome in ("timeout", "crash", "notrun"):
            return True
        return self.kind == "hook" or self.touched > 0

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"outcome": self.outcome, "applicable": self.applicable}
        if self.excluded:
            data["excluded"] = self.excluded
        if self.msg:
            data["msg"] = self.msg
        if self.tb and self.outcome not in ("passed", "skipped"):
            data["tb"] = self.tb
        if self.touched:
            data["touched"] = self.touched
        if self.dur >= 0.5:
            data["dur"] = self.dur
        return data


@dataclass
class ModuleResult:
    """All tests of one module on one loop, plus module-level problems."""

    module: str
    loop: str
    tests: dict[str, TestRecord] = field(default_factory=dict)
    classes: list[dict[str, str]] = field(default_factory=list)
    fixtures: list[dict[str, Any]] = field(default_factory=list)
    fatal: str = ""
    wall_timeout: bool = False
    restarts: int = 0
    seconds: float = 0.0


@dataclass
class RunOptions:
    """How children are run."""

    test_timeout: float = 30.0
    module_timeout: float = 900.0
    patterns: list[str] = field(default_factory=list)
    subset: bool = False
    only: list[str] = field(default_factory=list)
    python: str = sys.executable
    keep_logs: Path | None = None


def _read_events(path: Path) -> list[dict[str, Any]]:
    events = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            events.append(json.loads(line))
        except json.JSONDecodeError:
            continue  # a line cut short by a kill
    return events


def _traceback_head(path: Path, limit: int = 25) -> str:
    """The main thread's stack from a faulthandler dump, innermost frames last."""
    text = path.read_text(encoding="utf-8", errors="replace")
    if not text.strip():
        return ""
    blocks = text.split("\n\n")
    main = next((b for b in blocks if "Current thread" in b or "most recent call first" in b),
                blocks[-1])
    lines = main.strip().splitlines()
    return "\n".join(lines[:limit])


def _kill(proc: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()


def run_module(module: str, loop: str, options: RunOptions) -> ModuleResult:
    """Run one module on one loop, resuming after each hang or crash."""
    result = ModuleResult(module, loop)
    started = time.monotonic()
    deadline = started + options.module_timeout
    planned: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix=f"conformance-{module}-{loop}-") as tmp:
        tmpdir = Path(tmp)
        skip_file, only_file = tmpdir / "skip.txt", tmpdir / "only.txt"
        if options.only:
            only_file.write_text("\n".join(options.only) + "\n")
        while True:
            events_file = tmpdir / f"events{result.restarts}.jsonl"
            tb_file = tmpdir / f"traceback{result.restarts}.txt"
            log_file = tmpdir / f"output{result.restarts}.log"
            skip_file.write_text("".join(f"{tid}\n" for tid in result.tests))
            cmd = [options.python, "-m", "tests.conformance.child", "--module", module,
                   "--loop", loop, "--events", str(events_file), "--traceback-file", str(tb_file),
                   "--timeout", str(options.test_timeout), "--skip-file", str(skip_file)]
            if options.only:
                cmd += ["--only-file", str(only_file)]
            if options.subset:
                cmd.append("--subset")
            for pattern in options.patterns:
                cmd += ["-k", pattern]
            env = dict(os.environ, PYTHONFAULTHANDLER="1", PYTHONUNBUFFERED="1")
            env.pop("PYTHONASYNCIODEBUG", None)
            with open(log_file, "wb") as log:
                proc = subprocess.Popen(cmd, cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT,
                                        stdin=subprocess.DEVNULL, env=env,
                                        start_new_session=True)
                try:
                    returncode = proc.wait(timeout=max(1.0, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    _kill(proc)
                    returncode = None
                    result.wall_timeout = True
            progress = _absorb(result, _read_events(events_file), planned, tb_file, log_file,
                               returncode)
            if options.keep_logs is not None:
                _keep(options.keep_logs, module, loop, result.restarts, log_file, tb_file)
            if result.fatal or result.wall_timeout or returncode == 0 or not progress:
                break
            result.restarts += 1
    by_id = {entry["id"]: entry for entry in planned}
    for tid, entry in by_id.items():
        record = result.tests.get(tid)
        if record is None:
            if entry.get("excluded"):
                record = TestRecord("skipped", excluded=entry["excluded"])
            else:
                why = ("module wall-clock limit reached" if result.wall_timeout
                       else _fixture_reason(result) or "never started")
                record = TestRecord("notrun", msg=why)
            result.tests[tid] = record
        record.kind = entry["kind"]
        record.excluded = entry.get("excluded")
    result.seconds = round(time.monotonic() - started, 1)
    return result


def _fixture_reason(result: ModuleResult) -> str:
    errors = [f for f in result.fixtures if not f.get("skipped")]
    return f"fixture error: {errors[0]['id']}: {errors[0]['msg']}" if errors else ""


def _absorb(result: ModuleResult, events: list[dict[str, Any]], planned: list[dict[str, Any]],
            tb_file: Path, log_file: Path, returncode: int | None) -> bool:
    """Fold one child's events into ``result``; return whether the child made progress."""
    progress = False
    running: str | None = None
    for event in events:
        kind = event["ev"]
        if kind == "plan":
            planned[:] = event["tests"]
            result.classes = event["classes"]
        elif kind == "start":
            running = event["id"]
            progress = True
        elif kind == "end":
            running = None
            result.tests[event["id"]] = TestRecord(
                event["outcome"], event.get("msg", ""), event.get("tb", ""),
                event.get("touched", 0), event.get("dur", 0.0))
        elif kind == "fixture":
            fixture: dict[str, Any] = {k: event[k] for k in ("id", "msg", "tb") if k in event}
            if event.get("skipped"):
                fixture["skipped"] = True
            result.fixtures.append(fixture)
        elif kind == "fatal":
            result.fatal = event["msg"]
    if returncode == 0:
        return progress
    if not events and not result.fatal:
        tail = log_file.read_text(errors="replace")[-2000:] if log_file.exists() else ""
        result.fatal = f"child exited with {returncode} before reporting anything\n{tail}"
        return False
    stack = _traceback_head(tb_file)
    timed_out = result.wall_timeout or "Timeout (" in stack
    if running is not None:
        outcome = "timeout" if timed_out else "crash"
        msg = ("hung: watchdog fired" if outcome == "timeout"
               else f"child process died (exit status {returncode})")
        result.tests[running] = TestRecord(outcome, msg, stack)
        return True
    if returncode is not None and not result.fatal:
        result.fixtures.append({"id": "between tests",
                                "msg": "hang or crash in a fixture" if not timed_out
                                else "fixture hung: watchdog fired", "tb": stack})
    return progress


def _keep(dest: Path, module: str, loop: str, attempt: int, *files: Path) -> None:
    dest.mkdir(parents=True, exist_ok=True)
    for path in files:
        if path.exists():
            target = dest / f"{loop}.{module}.{attempt}.{path.name}"
            target.write_bytes(path.read_bytes())


def module_to_json(result: ModuleResult) -> dict[str, Any]:
    """The JSON form of a module's result (counts come from :mod:`tests.conformance.report`)."""
    from .report import counts

    return {
        "counts": counts(result),
        "seconds": result.seconds,
        "restarts": result.restarts,
        "wall_timeout": result.wall_timeout,
        "fatal": result.fatal or None,
        "fixtures": result.fixtures,
        "classes": result.classes,
        "tests": {tid: rec.to_json() for tid, rec in sorted(result.tests.items())},
    }
