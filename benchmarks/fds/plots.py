"""Figures like the article's: mean time per request (± one standard deviation) against N."""
from __future__ import annotations

from pathlib import Path
from typing import Any


def plot(points: list[dict[str, Any]], path: Path, title: str) -> Path | None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

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
            ax.fill_between(xs, [y - s for y, s in zip(ys, sd)], [y + s for y, s in zip(ys, sd)],
                            color=line.get_color(), alpha=0.18, linewidth=0)
        ax.set_xlabel("N open sockets (all watched)")
        ax.set_ylabel("mean time per request (µs), band = ±1 sd")
        ax.set_title(label)
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
