"""The comparison run: for each workload, every loop in interleaved rounds.

For one workload a subject process is started per loop (servers pinned to the subject CPU), each
is warmed up once (not counted: a server first serves a few connections that end in EOF, then a
timed client run), then ``rounds`` rounds run the loops in the same order
(A B C A B C ...), so slow drifts of the shared machine hit every loop alike.  Each measured run
gives one sample (requests or operations per second); a cell's summary is the median with the min
and max of its samples.  Counters (edgeloop) are snapshotted around each measured run; with
``--strace`` an extra, untimed pass counts syscalls per request for every loop.  With
``--baseline``, ``edge@base`` and the like are subjects like any other (their children import
edgeloop from the baseline checkout), so they share the interleaved rounds.  The reference servers
``raw-python`` and ``raw-c`` are subjects of the ``protocol`` echo workloads only.
"""
from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from benchmarks import counters, strace_count
from benchmarks.loadgen import EchoClient, HttpClient, LoadError, Target
from benchmarks.loops import runs_workload
from benchmarks.progress import Progress
from benchmarks.proc import Pinning
from benchmarks.stats import Summary, median
from benchmarks.subjects import (EOF_WARMUP_CONNS, MicroSubject, ServerSubject, SubjectError,
                                 workdir)
from benchmarks.workloads import Workload


@dataclass
class Config:
    rounds: int = 3
    duration: float = 0.7        # seconds per measured run (wrk rounds up to whole seconds)
    warmup: float = 0.3          # seconds of warm-up per subject, not counted (after the EOF warm-up)
    client_warmup: float = 0.1   # connect + warm-up inside each echo client run, not counted
    eof_warmup: int = EOF_WARMUP_CONNS  # connections ending in EOF before a server's warm-up
    strace: bool = False
    strace_duration: float = 1.0


@dataclass
class Cell:
    workload: Workload
    loop: str
    samples: list[float] = field(default_factory=list)
    latency_p99_us: list[float] = field(default_factory=list)
    counters: list[dict[str, float]] = field(default_factory=list)
    strace: dict[str, Any] | None = None
    error: str | None = None
    edgeloop_file: str | None = None  # the edgeloop/__init__.py the subject imported

    @property
    def summary(self) -> Summary | None:
        return Summary.of(self.samples) if self.samples else None

    def to_json(self) -> dict[str, Any]:
        s = self.summary
        return {
            "workload": self.workload.name, "family": self.workload.family,
            "kind": self.workload.kind, "transport": self.workload.transport,
            "size": self.workload.size, "conns": self.workload.conns, "unit": self.workload.unit,
            "loop": self.loop, "samples": self.samples,
            "median": s.median if s else None, "min": s.min if s else None,
            "max": s.max if s else None,
            "latency_p99_us_median": median(self.latency_p99_us) if self.latency_p99_us else None,
            "counters_per_request": counters.mean_of(self.counters),
            "strace": self.strace, "error": self.error, "edgeloop_file": self.edgeloop_file,
        }


Measure = Callable[[Any], tuple[float, float | None, dict[str, float] | None]]


class Runner:
    def __init__(self, loops: list[str], config: Config, pinning: Pinning,
                 echo: EchoClient, http: HttpClient, progress: Progress,
                 baseline: Path | None = None) -> None:
        self.loops = loops
        self.baseline = baseline
        self.config = config
        self.pinning = pinning
        self.echo = echo
        self.http = http
        self.progress = progress
        self.tmp = workdir()

    def subjects_of(self, w: Workload) -> list[str]:
        """The subjects that take part in a workload (the reference servers: protocol echo)."""
        return [name for name in self.loops if runs_workload(name, w.family, w.kind)]

    def steps(self, workloads: list[Workload]) -> int:
        per_subject = self.config.rounds + 1 + (1 if self.config.strace else 0)
        return sum(len(self.subjects_of(w)) * per_subject for w in workloads)

    def run(self, workloads: list[Workload]) -> list[Cell]:
        cells: list[Cell] = []
        try:
            for w in workloads:
                cells += self.run_workload(w)
        finally:
            shutil.rmtree(self.tmp, ignore_errors=True)
        return cells

    # -- one workload --------------------------------------------------------------------------

    def run_workload(self, w: Workload) -> list[Cell]:
        names = self.subjects_of(w)
        cells = {name: Cell(w, name) for name in names}
        subjects: dict[str, Any] = {}
        try:
            for name in names:  # start all, then wait: start-ups overlap
                subjects[name] = (MicroSubject(name, self.pinning, self.baseline)
                                  if w.family == "micro"
                                  else ServerSubject(name, w.kind, w.transport, self.pinning,
                                                     self.tmp, self.baseline))
            for name, subj in list(subjects.items()):
                self.progress.step(f"{w.name}: warm-up {name}", 0)
                try:
                    subj.wait_ready()
                    cells[name].edgeloop_file = subj.edgeloop_file
                    if isinstance(subj, ServerSubject) and self.config.eof_warmup:
                        subj.warm_eof(w.family == "http", w.size or 1024, self.config.eof_warmup)
                    if self.config.warmup > 0:
                        self._measure(w, subj, self.config.warmup)
                except (SubjectError, LoadError, OSError) as exc:
                    self._fail(cells[name], subjects.pop(name), exc)
                self.progress.step(f"{w.name}: warm-up {name}")
            for rnd in range(self.config.rounds):
                for name in names:
                    self.progress.step(f"{w.name}: round {rnd + 1} {name}", 0)
                    subj = subjects.get(name)
                    if subj is not None:
                        try:
                            rate, p99, per_req = self._measure(w, subj, self.config.duration)
                            cells[name].samples.append(rate)
                            if p99 is not None:
                                cells[name].latency_p99_us.append(p99)
                            if per_req is not None:
                                cells[name].counters.append(per_req)
                        except (SubjectError, LoadError, OSError) as exc:
                            self._fail(cells[name], subjects.pop(name), exc)
                    self.progress.step(f"{w.name}: round {rnd + 1} {name}")
            if self.config.strace:
                for name in names:
                    subj = subjects.get(name)
                    if subj is not None and w.family != "micro":
                        self.progress.step(f"{w.name}: strace {name}", 0)
                        try:
                            cells[name].strace = self._strace(w, subj)
                        except (SubjectError, LoadError, OSError, RuntimeError) as exc:
                            self.progress.note(f"  strace {w.name} {name}: {exc}")
                    self.progress.step(f"{w.name}: strace {name}")
        finally:
            for subj in subjects.values():
                subj.stop()
        return [cells[name] for name in names]

    def _fail(self, cell: Cell, subj: Any, exc: BaseException) -> None:
        cell.error = f"{type(exc).__name__}: {exc}"[:400]
        self.progress.note(f"  {cell.workload.name} on {cell.loop} failed: {cell.error}")
        subj.stop()

    def _measure(self, w: Workload, subj: Any,
                 duration: float) -> tuple[float, float | None, dict[str, float] | None]:
        """One client run against a subject: (rate, p99 latency in us, counters per request)."""
        if isinstance(subj, MicroSubject):
            result = subj.run(w.kind, duration)
            return result["rate"], None, counters.per_request(result["stats"], result["ops"])
        before = subj.snapshot()
        result, served = self._load(w, subj, duration)
        after = subj.snapshot()
        errors = int(result.get("errors") or 0)
        tolerated = 0.01 * served if w.family == "http" else 0  # wrk: socket or non-2xx errors
        if errors > tolerated:
            raise LoadError(f"{errors} client errors in {served} requests (server broken?)")
        if not result.get("requests"):
            raise LoadError("no request completed during the run (server stalled?)")
        if not subj.alive():
            raise SubjectError("server died during the run")
        per_req = counters.per_request(counters.delta(before, after), served)
        return float(result["rps"]), result.get("latency_us", {}).get("p99"), per_req

    def _load(self, w: Workload, subj: ServerSubject, duration: float) -> tuple[dict[str, Any], int]:
        """Run the client; return its result and the number of requests the server served."""
        if w.family == "http":
            result = self.http.run(subj.port, w.conns, duration)
            return result, int(result["requests"])
        result = self.echo.run(Target(subj.port, subj.unix), w.conns, w.size, duration,
                               self.config.client_warmup)
        return result, int(result["requests"]) + int(result.get("warmup_requests", 0))

    def _strace(self, w: Workload, subj: ServerSubject) -> dict[str, Any]:
        out = self.tmp / f"strace-{subj.loop}.txt"
        with strace_count.Tracer(subj.pid, out) as tracer:
            _, served = self._load(w, subj, self.config.strace_duration)
        summary = tracer.result()
        top = sorted(summary["calls"].items(), key=lambda kv: -kv[1])[:6]
        return {"requests": served, "syscalls": summary["total"],
                "per_request": summary["total"] / served if served else None,
                "top_per_request": {k: v / served for k, v in top} if served else {}}
