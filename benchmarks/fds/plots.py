"""Figures like the article's: mean time per request (± one standard deviation) against N.

The time axis is logarithmic: epoll's few microseconds and select's or poll's hundreds at large N
differ by orders of magnitude, and on a linear axis the epoll series lie flat on the bottom.  A
band's lower edge (mean - sd) that would reach zero or below is drawn at a tenth of the mean, as a
log axis cannot show it.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any


def plot(points: list[dict[str, Any]], path: Path, title: str) -> Path | None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import LogFormatter

    ok = [p for p in points if p["mean_us"] is not None]
    if not ok:
        return None
    groups = {"raw pollers": [p for p in ok if p["series"].startswith("raw ")],
              "event loops": [p for p in ok if not p["series"].startswith("raw ")]}
    groups = {k: v for k, v in groups.items() if v}
    fig, axes = plt.subplots(1, len(groups), figsize=(6.5 * len(groups), 4.8), squeeze=False)
    for ax, (label, pts) in zip(axes[0], groups.items()):
        for series in dict.fromkeys(p["series"] for p in pts):
            sp = sorted((p for p in pts if p["series"] == series), key=lambda p: p["n"])
            xs = [p["n"] for p in sp]
            ys = [p["mean_us"] for p in sp]
            sd = [p["stdev_us"] or 0.0 for p in sp]
            line, = ax.plot(xs, ys, marker="o", markersize=3, label=series)
            low = [y - s if y - s > y / 10 else y / 10 for y, s in zip(ys, sd)]
            ax.fill_between(xs, low, [y + s for y, s in zip(ys, sd)],
                            color=line.get_color(), alpha=0.18, linewidth=0)
        ax.set_xlabel("N open sockets (all watched)")
        ax.set_ylabel("mean time per request (µs, log scale), band = ±1 sd")
        ax.set_title(label)
        ax.set_yscale("log")
        ax.yaxis.set_major_formatter(LogFormatter())  # 10, 100, 1000 rather than 10^n
        ax.yaxis.set_minor_formatter(LogFormatter(labelOnlyBase=False))
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
