"""Means over seeds with 95% confidence intervals, paired contrasts over replicated source
models, and the multiple-comparison and power arithmetic a finding needs.

- :func:`mean_ci`, :func:`compare`, :func:`describe`: one mean over seeds and interval overlap
  (kept for tables and figures);
- :func:`paired_contrast`: the paired difference a − b over source seeds (finetuning seeds
  within them), with a t interval, a p-value and the minimum detectable effect;
- :func:`holm`: the family-wise (Holm) correction over the contrasts of one notebook;
- :func:`spearman`, :func:`pearson`: correlations with permutation p-values.

The tests themselves are scipy's and statsmodels'; what is written here is the bookkeeping
around them (tested against those libraries in ``tests/test_stats.py``).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass, replace
from functools import lru_cache

import numpy as np

# two-sided 97.5% quantiles of Student's t for 1..30 degrees of freedom (scipy's beyond)
_T975 = [12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179,
         2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064,
         2.060, 2.056, 2.052, 2.048, 2.045, 2.042]


def _t975(df: int) -> float:
    """scipy's 97.5% quantile of Student's t (the table above holds it to 3 decimals)."""
    from scipy import stats

    return float(stats.t.ppf(0.975, df))


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
    t = _T975[n - 2] if n - 1 <= len(_T975) else _t975(n - 1)
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


# ----------------------------------------------------------------------------- correlations
def _r_along(a: np.ndarray, b: np.ndarray, axis: int = -1) -> np.ndarray:
    """Pearson r of ``a`` (batched along ``axis``) with the fixed vector ``b``."""
    a = a - a.mean(axis=axis, keepdims=True)
    b = b - b.mean()
    return (a * b).sum(axis=axis) / np.sqrt((a * a).sum(axis=axis) * (b * b).sum())


def _correlation(kind: str, x: Sequence[float], y: Sequence[float]) -> Correlation:
    from scipy import stats

    x, y = [float(v) for v in x], [float(v) for v in y]
    if len(x) != len(y):
        raise ValueError(f"x and y must have the same length, got {len(x)} and {len(y)}")
    n = len(x)
    if n < 3:
        raise ValueError(f"a correlation needs at least 3 points, got {n}")
    if len(set(x)) == 1 or len(set(y)) == 1:  # a constant has no correlation
        return Correlation(kind, float("nan"), 1.0, n)
    ax, ay = np.asarray(x), np.asarray(y)
    if kind == "spearman":
        ax, ay = stats.rankdata(ax), stats.rankdata(ay)  # average ranks for ties
    r = float(_r_along(ax, ay))
    if n <= 8:  # exact: every one of the n! pairings
        res = stats.permutation_test((ax,), lambda a, axis=-1: _r_along(a, ay, axis),
                                     permutation_type="pairings", vectorized=True,
                                     n_resamples=math.factorial(n), alternative="two-sided")
        p = float(res.pvalue)
    else:
        test = stats.spearmanr if kind == "spearman" else stats.pearsonr
        p = float(test(x, y).pvalue)
    return Correlation(kind, r, min(p, 1.0), n)


def spearman(x: Sequence[float], y: Sequence[float]) -> Correlation:
    """Spearman rank correlation; the p-value is scipy's exact permutation test (all n!
    pairings) for n <= 8, where the t approximation is too generous, and
    ``scipy.stats.spearmanr``'s beyond."""
    return _correlation("spearman", x, y)


def pearson(x: Sequence[float], y: Sequence[float]) -> Correlation:
    """Pearson correlation; exact permutation p-value for n <= 8, ``scipy.stats.pearsonr``'s
    beyond."""
    return _correlation("pearson", x, y)


# ----------------------------------------------------------------------------- paired contrasts
SOURCE_SEEDS = "source seeds"
FINETUNING_SEEDS = "finetuning seeds"
ALPHA = 0.05
POWER = 0.8
_ZERO_TOL = 1e-12  # a spread below this (relative to max(1, |value|)) is no spread at all


@dataclass(frozen=True)
class PairedContrast:
    """The paired difference a − b at one configuration ``key``.

    ``diff``, ``low``, ``high`` and ``mde`` are in the units of the differences given to
    :func:`paired_contrast` (accuracy fractions for result rows; ``points``, ``ci_points``
    and ``mde_points`` are the same x100). ``low``/``high``: the 95% t interval over the
    units of ``level`` (nan where there is none); ``p``: two-sided one-sample t test of a
    zero mean (nan where there is none); ``p_adjusted``: after :func:`holm` over a family of
    ``family`` contrasts (equal to ``p`` until adjusted); ``n_source``: source seeds;
    ``n_finetune``: (fewest, most) finetuning seeds per source seed; ``mde``: the smallest
    true mean difference the design detects with 80% power at two-sided alpha = 0.05 (inf
    where it cannot be computed); ``level``: ``"source seeds"`` (the units are per-source-seed
    means) or ``"finetuning seeds"`` (a single source seed: the source-model variance is not
    in the interval).
    """

    key: tuple
    diff: float
    low: float
    high: float
    p: float
    p_adjusted: float
    n_source: int
    n_finetune: tuple[int, int]
    mde: float
    level: str
    alpha: float = ALPHA
    family: int = 1

    @property
    def n_units(self) -> int:
        """How many values the interval is computed over."""
        if self.level == SOURCE_SEEDS:
            return self.n_source
        return self.n_finetune[1] if self.n_source else 0

    @property
    def has_interval(self) -> bool:
        return self.n_units >= 2 and math.isfinite(self.low)

    @property
    def verdict(self) -> str:
        """``"better"`` / ``"worse"`` where ``p_adjusted < alpha`` (by the sign of ``diff``),
        else ``"tie"``."""
        if not self.has_interval or not self.p_adjusted < self.alpha or self.diff == 0:
            return "tie"
        return "better" if self.diff > 0 else "worse"

    @property
    def points(self) -> float:
        """``diff`` in accuracy points (x100)."""
        return 100 * self.diff

    @property
    def ci_points(self) -> tuple[float, float]:
        return 100 * self.low, 100 * self.high

    @property
    def mde_points(self) -> float:
        return 100 * self.mde


@lru_cache(maxsize=256)
def _mde_effect_size(n: int) -> float:
    """Cohen's d a one-sample t test over ``n`` units detects with 80% power (statsmodels)."""
    from statsmodels.stats.power import TTestPower

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            d = TTestPower().solve_power(effect_size=None, nobs=n, alpha=ALPHA, power=POWER,
                                         alternative="two-sided")
        d = float(np.asarray(d).squeeze())
    except (ValueError, RuntimeError, ArithmeticError):
        return math.inf
    return d if math.isfinite(d) and d > 0 else math.inf


def mde(n: int, sd: float) -> float:
    """Minimum detectable effect: the smallest true mean difference a one-sample (paired)
    t test over ``n`` units with standard deviation ``sd`` detects with 80% power at
    two-sided alpha = 0.05 (statsmodels' ``TTestPower.solve_power`` times ``sd``); inf where
    the solver cannot (fewer than 2 units)."""
    if n < 2:
        return math.inf
    d = _mde_effect_size(int(n))
    return d * sd if math.isfinite(d) else math.inf


def paired_contrast(diffs: Mapping[Hashable, Sequence[float]], key: tuple = ()) -> PairedContrast:
    """The two-stage paired contrast of ``diffs``: ``{source seed: [a − b per finetuning
    seed]}``.

    The differences are averaged within each source seed, then a one-sample t interval and
    test (``scipy.stats.ttest_1samp``, df = source seeds − 1) run over the per-source-seed
    means: their spread already holds the finetuning variance / n, so both levels are in
    the interval. With a single source seed the finetuning seeds are the units
    (``level="finetuning seeds"``: the source-model variance is then not in the interval).
    All units equal: a zero-width interval, p = 0 (1 where the difference is 0). Fewer than
    two units: no interval (nan), verdict tie, mde inf.
    """
    from scipy import stats

    groups = {s: [float(v) for v in vs] for s, vs in diffs.items() if len(vs)}
    counts = [len(v) for v in groups.values()]
    n_source = len(groups)
    n_finetune = (min(counts), max(counts)) if counts else (0, 0)
    if n_source >= 2:
        units, level = [sum(v) / len(v) for v in groups.values()], SOURCE_SEEDS
    else:
        units, level = (next(iter(groups.values())) if groups else []), FINETUNING_SEEDS
    n = len(units)
    nan = float("nan")
    if n == 0:
        return PairedContrast(tuple(key), nan, nan, nan, nan, nan, 0, n_finetune, math.inf, level)
    diff = sum(units) / n
    if n < 2:
        return PairedContrast(tuple(key), diff, nan, nan, nan, nan, n_source, n_finetune,
                              math.inf, level)
    scale = max(1.0, max(abs(u) for u in units))
    if max(units) - min(units) <= _ZERO_TOL * scale:  # no spread: the t statistic is undefined
        zero = abs(diff) <= _ZERO_TOL * scale
        p = 1.0 if zero else 0.0
        return PairedContrast(tuple(key), diff, diff, diff, p, p, n_source, n_finetune, 0.0, level)
    res = stats.ttest_1samp(units, 0.0)
    ci = res.confidence_interval(1 - ALPHA)
    sd = float(np.std(units, ddof=1))
    p = float(res.pvalue)
    return PairedContrast(tuple(key), diff, float(ci.low), float(ci.high), p, p, n_source,
                          n_finetune, mde(n, sd), level)


def holm(contrasts: Sequence[PairedContrast], alpha: float = ALPHA) -> list[PairedContrast]:
    """Copies of ``contrasts`` with ``p_adjusted`` set by Holm's step-down correction over the
    family of those that have a test (statsmodels' ``multipletests(method="holm")``; the
    raw ``p`` is used, so adjusting twice is adjusting once). Contrasts without a test
    (no interval) keep a nan p. ``family``: how many were tested together."""
    from statsmodels.stats.multitest import multipletests

    cs = list(contrasts)
    tested = [i for i, c in enumerate(cs) if math.isfinite(c.p)]
    out = [replace(c, p_adjusted=c.p, alpha=alpha, family=len(tested)) for c in cs]
    if tested:
        adjusted = multipletests([cs[i].p for i in tested], alpha=alpha, method="holm")[1]
        for i, pa in zip(tested, adjusted, strict=True):
            out[i] = replace(out[i], p_adjusted=float(pa))
    return out
