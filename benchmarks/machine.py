"""A record of the machine and software a run was made on, stored with every result."""
from __future__ import annotations

import os
import platform
import subprocess
import sys
from importlib import metadata
from typing import Any


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def _wrk_version() -> str | None:
    try:
        out = subprocess.run(["wrk", "--version"], capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return (out.stdout + out.stderr).splitlines()[0] if (out.stdout + out.stderr) else None


def loadavg() -> list[float]:
    """The 1, 5 and 15 minute load averages (other work on the machine skews every number)."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return [0.0, 0.0, 0.0]


def describe() -> dict[str, Any]:
    """Machine, kernel, Python and library versions."""
    return {
        "cpu": _cpu_model(),
        "cpus": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)),
        "kernel": platform.release(),
        "machine": platform.machine(),
        "python": sys.version.split()[0],
        "python_impl": platform.python_implementation(),
        "loadavg_at_start": loadavg(),
        "versions": {name: _version(name) for name in ("edgeloop", "uvloop", "aiohttp", "rloop")},
        "wrk": _wrk_version(),
    }


def one_line(info: dict[str, Any]) -> str:
    return (f"{info['cpu']} ({info['cpus']} cpus), Linux {info['kernel']}, "
            f"{info['python_impl']} {info['python']}, load average {info['loadavg_at_start']} at start"
            + (f", {info['loadavg_at_end']} at end" if "loadavg_at_end" in info else ""))


def busy_note(info: dict[str, Any]) -> str | None:
    """A warning when other work was loading the machine as the run began."""
    load = info["loadavg_at_start"][0]
    cpus = info["cpus_usable"] or 1
    if load <= 0.5 * cpus:
        return None
    return (f"the machine was busy (1-minute load {load} on {cpus} CPUs before the run): absolute "
            "numbers are depressed and noisy; compare ratios within this run only")
