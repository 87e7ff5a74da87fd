import pytest

from rtstudy.core.stats import compare, describe, mean_ci


def test_mean_ci_matches_student_t():
    e = mean_ci([0.80, 0.82, 0.84])
    assert e.mean == pytest.approx(0.82)
    # sd = 0.02, t(2) = 4.303, half = 4.303 * 0.02 / sqrt(3)
    assert e.half_width == pytest.approx(4.303 * 0.02 / 3**0.5)


def test_single_value_and_empty():
    assert mean_ci([0.5]).n == 1 and mean_ci([0.5]).half_width == 0
    with pytest.raises(ValueError, match="at least one"):
        mean_ci([])


def test_claims_only_where_intervals_separate():
    hi, lo = mean_ci([0.90, 0.91, 0.92]), mean_ci([0.80, 0.81, 0.82])
    assert compare(hi, lo) == "better" and compare(lo, hi) == "worse"
    wide = mean_ci([0.70, 0.95, 0.85])
    assert compare(hi, wide) == "tie"
    assert compare(mean_ci([0.9]), mean_ci([0.1])) == "tie", "one seed never supports a claim"
    assert "beats" in describe("robust", hi, "natural", lo)
    assert "not distinguishable" in describe("robust", hi, "natural", wide)


# ----------------------------------------------------------------------------- against scipy
def test_mean_ci_and_correlations_agree_with_scipy():
    import numpy as np
    from scipy import stats

    from rtstudy.core.stats import pearson, spearman

    for n in (2, 3, 5, 31, 40):  # the table (to 3 decimals) and scipy beyond 30 df
        vals = [0.5 + 0.01 * ((7 * i) % 5) for i in range(n)]
        e = mean_ci(vals)
        res = stats.ttest_1samp(vals, 0.0).confidence_interval(0.95)
        assert (e.low, e.high) == pytest.approx((res.low, res.high), abs=5e-4 * (e.high - e.low))
    x, y = [0.1, 0.4, 0.2, 0.9, 0.5, 0.7], [1.0, 2.5, 1.5, 2.0, 4.0, 3.0]
    rho, r = spearman(x, y), pearson(x, y)
    assert rho.r == pytest.approx(stats.spearmanr(x, y).statistic)
    assert r.r == pytest.approx(stats.pearsonr(x, y).statistic)
    # exact two-sided permutation p over all 6! pairings, counted here by brute force
    import itertools

    rx, ry = stats.rankdata(x), stats.rankdata(y)
    null = [np.corrcoef(rx, perm)[0, 1] for perm in itertools.permutations(ry)]
    assert rho.p == pytest.approx(np.mean(np.abs(null) >= abs(rho.r) - 1e-12))
    many = list(range(12))
    assert spearman(many, [v % 5 for v in many]).p == pytest.approx(
        stats.spearmanr(many, [v % 5 for v in many]).pvalue)


# ----------------------------------------------------------------------------- paired contrasts
# per source seed, the paired differences a − b of its finetuning seeds (unequal counts)
DIFFS = {0: [0.04, 0.06, 0.05], 1: [0.02], 2: [0.07, 0.09]}
A = {0: [0.84, 0.86, 0.85], 1: [0.82], 2: [0.87, 0.89]}  # a = b + DIFFS
B = {0: [0.80, 0.80, 0.80], 1: [0.80], 2: [0.80, 0.80]}


def _means(d):
    return [sum(v) / len(v) for v in d.values()]


def test_paired_contrast_is_scipys_t_test_over_the_per_source_seed_means():
    from scipy import stats

    from rtstudy.core.stats import paired_contrast

    c = paired_contrast(DIFFS, key=("t", 0.8))
    res = stats.ttest_1samp(_means(DIFFS), 0.0)
    ci = res.confidence_interval(0.95)
    assert c.key == ("t", 0.8) and c.level == "source seeds"
    assert (c.low, c.high, c.p) == pytest.approx((ci.low, ci.high, res.pvalue))
    assert c.p_adjusted == c.p and c.n_source == 3 and c.n_finetune == (1, 3) and c.n_units == 3
    rel = stats.ttest_rel(_means(A), _means(B))  # the same test, as a paired test of a and b
    assert c.p == pytest.approx(rel.pvalue)
    assert (c.low, c.high) == pytest.approx(tuple(rel.confidence_interval(0.95)))
    assert c.points == pytest.approx(100 * c.diff) and c.ci_points == pytest.approx(
        (100 * c.low, 100 * c.high))


def test_two_stage_mean_weights_each_source_seed_equally():
    from rtstudy.core.stats import paired_contrast

    c = paired_contrast(DIFFS)
    two_stage = (0.05 + 0.02 + 0.08) / 3  # each source seed counts once
    pooled = sum(v for vs in DIFFS.values() for v in vs) / 6  # each run counts once
    assert c.diff == pytest.approx(two_stage) and c.diff == pytest.approx(0.05)
    assert pooled == pytest.approx(0.055) and c.diff != pytest.approx(pooled)


def test_holm_is_statsmodels_and_more_conservative_than_unadjusted():
    from statsmodels.stats.multitest import multipletests

    from rtstudy.core.stats import PairedContrast, holm

    ps = [0.01, 0.04, 0.03, 0.2, 0.005]
    cs = [PairedContrast((i,), 0.05, 0.01, 0.09, p, p, 3, (2, 2), 0.03, "source seeds")
          for i, p in enumerate(ps)]
    adjusted = holm(cs)
    expected = multipletests(ps, alpha=0.05, method="holm")[1]
    assert [c.p_adjusted for c in adjusted] == pytest.approx(list(expected))
    assert [c.p for c in adjusted] == ps and all(c.family == 5 for c in adjusted)
    assert all(a.p_adjusted >= c.p for a, c in zip(adjusted, cs, strict=True))
    # separated before the correction, not after: p = 0.04 (x2 in Holm's order) and 0.03 (x3)
    assert [c.verdict for c in cs] == ["better", "better", "better", "tie", "better"]
    assert [c.verdict for c in adjusted] == ["better", "tie", "tie", "tie", "better"]
    assert holm(adjusted) == adjusted, "adjusting twice is adjusting once (from the raw p)"
    worse = holm([PairedContrast((), -0.05, -0.09, -0.01, 0.001, 0.001, 3, (2, 2), 0.03,
                                 "source seeds")])
    assert worse[0].verdict == "worse"


def test_mde_is_statsmodels_power_solve_times_the_sd_and_shrinks_with_source_seeds():
    import numpy as np
    from statsmodels.stats.power import TTestPower

    from rtstudy.core.stats import mde, paired_contrast

    c = paired_contrast(DIFFS)
    d = TTestPower().solve_power(nobs=3, alpha=0.05, power=0.8, alternative="two-sided")
    assert c.mde == pytest.approx(d * np.std(_means(DIFFS), ddof=1))
    assert c.mde_points == pytest.approx(100 * c.mde)
    # a design with this mde detects a true difference of mde with 80% power
    power = TTestPower().power(effect_size=c.mde / np.std(_means(DIFFS), ddof=1), nobs=3,
                               alpha=0.05, alternative="two-sided")
    assert power == pytest.approx(0.8, abs=1e-6)
    mdes = [mde(n, 0.02) for n in (2, 3, 5, 10, 30)]
    assert all(a > b for a, b in zip(mdes, mdes[1:], strict=False)), mdes
    grown = [paired_contrast({s: [0.04 + 0.01 * (s % 3)] * 2 for s in range(n)}).mde
             for n in (3, 6, 12)]  # the same spread of source seeds, more of them
    assert grown[0] > grown[1] > grown[2], grown
    assert mde(1, 0.02) == float("inf") and mde(0, 0.02) == float("inf")


def test_single_source_seed_falls_back_to_the_finetuning_seeds():
    from scipy import stats

    from rtstudy.core.stats import paired_contrast

    c = paired_contrast({7: [0.04, 0.06, 0.05]})
    res = stats.ttest_1samp([0.04, 0.06, 0.05], 0.0)
    assert c.level == "finetuning seeds" and c.n_source == 1 and c.n_finetune == (3, 3)
    assert (c.diff, c.low, c.high, c.p) == pytest.approx(
        (0.05, *res.confidence_interval(0.95), res.pvalue))
    assert c.n_units == 3 and c.verdict == "better"


def test_zero_variance_and_too_few_units_without_warnings_or_nan_verdicts():
    import math
    import warnings

    from rtstudy.core.stats import holm, paired_contrast

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no RuntimeWarning from scipy or statsmodels
        same = paired_contrast({0: [0.85 - 0.80, 0.86 - 0.81], 1: [0.05], 2: [0.05, 0.05]})
        zero = paired_contrast({0: [0.0, 0.0], 1: [0.0, 0.0]})
        one = paired_contrast({0: [0.4]})
        none = paired_contrast({})
        adjusted = holm([same, zero, one, none])
    assert same.low == same.high == pytest.approx(0.05) and same.p == 0 and same.mde == 0
    assert same.verdict == "better"
    assert zero.diff == 0 and zero.low == zero.high == 0 and zero.p == 1 and zero.verdict == "tie"
    assert one.diff == pytest.approx(0.4) and math.isnan(one.low) and math.isnan(one.p)
    assert one.mde == math.inf and one.verdict == "tie" and not one.has_interval
    assert none.n_source == 0 and none.verdict == "tie" and none.mde == math.inf
    assert [c.family for c in adjusted] == [2, 2, 2, 2], "untested contrasts are not in the family"
    assert math.isnan(adjusted[2].p_adjusted) and adjusted[2].verdict == "tie"
    assert adjusted[0].verdict == "better" and adjusted[1].verdict == "tie"
