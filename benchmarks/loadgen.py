"""Load generators: the C echo client (built on first use), its Python fallback, and wrk.

``echoload.c`` is compiled with ``cc -O2`` into ``benchmarks/bin/`` the first time it is needed
(and again when the source is newer than the binary) by :func:`benchmarks.proc.build_c`, which
builds the ``raw-c`` reference server the same way.  Without a working compiler the pure-Python
client :mod:`benchmarks.pyload` is used instead, and ``EchoClient.bottleneck_note`` says the client
may then be what limits the numbers.  HTTP load comes from ``wrk`` (one thread, pinned like every
load generator); its ``--latency`` output is parsed into the same result shape.
"""
from __future__ import annotations

import json
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.proc import BENCH_DIR, Pinning, build_c, child_env, python_module

SOURCE = BENCH_DIR / "echoload.c"
BINARY = BENCH_DIR / "bin" / "echoload"


class LoadError(RuntimeError):
    """The load generator failed or printed something unexpected."""


def build_echoload() -> tuple[Path | None, str]:
    """Compile echoload.c if needed. Returns (binary or None, reason when None)."""
    return build_c("echoload")


@dataclass
class Target:
    """Where a server listens: a TCP port on 127.0.0.1 or a Unix socket path."""

    port: int = 0
    unix: str | None = None

    def args(self) -> list[str]:
        return ["-u", self.unix] if self.unix else ["-H", "127.0.0.1", "-p", str(self.port)]


class EchoClient:
    def __init__(self, pinning: Pinning, force_python: bool = False) -> None:
        self.pinning = pinning
        binary, reason = (None, "--python-client given") if force_python else build_echoload()
        self.binary = binary
        self.kind = "c" if binary else "python"
        self.bottleneck_note = "" if binary else (
            f"echo load came from the pure-Python client ({reason}): the client may be the "
            "bottleneck, so echo numbers understate the faster loops")

    def run(self, target: Target, conns: int, size: int, duration: float,
            warmup: float) -> dict[str, Any]:
        opts = [*target.args(), "-c", str(conns), "-s", str(size), "-d", str(duration),
                "-w", str(warmup)]
        argv = [str(self.binary), *opts] if self.binary else python_module("benchmarks.pyload",
                                                                            *opts)
        timeout = duration + warmup + 30 + conns * 0.05
        out = subprocess.run(self.pinning.load(argv), capture_output=True, text=True,
                             env=child_env(), timeout=timeout)
        if out.returncode != 0:
            raise LoadError(f"echo client failed ({out.returncode}): {out.stderr.strip()[-300:]}")
        try:
            result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
        except (ValueError, IndexError) as exc:
            raise LoadError(f"echo client printed {out.stdout[-200:]!r}") from exc
        return result


_UNITS = {"us": 1.0, "ms": 1e3, "s": 1e6}


def _to_us(text: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s)", text)
    if not m:
        raise LoadError(f"cannot parse wrk latency {text!r}")
    return float(m.group(1)) * _UNITS[m.group(2)]


def parse_wrk(output: str) -> dict[str, Any]:
    """Requests/s, request count and latency percentiles from ``wrk --latency`` output."""
    rps = re.search(r"Requests/sec:\s+([\d.]+)", output)
    total = re.search(r"(\d+) requests in ([\d.]+)(us|ms|s|m)", output)
    if not rps or not total:
        raise LoadError(f"unexpected wrk output: {output[-300:]!r}")
    lat: dict[str, float] = {}
    for q, key in (("50", "p50"), ("75", "p75"), ("90", "p90"), ("99", "p99")):
        m = re.search(rf"^\s+{q}%\s+(\S+)", output, re.M)
        if m:
            lat[key] = _to_us(m.group(1))
    avg = re.search(r"Latency\s+(\S+)\s+\S+\s+(\S+)", output)
    if avg:
        lat["mean"] = _to_us(avg.group(1))
        lat["max"] = _to_us(avg.group(2))
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)",
                       output)
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    n_err = (sum(int(x) for x in errors.groups()) if errors else 0) + (
        int(non2xx.group(1)) if non2xx else 0)
    return {"requests": int(total.group(1)), "rps": float(rps.group(1)), "errors": n_err,
            "latency_us": lat}


class HttpClient:
    def __init__(self, pinning: Pinning) -> None:
        self.pinning = pinning
        self.wrk = shutil.which("wrk")

    def run(self, port: int, conns: int, duration: float) -> dict[str, Any]:
        if self.wrk is None:
            raise LoadError("wrk is not installed")
        seconds = max(1, round(duration))  # wrk takes whole seconds
        argv = [self.wrk, "-t1", f"-c{conns}", f"-d{seconds}s", "--latency",
                f"http://127.0.0.1:{port}/"]
        out = subprocess.run(self.pinning.load(argv), capture_output=True, text=True,
                             timeout=seconds + 30)
        if out.returncode != 0:
            raise LoadError(f"wrk failed ({out.returncode}): {out.stderr.strip()[-300:]}")
        result = parse_wrk(out.stdout)
        result["seconds"] = float(seconds)
        result["conns"] = conns
        return result
