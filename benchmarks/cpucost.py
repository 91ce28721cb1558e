"""CPU time per request of the protocol echo servers, split into user and kernel time.

    python -m benchmarks.cpucost [--transport unix|tcp] [--rounds 5] [--seconds 2]
                                 [--loops raw-python,edge,uvloop] [--baseline DIR]

Throughput says which server is faster; where its time goes needs the server's own CPU time.
Each server runs pinned to one CPU, the C echo client (10 connections, 1 KiB) on the other; the
servers are warmed up (connections that end in EOF, then a second of load), then measured in
interleaved rounds: the server's utime and stime (``/proc/PID/stat``, clock ticks) over a
round divided by the requests the client completed in it.  User time is the interpreter (and,
for uvloop, its C code); kernel time is the socket and epoll work.  Medians of the rounds.

``--baseline DIR`` adds ``edge@base``: the edge server with edgeloop imported from ``DIR`` (a
``git worktree`` of another commit), as in ``python -m benchmarks --baseline``.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

from benchmarks.loadgen import build_echoload
from benchmarks.proc import Pinning

SERVERS = {
    "raw-python": ["-m", "benchmarks.rawecho"],
    "edge": ["-m", "benchmarks.server", "--loop", "edge", "--kind", "protocol"],
    "level": ["-m", "benchmarks.server", "--loop", "level", "--kind", "protocol"],
    "asyncio": ["-m", "benchmarks.server", "--loop", "asyncio", "--kind", "protocol"],
    "uvloop": ["-m", "benchmarks.server", "--loop", "uvloop", "--kind", "protocol"],
}
_TICK = os.sysconf("SC_CLK_TCK")


def _cpu_seconds(pid: int) -> tuple[float, float]:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) / _TICK, int(fields[12]) / _TICK  # utime, stime


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m benchmarks.cpucost", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--transport", choices=("unix", "tcp"), default="unix")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--seconds", type=float, default=2.0, help="per measured round")
    p.add_argument("--loops", default="raw-python,edge,uvloop")
    p.add_argument("--baseline", help="another checkout: also run its edge server as edge@base")
    args = p.parse_args(argv)
    client, reason = build_echoload()
    if client is None:
        sys.exit(f"the C echo client is needed: {reason}")
    pin = Pinning.detect()
    subjects = {}
    for name in args.loops.split(","):
        if name not in SERVERS:
            sys.exit(f"unknown server {name!r}: choose among {', '.join(SERVERS)}")
        subjects[name] = ([sys.executable, *SERVERS[name]], None)
    if args.baseline:
        subjects["edge@base"] = ([sys.executable, *SERVERS["edge"]], args.baseline)
    tmp = tempfile.mkdtemp(prefix="cpucost-")
    servers = {}

    def run_client(addr: list[str], seconds: float) -> dict:
        argv = pin.load([str(client), "-c", "10", "-s", "1024", "-d", str(seconds), "-w", "0", *addr])
        out = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
        return json.loads(out)

    try:
        for name, (cmd, path) in subjects.items():
            env = dict(os.environ)
            if path:
                env["PYTHONPATH"] = os.path.abspath(path)
            where: list[str] = []
            if args.transport == "unix":
                sock = os.path.join(tmp, name.replace("@", "-") + ".sock")
                where = ["-u", sock] if name == "raw-python" else ["--unix", sock]
            proc = subprocess.Popen(pin.subject(cmd + where), stdout=subprocess.PIPE, text=True,
                                    env=env, cwd=os.path.dirname(os.path.dirname(__file__)))
            ready = json.loads(proc.stdout.readline())  # type: ignore[union-attr]
            addr = ["-u", sock] if args.transport == "unix" else ["-p", str(ready["port"])]
            servers[name] = (proc, addr, ready.get("pid") or proc.pid)
            for _ in range(3):
                run_client(addr, 0.3)  # connections that end in EOF (benchmarks/README.md)
            run_client(addr, 1.0)
        rows: dict[str, list[tuple[float, float]]] = {name: [] for name in servers}
        for _ in range(args.rounds):
            for name, (_proc, addr, pid) in servers.items():
                u0, s0 = _cpu_seconds(pid)
                out = run_client(addr, args.seconds)
                u1, s1 = _cpu_seconds(pid)
                n = out["requests"] + out.get("warmup_requests", 0)
                rows[name].append(((u1 - u0) / n * 1e6, (s1 - s0) / n * 1e6))
        load = os.getloadavg()[0]
        print(f"# CPU per request, {args.transport} protocol echo, 1 KiB x10, {args.rounds} "
              f"interleaved rounds of {args.seconds:g} s, load average {load:.2f} at the end")
        print("| server | user us/req | kernel us/req | total us/req |")
        print("|---|---:|---:|---:|")
        for name, samples in rows.items():
            user = statistics.median(u for u, _ in samples)
            kern = statistics.median(k for _, k in samples)
            print(f"| {name} | {user:.2f} | {kern:.2f} | {user + kern:.2f} |")
    finally:
        for proc, _addr, _pid in servers.values():
            proc.terminate()
            proc.wait()
        for entry in os.listdir(tmp):
            os.unlink(os.path.join(tmp, entry))
        os.rmdir(tmp)


if __name__ == "__main__":
    main()
