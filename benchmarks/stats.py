"""Small statistics used by every report: order statistics and Welford's running variance.

Welford's algorithm keeps a running mean and the sum of squared deviations ``M2`` so that the
variance is computed in one pass without the catastrophic cancellation of ``E[x^2] - E[x]^2``.
The sample variance is Bessel-corrected (divided by ``n - 1``).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable, Sequence


@dataclass
class Welford:
    """Running mean and variance of a stream of samples (one pass, numerically stable)."""

    n: int = 0
    mean: float = 0.0
    m2: float = 0.0

    def add(self, x: float) -> None:
        self.n += 1
        delta = x - self.mean
        self.mean += delta / self.n
        self.m2 += delta * (x - self.mean)

    def extend(self, xs: Iterable[float]) -> None:
        for x in xs:
            self.add(x)

    @property
    def variance(self) -> float:
        """Sample variance with Bessel's correction; 0.0 with fewer than two samples."""
        return self.m2 / (self.n - 1) if self.n > 1 else 0.0

    @property
    def stdev(self) -> float:
        return math.sqrt(self.variance)


def median(xs: Sequence[float]) -> float:
    if not xs:
        raise ValueError("median of no samples")
    s = sorted(xs)
    mid = len(s) // 2
    return s[mid] if len(s) % 2 else (s[mid - 1] + s[mid]) / 2


def percentile(sorted_xs: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100) of already-sorted samples, by linear interpolation."""
    if not sorted_xs:
        raise ValueError("percentile of no samples")
    pos = (len(sorted_xs) - 1) * q / 100.0
    lo = math.floor(pos)
    hi = min(lo + 1, len(sorted_xs) - 1)
    return sorted_xs[lo] + (sorted_xs[hi] - sorted_xs[lo]) * (pos - lo)


@dataclass
class Summary:
    """Median, minimum and maximum of the measured rounds of one cell."""

    median: float
    min: float
    max: float
    n: int

    @classmethod
    def of(cls, xs: Sequence[float]) -> "Summary":
        return cls(median(xs), min(xs), max(xs), len(xs))
