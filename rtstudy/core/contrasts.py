"""Contrast estimates over units of replication, their verdicts, and the power of a design.

One :class:`UnitEstimate` is the mean of a contrast over its units (a unit's value is already
its mean over the cells and finetuning seeds of the contrast) with a 95% t interval, and a
verdict from the interval and the margin that matters:

- ``"better"`` / ``"worse"``: separated from 0 (after Holm over the family, see below);
- ``"equivalent"``: not separated and both 95% CI ends inside ±margin;
- ``"not settled"``: otherwise (also with fewer than 2 units: no interval);
- ``"zero spread"``: every unit has the same value. The t interval then has zero width and
  says nothing about how units vary (the measurement is coarser than the effect, or the
  contrast does not depend on the unit); no p-value is given and no verdict is separated
  from it, whatever the value.

The test of an estimate is the one-sample t test over the units
(``scipy.stats.ttest_1samp``), cross-checked from 8 units on by scipy's sign-flip
permutation test (exact up to 16 units) (``scipy.stats.permutation_test``, ``permutation_type="samples"``); the
p-value Holm corrects is the larger of the two, so the verdict is separated only where both
tests agree. :func:`holm_family` corrects a family with each distinct estimand counted once.

Power is a property of the design, not of a result: :func:`design_power` is statsmodels'
``TTestPower`` at the margin for a pilot's between-unit SD and a number of units, and
:func:`units_for_power` the fewest units that reach a power. Nothing here computes a
detectable effect from the interval's own data.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace

import numpy as np

ALPHA = 0.05
POWER = 0.8
PERMUTATION_UNITS = 8  # the sign-flip test cross-checks the t test from this many units on
_EXACT_LIMIT = 2**16  # every sign flip is enumerated up to 16 units; 2**16 random ones beyond
_LARGE_EFFECT = 3.0  # statsmodels' power is nan for much larger effect sizes
_ZERO_TOL = 1e-12  # a spread below this (relative to max(1, |value|)) is no spread

BETTER, WORSE, EQUIVALENT, NOT_SETTLED, ZERO_SPREAD = (
    "better", "worse", "equivalent", "not settled", "zero spread")
VERDICTS = (BETTER, WORSE, EQUIVALENT, NOT_SETTLED, ZERO_SPREAD)


@dataclass(frozen=True)
class UnitEstimate:
    """The mean of a contrast over ``n`` units, in the contrast's display units.

    ``key``: what is estimated (distinct estimands have distinct keys); ``units``: ``{unit:
    value}``; ``low``/``high``: the 95% t interval (nan without one); ``p_t``: the t test's
    two-sided p; ``p_permutation``: the exact sign-flip test's (nan under
    :data:`PERMUTATION_UNITS` units); ``p``: the larger of the two (nan where there is no
    test); ``p_adjusted``: after :func:`holm_family` (``p`` until then); ``family``: how many
    distinct estimands were corrected together; ``margin``: the difference that matters;
    ``design_power``: the design's power at the margin (nan where not given).
    """

    key: tuple
    units: Mapping[Hashable, float] = field(repr=False)
    mean: float
    low: float
    high: float
    p_t: float
    p_permutation: float
    margin: float
    design_power: float = math.nan
    alpha: float = ALPHA
    p_adjusted: float = math.nan
    family: int = 1

    @property
    def n(self) -> int:
        return len(self.units)

    @property
    def sd(self) -> float:
        """The between-unit standard deviation (nan under 2 units)."""
        return float(np.std(list(self.units.values()), ddof=1)) if self.n >= 2 else math.nan

    @property
    def p(self) -> float:
        """The p-value the verdict rests on: the larger of the t and permutation tests'."""
        if math.isnan(self.p_permutation):
            return self.p_t
        return max(self.p_t, self.p_permutation)

    @property
    def zero_spread(self) -> bool:
        vals = list(self.units.values())
        scale = max([1.0, *(abs(v) for v in vals)])
        return len(vals) >= 2 and max(vals) - min(vals) <= _ZERO_TOL * scale

    @property
    def has_interval(self) -> bool:
        return self.n >= 2 and math.isfinite(self.low) and not self.zero_spread

    @property
    def separated(self) -> bool:
        """Separated from 0 after the family's correction."""
        return self.has_interval and self.p_adjusted < self.alpha

    @property
    def within_margin(self) -> bool:
        """Both 95% CI ends inside ±margin."""
        return self.has_interval and -self.margin < self.low and self.high < self.margin

    @property
    def verdict(self) -> str:
        """One of :data:`VERDICTS` (module docstring: the rules)."""
        if self.zero_spread:
            return ZERO_SPREAD
        if self.separated:
            return BETTER if self.mean > 0 else WORSE
        if self.within_margin:
            return EQUIVALENT
        return NOT_SETTLED

    @property
    def permutation_agrees(self) -> bool | None:
        """Whether the sign-flip test gives the t test's answer at ``alpha`` (None: not run)."""
        if math.isnan(self.p_permutation):
            return None
        return (self.p_t < self.alpha) == (self.p_permutation < self.alpha)


def _exact_sign_flip_p(values: np.ndarray) -> float:
    """Two-sided p of scipy's sign-flip permutation test of a zero mean (exact up to 16
    units; beyond, 2**16 random flips under a fixed seed)."""
    from scipy import stats

    n_resamples = np.inf if 2 ** len(values) <= _EXACT_LIMIT else _EXACT_LIMIT
    res = stats.permutation_test((values,), lambda a, axis=-1: np.mean(a, axis=axis),
                                 permutation_type="samples", vectorized=True,
                                 n_resamples=n_resamples, alternative="two-sided", rng=0,
                                 batch=2**16)
    return float(min(res.pvalue, 1.0))


def estimate(units: Mapping[Hashable, float] | Sequence[float], *, margin: float,
             key: tuple = (), design_power: float = math.nan,
             permutation: bool = True) -> UnitEstimate:
    """The mean of ``units`` (``{unit: value}`` or a sequence of values) with its 95% t
    interval, t test and (from :data:`PERMUTATION_UNITS` units on, unless ``permutation``
    is false: secondary estimates) sign-flip test; not yet corrected for a family
    (``p_adjusted == p``)."""
    from scipy import stats

    if not isinstance(units, Mapping):
        units = dict(enumerate(units))
    vals = {u: float(v) for u, v in units.items()}
    if any(not math.isfinite(v) for v in vals.values()):
        raise ValueError(f"estimate {key!r}: every unit's value must be finite, got {vals}")
    if not (margin > 0 and math.isfinite(margin)):
        raise ValueError(f"estimate {key!r}: margin must be a positive number, got {margin!r}")
    nan = math.nan
    arr = np.array(list(vals.values()), dtype=float)
    mean = float(arr.mean()) if arr.size else nan
    out = UnitEstimate(tuple(key), vals, mean, nan, nan, nan, nan, float(margin),
                       float(design_power))
    if arr.size < 2 or out.zero_spread:
        return out
    res = stats.ttest_1samp(arr, 0.0)
    ci = res.confidence_interval(1 - ALPHA)
    p_perm = _exact_sign_flip_p(arr) if permutation and arr.size >= PERMUTATION_UNITS else nan
    out = replace(out, low=float(ci.low), high=float(ci.high), p_t=float(res.pvalue),
                  p_permutation=p_perm)
    return replace(out, p_adjusted=out.p)


def holm_family(estimates: Iterable[UnitEstimate], alpha: float = ALPHA) -> list[UnitEstimate]:
    """Copies of ``estimates`` with ``p_adjusted`` by Holm's step-down correction
    (statsmodels' ``multipletests``) over the distinct keys that have a test: an estimand
    listed twice (the same key, e.g. a cell several notebooks ask) is one member of the
    family, and both copies get its adjusted p. Two entries with one key and different
    values are an error."""
    from statsmodels.stats.multitest import multipletests

    es = list(estimates)
    by_key: dict[tuple, UnitEstimate] = {}
    for e in es:
        seen = by_key.setdefault(e.key, e)
        if seen is not e and (dict(seen.units) != dict(e.units) or seen.margin != e.margin):
            raise ValueError(f"two estimates share the key {e.key!r} with different units or "
                             "margins: give distinct estimands distinct keys")
    tested = [k for k, e in by_key.items() if math.isfinite(e.p)]
    adjusted = dict.fromkeys(by_key, math.nan)
    if tested:
        ps = multipletests([by_key[k].p for k in tested], alpha=alpha, method="holm")[1]
        adjusted.update(zip(tested, (float(p) for p in ps), strict=True))
    return [replace(e, p_adjusted=adjusted[e.key], alpha=alpha, family=len(tested)) for e in es]


# ----------------------------------------------------------------------------- design power
def _check_design(sd: float, margin: float) -> None:
    if not (math.isfinite(sd) and sd >= 0):
        raise ValueError(f"the pilot SD must be a finite number >= 0, got {sd!r}")
    if not (math.isfinite(margin) and margin > 0):
        raise ValueError(f"the margin must be a positive number, got {margin!r}")


def design_power(sd: float, n: int, margin: float, alpha: float = ALPHA) -> float:
    """Power of a two-sided one-sample t test over ``n`` units to separate a true mean of
    ``margin`` from 0 when the units' SD is ``sd`` (statsmodels' ``TTestPower.power``). A pilot
    SD of 0 gives power 1; where the noncentral t underflows (effect sizes above ~4) the
    power at effect size 3, a lower bound, is returned."""
    from statsmodels.stats.power import TTestPower

    _check_design(sd, margin)
    if n < 2:
        raise ValueError(f"a t test needs at least 2 units, got n = {n}")
    if sd == 0:
        return 1.0

    def power(effect: float) -> float:
        return float(TTestPower().power(effect_size=effect, nobs=n, alpha=alpha,
                                        alternative="two-sided"))

    p = power(margin / sd)
    return power(min(margin / sd, _LARGE_EFFECT)) if math.isnan(p) else p


def units_for_power(sd: float, margin: float, power: float = POWER, alpha: float = ALPHA) -> int:
    """The fewest units (at least 2) whose :func:`design_power` reaches ``power``
    (statsmodels' ``TTestPower.solve_power``, rounded up)."""
    from statsmodels.stats.power import TTestPower

    _check_design(sd, margin)
    if not 0 < power < 1:
        raise ValueError(f"power must be in (0, 1), got {power!r}")
    if sd == 0:
        return 2
    n = TTestPower().solve_power(effect_size=margin / sd, nobs=None, alpha=alpha, power=power,
                                 alternative="two-sided")
    n = max(2, math.ceil(float(np.asarray(n).squeeze()) - 1e-9))
    while design_power(sd, n, margin, alpha) < power:  # the solver's tolerance, checked
        n += 1
    return n
