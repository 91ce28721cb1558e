"""Tables, failure lists and the edgeloop-versus-stdlib comparison."""
from __future__ import annotations

from collections.abc import Iterable
from typing import IO, Any

from . import lists
from .driver import ModuleResult, TestRecord

#: Table columns: count name -> header.
COLUMNS = {"run": "run", "passed": "pass", "failed": "fail", "errors": "error",
           "skipped": "skip", "timeout": "timeout", "excluded": "excl", "na": "n/a"}
BAD = ("failed", "error", "timeout", "crash", "notrun")


def counts(result: ModuleResult) -> dict[str, int]:
    """Per-module counts.  ``run`` counts applicable tests only; crashes and tests never reached
    (fixture errors, module wall timeout) count as errors."""
    c = dict.fromkeys(COLUMNS, 0)
    for record in result.tests.values():
        if record.excluded:
            c["excluded"] += 1
        elif not record.applicable:
            c["na"] += 1
        else:
            c["run"] += 1
            c[_column(record)] += 1
    if result.fatal:
        c["errors"] += 1
    return c


def _column(record: TestRecord) -> str:
    return {"passed": "passed", "failed": "failed", "skipped": "skipped",
            "timeout": "timeout"}.get(record.outcome, "errors")


def total(results: Iterable[ModuleResult]) -> dict[str, int]:
    """Column sums over several modules."""
    t = dict.fromkeys(COLUMNS, 0)
    for result in results:
        for key, value in counts(result).items():
            t[key] += value
    return t


def print_table(loop: str, results: list[ModuleResult], out: IO[str]) -> None:
    """One row per module, then the total."""
    width = max([len(r.module) for r in results] + [12])
    header = f"{'module':<{width}} " + " ".join(f"{h:>7}" for h in COLUMNS.values())
    out.write(f"\n== {loop} ==\n{header}   secs\n")
    for result in results:
        c = counts(result)
        flag = " FATAL" if result.fatal else " WALL-TIMEOUT" if result.wall_timeout else ""
        out.write(f"{result.module:<{width}} " + " ".join(f"{c[k]:>7}" for k in COLUMNS)
                  + f" {result.seconds:>6.0f}{flag}\n")
    t = total(results)
    out.write(f"{'TOTAL':<{width}} " + " ".join(f"{t[k]:>7}" for k in COLUMNS) + "\n")


def failures(result: ModuleResult) -> list[tuple[str, TestRecord]]:
    """Applicable tests that did not pass or skip."""
    return [(tid, rec) for tid, rec in sorted(result.tests.items())
            if rec.applicable and rec.outcome in BAD]


def print_failures(loop: str, results: list[ModuleResult], out: IO[str],
                   pending: list[lists.Entry]) -> None:
    """Failing test ids with the first line of the error (``--list-failures``)."""
    out.write(f"\n-- failures on {loop} --\n")
    for result in results:
        if result.fatal:
            out.write(f"{result.module}: FATAL {result.fatal.strip().splitlines()[-1]}\n")
        for fixture in result.fixtures:
            if not fixture.get("skipped"):
                out.write(f"{result.module}: fixture {fixture['id']}: {fixture['msg']}\n")
        for tid, rec in failures(result):
            tag = lists.find(pending, tid)
            note = f" [pending: {tag.reason}]" if tag else ""
            out.write(f"{tid}: {rec.outcome.upper()}: {rec.msg}{note}\n")


def regressions(reference: dict[str, ModuleResult], loop: dict[str, ModuleResult],
                pending: list[lists.Entry]) -> dict[str, list[tuple[str, TestRecord]]]:
    """Tests that pass on the reference loop but not on ``loop``, split by pending or not.

    Returns ``{"new": [...], "pending": [...]}``: "new" holds the ones that count against the
    loop; "pending" those of not-yet-implemented features (pending.txt).
    """
    split: dict[str, list[tuple[str, TestRecord]]] = {"new": [], "pending": []}
    for module, result in loop.items():
        ref = reference.get(module)
        if ref is None:
            continue
        for tid, rec in sorted(result.tests.items()):
            ref_rec = ref.tests.get(tid)
            if ref_rec is None or ref_rec.outcome != "passed" or not rec.applicable:
                continue
            if rec.outcome not in BAD:
                continue
            split["pending" if lists.find(pending, tid) else "new"].append((tid, rec))
    return split


def results_to_json(all_results: dict[str, dict[str, ModuleResult]]) -> dict[str, Any]:
    """``{loop: {"total": counts, "modules": {module: ...}}}``."""
    from .driver import module_to_json

    return {loop: {"total": total(mods.values()),
                   "modules": {name: module_to_json(res) for name, res in mods.items()}}
            for loop, mods in all_results.items()}
