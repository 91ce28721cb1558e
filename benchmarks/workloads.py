"""The workload matrix: what each benchmark runs, and which subset is the default.

Echo workloads (the C client keeps one message in flight per connection, closed loop):

* ``tcp-protocol``: an ``asyncio.Protocol`` echo server over TCP, the transports' raw speed.
* ``tcp-streams``: the same through ``StreamReader``/``StreamWriter`` and ``drain()``.
* ``tcp-sock``: the same through ``loop.sock_recv``/``sock_sendall`` (one-shot readiness waits).
* ``unix-protocol``: the Protocol server on a Unix stream socket (no TCP stack in the way).

``http``: aiohttp "Hello, World!" under wrk.  In-process workloads: ``timers``, ``call_soon``,
``call_soon-fd`` (the same with one idle descriptor watched) and ``sleep0``, described in
:mod:`benchmarks.micro`.

The default set is one representative cell per kind (1 KiB messages, 10 connections); ``--full``
runs sizes 1, 10 and 100 KiB and 10 and 100 connections for every echo kind, and HTTP at 10 and
100 connections.
"""
from __future__ import annotations

from dataclasses import dataclass

KIB = 1024


@dataclass(frozen=True)
class Workload:
    family: str          # "echo", "http" or "micro"
    kind: str            # server kind (protocol/streams/sock/http) or micro workload name
    transport: str = ""  # "tcp" or "unix" for socket workloads
    size: int = 0        # message size in bytes (echo)
    conns: int = 0       # concurrent connections (echo, http)

    @property
    def name(self) -> str:
        if self.family == "echo":
            return f"{self.transport}-{self.kind} {self.size // KIB}KiB x{self.conns}"
        if self.family == "http":
            return f"http aiohttp x{self.conns}"
        return self.kind

    @property
    def unit(self) -> str:
        return "ops/s" if self.family == "micro" else "req/s"


ECHO_KINDS = (("tcp", "protocol"), ("tcp", "streams"), ("tcp", "sock"), ("unix", "protocol"))
MICRO_KINDS = ("timers", "call_soon", "call_soon-fd", "sleep0")


def default_set() -> list[Workload]:
    out = [Workload("echo", kind, transport, 1 * KIB, 10) for transport, kind in ECHO_KINDS]
    out.append(Workload("http", "http", "tcp", 0, 50))
    out += [Workload("micro", kind) for kind in MICRO_KINDS]
    return out


def full_set() -> list[Workload]:
    out = [Workload("echo", kind, transport, size * KIB, conns)
           for transport, kind in ECHO_KINDS for size in (1, 10, 100) for conns in (10, 100)]
    out += [Workload("http", "http", "tcp", 0, conns) for conns in (10, 50, 100)]
    out += [Workload("micro", kind) for kind in MICRO_KINDS]
    return out


def select(workloads: list[Workload], patterns: list[str] | None) -> list[Workload]:
    """Keep the workloads whose name contains any of the patterns (all when none given)."""
    if not patterns:
        return workloads
    return [w for w in workloads if any(p in w.name for p in patterns)]
