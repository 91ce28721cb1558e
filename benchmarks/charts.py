"""PNG charts of a comparison run (matplotlib, optional).

* ``compare_ratio.png``: for every workload, each loop's median throughput divided by asyncio's
  median from the same run, with whiskers from the worst to the best round.
* ``compare_counters.png``: edgeloop's wake-ups and syscall-like calls per request (edge vs level).

Without matplotlib the charts are skipped and the caller prints a note.
"""
from __future__ import annotations

from pathlib import Path

from benchmarks.runner import Cell


def have_matplotlib() -> bool:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def _plt():  # type: ignore[no-untyped-def]
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def ratio_chart(cells: list[Cell], path: Path) -> Path | None:
    plt = _plt()
    workloads = list(dict.fromkeys(c.workload.name for c in cells))
    loops = list(dict.fromkeys(c.loop for c in cells))
    ref = {c.workload.name: c.summary for c in cells if c.loop == "asyncio"}
    if not any(ref.values()):
        return None
    fig, ax = plt.subplots(figsize=(max(8, 1.3 * len(workloads)), 5))
    width = 0.8 / max(len(loops), 1)
    for i, loop in enumerate(loops):
        xs, ys, lo, hi = [], [], [], []
        for j, w in enumerate(workloads):
            c = next((c for c in cells if c.loop == loop and c.workload.name == w), None)
            r = ref.get(w)
            if c is None or c.summary is None or r is None or not r.median:
                continue
            s = c.summary
            xs.append(j + (i - (len(loops) - 1) / 2) * width)
            ys.append(s.median / r.median)
            lo.append((s.median - s.min) / r.median)
            hi.append((s.max - s.median) / r.median)
        ax.bar(xs, ys, width, yerr=[lo, hi], capsize=2, label=loop)
    ax.axhline(1.0, color="black", linewidth=0.8)
    ax.set_xticks(range(len(workloads)))
    ax.set_xticklabels(workloads, rotation=30, ha="right", fontsize=8)
    ax.set_ylabel("throughput / asyncio (median; whiskers min..max)")
    ax.set_title("Event loops relative to asyncio (higher is better)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def counters_chart(cells: list[Cell], path: Path) -> Path | None:
    plt = _plt()
    rows = [(c.workload.name, c.loop, c.to_json()["counters_per_request"]) for c in cells]
    rows = [r for r in rows if r[2]]
    if not rows:
        return None
    workloads = list(dict.fromkeys(r[0] for r in rows))
    loops = list(dict.fromkeys(r[1] for r in rows))
    fig, axes = plt.subplots(1, 2, figsize=(max(9, 1.6 * len(workloads)), 4.5))
    for ax, key, title in ((axes[0], "wakeups", "wake-ups (polls) per request"),
                           (axes[1], "syscalls", "syscall-like calls per request")):
        width = 0.8 / len(loops)
        for i, loop in enumerate(loops):
            xs, ys = [], []
            for j, w in enumerate(workloads):
                per = next((r[2] for r in rows if r[0] == w and r[1] == loop), None)
                if per and key in per:
                    xs.append(j + (i - (len(loops) - 1) / 2) * width)
                    ys.append(per[key])
            ax.bar(xs, ys, width, label=loop)
        ax.set_xticks(range(len(workloads)))
        ax.set_xticklabels(workloads, rotation=30, ha="right", fontsize=8)
        ax.set_title(title)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
