"""``python -m benchmarks``: the side-by-side loop comparison (see :mod:`benchmarks.runner`)."""
from __future__ import annotations

import argparse
import datetime as dt
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from benchmarks import charts, machine, report, strace_count, workloads
from benchmarks.loadgen import EchoClient, HttpClient
from benchmarks.loops import (ALL_SUBJECTS, DEFAULT_LOOPS, EDGELOOP_CONFIGS, LoopStatus,
                              baseline_name, check_baseline, probe)
from benchmarks.progress import Progress
from benchmarks.proc import REPO_ROOT, Pinning
from benchmarks.runner import Config, Runner

EPILOG = """\
other command:
  python -m benchmarks fds [--help]   the select/poll/epoll study over N descriptors

The default run (one cell per workload kind, 3 interleaved rounds) takes about two and a half
minutes on a 2-core machine; --full runs the whole matrix (message sizes x connection counts),
--quick is a short smoke run whose numbers mean little.  Results go to --out (default: results/).
"""


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="Compare asyncio event loops (asyncio, uvloop, edgeloop edge/level, rloop) "
                    "on echo, HTTP and in-process workloads, against two reference echo servers "
                    "without asyncio: raw-python (pure-Python epoll) and raw-c (C epoll).",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--loops", default=",".join(DEFAULT_LOOPS),
                   help="comma-separated loops to compare (default: %(default)s; the ones not "
                        "installed are skipped with a note; raw-python and raw-c are the "
                        "reference echo servers, run in the protocol echo workloads only)")
    p.add_argument("--full", action="store_true",
                      help="the whole matrix: 1/10/100 KiB x 10/100 connections per echo kind")
    p.add_argument("--quick", action="store_true",
                   help="smoke run: 2 rounds of 0.3 s (numbers are not meaningful)")
    p.add_argument("-w", "--workload", action="append", metavar="PATTERN",
                   help="only workloads whose name contains PATTERN (repeatable); see --list")
    p.add_argument("--list", action="store_true", help="list the workloads and exit")
    p.add_argument("--rounds", type=int, help="measured rounds per loop (default 3)")
    p.add_argument("--duration", type=float,
                   help="seconds per measured run (default 0.7; wrk uses whole seconds)")
    p.add_argument("--warmup", type=float, help="warm-up seconds per subject (default 0.3)")
    p.add_argument("--no-eof-warmup", action="store_true",
                   help="skip the connections that end in EOF before each server's warm-up "
                        "(only to see what they are for: see benchmarks/README.md)")
    p.add_argument("--strace", action="store_true",
                   help="also count syscalls per request with strace -c -f (untimed pass)")
    p.add_argument("--out", default="results", help="results folder (default: %(default)s)")
    p.add_argument("--no-pin", action="store_true", help="do not pin processes to CPUs")
    p.add_argument("--python-client", action="store_true",
                   help="use the pure-Python echo client even when the C one can be built")
    p.add_argument("--no-charts", action="store_true", help="skip the PNG charts")
    p.add_argument("--baseline", metavar="DIR",
                   help="another checkout of edgeloop (DIR/edgeloop/, e.g. a git worktree of an "
                        "older commit): every edgeloop loop in --loops also runs as LOOP@base "
                        "with edgeloop imported from DIR, in the same interleaved rounds")
    return p.parse_args(argv)


def _git_rev(path: Path) -> str | None:
    """``git describe --always --dirty`` of a checkout (None when it is not a git checkout)."""
    try:
        out = subprocess.run(["git", "-C", str(path), "describe", "--always", "--dirty"],
                             capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    rev = out.stdout.strip()
    return rev if out.returncode == 0 and rev else None


def make_config(args: argparse.Namespace) -> Config:
    cfg = Config()
    if args.quick:
        cfg = Config(rounds=2, duration=0.3, warmup=0.2, client_warmup=0.05, strace_duration=0.5)
    if args.rounds:
        cfg.rounds = args.rounds
    if args.duration:
        cfg.duration = args.duration
    if args.warmup is not None:
        cfg.warmup = args.warmup
    cfg.strace = args.strace
    if args.no_eof_warmup:
        cfg.eof_warmup = 0
    return cfg


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    chosen = workloads.full_set() if args.full else workloads.default_set()
    chosen = workloads.select(chosen, args.workload)
    if args.list:
        for w in chosen:
            print(f"{w.name:30s} {w.unit}")
        return 0
    if not chosen:
        print("no workload matches", file=sys.stderr)
        return 2
    wanted = [x.strip() for x in args.loops.split(",") if x.strip()]
    unknown = [x for x in wanted if x not in ALL_SUBJECTS]
    if unknown:
        print(f"unknown loop(s): {', '.join(unknown)}", file=sys.stderr)
        return 2
    baseline = None
    subjects = wanted
    if args.baseline is not None:
        try:
            baseline = check_baseline(args.baseline)
        except ValueError as exc:
            print(exc, file=sys.stderr)
            return 2
        if not any(x in EDGELOOP_CONFIGS for x in wanted):
            print(f"--baseline needs an edgeloop loop in --loops ({', '.join(EDGELOOP_CONFIGS)})",
                  file=sys.stderr)
            return 2
        # each baseline subject runs right after its twin in every round
        subjects = [y for x in wanted
                    for y in ((x, baseline_name(x)) if x in EDGELOOP_CONFIGS else (x,))]

    notes: list[str] = []
    info = machine.describe()
    busy = machine.busy_note(info)
    if busy:
        notes.append(busy)
    print(f"machine: {machine.one_line(info)}", file=sys.stderr)
    with ThreadPoolExecutor(len(subjects)) as pool:
        statuses: list[LoopStatus] = list(pool.map(lambda x: probe(x, baseline=baseline),
                                                   subjects))
    loops = [s.name for s in statuses if s.available]
    for s in statuses:
        if not s.available:
            notes.append(f"{s.name}: skipped, not usable here ({s.reason})")
    if not loops:
        print("no loop is usable", file=sys.stderr)
        return 1
    cfg = make_config(args)
    pinning = Pinning.detect(not args.no_pin)
    echo = EchoClient(pinning, force_python=args.python_client)
    if echo.bottleneck_note:
        notes.append(echo.bottleneck_note)
    http = HttpClient(pinning)
    if http.wrk is None and any(w.family == "http" for w in chosen):
        notes.append("http: skipped, wrk is not installed")
        chosen = [w for w in chosen if w.family != "http"]
    if cfg.strace and not strace_count.available():
        notes.append("--strace: strace is not installed, no syscall counts")
        cfg.strace = False
    if not pinning.pinned:
        notes.append(f"CPU pinning: {pinning.describe()}")
    for n in notes:
        print(f"note: {n}", file=sys.stderr)

    progress = Progress(0)
    runner = Runner(loops, cfg, pinning, echo, http, progress, baseline)
    progress.total = runner.steps(chosen)
    started = time.monotonic()
    cells = runner.run(chosen)
    progress.close()
    elapsed = time.monotonic() - started
    info["loadavg_at_end"] = machine.loadavg()

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    table = report.comparison_table(cells)
    ctable = report.counters_table(cells)
    btable = report.baseline_table(cells)
    rtable = report.ceiling_table(cells)
    failures = report.failures(cells)
    base_meta = None
    if baseline is not None:
        base_meta = {"dir": str(baseline), "rev": _git_rev(baseline),
                     "tree": str(REPO_ROOT), "tree_rev": _git_rev(REPO_ROOT)}
    header = [f"# Event loop comparison ({dt.datetime.now().isoformat(timespec='seconds')})", "",
              f"- machine: {machine.one_line(info)}",
              f"- pinning: {pinning.describe()}",
              f"- echo client: {echo.kind}; http client: wrk -t1",
              f"- {cfg.rounds} interleaved rounds of {cfg.duration} s per loop after "
              f"{cfg.warmup} s warm-up (servers: after {cfg.eof_warmup} connections ending in "
              f"EOF); median (min, max) of the rounds; {elapsed:.0f} s total",
              *([f"- baseline: `LOOP@base` imports edgeloop from {base_meta['dir']} "
                 f"({base_meta['rev'] or 'not a git checkout'}); the other loops from "
                 f"{base_meta['tree']} ({base_meta['tree_rev'] or 'not a git checkout'})"]
                if base_meta else []),
              *[f"- note: {n}" for n in notes], ""]
    md = "\n".join(header) + "\n" + table + "\n"
    if failures:
        md += "\nFailed cells (the loop could not run the workload):\n\n" + failures + "\n"
    if rtable:
        md += ("\nDistance from the ceilings (echo cells; a loop's median / the reference "
               "server's median): " + report.ceiling_caption(cells) + "\n\n")
        md += rtable + "\n"
    if btable:
        md += ("\nAgainst the baseline (`LOOP` / `LOOP@base`: ratio of medians, and the range of "
               "the per-round ratios; above 1.00 this tree is faster):\n\n")
        md += btable + "\n"
    if ctable:
        md += "\nCounters per request (edgeloop `loop.stats()`; strace where --strace):\n\n"
        md += ctable + "\n"
    print(md)
    meta = {"generated": dt.datetime.now().isoformat(timespec="seconds"), "machine": info,
            "pinning": pinning.describe(), "client": echo.kind,
            "config": cfg.__dict__, "loops": [s.__dict__ for s in statuses], "notes": notes,
            "elapsed_s": elapsed}
    if base_meta is not None:
        meta["baseline"] = base_meta
    report.write_json(out / "compare.json", cells, meta)
    (out / "compare.md").write_text(md)
    written = [out / "compare.json", out / "compare.md"]
    if args.no_charts:
        pass
    elif not charts.have_matplotlib():
        print("note: matplotlib is not installed, charts skipped", file=sys.stderr)
    else:
        for fn, name in ((charts.ratio_chart, "compare_ratio.png"),
                         (charts.counters_chart, "compare_counters.png")):
            path = fn(cells, out / name)
            if path:
                written.append(path)
    print("wrote " + ", ".join(str(p) for p in written), file=sys.stderr)
    failed = [c for c in cells if c.error]
    return 1 if failed and len(failed) == len(cells) else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
