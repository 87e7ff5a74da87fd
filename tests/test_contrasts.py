import itertools
import math

import numpy as np
import pytest
from scipy import stats
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.power import TTestPower

from rtstudy.core.contrasts import (
    BETTER,
    EQUIVALENT,
    NOT_SETTLED,
    WORSE,
    ZERO_SPREAD,
    design_power,
    estimate,
    holm_family,
    units_for_power,
)

# six units (source seeds) of a contrast in accuracy points
UNITS = {0: 3.1, 1: 1.2, 2: 4.0, 3: 2.2, 4: -0.4, 5: 3.5}


def test_interval_and_p_are_scipys_t_test_over_the_units():
    e = estimate(UNITS, margin=2.0, key=("E1",))
    res = stats.ttest_1samp(list(UNITS.values()), 0.0)
    ci = res.confidence_interval(0.95)
    assert (e.mean, e.low, e.high) == pytest.approx((np.mean(list(UNITS.values())), ci.low, ci.high))
    assert e.p_t == pytest.approx(res.pvalue) and e.p == e.p_t == e.p_adjusted
    assert math.isnan(e.p_permutation), "under 8 units there is no permutation test"
    assert e.n == 6 and e.sd == pytest.approx(np.std(list(UNITS.values()), ddof=1))


@pytest.mark.parametrize("values, margin, verdict", [
    ([3.0, 4.0, 5.0, 3.5], 2.0, BETTER),  # CI excludes 0, above
    ([-3.0, -4.0, -5.0, -3.5], 2.0, WORSE),  # CI excludes 0, below
    ([0.2, -0.3, 0.1, 0.0, -0.1], 2.0, EQUIVALENT),  # CI inside ±2
    ([3.0, -2.0, 4.0, -1.0], 2.0, NOT_SETTLED),  # CI straddles 0 and a margin end
    ([0.2, -0.3, 0.1, 0.0, -0.1], 0.1, NOT_SETTLED),  # the same CI is wider than a tight margin
    ([1.0], 2.0, NOT_SETTLED),  # one unit: no interval
])
def test_verdicts_follow_the_interval_and_the_margin(values, margin, verdict):
    e = estimate(values, margin=margin)
    assert e.verdict == verdict
    if e.has_interval:  # the verdicts are the interval's: CI excludes 0 <=> p < alpha
        assert (e.low > 0 or e.high < 0) == (e.p_t < 0.05)


def test_separated_but_small_is_still_separated_and_within_the_margin_is_said():
    e = estimate([0.9, 1.0, 1.1, 1.0, 0.95], margin=2.0)
    assert e.verdict == BETTER and e.within_margin


def test_zero_spread_is_reported_as_such_never_p_zero_nor_separated():
    for value in (-1.17, 0.0):
        e = estimate([value] * 9, margin=2.0)
        assert e.verdict == ZERO_SPREAD and e.zero_spread and not e.has_interval
        assert math.isnan(e.p) and math.isnan(e.low) and e.mean == pytest.approx(value)
    fam = holm_family([estimate([-1.17] * 3, margin=2.0, key=("a",)),
                       estimate(UNITS, margin=2.0, key=("b",))])
    assert fam[0].verdict == ZERO_SPREAD and fam[1].family == 1, "zero spread is not tested"


def test_permutation_cross_check_is_the_exact_sign_flip_test_from_eight_units():
    vals = [2.0, 1.0, -0.5, 3.0, 1.5, 2.5, 0.2, 1.1, -0.7]
    e = estimate(vals, margin=2.0)
    # exact: every one of the 2**9 sign flips, counted here by brute force
    flips = [np.mean(np.array(vals) * s) for s in itertools.product((1, -1), repeat=len(vals))]
    brute = np.mean(np.abs(flips) >= abs(np.mean(vals)) - 1e-12)
    assert e.p_permutation == pytest.approx(brute)
    assert e.p == max(e.p_t, e.p_permutation) and e.permutation_agrees is not None
    assert estimate(vals[:7], margin=2.0).permutation_agrees is None


def test_the_verdict_needs_both_tests():
    # 8 equal-magnitude units, 7 positive: t says p < 0.05, the sign-flip test p = 18/256
    vals = [1.0] * 7 + [-1.0]
    e = holm_family([estimate(vals, margin=0.5)])[0]
    assert e.p_t < 0.05 < e.p_permutation == pytest.approx(18 / 256)
    assert e.permutation_agrees is False and e.verdict == NOT_SETTLED


def test_holm_over_distinct_estimands_counts_duplicates_once():
    a = estimate([3.0, 4.0, 5.0, 3.5], margin=2.0, key=("E1",))
    b = estimate([0.5, 1.5, -0.2, 0.9], margin=2.0, key=("E3",))
    c = estimate([1.0, 2.5, 0.7, 1.9], margin=2.0, key=("E4",))
    fam = holm_family([a, b, a, c])
    expected = multipletests([a.p, b.p, c.p], method="holm")[1]
    assert [f.p_adjusted for f in fam] == pytest.approx([expected[0], expected[1], expected[0],
                                                         expected[2]])
    assert {f.family for f in fam} == {3}
    assert all(f.p_adjusted >= f.p for f in fam)
    with pytest.raises(ValueError, match="share the key"):
        holm_family([a, estimate([1.0, 2.0], margin=2.0, key=("E1",))])


def test_design_power_is_statsmodels_at_the_margin():
    for sd, n in ((2.4, 16), (2.2, 12), (0.6, 6), (5.0, 3)):
        want = TTestPower().power(effect_size=2.0 / sd, nobs=n, alpha=0.05, alternative="two-sided")
        assert design_power(sd, n, 2.0) == pytest.approx(want)
    assert design_power(0.0, 2, 2.0) == 1.0
    # statsmodels underflows to nan at effect size 6.7: the power at effect size 3 bounds it
    assert math.isnan(TTestPower().power(effect_size=2.0 / 0.3, nobs=6, alpha=0.05))
    bound = TTestPower().power(effect_size=3.0, nobs=6, alpha=0.05)
    assert design_power(0.3, 6, 2.0) == pytest.approx(bound) and bound > 0.999
    # the fewest units for 80% power: the power there reaches it and one unit fewer does not
    for sd in (1.0, 2.4, 4.0):
        n = units_for_power(sd, 2.0)
        assert design_power(sd, n, 2.0) >= 0.8 > design_power(sd, n - 1, 2.0) or n == 2
        solved = TTestPower().solve_power(effect_size=2.0 / sd, power=0.8, alpha=0.05)
        assert n == math.ceil(solved) or (n == 2 and solved < 2)
    assert units_for_power(2.4, 2.0) == 14


def test_bad_inputs_name_the_value():
    with pytest.raises(ValueError, match="margin must be a positive number, got 0"):
        estimate([1.0, 2.0], margin=0)
    with pytest.raises(ValueError, match="finite"):
        estimate([1.0, float("nan")], margin=1.0)
    with pytest.raises(ValueError, match="pilot SD must be a finite number >= 0, got -1"):
        design_power(-1.0, 5, 2.0)
    with pytest.raises(ValueError, match="at least 2 units, got n = 1"):
        design_power(1.0, 1, 2.0)
    with pytest.raises(ValueError, match=r"power must be in \(0, 1\), got 1.2"):
        units_for_power(1.0, 2.0, power=1.2)


def test_beyond_sixteen_units_the_sign_flip_test_samples_and_secondary_estimates_skip_it():
    rng = np.random.default_rng(3)
    vals = list(rng.normal(1.0, 2.0, 20))
    e = estimate(vals, margin=2.0)
    res = stats.permutation_test((np.array(vals),), lambda a, axis=-1: np.mean(a, axis=axis),
                                 permutation_type="samples", n_resamples=2**16, rng=0,
                                 vectorized=True)
    assert e.p_permutation == pytest.approx(res.pvalue, abs=0.01)
    assert math.isnan(estimate(vals, margin=2.0, permutation=False).p_permutation)
