"""Means over seeds with 95% confidence intervals, and claims only where intervals separate."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

# two-sided 97.5% quantiles of Student's t for 1..30 degrees of freedom
_T975 = [12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179,
         2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064,
         2.060, 2.056, 2.052, 2.048, 2.045, 2.042]


@dataclass(frozen=True)
class Estimate:
    """Mean of ``n`` values with a 95% Student-t interval [low, high]."""

    mean: float
    low: float
    high: float
    n: int

    @property
    def half_width(self) -> float:
        return (self.high - self.low) / 2

    def __str__(self) -> str:
        if self.n < 2:
            return f"{100 * self.mean:.1f}% (1 seed, no interval)"
        return f"{100 * self.mean:.1f}% ± {100 * self.half_width:.1f}"


def mean_ci(values: Sequence[float]) -> Estimate:
    """Mean and 95% CI (Student t; a single value gets a zero-width interval, n = 1)."""
    vals = [float(v) for v in values]
    if not vals:
        raise ValueError("mean_ci needs at least one value, got none")
    n, mean = len(vals), sum(vals) / len(vals)
    if n == 1:
        return Estimate(mean, mean, mean, 1)
    sd = math.sqrt(sum((v - mean) ** 2 for v in vals) / (n - 1))
    t = _T975[n - 2] if n - 1 <= len(_T975) else 1.96
    half = t * sd / math.sqrt(n)
    return Estimate(mean, mean - half, mean + half, n)


def compare(a: Estimate, b: Estimate) -> str:
    """``"better"`` / ``"worse"`` only where the 95% intervals separate (and n >= 2), else ``"tie"``."""
    if a.n < 2 or b.n < 2:
        return "tie"
    if a.low > b.high:
        return "better"
    if a.high < b.low:
        return "worse"
    return "tie"


def describe(name_a: str, a: Estimate, name_b: str, b: Estimate) -> str:
    """One sentence comparing two estimates, honest about overlapping intervals."""
    verdict = compare(a, b)
    diff = 100 * (a.mean - b.mean)
    if verdict == "better":
        return f"{name_a} beats {name_b}: {a} vs {b} (+{diff:.1f} points, intervals separate)"
    if verdict == "worse":
        return f"{name_a} trails {name_b}: {a} vs {b} ({diff:.1f} points, intervals separate)"
    return f"{name_a} and {name_b} are not distinguishable: {a} vs {b} ({diff:+.1f} points, intervals overlap)"
