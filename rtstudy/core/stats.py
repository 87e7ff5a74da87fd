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


@dataclass(frozen=True)
class Correlation:
    """A correlation coefficient over ``n`` points and its two-sided p-value."""

    kind: str  # "spearman" | "pearson"
    r: float
    p: float
    n: int

    def __str__(self) -> str:
        sym = "ρ" if self.kind == "spearman" else "r"
        return f"{self.kind} {sym} = {self.r:+.2f} (n = {self.n}, p = {self.p:.2g})"


def _ranks(values: Sequence[float]) -> list[float]:
    """Average ranks (ties share the mean of their positions), 1-based."""
    order = sorted(range(len(values)), key=lambda i: values[i])
    ranks = [0.0] * len(values)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        for k in range(i, j + 1):
            ranks[order[k]] = (i + j) / 2 + 1
        i = j + 1
    return ranks


def _pearson_r(x: Sequence[float], y: Sequence[float]) -> float:
    n = len(x)
    mx, my = sum(x) / n, sum(y) / n
    sxy = sum((a - mx) * (b - my) for a, b in zip(x, y, strict=True))
    sxx = sum((a - mx) ** 2 for a in x)
    syy = sum((b - my) ** 2 for b in y)
    if sxx == 0 or syy == 0:
        return float("nan")
    return sxy / math.sqrt(sxx * syy)


def _perm_p(x: list[float], y: list[float], r: float, stat) -> float:
    """Two-sided permutation p-value: exact for n <= 8, else 20,000 seeded shuffles."""
    import itertools
    import random

    if math.isnan(r):
        return 1.0
    n = len(x)
    if n <= 8:
        perms = itertools.permutations(y)
    else:
        rng = random.Random(0)
        perms = (rng.sample(y, n) for _ in range(20000))
    hits = total = 0
    for p in perms:
        total += 1
        hits += abs(stat(x, list(p))) >= abs(r) - 1e-12
    return hits / total


def _correlation(kind: str, x: Sequence[float], y: Sequence[float]) -> Correlation:
    x, y = [float(v) for v in x], [float(v) for v in y]
    if len(x) != len(y):
        raise ValueError(f"x and y must have the same length, got {len(x)} and {len(y)}")
    if len(x) < 3:
        raise ValueError(f"a correlation needs at least 3 points, got {len(x)}")
    if kind == "spearman":
        x, y = _ranks(x), _ranks(y)
    r = _pearson_r(x, y)
    return Correlation(kind, r, _perm_p(x, y, r, _pearson_r), len(x))


def spearman(x: Sequence[float], y: Sequence[float]) -> Correlation:
    """Spearman rank correlation with a permutation p-value (honest for a handful of points)."""
    return _correlation("spearman", x, y)


def pearson(x: Sequence[float], y: Sequence[float]) -> Correlation:
    """Pearson correlation with a permutation p-value."""
    return _correlation("pearson", x, y)
