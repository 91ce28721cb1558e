"""edgeloop's loop counters turned into per-request figures.

``loop.stats()`` returns integer counters: ``iterations, polls, events, ctl, reads, eagain,
cutoffs, accepts, writes`` (``ctl`` counts epoll_ctl/registration calls).  The harness takes a
snapshot before and after each measured client run and divides the difference by the requests the
client completed in that run (its warm-up included, since the server served those too).

``wakeups`` is ``polls`` per request.  ``syscalls`` is the syscall-like sum ``polls + ctl + reads +
eagain + writes + accepts`` per request (edgeloop counts a read that hit EAGAIN in ``eagain`` only,
not in ``reads``): an estimate from the loop's own bookkeeping, not a trace.  Only transports count
reads and writes, so ``loop.sock_*`` calls are missing from it; ``--strace`` gives a real count for
every loop.
"""
from __future__ import annotations

COUNTER_KEYS = ("iterations", "polls", "events", "ctl", "reads", "eagain", "cutoffs", "accepts",
                "writes")
SYSCALL_KEYS = ("polls", "ctl", "reads", "eagain", "writes", "accepts")


def delta(before: dict[str, int] | None, after: dict[str, int] | None) -> dict[str, int] | None:
    if before is None or after is None:
        return None
    return {k: after.get(k, 0) - before.get(k, 0) for k in after}


def per_request(d: dict[str, int] | None, requests: int) -> dict[str, float] | None:
    """Counters per request, plus ``wakeups`` and ``syscalls`` as described above."""
    if d is None or requests <= 0:
        return None
    out = {k: d.get(k, 0) / requests for k in COUNTER_KEYS if k in d}
    out["wakeups"] = d.get("polls", 0) / requests
    out["syscalls"] = sum(d.get(k, 0) for k in SYSCALL_KEYS) / requests
    return out


def mean_of(dicts: list[dict[str, float]]) -> dict[str, float] | None:
    if not dicts:
        return None
    keys = dicts[0].keys()
    return {k: sum(d.get(k, 0.0) for d in dicts) / len(dicts) for k in keys}
