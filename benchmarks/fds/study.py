"""Running the study: every series at every N, with the UDP echo server in its own process."""
from __future__ import annotations

import json
import os
import subprocess
from dataclasses import asdict, dataclass, field
from typing import Any

from benchmarks.fds import loopdriver, raw
from benchmarks.fds.sockets import active_count, close_all, open_udp, pick_active
from benchmarks.progress import Progress
from benchmarks.proc import Pinning, child_env, python_module
from benchmarks.stats import Welford

RAW_SERIES = [f"raw {k}" for k in raw.RAW_KINDS]
EDGELOOP_SERIES = [f"edgeloop {k}" for k in loopdriver.LOOP_SERIES]
REFERENCE_SERIES = ["asyncio", "uvloop"]
ALL_SERIES = RAW_SERIES + EDGELOOP_SERIES + REFERENCE_SERIES


@dataclass
class Point:
    mode: str
    series: str
    n: int
    active: int
    mean_us: float | None = None
    stdev_us: float | None = None
    rounds: int = 0
    discarded: int = 0
    api: str | None = None
    error: str | None = None
    samples_us: list[float] = field(default_factory=list)


class EchoServer:
    def __init__(self, pinning: Pinning) -> None:
        self.proc = subprocess.Popen(pinning.load(python_module("benchmarks.fds.udpecho")),
                                     stdout=subprocess.PIPE, text=True, env=child_env())
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"UDP echo server failed (status {self.proc.wait()})")
        self.port = int(json.loads(line)["port"])

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=5)
        if self.proc.stdout:
            self.proc.stdout.close()


def edgeloop_problem() -> str | None:
    """Why edgeloop series cannot run here, or None."""
    try:
        import edgeloop
        loop = edgeloop.new_event_loop()
        loop.close()
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"
    return None


class Study:
    def __init__(self, series: list[str], api: str, rounds: int, warmup: int,
                 pinning: Pinning, progress: Progress, serial_budget: int = 1000,
                 time_cap: float | None = None) -> None:
        self.series = series
        self.time_cap = time_cap
        self.serial_budget = serial_budget
        self.api = api
        self.rounds = rounds
        self.warmup = warmup
        self.pinning = pinning
        self.progress = progress
        self.unusable: dict[str, str] = {}   # series -> why it cannot run at all
        self.dead: dict[str, str] = {}       # series -> why it stopped (skipped at larger N)
        self.api_used: dict[str, str] = {}   # loop series -> "reader" | "datagram"
        self.notes: list[str] = []

    def run(self, modes: list[str], ns: list[int], fraction: float) -> list[Point]:
        if any(s.startswith("edgeloop") for s in self.series):
            problem = edgeloop_problem()
            if problem:
                for s in self.series:
                    if s.startswith("edgeloop"):
                        self.unusable[s] = f"edgeloop not usable: {problem}"
        server = EchoServer(self.pinning)
        old_affinity = os.sched_getaffinity(0)
        if self.pinning.subject_cpu is not None:
            os.sched_setaffinity(0, {self.pinning.subject_cpu})
        points: list[Point] = []
        try:
            for mode in modes:
                self.dead = dict(self.unusable)
                for n in ns:
                    for series in self.series:
                        self.progress.step(f"{mode} N={n} {series}", 0)
                        points.append(self.one(mode, series, n, fraction, server.port))
                        self.progress.step(f"{mode} N={n} {series}")
                self.notes += sorted({f"{mode}: {s}: {why}" for s, why in self.dead.items()
                                      if s not in self.unusable})
            self.notes += sorted({f"{s}: {why}" for s, why in self.unusable.items()})
        finally:
            os.sched_setaffinity(0, old_affinity)
            server.stop()
        return points

    def one(self, mode: str, series: str, n: int, fraction: float, port: int) -> Point:
        k = active_count(n, fraction)
        point = Point(mode, series, n, k)
        if series in self.dead:
            point.error = self.dead[series]
            return point
        try:
            samples, point.discarded = self._measure(mode == "serial", series, n, k, port)
        except Exception as exc:  # one series failing must not stop the study
            point.error = f"{type(exc).__name__}: {exc}"[:300]
            self.dead[series] = f"failed at N={n}: {point.error}"
            self.progress.note(f"  {mode} {series} at N={n}: {point.error} (skipped from here on)")
            return point
        w = Welford()
        w.extend(x * 1e6 for x in samples)
        point.mean_us, point.stdev_us, point.rounds = w.mean, w.stdev, w.n
        point.samples_us = [round(x * 1e6, 3) for x in samples]
        point.api = "raw" if series.startswith("raw ") else self.api_used.get(series, self.api)
        if point.discarded:
            self.progress.note(f"  {series} at N={n}: {point.discarded} round(s) lost datagrams "
                               "and were discarded")
        return point

    def _measure(self, serial: bool, series: str, n: int, k: int,
                 port: int) -> tuple[list[float], int]:
        """Open N fresh sockets (set-up, not timed), run the rounds, close them.

        In serial mode every request is its own sample, so the rounds are cut to keep about
        ``serial_budget`` requests per point (at least 2 rounds, 1 warm-up)."""
        rounds, warmup = self.rounds, self.warmup
        if serial:
            rounds = max(2, min(rounds, -(-self.serial_budget // k)))
            warmup = max(1, min(warmup, -(-self.serial_budget // (5 * k))))
        socks = open_udp(n, port)
        try:
            active = pick_active(socks, k)
            if series.startswith("raw "):
                return raw.run_rounds(series[4:], socks, active, rounds, warmup, serial,
                                      self.time_cap)
            kind = series.split(" ", 1)[1] if series.startswith("edgeloop ") else series
            api = self.api_used.get(series, self.api)
            if api == "auto":
                try:
                    result = loopdriver.run_rounds(kind, "datagram", socks, active, rounds,
                                                   warmup, serial, self.time_cap)
                    self.api_used[series] = "datagram"
                    return result
                except (NotImplementedError, AttributeError, TypeError) as exc:
                    self.notes.append(f"{series}: datagram endpoints unusable "
                                      f"({type(exc).__name__}: {exc}); add_reader used instead")
                    self.api_used[series] = api = "reader"
                    close_all(socks)  # the failed attempt may have registered some: start afresh
                    socks = open_udp(n, port)
                    active = pick_active(socks, k)
            return loopdriver.run_rounds(kind, api, socks, active, rounds, warmup, serial,
                                         self.time_cap)
        finally:
            close_all(socks)


def as_json(points: list[Point]) -> list[dict[str, Any]]:
    return [asdict(p) for p in points]
