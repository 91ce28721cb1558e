"""Turning cells into the Markdown tables printed on stdout and the JSON kept in the results folder.

Ratios compare medians from the same run: ``vs asyncio`` is ``median(loop) / median(asyncio)`` and
``vs uvloop`` is ``median(loop) / median(uvloop)``; above 1.00 means faster.  With ``--baseline``
a further table sets each edgeloop loop against the same loop from the baseline checkout
(``edge`` / ``edge@base``).  In the echo cells the ceiling table sets every loop against the
reference servers, ``vs raw-python`` and ``vs raw-c`` (at most 1.00 for a pure-Python loop
against raw-python, and for a native one against raw-c, up to noise); the references come from
the same rounds in the protocol cells, and from the protocol cell of the same transport, size and
connections in the streams and sock cells.  A cell that failed is listed with its reason.  Every
number is generated from the samples; nothing here is typed by hand.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from benchmarks.loops import REFERENCE_SERVERS, baseline_name, is_baseline
from benchmarks.runner import Cell


def _fmt_rate(x: float | None) -> str:
    if x is None:
        return "-"
    if x >= 1e6:
        return f"{x / 1e6:.2f}M"
    if x >= 1e4:
        return f"{x / 1e3:.1f}k"
    if x >= 1e3:
        return f"{x / 1e3:.2f}k"
    return f"{x:.0f}"


def _ratio(cell: Cell, ref: Cell | None) -> str:
    a, b = cell.summary, ref.summary if ref else None
    if a is None or b is None or b.median == 0:
        return "-"
    return f"{a.median / b.median:.2f}"


def _by_workload(cells: list[Cell]) -> dict[str, list[Cell]]:
    out: dict[str, list[Cell]] = {}
    for c in cells:
        out.setdefault(c.workload.name, []).append(c)
    return out


def comparison_table(cells: list[Cell]) -> str:
    lines = ["| workload | loop | median | min | max | unit | vs asyncio | vs uvloop | p99 latency |",
             "|---|---|---:|---:|---:|---|---:|---:|---:|"]
    for name, group in _by_workload(cells).items():
        refs = {c.loop: c for c in group}
        for c in group:
            s = c.summary
            if s is None:
                lines.append(f"| {name} | {c.loop} | failed (see below) | | | | | | |")
                continue
            p99 = Cell.to_json(c)["latency_p99_us_median"]
            lat = "-" if p99 is None else (f"{p99 / 1000:.2f} ms" if p99 >= 1000
                                           else f"{p99:.0f} us")
            lines.append(f"| {name} | {c.loop} | {_fmt_rate(s.median)} | {_fmt_rate(s.min)} | "
                         f"{_fmt_rate(s.max)} | {c.workload.unit} | "
                         f"{_ratio(c, refs.get('asyncio'))} | {_ratio(c, refs.get('uvloop'))} | "
                         f"{lat} |")
    return "\n".join(lines)


CEILING_SENTENCE = ("raw-python, a minimal pure-Python epoll echo server with no asyncio, bounds "
                    "any pure-Python loop (asyncio, edge, level), and raw-c, the same server in "
                    "C, bounds native loops (uvloop, rloop).")
CEILING_SOURCE = ("The reference servers run in the protocol cells; a streams or sock cell takes "
                  "its ceilings from the protocol cell of the same transport, message size and "
                  "connection count (column `ceilings from`).")
CEILING_LARGE = ("The raw servers read 64 KiB at a time, so the bounds hold for messages that fit "
                 "one read: with larger messages a loop that reads more at a time (asyncio's "
                 "selector loop reads 256 KiB) makes fewer syscalls per request and can beat "
                 "them.")


def ceiling_caption(cells: list[Cell]) -> str:
    """What the ceiling table compares, with the large-message caveat when a cell needs it."""
    large = any(c.workload.family == "echo" and c.workload.size > 64 * 1024 for c in cells)
    return " ".join([CEILING_SENTENCE, CEILING_SOURCE] + ([CEILING_LARGE] if large else []))


def _ceiling_key(c: Cell) -> tuple[str, int, int]:
    return (c.workload.transport, c.workload.size, c.workload.conns)


def ceiling_table(cells: list[Cell]) -> str | None:
    """Every loop of an echo cell against the reference servers: the ratio of the medians
    (``vs raw-python``, ``vs raw-c``).  The references come from the same cell when they ran in
    it, else from the ``protocol`` cell with the same transport, size and connections.  None when
    no reference server ran."""
    refs: dict[tuple[str, int, int], tuple[str, dict[str, Cell]]] = {}
    for name, group in _by_workload(cells).items():
        found = {c.loop: c for c in group if c.loop in REFERENCE_SERVERS and c.summary}
        if found and group[0].workload.family == "echo":
            refs.setdefault(_ceiling_key(group[0]), (name, found))
    rows = []
    for name, group in _by_workload(cells).items():
        if group[0].workload.family != "echo" or _ceiling_key(group[0]) not in refs:
            continue
        source, ref = refs[_ceiling_key(group[0])]
        for c in group:
            s = c.summary
            med = "failed" if s is None else _fmt_rate(s.median)
            ratios = " | ".join("-" if s is None else _ratio(c, ref.get(r))
                                for r in REFERENCE_SERVERS)
            rows.append(f"| {name} | {c.loop} | {med} | {c.workload.unit} | {ratios} | "
                        f"{'same' if source == name else source} |")
    if not rows:
        return None
    head = ["| workload | loop | median | unit | " + " | ".join(f"vs {r}" for r in REFERENCE_SERVERS)
            + " | ceilings from |", "|---|---|---:|---|" + "---:|" * len(REFERENCE_SERVERS) + "---|"]
    return "\n".join(head + rows)


def failures(cells: list[Cell]) -> str | None:
    """One line per failed cell with its reason (None when none failed)."""
    lines = [f"- {c.workload.name} on {c.loop}: {c.error}" for c in cells if c.error]
    return "\n".join(lines) if lines else None


def baseline_table(cells: list[Cell]) -> str | None:
    """Each loop against its ``@base`` twin from the same run: the ratio of the medians, and the
    range of the round-by-round ratios (the two ran next to each other in every round).  None when
    there is no baseline subject."""
    rows = []
    for name, group in _by_workload(cells).items():
        refs = {c.loop: c for c in group}
        for c in group:
            base = refs.get(baseline_name(c.loop))
            if is_baseline(c.loop) or base is None:
                continue
            a, b = c.summary, base.summary
            paired = "-"
            if a and b and len(c.samples) == len(base.samples) and all(base.samples):
                r = [x / y for x, y in zip(c.samples, base.samples)]
                paired = f"{min(r):.2f}..{max(r):.2f}"
            rows.append(f"| {name} | {c.loop} | {_fmt_rate(a.median if a else None)} | "
                        f"{_fmt_rate(b.median if b else None)} | {c.workload.unit} | "
                        f"{_ratio(c, base)} | {paired} |")
    if not rows:
        return None
    head = ["| workload | loop | median | baseline median | unit | vs baseline | "
            "rounds vs baseline (min..max) |",
            "|---|---|---:|---:|---|---:|---:|"]
    return "\n".join(head + rows)


def counters_table(cells: list[Cell]) -> str | None:
    """edgeloop counters per request, and strace syscalls per request where traced."""
    rows = []
    for c in cells:
        per = c.to_json()["counters_per_request"]
        st = c.strace
        if per is None and st is None:
            continue

        def f(key: str) -> str:
            return "-" if per is None or key not in per else f"{per[key]:.2f}"

        traced = "-" if not st or st.get("per_request") is None else f"{st['per_request']:.2f}"
        top = "" if not st else ", ".join(f"{k} {v:.2f}" for k, v in
                                          list(st["top_per_request"].items())[:4])
        rows.append(f"| {c.workload.name} | {c.loop} | {f('wakeups')} | {f('syscalls')} | "
                    f"{f('ctl')} | {f('reads')} | {f('eagain')} | {f('writes')} | "
                    f"{f('cutoffs')} | {traced} | {top} |")
    if not rows:
        return None
    head = ["| workload | loop | wake-ups/req | syscalls~/req | ctl/req | reads/req | eagain/req |"
            " writes/req | cutoffs/req | strace syscalls/req | strace top calls/req |",
            "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    return "\n".join(head + rows)


def write_json(path: Path, cells: list[Cell], meta: dict[str, Any]) -> None:
    path.write_text(json.dumps({**meta, "results": [c.to_json() for c in cells]}, indent=1))
