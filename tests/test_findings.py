"""Every finding function on hand-made rows: its verdict words and its numbers, and the registry.

The E1 ... E9 findings rest on paired contrasts over source seeds (rows with ``source_seed``
and ``init``, 3 source seeds x 2 finetuning seeds, see ``_pair``), corrected with Holm across
each notebook. The older interval-overlap helpers (``contrasts``, ``contrast_finding``,
``sweep_finding``) keep their tests on ``_seeds``: three seeds ``m - 0.01, m, m + 0.01`` give
mean ``m`` and a 95% half-width of 2.5 points.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from rtstudy import experiments as X
from rtstudy.core.stats import Estimate
from rtstudy.results import record, row

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
R = "FGSM-RS ℓ∞ 2/255"  # the robust source's name in the sentences


def _seeds(m: float) -> list[float]:
    """Three seeds with mean ``m``, spread ±0.01: a 95% half-width of 2.5 points."""
    return [m - 0.01, m, m + 0.01]


def _cell(values: list[float], *, task: str = "t", source: str = "natural",
          eps: float | None = None, scheme: str = "omp", pattern: str = "unstructured",
          sparsity: float = 0.8, metric: str = "test_acc", **extra) -> list[dict]:
    """One configuration's rows, one per seed."""
    eps = (0.0 if source == "natural" else 2 / 255) if eps is None else eps
    return [row(task, source, eps, scheme, pattern, sparsity, seed, metric, v, **extra)
            for seed, v in enumerate(values)]


def _rows(values: dict[tuple[str, str, float], list[float]], metric: str = "test_acc") -> list[dict]:
    """Rows from ``{(task, source, sparsity): [value per seed]}``."""
    out = []
    for (task, source, sparsity), vals in values.items():
        for seed, v in enumerate(vals):
            out.append(row(task, source, 0.0 if source == "natural" else 2 / 255, "omp", "unstructured",
                           sparsity, seed, metric, v))
    return out


def _est(mean, half, n=3):
    return Estimate(mean, mean - half, mean + half, n)


# ----------------------------------------------------------------------------- shared helpers
def test_contrast_finding_claims_only_where_intervals_separate():
    rows = _rows({
        ("mnist5k", "natural", 0.5): [0.80, 0.81, 0.79],
        ("mnist5k", "robust", 0.5): [0.90, 0.91, 0.89],  # separated: better
        ("mnist5k", "natural", 0.8): [0.70, 0.80, 0.60],
        ("mnist5k", "robust", 0.8): [0.72, 0.82, 0.62],  # overlapping: tie
        ("digits", "natural", 0.5): [0.90, 0.91, 0.90],
        ("digits", "robust", 0.5): [0.80, 0.81, 0.80],  # separated: worse
    })
    cs = X.contrasts(rows, by=("task", "sparsity"))
    verdicts = {c.key: c.verdict for c in cs}
    assert verdicts == {("digits", 0.5): "worse", ("mnist5k", 0.5): "better", ("mnist5k", 0.8): "tie"}
    assert X.tally(cs) == {"better": 1, "tie": 1, "worse": 1}
    text = X.contrast_finding(cs, "robust", "natural", ("task", "sparsity"))
    assert "3 seeds" in text
    assert "On mnist5k, robust beats natural at sparsity 50% (+10.0 points)" in text
    assert "the intervals overlap at 80% (+2.0 points)" in text
    assert "On digits, robust trails natural at sparsity 50% (-10.0 points)" in text


def test_contrast_finding_all_ties_and_single_seed_claims_nothing():
    rows = _rows({("t", "natural", 0.5): [0.5, 0.6], ("t", "robust", 0.5): [0.52, 0.61]})
    text = X.contrast_finding(X.contrasts(rows), "robust", "natural", ("task", "sparsity"))
    assert "not distinguishable at any sparsity tested" in text and "beats" not in text
    one = _rows({("t", "natural", 0.5): [0.1], ("t", "robust", 0.5): [0.9]})
    cs = X.contrasts(one)
    assert cs[0].verdict == "tie"
    text = X.contrast_finding(cs, "robust", "natural", ("task", "sparsity"))
    assert "single seed" in text and "beats" not in text
    assert "No configuration" in X.contrast_finding([], "robust", "natural", ("task",))


def test_sweep_finding_inverted_u_only_when_interior_best_separates_from_both_ends():
    u = {0.0: _est(0.5, 0.01), 2 / 255: _est(0.7, 0.01), 8 / 255: _est(0.6, 0.01)}
    assert "an inverted U" in X.sweep_finding(u) and "2/255" in X.sweep_finding(u)
    weak = {0.0: _est(0.5, 0.2), 2 / 255: _est(0.6, 0.15), 8 / 255: _est(0.4, 0.01)}
    text = X.sweep_finding(weak)
    assert "not established" in text and "overlaps 0" in text and "separates from 8/255" in text
    end = {0.0: _est(0.8, 0.01), 2 / 255: _est(0.7, 0.01), 8 / 255: _est(0.6, 0.01)}
    assert "no interior optimum" in X.sweep_finding(end)
    end_overlap = {0.0: _est(0.65, 0.1), 2 / 255: _est(0.62, 0.01), 8 / 255: _est(0.6, 0.1)}
    text = X.sweep_finding(end_overlap)
    assert "no interior optimum" not in text and "do not rule one out" in text
    assert "no inverted U can be judged" in X.sweep_finding({0.0: _est(0.5, 0.1), 1.0: _est(0.6, 0.1)})


def test_tally_sentence_counts_each_verdict():
    hi, lo, wide = _est(0.9, 0.01), _est(0.5, 0.01), _est(0.7, 0.3)
    cs = [X.Contrast(("a",), hi, lo), X.Contrast(("b",), hi, lo), X.Contrast(("c",), lo, hi),
          X.Contrast(("d",), wide, hi)]
    assert X.tally_sentence(cs, "Overall", "(task)", subject="robust") == (
        " Overall: robust better in 2, indistinguishable in 1, worse in 1 of 4 (task) cells.")
    assert X.tally_sentence(cs[:1], "Sanity", "(x)").startswith(" Sanity: better in 1,")


def test_best_level():
    u = {0.0: _est(0.5, 0.01), 2 / 255: _est(0.7, 0.01), 8 / 255: _est(0.6, 0.01)}
    assert X.best_level(u) == 2 / 255 and X.best_level(u, higher=False) == 0.0


# ----------------------------------------------------------------------------- E0 ... E9
def test_quickstart_finding_reports_one_seed_and_claims_nothing():
    rows = (_cell([0.37], sparsity=0.0) + _cell([0.40], source="robust", sparsity=0.0)
            + _cell([0.17]) + _cell([0.165], source="robust"))
    finding = X.quickstart_finding(rows, source_task="digits", target="mnist5k", sparsity=0.8,
                                   eps=2 / 255)
    assert finding == (
        "One seed, digits → mnist5k: the robust (2/255) 80% OMP ticket reached 16.5% vs the "
        "natural ticket's 17.0% (-0.5 points); dense models 40.0% vs 37.0% (+3.0). Single-seed "
        "differences are anecdotes, not findings: see E1 for intervals.")
    assert finding.markdown == f"**Finding.** {finding}"


# ----------------------------------------------------------------------------- paired rows
# Three source seeds x two finetuning seeds. The natural run of source seed ``ss``, finetuning
# seed ``k`` scores ``base + 0.02 ss + OFF[ss][k]``; the robust run adds ``diffs[ss] + JIT[k]``,
# so the per-source-seed mean difference is exactly ``diffs[ss]`` (JIT averages out) and the
# contrast is scipy's one-sample t test over ``diffs``.
OFF = {0: (-0.01, 0.01), 1: (0.0, 0.0), 2: (0.01, -0.01)}
JIT = (-0.001, 0.001)
SEP = [0.045, 0.05, 0.055]  # +5.0 points, p = 0.0033: survives a Holm family of up to 15
EDGE = [0.035, 0.05, 0.065]  # +5.0 points, p = 0.029: separated alone, not in a family of 3
NULL = [0.0, 0.01, -0.005]  # +0.2 points, p = 0.74
NEG = [-0.045, -0.05, -0.055]


def _runs(values: dict[int, list[float]], *, source: str = "natural", eps: float | None = None,
          task: str = "t", scheme: str = "omp", pattern: str = "unstructured",
          sparsity: float = 0.8, metric: str = "test_acc", init: str = "pretrained",
          **extra) -> list[dict]:
    """Rows of one source: ``{source seed: [value per finetuning seed]}``."""
    eps = (0.0 if source == "natural" else 2 / 255) if eps is None else eps
    return [row(task, source, eps, scheme, pattern, sparsity, seed, metric, v, source_seed=ss,
                init=init, **extra)
            for ss, vals in values.items() for seed, v in enumerate(vals)]


def _natural(base: float, n_source: int = 3) -> dict[int, list[float]]:
    return {ss: [base + 0.02 * ss + o for o in OFF[ss]] for ss in range(n_source)}


def _shift(values: dict[int, list[float]], diffs: list[float]) -> dict[int, list[float]]:
    return {ss: [v + diffs[ss] + JIT[k] for k, v in enumerate(vals)]
            for ss, vals in values.items()}


def _pair(diffs: list[float], *, base: float = 0.70, nat: dict | None = None,
          rob: dict | None = None, **kw) -> list[dict]:
    """Natural and robust rows of one configuration; robust − natural = ``diffs`` per source
    seed. ``nat``/``rob``: extra columns of one side (e.g. ``source_label``)."""
    n = _natural(base, len(diffs))
    return (_runs(n, **kw, **(nat or {}))
            + _runs(_shift(n, diffs), source="robust", **kw, **(rob or {})))


def _controls(gain: list[float], *, task: str = "t", base: float = 0.70, **kw) -> list[dict]:
    """Dense pretrained rows of both sources (robust − natural = NULL) and their from-scratch
    controls, pretrained − scratch = ``gain`` per source seed (both sources)."""
    out = []
    n = _natural(base)
    for source, vals in (("natural", n), ("robust", _shift(n, NULL))):
        out += _runs(vals, source=source, task=task, sparsity=0.0, **kw)
        out += _runs(_shift(vals, [-g for g in gain]), source=source, task=task, sparsity=0.0,
                     init="scratch", **kw)
    return out


GAIN = [0.30, 0.32, 0.34]  # +32.0 points over scratch, p = 0.0013
NO_GAIN = [0.01, -0.012, 0.005]  # +0.1 points, p = 0.9


def _t(diffs: list[float]):
    from scipy import stats

    return stats.ttest_1samp(diffs, 0.0)


def test_the_hand_made_rows_have_the_stated_statistics():
    assert _t(SEP).pvalue == pytest.approx(0.0033, abs=1e-4)
    assert _t(EDGE).pvalue == pytest.approx(0.0287, abs=1e-4)
    assert _t(NULL).pvalue == pytest.approx(0.742, abs=1e-3)
    cs = X.paired_contrasts(_pair(EDGE) + _pair(NULL, sparsity=0.95))
    assert [c.key for c in cs] == [("t", 0.8), ("t", 0.95)]
    assert [c.p for c in cs] == pytest.approx([_t(EDGE).pvalue, _t(NULL).pvalue])
    assert cs[0].diff == pytest.approx(0.05) and cs[0].n_source == 3 and cs[0].n_finetune == (2, 2)


# ----------------------------------------------------------------------------- rows -> contrasts
def test_paired_contrasts_pair_by_source_seed_and_finetuning_seed():
    rows = _pair(SEP)
    # the pairing matters: natural rows in another order give the same contrast
    assert X.paired_contrasts(list(reversed(rows)))[0].diff == pytest.approx(0.05)
    # a robust run without its natural partner is dropped, not averaged in
    extra = _runs({5: [0.99, 0.99]}, source="robust")
    c = X.paired_contrasts(rows + extra)[0]
    assert c.n_source == 3 and c.diff == pytest.approx(0.05)
    # rows without source_seed / init count as source seed 0, pretrained
    bare = [{k: v for k, v in r.items() if k not in ("source_seed", "init")} for r in rows
            if r["source_seed"] == 0]
    one = X.paired_contrasts(bare)[0]
    assert one.n_source == 1 and one.level == "finetuning seeds" and one.n_finetune == (2, 2)
    # from-scratch rows are left out unless asked for
    scratch = _runs(_natural(0.1), init="scratch") + _runs(_natural(0.9), source="robust",
                                                           init="scratch")
    assert X.paired_contrasts(rows + scratch)[0].diff == pytest.approx(0.05)
    asked = X.paired_contrasts(rows + scratch, init="scratch")[0]
    assert asked.diff == pytest.approx(0.8)
    with pytest.raises(ValueError, match="add the column that tells them apart"):
        X.paired_contrasts(rows + _pair(NULL, scheme="random"))  # two schemes, not in `by`
    assert len(X.paired_contrasts(rows + _pair(NULL, scheme="random"),
                                  by=("task", "scheme"))) == 2


def test_transfer_gains_are_pretrained_minus_scratch_per_source():
    gains = X.transfer_gains(_controls(GAIN), by=("task",))
    assert [c.key for c in gains] == [("t", "natural"), ("t", "robust")]
    for c in gains:
        assert c.diff == pytest.approx(0.32) and c.p == pytest.approx(_t(GAIN).pvalue)


def test_paired_finding_words_verdicts_from_adjusted_p_and_names_the_design():
    cs = X.holm(X.paired_contrasts(_pair(SEP) + _pair(NEG, task="u") + _pair(NULL, task="v")))
    text = X.paired_finding(cs, "robust", "natural", ("task", "sparsity"))
    assert (f"On t, robust beats natural at sparsity 80% (+5.0 points, 95% CI [+3.8, +6.2], "
            f"Holm-adjusted p = {3 * _t(SEP).pvalue:.2g}).") in text  # the smallest of 3, x3
    assert "On u, robust trails natural at sparsity 80% (-5.0 points" in text
    assert "On v, at sparsity 80%, no difference between robust and natural larger than 2.5 " \
        "points (the smallest the design detects at 80% power; observed +0.2" in text
    assert text.endswith("verdicts use p-values Holm-adjusted across the 3 contrasts of this "
                         "notebook (α = 0.05); a tie reads \"no difference larger than X points\", "
                         "X being the smallest true difference the design detects with 80% power "
                         "(two-sided α = 0.05 before the correction).")
    assert "Paired differences over 3 source seeds × 2 finetuning seeds; the CI is a t interval " \
        "over the per-source-seed mean differences;" in text
    assert "No configuration" in X.paired_finding([], "robust", "natural", ("task",))


# ----------------------------------------------------------------------------- E1
def test_main_finding_holm_separates_before_but_not_after_correction():
    rows = _pair(SEP) + _pair(EDGE, sparsity=0.9) + _pair(NULL, sparsity=0.95)
    finding = X.main_finding(rows, R)
    text, design = finding.paragraphs
    p_sep = 3 * _t(SEP).pvalue  # Holm: the smallest of 3 p-values x3, the next x2
    assert text.startswith(f"Test accuracy. On t, the robust ({R}) ticket beats the natural one at "
                           f"sparsity 80% (+5.0 points, 95% CI [+3.8, +6.2], Holm-adjusted "
                           f"p = {p_sep:.2g})")
    assert ("at sparsity 90%, the difference is not separated after the Holm correction "
            "(observed +5.0 points, 95% CI [+1.3, +8.7], p = 0.029 before correction, "
            "Holm-adjusted p = 0.057; the design detects 4.9 points at 80% power before "
            "correction)") in text
    assert ("at sparsity 95%, no difference larger than 2.5 points (the smallest the design "
            "detects at 80% power; observed +0.2, 95% CI [-1.7, +2.1], Holm-adjusted "
            "p = 0.74)") in text
    assert text.endswith(" Overall (Holm-adjusted): robust better in 1, tied in 2 (no difference "
                         "larger than 2.5 points in 1), worse in 0 of 3 (task, sparsity) cells.")
    assert design.startswith("Paired differences over 3 source seeds × 2 finetuning seeds; the CI "
                             "is a t interval over the per-source-seed mean differences; verdicts "
                             "use p-values Holm-adjusted across the 3 contrasts of this notebook")
    assert "no from-scratch control" in design
    alone = X.main_finding(_pair(EDGE, sparsity=0.9), R)
    assert ("beats the natural one at sparsity 90% (+5.0 points, 95% CI [+1.3, +8.7], "
            "Holm-adjusted p = 0.029)") in alone and "across the 1 contrast of" in alone
    worse = X.main_finding(_pair(NEG), R)
    assert "trails the natural one at sparsity 80% (-5.0 points" in worse and "beats" not in worse


def test_main_finding_mde_is_the_power_solve_of_the_design():
    import numpy as np
    from statsmodels.stats.power import TTestPower

    finding = X.main_finding(_pair(NULL), R)
    d = TTestPower().solve_power(nobs=3, alpha=0.05, power=0.8, alternative="two-sided")
    mde = 100 * d * np.std(NULL, ddof=1)
    assert (f"On t, at sparsity 80%, no difference between the robust ({R}) ticket and the "
            f"natural one larger than {mde:.1f} points (the smallest the design detects at 80% "
            "power; observed +0.2, 95% CI [-1.7, +2.1], Holm-adjusted p = 0.74).") in finding
    assert "beats" not in finding and "trails" not in finding


def test_main_finding_with_a_single_source_seed_says_the_source_variance_is_missing():
    rows = _pair(SEP[:1])
    finding = X.main_finding(rows, R)
    assert "Paired differences over 1 source seed × 2 finetuning seeds" in finding
    assert ("with a single source seed the CI is a t interval over the finetuning seeds, so the "
            "variance between source models is not in the interval") in finding
    assert "per-source-seed mean differences" not in finding
    one_run = X.main_finding(_runs({0: [0.5]}) + _runs({0: [0.9]}, source="robust"), R)
    assert "nothing can be said (+40.0 points from a single run, no interval)" in one_run
    assert "beats" not in one_run and "a single run gives no interval" in one_run


def _gate_rows(gains: list[float], task: str = "u") -> list[dict]:
    """A gate's rows (``run_gate``): dense natural and robust models and their controls under
    ``len(gains)`` source seeds, pretrained − scratch = ``gains[source seed]`` (both sources)."""
    out = []
    for source, eps in (("natural", 0.0), ("robust", 2 / 255)):
        for ss, g in enumerate(gains):
            for seed, jit in enumerate((0.0, 0.004)):
                v = 0.7 + 0.01 * ss + jit
                for init, value in (("pretrained", v), ("scratch", v - g)):
                    out.append(row(task, source, eps, "omp", "unstructured", 0.0, seed, "test_acc",
                                   value, source_seed=ss, init=init, gate=True))
    return out


def test_the_gate_uses_its_own_source_seeds_and_is_a_family_of_its_own():
    gains = [0.06, 0.02, 0.09, 0.04, 0.07, 0.05]  # +5.5 points: p = 0.11 over 3 seeds, 0.003 over 6
    assert _t(gains[:3]).pvalue > 0.05 and _t(gains).pvalue < 0.005
    cells = _pair(SEP, task="u") + _pair(NULL, task="u", sparsity=0.5)
    three = X.main_finding(cells, R, gate_rows=_gate_rows(gains[:3]))
    six = X.main_finding(cells, R, gate_rows=_gate_rows(gains))
    assert three.paragraphs[0].startswith("On u pretraining gives nothing separable")
    assert "No (task, sparsity) cell is ranked" in three
    assert six.paragraphs[0].startswith("Pretraining transfers on u: dense natural +5.5 points")
    assert "beats the natural one at sparsity 80% (+5.0" in six
    # the gate rows are the gate only: the dense models are no cell of the contrasts
    assert "sparsity 0%" not in six.paragraphs[1]
    assert "the transfer gains (6 source seeds) are the gate" in six.paragraphs[-1]
    assert "Holm-adjusted as a family of their own (2)" in six.paragraphs[-1]
    # the gate's verdict does not depend on how many contrasts the notebook asks
    more = cells + sum((_pair(NULL, task="u", sparsity=s) for s in (0.6, 0.7, 0.9, 0.95)), [])
    wide = X.main_finding(more, R, gate_rows=_gate_rows(gains))
    assert wide.paragraphs[0] == six.paragraphs[0]


def test_main_finding_ranks_only_where_pretraining_transfers():
    rows = (_controls(GAIN, task="t") + _pair(SEP, task="t")
            + _controls(NO_GAIN, task="u") + _pair(SEP, task="u"))
    finding = X.main_finding(rows, R)
    lead, text, design = finding.paragraphs
    assert lead.startswith("Pretraining transfers on t: dense natural +32.0 points over scratch "
                           "(95% CI [+27.0, +37.0], Holm-adjusted p = ")
    assert "; dense robust (ε = 2/255) +32.0 points over scratch (95% CI" in lead
    assert ("On u pretraining gives nothing separable over training from scratch, so tickets are "
            "not ranked there: dense natural +0.1 points over scratch (95% CI [-2.8, +3.0], "
            "Holm-adjusted p = 1; no difference larger than 3.8 points, the smallest the design "
            "detects at 80% power); dense robust") in lead
    assert "On t, the robust" in text and "beats the natural one at sparsity 80% (+5.0" in text
    assert "On u" not in text, "u's tickets would separate, but u is not ranked"
    assert text.endswith("of 2 ranked (task, sparsity) cells; 2 cells not ranked (no separable "
                         "transfer gain).")
    # gatekeeping: the 4 gains are one family, the 2 cells of t (u not ranked) the other
    assert "Holm-adjusted as a family of their own (4)" in design
    assert "across the 2 contrasts of the cells it lets through" in design
    assert "no from-scratch control" not in design


# ----------------------------------------------------------------------------- E2
def _sweep(diffs_by_eps: dict[float, list[float]], **kw) -> list[dict]:
    n = _natural(0.5)
    rows = []
    for eps, diffs in diffs_by_eps.items():
        rows += (_runs(n, **kw) if eps == 0 else
                 _runs(_shift(n, diffs), source="robust", eps=eps, **kw))
    return rows


U = {0.0: None, 2 / 255: [0.19, 0.20, 0.22], 8 / 255: [0.09, 0.10, 0.115]}


def test_eps_sweep_finding_claims_an_inverted_u_only_when_both_ends_separate():
    finding = X.eps_sweep_finding(_sweep(U))
    text = finding.paragraphs[0]
    assert text.startswith("On t at 80% sparsity, against natural (ε = 0): ε = 2/255 beats it "
                           "(+20.3 points, 95% CI [+16.5, +24.1], Holm-adjusted p = ")
    assert ("An inverted U: ε = 2/255 beats both ε = 0 and the largest ε = 8/255 after "
            "correction (over the largest ε = 8/255: +10.2 points") in text
    assert "across the 3 contrasts" in finding  # 2/255 and 8/255 vs 0, 2/255 vs 8/255


def test_eps_sweep_finding_suggested_and_not_shown():
    weak = X.eps_sweep_finding(_sweep({0.0: None, 2 / 255: [0.02, 0.05, 0.08],
                                       8 / 255: [0.0, 0.01, 0.02]}))
    assert ("The best mean is at the interior ε = 2/255, but after correction it is not separated "
            "from ε = 0 (+5.0 points") in weak
    assert "or from the largest ε = 8/255 (+4.0 points" in weak
    assert weak.paragraphs[0].endswith("an inverted U is suggested, not shown.")
    assert "An inverted U:" not in weak
    monotone = X.eps_sweep_finding(_sweep({0.0: None, 2 / 255: SEP, 8 / 255: [0.1, 0.11, 0.12]}))
    assert ("The best mean is at ε = 8/255, the largest value tested, so an inverted U is not "
            "shown.") in monotone
    assert "ε = 2/255 beats it (+5.0 points" in monotone
    two = X.eps_sweep_finding(_sweep({0.0: None, 2 / 255: NULL}))
    assert "With 2 values of ε an inverted U is not shown" in two
    assert "ε = 2/255: no difference larger than 2.5 points" in two
    assert X.eps_sweep_finding([]) == "No results."


def test_eps_sweep_finding_is_gated_by_the_transfer_gain():
    rows = _sweep(U, task="u") + _controls(NO_GAIN, task="u")
    finding = X.eps_sweep_finding(rows)
    assert "On u pretraining gives nothing separable over training from scratch" in finding
    assert "No (task, sparsity) cell is ranked." in finding and "inverted U" not in finding


# ----------------------------------------------------------------------------- E3, E4
def _patterns() -> list[dict]:
    rows = []
    for label, pattern, sparsity, diffs in (("unstructured 80%", "unstructured", 0.8, SEP),
                                            ("2:4", "nm", 0.5, NULL)):
        kw = {"pattern": pattern, "sparsity": sparsity, "pattern_label": label}
        rows += _pair(diffs, **kw)
        # random tickets: far below OMP, and robust-random far below natural-random, so that
        # pooling them into the OMP comparison would change its numbers
        rows += _pair([-0.2, -0.21, -0.19], base=0.40, scheme="random", **kw)
    return rows


def test_pattern_finding_compares_omp_tickets_only_and_checks_against_random():
    finding = X.pattern_finding(_patterns(), R)
    assert (f"On t, the robust ({R}) OMP ticket beats the natural one at pattern unstructured 80% "
            "(+5.0 points") in finding
    assert "at pattern 2:4, no difference larger than 2.5 points" in finding
    assert (" Sanity check, OMP vs random tickets at the same per-layer sparsity (Holm-adjusted): "
            "OMP better in 4, tied in 0, worse in 0 of 4 (task, source, pattern) cells.") in finding
    assert "across the 6 contrasts of this notebook" in finding  # 2 cells + 4 sanity


def test_pattern_finding_adds_omp_vs_random_under_the_probe_to_its_holm_family():
    probe = []
    for scheme, base in (("omp", 0.60), ("random", 0.30)):  # OMP +30 points under the probe
        probe += _pair(NULL, base=base, scheme=scheme, regime="probe",
                       pattern="unstructured", sparsity=0.8, pattern_label="unstructured 80%")
    finding = X.pattern_finding(_patterns(), R, probe)
    assert ("Where magnitude tickets keep their advantage: under a linear probe (the pruned "
            "pretrained features frozen, only a new head trained on T) the OMP ticket is +30.0 "
            "points from the random one on average.") in finding
    assert ("OMP vs random under the probe (Holm-adjusted): OMP better in 2, tied in 0, worse in 0 "
            "of 2 (task, source, pattern) cells.") in finding
    assert "across the 8 contrasts of this notebook" in finding  # 2 cells + 4 sanity + 2 probe
    assert X.pattern_finding(_patterns(), R) == X.pattern_finding(_patterns(), R, [])


def _schemes(schemes=("omp", "imp_source", "random")) -> list[dict]:
    diffs = {"omp": SEP, "imp_source": NULL, "random": NEG}
    base = {"omp": 0.80, "imp_source": 0.82, "random": 0.50}
    return [r for s in schemes for r in _pair(diffs[s], base=base[s], scheme=s)]


def test_scheme_finding_per_scheme_and_sanity_against_random():
    finding = X.scheme_finding(_schemes(), R)
    assert f"the robust ({R}) ticket beats the natural one at scheme omp (+5.0 points" in finding
    assert "trails the natural one at scheme random (-5.0 points" in finding
    assert "at scheme imp_source, no difference larger than 2.5 points" in finding
    assert (" Sanity check, drawn (omp, imp_source) vs random tickets (Holm-adjusted): better in "
            "4, tied in 0, worse in 0 of 4 (scheme, task, source) cells.") in finding
    assert X.scheme_finding(_schemes(), R, ["omp", "imp_source", "random"]) == finding
    without = X.scheme_finding(_schemes(("omp", "imp_source")), R)
    assert "Sanity check" not in without and "beats the natural one at scheme omp" in without


# ----------------------------------------------------------------------------- E5
def test_attack_finding_one_paragraph_per_comparison():
    names = ["natural", R, "PGD-3 ℓ∞ 2/255", "FGSM-RS ℓ2 0.25"]
    diffs = {R: SEP, "PGD-3 ℓ∞ 2/255": [0.055, 0.06, 0.065], "FGSM-RS ℓ2 0.25": NULL}
    n = _natural(0.8)
    rows = _runs(n, source_label="natural")
    for name, d in diffs.items():
        rows += _runs(_shift(n, d), source="robust", source_label=name)
    finding = X.attack_finding(rows, names)
    p = finding.paragraphs
    assert len(p) == 6 and finding == " ".join(p)
    assert p[0].startswith(f"{R} vs natural. {R} beats natural at task t (+5.0 points, 95% CI")
    assert p[1].startswith("PGD-3 ℓ∞ 2/255 vs natural. PGD-3 ℓ∞ 2/255 beats natural at task t "
                           "(+6.0 points")
    assert p[2] == ("FGSM-RS ℓ2 0.25 vs natural. At task t, no difference between FGSM-RS ℓ2 0.25 "
                    "and natural larger than 2.5 points (the smallest the design detects at 80% "
                    "power; observed +0.2, 95% CI [-1.7, +2.1], Holm-adjusted p = 0.74).")
    assert p[3].startswith(f"Attack kind: PGD-3 ℓ∞ 2/255 vs {R}. ")
    assert "no difference larger than" in p[3] or "beats" in p[3]
    assert p[4].startswith(f"Norm: FGSM-RS ℓ2 0.25 vs {R}. FGSM-RS ℓ2 0.25 trails {R} at task t "
                           "(-4.8 points")
    assert p[5].startswith("Paired differences over 3 source seeds × 2 finetuning seeds")
    assert "across the 5 contrasts" in p[5]
    assert finding.markdown == "**Finding.** " + "\n\n".join(p)


# ----------------------------------------------------------------------------- E6, E7
def _fractions(diffs: dict[float, list[float]], task: str = "t") -> list[dict]:
    return [r for f, d in diffs.items() for r in _pair(d, task=task, fraction=f)]


def test_data_finding_tests_whether_the_difference_grows_as_data_shrink():
    rows = _fractions({0.01: [0.075, 0.08, 0.085], 0.1: SEP, 1.0: [0.015, 0.02, 0.025]})
    finding = X.data_finding(rows, R)
    assert (f"On t, the robust ({R}) ticket beats the natural one at fraction of T 1% (+8.0 "
            "points") in finding
    assert ("Does the robust − natural difference grow as the data shrink (the difference with "
            "the least data minus that with the most, paired)? On t it is larger with 1% of the "
            "data than with 100% (+6.0 points, 95% CI [+6.0, +6.0], Holm-adjusted p < 0.001).") \
        in finding
    flat = X.data_finding(_fractions({0.01: EDGE, 1.0: SEP}, task="u"), R, ["u"])
    assert ("On u, between 1% and 100% of the data, no difference larger than 3.3 points (the "
            "smallest the design detects at 80% power; observed +0.0, 95% CI [-2.5, +2.5]") in flat
    assert "growth as the data shrink is not shown" in flat
    one = X.data_finding(_fractions({0.1: SEP}), R)
    assert "Does the robust" not in one and "beats the natural one at fraction of T 10%" in one


def test_regime_finding_gives_the_mean_difference_per_regime():
    rows = []
    for regime, sparsity, diffs in (("finetune", 0.0, NULL), ("finetune", 0.8, NULL),
                                    ("probe", 0.0, SEP), ("probe", 0.8, [0.065, 0.07, 0.075])):
        rows += _pair(diffs, sparsity=sparsity, regime=regime)
    finding = X.regime_finding(rows, R)
    assert (f"On t, the robust ({R}) source beats the natural one at regime probe, sparsity 0% "
            "(+5.0 points") in finding
    assert "and regime probe, sparsity 80% (+7.0 points" in finding
    assert "at regime finetune, sparsity 0%, no difference larger than 2.5 points" in finding
    assert ("Mean of the ranked cells' robust − natural differences per regime (descriptive, not "
            "a test): finetune +0.2 points, probe +6.0 points.") in finding
    assert "Mean of the ranked" not in X.regime_finding(rows, R, ["finetune", "scratch"])


def test_regime_finding_gates_each_regime_by_its_own_transfer_gain():
    rows = (_pair(SEP, regime="finetune") + _controls(GAIN, regime="finetune")
            + _pair(SEP, regime="probe") + _controls(NO_GAIN, regime="probe"))
    finding = X.regime_finding(rows, R)
    assert "Pretraining transfers on t (regime finetune)" in finding
    assert ("On t (regime probe) pretraining gives nothing separable over training from scratch"
            in finding)
    assert "regime finetune, sparsity 80% (+5.0 points" in finding
    assert "regime probe, sparsity 80%" not in finding


# ----------------------------------------------------------------------------- E8
def _gains(diffs: dict[str, list[float]]) -> dict[str, X.PairedContrast]:
    """``{target: robust − natural}``, one finetuning seed per source seed."""
    return {t: X.paired_contrast({ss: [v] for ss, v in enumerate(d)}, (t,))
            for t, d in diffs.items()}


def test_gap_finding_claims_no_trend_with_fewer_than_five_targets():
    gains = _gains({"near": NULL, "mid": SEP, "far": [0.075, 0.08, 0.085],
                    "farther": [0.095, 0.1, 0.105]})
    dist = {"near": 0.5, "mid": 2.0, "far": 9.0, "farther": 12.0}
    finding = X.gap_finding(gains, dist)
    assert finding.startswith("A trend with the domain gap is not shown: spearman ρ = +1.00 "
                              "(n = 4, p = 0.083); only 4 targets, and a trend needs at least 5.")
    per_target = finding.split("Per target, robust − natural: ")[1]
    assert per_target.index("near (distance 0.5)") < per_target.index("mid (distance 2)") \
        < per_target.index("far (distance 9)")
    assert "far (distance 9): robust beats natural (+8.0 points, 95% CI" in finding
    assert "near (distance 0.5): no difference larger than 2.5 points" in finding
    assert "Differences range from +0.2 to +10.0 points." in finding
    two = X.gap_finding({t: gains[t] for t in ("near", "mid")}, dist)
    assert two.startswith("A trend with the domain gap is not shown: only 2 ranked targets")
    assert "spearman" not in two


def test_gap_finding_claims_a_trend_with_five_targets_and_a_significant_test():
    diffs = {f"t{i}": [0.01 * i + 0.001 * j for j in (-1, 0, 1)] for i in range(1, 6)}
    dist = {f"t{i}": float(i) for i in range(1, 6)}
    finding = X.gap_finding(_gains(diffs), dist)
    assert finding.startswith("The robust − natural difference grows with the measured domain "
                              "distance across 5 targets: spearman ρ = +1.00 (n = 5, p = 0.017)")
    falling = X.gap_finding(_gains(diffs), {t: -d for t, d in dist.items()})
    assert "difference shrinks with the measured domain distance" in falling
    noisy = X.gap_finding(_gains(diffs), {"t1": 1.0, "t2": 5.0, "t3": 2.0, "t4": 4.0, "t5": 3.0})
    assert noisy.startswith("A trend with the domain gap is not shown: spearman ρ = ")
    assert "the Spearman test is not significant at the 5% level" in noisy


def test_gap_finding_leaves_targets_without_a_transfer_gain_out_of_the_trend():
    diffs = {f"t{i}": [0.01 * i + 0.001 * j for j in (-1, 0, 1)] for i in range(1, 6)}
    dist = {f"t{i}": float(i) for i in range(1, 6)}
    transfer = [X.paired_contrast({i: [g] for i, g in enumerate(GAIN if t != "t5" else NO_GAIN)},
                                  (t, "natural")) for t in diffs]
    finding = X.gap_finding(_gains(diffs), dist, transfer, dense=False)
    assert finding.paragraphs[0].startswith("Pretraining transfers on t1: natural +32.0 points "
                                            "over scratch (95% CI [+27.0, +37.0]")
    assert ("On t5 pretraining gives nothing separable over training from scratch, so tickets are "
            "not ranked there: natural +0.1 points over scratch") in finding
    assert "only 4 targets, and a trend needs at least 5" in finding
    assert "t5 (distance" not in finding
    # the gate: 5 transfer gains, a family of their own; the 4 targets it lets through: another
    assert "Holm-adjusted as a family of their own (5)" in finding
    assert "across the 4 contrasts of the cells it lets through" in finding


# ----------------------------------------------------------------------------- E9
def _double_win(clean: dict[str, list[float]], robust: dict[str, list[float]]) -> list[dict]:
    rows = []
    for metric, diffs in (("test_acc", clean), ("robust_acc", robust)):
        for transfer, d in diffs.items():
            rows += _pair(d, base=0.5, metric=metric, transfer=transfer)
    return rows


def test_double_win_finding_needs_both_metrics_to_separate_after_correction():
    rows = _double_win({"natural finetuning": SEP, "adversarial finetuning": [0.055, 0.06, 0.065]},
                       {"natural finetuning": NULL, "adversarial finetuning": [0.095, 0.1, 0.105]})
    finding = X.double_win_finding(rows, R, 2 / 255)
    clean, rob, wins, design = finding.paragraphs
    assert finding == f"Robust source {R}. " + " ".join(finding.paragraphs)
    assert clean.startswith("Clean accuracy. On t, the robust ticket beats the natural one at "
                            "finetuning adversarial finetuning (+6.0 points")
    assert "and finetuning natural finetuning (+5.0 points" in clean
    assert rob.startswith("Robust accuracy at 2/255. On t, the robust ticket beats the natural "
                          "one at finetuning adversarial finetuning (+10.0 points")
    assert "at finetuning natural finetuning, no difference larger than 2.5 points" in rob
    assert wins == ("Double wins (robust ticket better on both, Holm-adjusted): "
                    "t with adversarial finetuning.")
    assert "across the 4 contrasts" in design
    assert "Robust source" not in finding.markdown
    rows = _double_win({"natural finetuning": SEP}, {"natural finetuning": NEG})
    none = X.double_win_finding(rows, R, 2 / 255)
    assert none.paragraphs[2].endswith("Holm-adjusted): none.")
    assert "trails the natural one" in none


# ----------------------------------------------------------------------------- registry
def test_registry_lists_every_experiment_in_order_with_its_notebook():
    ids = list(X.EXPERIMENTS)
    assert ids[:11] == [f"E{i}" for i in range(11)] and {"E11", "E12", "E13"} <= set(ids)  # tracks add later ones
    assert [int(i[1:]) for i in ids] == sorted(int(i[1:]) for i in ids)
    assert "E5" in X.EXPERIMENTS and "E99" not in X.EXPERIMENTS
    for exp_id in X.EXPERIMENTS:
        exp = X.EXPERIMENTS.get(exp_id)
        assert exp.id == exp_id and exp.title
        assert (NOTEBOOKS / f"{exp.notebook}.py").exists(), exp.notebook
        assert callable(exp.finding)
    assert X.EXPERIMENTS.get("E5").finding is X.attack_finding
    e10 = X.EXPERIMENTS.get("E10").finding  # imported on first use
    assert (e10.module, e10.name) == ("rtstudy.explorer", "anatomy_finding")


def test_e10_finding_resolves_to_the_explorers_function():
    from rtstudy import explorer

    assert X.EXPERIMENTS.get("E10").finding.resolve() is explorer.anatomy_finding


def test_each_notebook_calls_its_registered_finding_function():
    for exp_id in X.EXPERIMENTS:
        exp = X.EXPERIMENTS.get(exp_id)
        name = getattr(exp.finding, "__name__", getattr(exp.finding, "name", None))
        source = (NOTEBOOKS / f"{exp.notebook}.py").read_text()
        assert re.search(rf"\b{name}\(", source), f"{exp.notebook}.py does not call {name}"


def test_registry_rejects_unknown_ids_duplicates_and_mismatched_notebooks():
    with pytest.raises(ValueError, match=r"unknown experiment 'E42'; allowed: E0, E1, .*, E10"):
        X.EXPERIMENTS.get("E42")
    with pytest.raises(ValueError, match="registered twice"):
        X.EXPERIMENTS.register(X.EXPERIMENTS.get("E1"))
    with pytest.raises(ValueError, match="must be named"):
        X.Experiment("E3", "wrong", "04_schemes", X.scheme_finding)


def test_record_and_report_take_ids_and_titles_from_the_registry():
    from rtstudy import report

    assert report.EXPERIMENTS == {e: X.EXPERIMENTS.get(e).title for e in X.EXPERIMENTS}
    rows = _cell([0.5])
    out = record("E7", rows, X.main_finding(rows + _cell([0.6], source="robust"), R), {}, None)
    assert out["title"] == "finetune vs linear probe" and type(out["finding"]) is str
    with pytest.raises(ValueError, match=r"unknown experiment 'E99'; allowed: E0, .*E10"):
        record("E99", rows, "a finding", {}, None)


def test_a_ticket_controlled_only_by_its_own_scratch_twin_is_gated_by_its_own_gain():
    # E5/E6/E8/E9 grids control the sparse ticket itself (same mask on random weights)
    nat, rob = _natural(0.70), _shift(_natural(0.70), SEP)
    rows = []
    for task, gain in (("t", 0.10), ("u", 0.0)):
        rows += _runs(nat, task=task, source_label="natural") + _runs(
            rob, source="robust", task=task, source_label="R")
        for src, vals, label in (("natural", nat, "natural"), ("robust", rob, "R")):
            scratch = {ss: [v - gain - (0.001 * k if gain else JIT[k]) for k, v in enumerate(vs)]
                       for ss, vs in vals.items()}
            rows += _runs(scratch, source=src, task=task, init="scratch", source_label=label)
    finding = X.attack_finding(rows, ["natural", "R", "R", "R"])
    assert "Pretraining transfers on t" in finding
    assert "On u pretraining gives nothing separable" in finding
    kinds = {c["kind"] for c in finding.contrasts}
    assert kinds == {"transfer gain", "robust − natural"}
    ranked = [c for c in finding.contrasts if c["kind"] == "robust − natural"]
    assert ranked and all(c["cell"].startswith("t") for c in ranked)  # u is not ranked
    assert all({"cell", "diff", "low", "high", "verdict", "mde"} <= set(c) for c in finding.contrasts)


def test_findings_state_each_tickets_own_transfer_gain():
    cells = _pair(SEP, task="u")
    scratch = [dict(r, init="scratch", value=r["value"] - 0.10 - 0.004 * r["source_seed"] ** 2)
               for r in cells]  # each ticket +10.x points over its mask on random weights
    gains = [0.06, 0.02, 0.09, 0.04, 0.07, 0.05]
    f = X.main_finding(cells + scratch, R, gate_rows=_gate_rows(gains))
    assert ("Each ticket against its own mask on random weights (its transfer gain; Holm over the "
            "2 (task, sparsity, source) cells): above scratch in 2, not separated in 0, below in "
            "0; the smallest at task u, sparsity 80%, source ") in f
    assert "Each ticket against" not in X.main_finding(cells, R, gate_rows=_gate_rows(gains))
