"""``python -m tests.conformance``: options, the run, and what it prints."""
from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path
from typing import Any

from . import lists, loops, report, selection
from .driver import ModuleResult, RunOptions, run_module


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m tests.conformance",
        description="Run CPython's loop-generic test.test_asyncio tests on edgeloop and on the "
                    "stdlib loop, one child process per module.")
    parser.add_argument("--loop", action="append", choices=loops.LOOP_NAMES,
                        help="loop to test (repeatable; default: edge, level, asyncio)")
    parser.add_argument("--module", action="append",
                        help="test module, e.g. test_events or events (repeatable)")
    parser.add_argument("-k", dest="patterns", action="append", default=[],
                        help="only test ids matching this substring or glob (repeatable)")
    parser.add_argument("--subset", action="store_true",
                        help="the bounded CI subset (pending features deselected)")
    parser.add_argument("--list-failures", action="store_true",
                        help="print failing test ids with the first line of the error")
    parser.add_argument("--list-selection", action="store_true",
                        help="print the selected modules and classes, then exit")
    parser.add_argument("--json", type=Path, help="write the results to this file")
    parser.add_argument("--timeout", type=float, default=None,
                        help="per-test watchdog in seconds (default 30; 20 with --subset)")
    parser.add_argument("--module-timeout", type=float, default=900.0,
                        help="wall-clock limit per module and loop, seconds (default 900)")
    parser.add_argument("--check", action="store_true",
                        help="exit 1 if a test that passes on the stdlib loop fails on an "
                             "edgeloop loop (pending.txt features aside), after one re-run")
    parser.add_argument("-j", "--jobs", type=int, default=1,
                        help="child processes at once (default 1; the machine may be shared)")
    parser.add_argument("--keep-logs", type=Path, help="copy child output logs here")
    return parser


def _module_names(args: argparse.Namespace) -> list[str]:
    if args.module:
        names = [m if m.startswith("test_") else f"test_{m}" for m in args.module]
        unknown = [m for m in names if m not in selection.BY_NAME]
        if unknown:
            raise SystemExit(f"not in the selection: {', '.join(unknown)} "
                             f"(known: {', '.join(selection.BY_NAME)})")
    elif args.subset:
        names = [entry.module for entry in selection.SUBSET]
    else:
        names = [spec.name for spec in selection.MODULES]
    if args.subset:
        in_subset = {entry.module for entry in selection.SUBSET}
        names = [m for m in names if m in in_subset]
    return [m for m in names if selection.module_exists(m)]


def print_selection(names: list[str], out: Any, *, unselected: bool = False) -> None:
    out.write("Selected modules (classes are listed per module after the run):\n")
    for name in names:
        spec = selection.BY_NAME[name]
        parts = [f"hook {h.name}({'+'.join(h.bases)}).{h.method}" for h in spec.hooks]
        if spec.policy:
            parts.append("policy " + ", ".join(spec.policy))
        out.write(f"  {name} [{spec.area}]: {'; '.join(parts)}\n")
        if spec.note:
            out.write(f"      note: {spec.note}\n")
    if not unselected:
        return
    out.write("Not selected:\n")
    for name, why in selection.NOT_SELECTED.items():
        out.write(f"  {name}: {why}\n")


def _print_classes(results: dict[str, dict[str, ModuleResult]], out: Any) -> None:
    out.write("\nSelected classes and how the loop under test was substituted:\n")
    seen: set[str] = set()
    for mods in results.values():
        for name, res in mods.items():
            if name in seen or not res.classes:
                continue
            seen.add(name)
            for cls in res.classes:
                out.write(f"  {name}.{cls['class']} [{cls['kind']}, {cls['tests']} tests]: "
                          f"{cls['how']}\n")


def recheck(loop: str, split: dict[str, list[Any]], options: RunOptions,
            reference: dict[str, ModuleResult]) -> list[tuple[str, Any]]:
    """Re-run each regressed test once on ``loop``; return those that fail again."""
    still = []
    by_module: dict[str, list[str]] = {}
    for tid, _rec in split["new"]:
        by_module.setdefault(tid.split(".", 1)[0], []).append(tid)
    for module, ids in by_module.items():
        again = run_module(module, loop, RunOptions(
            options.test_timeout, options.module_timeout, [], False, ids, options.python))
        for tid in ids:
            rec = again.tests.get(tid)
            if rec is None or rec.outcome in report.BAD:
                still.append((tid, rec or reference[module].tests[tid]))
    return still


def _progress(name: str, module: str, res: ModuleResult, out: Any) -> None:
    c = report.counts(res)
    extra = " FATAL" if res.fatal else " WALL-TIMEOUT" if res.wall_timeout else ""
    out.write(f"[{name:>7}] {module:<24} run {c['run']:>4}  pass {c['passed']:>4}  "
              f"fail {c['failed']:>3}  err {c['errors']:>3}  timeout {c['timeout']:>2}"
              f"  ({res.seconds:.0f}s){extra}\n")
    out.flush()


def run_all(names: list[str], chosen: list[str], options: RunOptions, jobs: int,
            out: Any) -> dict[str, dict[str, ModuleResult]]:
    """Every module on every loop, ``jobs`` child processes at a time."""
    pairs = [(module, name) for module in names for name in chosen]
    done: dict[tuple[str, str], ModuleResult] = {}
    if jobs == 1:
        for module, name in pairs:
            done[module, name] = run_module(module, name, options)
            _progress(name, module, done[module, name], out)
    else:
        with ThreadPoolExecutor(jobs) as pool:
            futures = {pool.submit(run_module, module, name, options): (module, name)
                       for module, name in pairs}
            for future in as_completed(futures):
                module, name = futures[future]
                done[module, name] = future.result()
                _progress(name, module, done[module, name], out)
    return {name: {module: done[module, name] for module in names} for name in chosen}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    out = sys.stdout
    names = _module_names(args)
    if args.list_selection:
        print_selection(names, out, unselected=True)
        return 0
    wanted = args.loop or list(loops.DEFAULT_LOOPS)
    chosen = []
    for name in dict.fromkeys(wanted):
        problem = loops.importable(name)
        if problem:
            out.write(f"skipping loop {name}: {problem}\n")
        else:
            chosen.append(name)
    if not chosen:
        out.write("no loop to test\n")
        return 2
    timeout = args.timeout or (20.0 if args.subset else 30.0)
    options = RunOptions(timeout, args.module_timeout, args.patterns, args.subset,
                         python=sys.executable, keep_logs=args.keep_logs)
    out.write(f"Python {platform.python_version()} ({sys.executable})\n")
    for name in chosen:
        out.write(f"loop {name}: {loops.describe(name)}\n")
    print_selection(names, out)
    out.flush()

    started = time.monotonic()
    results = run_all(names, chosen, options, max(1, args.jobs), out)
    _print_classes(results, out)
    for name in chosen:
        report.print_table(name, list(results[name].values()), out)

    pending = lists.load(lists.PENDING_FILE)
    status = 0
    comparison: dict[str, Any] = {}
    if loops.REFERENCE in results and len(chosen) > 1:
        out.write("\nCompared with the stdlib loop (tests that pass there):\n")
        for name in chosen:
            if name == loops.REFERENCE:
                continue
            split = report.regressions(results[loops.REFERENCE], results[name], pending)
            line = (f"  {name}: {len(split['new'])} fail here"
                    f" (+{len(split['pending'])} in pending features)")
            if args.check and split["new"]:
                still = recheck(name, split, options, results[loops.REFERENCE])
                still_ids = {tid for tid, _ in still}
                flaky = [tid for tid, _ in split["new"] if tid not in still_ids]
                line += f"; after a re-run {len(still)} still fail ({len(flaky)} flaky"
                line += f": {', '.join(flaky)})" if flaky else ")"
                split["new"] = still
                if still and name in loops.EDGELOOP_CONFIGS:
                    status = 1
            out.write(line + "\n")
            comparison[name] = {k: [tid for tid, _ in v] for k, v in split.items()}
            if args.check:
                for tid, rec in split["new"]:
                    out.write(f"    {tid}: {rec.outcome.upper()}: {rec.msg}\n")
    if args.list_failures:
        for name in chosen:
            report.print_failures(name, list(results[name].values()), out, pending)
    out.write(f"\nfinished in {time.monotonic() - started:.0f}s\n")
    if args.json:
        data = {
            "python": platform.python_version(),
            "executable": sys.executable,
            "loops": {name: loops.describe(name) for name in chosen},
            "options": {"modules": names, "patterns": args.patterns, "subset": args.subset,
                        "test_timeout": timeout, "module_timeout": args.module_timeout},
            "results": report.results_to_json(results),
            "compared_with_asyncio": comparison,
        }
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(data, indent=1, sort_keys=False) + "\n")
        out.write(f"wrote {args.json}\n")
    return status
