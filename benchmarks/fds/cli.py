"""``python -m benchmarks fds``: the select/poll/epoll study and the Kerrisk-style table."""
from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import time
from pathlib import Path

from benchmarks import machine
from benchmarks.fds import kerrisk, plots
from benchmarks.fds.rlimit import raise_nofile
from benchmarks.fds.study import ALL_SERIES, EDGELOOP_SERIES, RAW_SERIES, Study, as_json
from benchmarks.progress import Progress
from benchmarks.proc import Pinning

DEFAULT_NS = [10, 100, 250, 500, 1000, 2000, 3000, 5000, 7500, 10000]
LONG_NS = [1000, 4000, 7000, 10000, 13000, 16000, 19000, 22000]
LONG_SERIES = ["raw epoll-level", "raw epoll-edge", "edgeloop epoll-level", "edgeloop epoll-edge"]
QUICK_NS = [10, 100, 1000, 2000]
KERRISK_NS = [10, 100, 1000, 10000]


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks fds",
        description="The seed article's study: UDP echo over N watched sockets (10% active, at "
                    "least 10), mean time per request ± sd (Welford) against N, for select, poll, "
                    "epoll level and epoll edge, raw and as edgeloop backends; plus the "
                    "Kerrisk-style table (100,000 monitoring calls, one ready fd among N).",
        epilog="Outputs go to --out: fds.md (tables), fds.json (every sample), fds_rounds.png and "
               "fds_serial.png (fds_long_* with --long).")
    p.add_argument("--long", action="store_true",
                   help="N up to 22,000 with 90%% active, epoll series only (the article's "
                        "second figure)")
    p.add_argument("--quick", action="store_true", help="smoke run: few N, few rounds")
    p.add_argument("--ns", help="comma-separated N values (overrides the defaults)")
    p.add_argument("--active", type=float, help="fraction of sockets active (default 0.1; "
                   "0.9 with --long)")
    p.add_argument("--rounds", "-R", type=int, default=30,
                   help="measured rounds, i.e. requests per active socket (default: %(default)s)")
    p.add_argument("--warmup", "-W", type=int, default=3, help="warm-up rounds, not counted (default: %(default)s)")
    p.add_argument("--series", help="comma-separated series; choose from: " +
                   ", ".join(ALL_SERIES) + " (default: the raw and edgeloop ones)")
    p.add_argument("--mode", choices=("rounds", "serial", "both"), default="both",
                   help="rounds: every active socket has a request in flight at once (the "
                        "article's set-up; one sample per round); serial: one request in flight at "
                        "a time, so each wake-up finds one ready fd among N (one sample per "
                        "request); default: both")
    p.add_argument("--serial-requests", type=int, default=1000,
                   help="serial mode: about this many measured requests per point, R is cut "
                        "(default: %(default)s)")
    p.add_argument("--point-seconds", type=float, default=4.0,
                   help="cap on the measured time of one point (series x N x mode); a capped "
                        "point keeps the samples it has (0: no cap; default: %(default)s)")
    p.add_argument("--api", choices=("auto", "reader", "datagram"), default="auto",
                   help="how event loops watch the sockets: add_reader or datagram endpoints "
                        "(default auto: datagram endpoints when the loop has them)")
    p.add_argument("--no-kerrisk", action="store_true", help="skip the Kerrisk-style table")
    p.add_argument("--out", default="results", help="results folder (default: %(default)s)")
    p.add_argument("--no-pin", action="store_true", help="do not pin client and server to CPUs")
    return p.parse_args(argv)


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    if args.ns:
        ns = [int(x) for x in args.ns.split(",") if x.strip()]
    else:
        ns = LONG_NS if args.long else QUICK_NS if args.quick else DEFAULT_NS
    fraction = args.active if args.active is not None else (0.9 if args.long else 0.1)
    if args.series:
        series = [s.strip() for s in args.series.split(",") if s.strip()]
        bad = [s for s in series if s not in ALL_SERIES]
        if bad:
            print(f"unknown series: {', '.join(bad)}", file=sys.stderr)
            return 2
    else:
        series = LONG_SERIES if args.long else RAW_SERIES + EDGELOOP_SERIES
    rounds, warmup = (5, 1) if args.quick else (args.rounds, args.warmup)
    kerrisk_ns = [10, 100, 1000] if args.quick else KERRISK_NS

    limit = raise_nofile(max(ns + kerrisk_ns) + 256)
    notes: list[str] = []
    fit = [n for n in ns if n + 64 <= limit]
    if len(fit) < len(ns):
        cap = (limit - 64) // 100 * 100
        if cap > max(fit, default=0):
            fit.append(cap)
        notes.append(f"RLIMIT_NOFILE cannot go above {limit} here: N above {limit - 64} "
                     f"skipped, largest N run is {max(fit, default=0)}")
        ns = fit
    info = machine.describe()
    busy = machine.busy_note(info)
    if busy:
        notes.append(busy)
    pinning = Pinning.detect(not args.no_pin)
    print(f"machine: {machine.one_line(info)}", file=sys.stderr)
    modes = ["rounds", "serial"] if args.mode == "both" else [args.mode]
    progress = Progress(len(modes) * len(ns) * len(series) + (0 if args.no_kerrisk else 1))
    started = time.monotonic()
    study = Study(series, args.api, rounds, warmup, pinning, progress, args.serial_requests,
                  args.point_seconds or None)
    points = as_json(study.run(modes, ns, fraction))
    rows: list[dict[str, object]] = []
    if not args.no_kerrisk:
        progress.step("Kerrisk table", 0)
        rows = kerrisk.table([n for n in kerrisk_ns if n + 64 <= limit],
                             budget=0.15 if args.quick else 0.5)
        progress.step("Kerrisk table")
    progress.close()
    notes += study.notes
    elapsed = time.monotonic() - started
    info["loadavg_at_end"] = machine.loadavg()

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = "fds_long" if args.long else "fds"
    md = render(points, rows, info, pinning, fraction, rounds, warmup, notes, elapsed)
    print(md)
    (out / f"{stem}.md").write_text(md)
    (out / f"{stem}.json").write_text(json.dumps({
        "generated": dt.datetime.now().isoformat(timespec="seconds"), "machine": info,
        "pinning": pinning.describe(), "active_fraction": fraction, "rounds": rounds,
        "warmup": warmup, "serial_requests": args.serial_requests,
        "point_seconds": args.point_seconds, "api": args.api, "notes": notes, "elapsed_s": elapsed,
        "points": points, "kerrisk": rows}, indent=1))
    written = [out / f"{stem}.md", out / f"{stem}.json"]
    try:
        for mode in modes:
            how = (f"all active in flight, {rounds} rounds after {warmup} warm-up" if
                   mode == "rounds" else "one request in flight at a time")
            title = (f"UDP echo, {fraction:.0%} of N sockets active (min 10), {how}\n"
                     f"{info['cpu']}, Linux {info['kernel']}, Python {info['python']}")
            png = plots.plot([p for p in points if p["mode"] == mode],
                             out / f"{stem}_{mode}.png", title)
            if png:
                written.append(png)
    except ImportError:
        print("note: matplotlib is not installed, plots skipped", file=sys.stderr)
    print("wrote " + ", ".join(map(str, written)), file=sys.stderr)
    return 0


def render(points: list[dict[str, object]], rows: list[dict[str, object]], info: dict[str, object],
           pinning: Pinning, fraction: float, rounds: int, warmup: int, notes: list[str],
           elapsed: float) -> str:
    head = [f"# select/poll/epoll over N sockets ({dt.datetime.now().isoformat(timespec='seconds')})",
            "", f"- machine: {machine.one_line(info)}", f"- pinning: {pinning.describe()}",
            f"- {fraction:.0%} of N active (at least 10), {rounds} measured rounds after {warmup} "
            f"warm-up (serial mode and points capped in time: fewer, see `n` in the JSON); mean ± sd "
            f"(Welford, Bessel) of time per request in µs; {elapsed:.0f} s",
            *[f"- note: {n}" for n in notes], ""]
    apis = {str(p["series"]): p["api"] for p in points if p["api"] and p["api"] != "raw"}
    if apis:
        head.insert(-1, "- event loops watched the sockets with: " +
                    ", ".join(f"{s} {a}" for s, a in apis.items()) +
                    " (datagram = create_datagram_endpoint, reader = add_reader)")
    md = "\n".join(head)
    for mode in dict.fromkeys(str(p["mode"]) for p in points):
        what = ("all active sockets in flight at once, one sample per round" if mode == "rounds"
                else "one request in flight at a time, one sample per request")
        md += f"\n## {mode}: {what}\n\n"
        md += mode_table([p for p in points if p["mode"] == mode]) + "\n"
    if rows:
        md += ("\nSeconds for 100,000 monitoring operations, one ready fd among N (this machine, "
               "from Python; TLPI = Kerrisk's table from the article):\n\n")
        md += kerrisk.markdown(rows) + "\n"
    return md


def mode_table(points: list[dict[str, object]]) -> str:
    series = list(dict.fromkeys(str(p["series"]) for p in points))
    ns = sorted({int(p["n"]) for p in points})  # type: ignore[call-overload]
    lines = ["| N | active | " + " | ".join(series) + " |",
             "|---:|---:|" + "---:|" * len(series)]
    for n in ns:
        cells = []
        active = "-"
        for s in series:
            p = next((p for p in points if p["series"] == s and p["n"] == n), None)
            if p is None or p["mean_us"] is None:
                cells.append("n/a")
                continue
            active = str(p["active"])
            cells.append(f"{p['mean_us']:.1f} ± {p['stdev_us']:.1f}")
        lines.append(f"| {n} | {active} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
