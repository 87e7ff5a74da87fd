"""Every finding function on hand-made rows: its verdict words and its numbers, and the registry.

Three seeds ``m - 0.01, m, m + 0.01`` give mean ``m`` and a 95% half-width of 2.5 points, so
means 5 points apart separate and means 1 point apart overlap.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from rtstudy import experiments as X
from rtstudy.core.stats import Estimate, mean_ci
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


def test_eps_sweep_finding_names_task_best_eps_and_compares_with_natural():
    rows = []
    for eps, vals in ((0.0, [0.50, 0.51, 0.50]), (2 / 255, [0.70, 0.71, 0.70]), (8 / 255, [0.60, 0.61, 0.60])):
        for seed, v in enumerate(vals):
            rows.append(row("mnist5k", "natural" if eps == 0 else "robust", eps, "omp", "unstructured",
                            0.8, seed, "test_acc", v))
    text = X.eps_sweep_finding(rows)
    assert text.startswith("On mnist5k at 80% sparsity: the best ε is 2/255")
    assert "an inverted U" in text and "ε = 2/255 beats natural (ε = 0)" in text


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


def test_main_finding_beats_where_separate_overlap_elsewhere_and_tallies():
    rows = (_cell(_seeds(0.85)) + _cell(_seeds(0.90), source="robust")
            + _cell(_seeds(0.60), sparsity=0.95)
            + _cell(_seeds(0.61), source="robust", sparsity=0.95))
    finding = X.main_finding(rows, R)
    assert finding.startswith("Test accuracy, mean over 3 seeds of finetuning")
    assert (f"On t, the robust ({R}) ticket beats the natural one at sparsity 80% "
            "(+5.0 points)") in finding
    assert "the intervals overlap at 95% (+1.0 points)" in finding
    assert finding.endswith(" Overall: robust better in 1, indistinguishable in 1, worse in 0 of 2 "
                            "(task, sparsity) cells.")
    worse = _cell(_seeds(0.90)) + _cell(_seeds(0.85), source="robust")
    text = X.main_finding(worse, R)
    assert "trails the natural one at sparsity 80% (-5.0 points)" in text and "beats" not in text


def test_main_finding_with_a_single_seed_claims_nothing():
    rows = _cell([0.5]) + _cell([0.9], source="robust")
    finding = X.main_finding(rows, R)
    assert "1 seeds; with a single seed there are no intervals, so nothing is claimed" in finding
    assert "not distinguishable at any sparsity tested (+40.0 points" in finding
    assert "better in 0, indistinguishable in 1, worse in 0 of 1" in finding


def test_eps_sweep_finding_names_the_best_eps_and_compares_it_with_natural():
    rows = (_cell(_seeds(0.5)) + _cell(_seeds(0.7), source="robust", eps=2 / 255)
            + _cell(_seeds(0.6), source="robust", eps=8 / 255))
    finding = X.eps_sweep_finding(rows)
    assert finding.startswith("On t at 80% sparsity: the best ε is 2/255 (70.0% ± 2.5), interior, "
                              "and its interval separates from both ends")
    assert "an inverted U." in finding
    assert finding.endswith("ε = 2/255 beats natural (ε = 0): 70.0% ± 2.5 vs 50.0% ± 2.5 "
                            "(+20.0 points, intervals separate).")
    natural_best = _cell(_seeds(0.8)) + _cell(_seeds(0.7), source="robust", eps=2 / 255)
    text = X.eps_sweep_finding(natural_best)
    assert "the best ε is 0 (80.0% ± 2.5)" in text and "no inverted U can be judged" in text
    assert "natural (ε = 0)" not in text  # natural is the best: nothing to compare it with
    assert X.eps_sweep_finding([]) == "No results."


def _patterns() -> list[dict]:
    rows = []
    for label, pattern, sparsity, nat, rob in (
            ("unstructured 80%", "unstructured", 0.8, 0.80, 0.85), ("2:4", "nm", 0.5, 0.70, 0.71)):
        kw = {"pattern": pattern, "sparsity": sparsity, "pattern_label": label}
        rows += _cell(_seeds(nat), **kw) + _cell(_seeds(rob), source="robust", **kw)
        # random tickets: far below OMP, and robust-random far below natural-random, so that
        # pooling them into the OMP comparison would change its numbers
        rows += _cell(_seeds(0.50), scheme="random", **kw)
        rows += _cell(_seeds(0.20 if label == "2:4" else 0.30), source="robust", scheme="random",
                      **kw)
    return rows


def test_pattern_finding_compares_omp_tickets_only_and_checks_against_random():
    finding = X.pattern_finding(_patterns(), R)
    assert (f"On t, the robust ({R}) OMP ticket beats the natural one at pattern unstructured 80% "
            "(+5.0 points)") in finding
    assert "the intervals overlap at 2:4 (+1.0 points)" in finding
    assert finding.endswith(" Sanity check, OMP vs random tickets at the same per-layer sparsity: "
                            "OMP better in 4, indistinguishable in 0, worse in 0 of 4 "
                            "(task, source, pattern) cells.")


def _schemes(schemes=("omp", "imp_source", "random")) -> list[dict]:
    means = {"omp": (0.80, 0.85), "imp_source": (0.82, 0.83), "random": (0.50, 0.45)}
    rows = []
    for s in schemes:
        nat, rob = means[s]
        rows += _cell(_seeds(nat), scheme=s) + _cell(_seeds(rob), source="robust", scheme=s)
    return rows


def test_scheme_finding_per_scheme_and_sanity_against_random():
    finding = X.scheme_finding(_schemes(), R)
    assert f"the robust ({R}) ticket beats the natural one at scheme omp (+5.0 points)" in finding
    assert "trails the natural one at scheme random (-5.0 points)" in finding
    assert "the intervals overlap at imp_source (+1.0 points)" in finding
    assert finding.endswith(" Sanity check, drawn (omp, imp_source) vs random tickets: better in "
                            "4, indistinguishable in 0, worse in 0 of 4 (scheme, task, source) "
                            "cells.")
    assert X.scheme_finding(_schemes(), R, ["omp", "imp_source", "random"]) == finding
    without = X.scheme_finding(_schemes(("omp", "imp_source")), R)
    assert "Sanity check" not in without and "beats the natural one at scheme omp" in without


def test_attack_finding_one_paragraph_per_comparison():
    names = ["natural", R, "PGD-3 ℓ∞ 2/255", "FGSM-RS ℓ2 0.25"]
    means = {"natural": 0.80, R: 0.85, "PGD-3 ℓ∞ 2/255": 0.86, "FGSM-RS ℓ2 0.25": 0.79}
    rows = []
    for name, m in means.items():
        rows += _cell(_seeds(m), source="natural" if name == "natural" else "robust",
                      source_label=name)
    finding = X.attack_finding(rows, names)
    p = finding.paragraphs
    assert len(p) == 5 and finding == " ".join(p)
    assert p[0] == (f"{R} vs natural, mean over 3 seeds of finetuning (one pretrained source model "
                    f"each), 95% CIs: {R} beats natural at task t (+5.0 points).")
    assert p[1].endswith("PGD-3 ℓ∞ 2/255 beats natural at task t (+6.0 points).")
    assert p[2].endswith("FGSM-RS ℓ2 0.25 and natural are not distinguishable at any task tested "
                         "(-1.0 points, 95% CIs overlap).")
    assert p[3].startswith(f"Attack kind: PGD-3 ℓ∞ 2/255 vs {R}, mean over 3 seeds")
    assert p[3].endswith(f"PGD-3 ℓ∞ 2/255 and {R} are not distinguishable at any task tested "
                         "(+1.0 points, 95% CIs overlap).")
    assert p[4].startswith(f"Norm: FGSM-RS ℓ2 0.25 vs {R}")
    assert p[4].endswith(f"FGSM-RS ℓ2 0.25 trails {R} at task t (-6.0 points).")
    assert finding.markdown == "**Finding.** " + "\n\n".join(p)


def _fractions(gains: dict[float, float], task: str = "t") -> list[dict]:
    rows = []
    for f, g in gains.items():
        rows += _cell(_seeds(0.70), task=task, fraction=f)
        rows += _cell(_seeds(0.70 + g), task=task, source="robust", fraction=f)
    return rows


def test_data_finding_says_whether_the_gain_grows_as_data_shrinks():
    rows = _fractions({0.01: 0.08, 0.1: 0.05, 1.0: 0.02})
    finding = X.data_finding(rows, R)
    # the level is named "fraction of T", which fmt_level does not know: printed as a number
    assert (f"On t, the robust ({R}) ticket beats the natural one at fraction of T 0.01 "
            "(+8.0 points) and 0.1 (+5.0 points); the intervals overlap at 1.0 (+2.0 points).") \
        in finding
    assert finding.endswith(" Trend of the mean gain: on t the mean gain is larger with 1% of the "
                            "data (+8.0 points) than with 100% (+2.0).")
    shrink = X.data_finding(_fractions({0.01: 0.01, 1.0: 0.06}, task="u"), R, ["u"])
    assert ("on u the mean gain is smaller with 1% of the data (+1.0 points) than with 100% "
            "(+6.0)") in shrink
    one = X.data_finding(_fractions({0.1: 0.05}), R)
    assert "Trend" not in one and "beats the natural one at fraction of T 0.1 (+5.0 points)" in one


def test_regime_finding_gives_the_mean_gain_per_regime():
    rows = []
    for regime, sparsity, gain in (("finetune", 0.0, 0.01), ("finetune", 0.8, 0.01),
                                   ("probe", 0.0, 0.05), ("probe", 0.8, 0.07)):
        rows += _cell(_seeds(0.7), sparsity=sparsity, regime=regime)
        rows += _cell(_seeds(0.7 + gain), source="robust", sparsity=sparsity, regime=regime)
    finding = X.regime_finding(rows, R)
    assert (f"On t, the robust ({R}) source beats the natural one at regime / sparsity "
            "probe, 0% (+5.0 points) and probe, 80% (+7.0 points)") in finding
    assert ("the intervals overlap at finetune, 0% and finetune, 80% "
            "(+1.0 to +1.0 points)") in finding
    assert finding.endswith(" Mean gain over tasks and sparsities: finetune +1.0 points, "
                            "probe +6.0 points.")
    assert "Mean gain" not in X.regime_finding(rows, R, ["finetune", "scratch"])


def _contrast(gain: float) -> X.Contrast:
    return X.Contrast(("x",), mean_ci(_seeds(0.7 + gain)), mean_ci(_seeds(0.7)))


def test_gap_finding_correlates_the_gain_with_the_distance():
    cs = {"near": _contrast(0.01), "mid": _contrast(0.05), "far": _contrast(0.08)}
    dist = {"near": 0.5, "mid": 2.0, "far": 9.0}
    finding = X.gap_finding(cs, dist)
    assert finding.startswith("Across 3 targets the robust − natural gain has a positive rank "
                              "correlation with the measured domain distance: "
                              "spearman ρ = +1.00 (n = 3")
    assert ("not significant at the 5% level, and with only 3 points this is weak evidence "
            "either way") in finding
    assert "Gains range from +1.0 to +8.0 points." in finding
    per_target = finding.split("Per target: ")[1]
    assert per_target.index("near (distance 0.5)") < per_target.index("mid (distance 2)") \
        < per_target.index("far (distance 9)")
    assert ("far (distance 9): robust beats natural: 78.0% ± 2.5 vs 70.0% ± 2.5 (+8.0 points, "
            "intervals separate)") in finding
    assert "near (distance 0.5): robust and natural are not distinguishable" in finding
    falling = X.gap_finding({t: _contrast(g) for t, g in (("a", 0.08), ("b", 0.05), ("c", 0.0))},
                            {"a": 1.0, "b": 2.0, "c": 3.0})
    assert "a negative rank correlation" in falling and "spearman ρ = -1.00" in falling


def test_gap_finding_with_fewer_than_three_targets_estimates_no_correlation():
    finding = X.gap_finding({"a": _contrast(0.05), "b": _contrast(0.0)}, {"a": 1.0, "b": 0.0})
    assert finding.startswith("Only 2 targets: no correlation can be estimated. "
                              "Per target: b (distance 0)")
    assert "spearman" not in finding


def _double_win(clean: dict[str, float], robust: dict[str, float]) -> list[dict]:
    rows = []
    for metric, gains in (("test_acc", clean), ("robust_acc", robust)):
        for transfer, g in gains.items():
            rows += _cell(_seeds(0.5), metric=metric, transfer=transfer)
            rows += _cell(_seeds(0.5 + g), source="robust", metric=metric, transfer=transfer)
    return rows


def test_double_win_finding_needs_both_metrics_to_separate():
    rows = _double_win({"natural finetuning": 0.05, "adversarial finetuning": 0.06},
                       {"natural finetuning": 0.01, "adversarial finetuning": 0.10})
    finding = X.double_win_finding(rows, R, 2 / 255)
    clean, rob, wins = finding.paragraphs
    assert finding == f"Robust source {R}. " + " ".join(finding.paragraphs)
    assert clean.startswith("Clean accuracy, mean over 3 seeds")
    assert ("the robust ticket beats the natural one at finetuning adversarial finetuning "
            "(+6.0 points) and natural finetuning (+5.0 points)") in clean
    assert rob.startswith("Robust accuracy at 2/255, mean over 3 seeds")
    assert "beats the natural one at finetuning adversarial finetuning (+10.0 points)" in rob
    assert "the intervals overlap at natural finetuning (+1.0 points)" in rob
    assert wins == ("Double wins (robust ticket better on both, intervals separate): "
                    "t with adversarial finetuning.")
    assert "Robust source" not in finding.markdown
    rows = _double_win({"natural finetuning": 0.05}, {"natural finetuning": -0.05})
    none = X.double_win_finding(rows, R, 2 / 255)
    assert none.endswith("intervals separate): none.") and "trails the natural one" in none


# ----------------------------------------------------------------------------- registry
def test_registry_lists_every_experiment_in_order_with_its_notebook():
    assert list(X.EXPERIMENTS) == [f"E{i}" for i in range(11)]
    assert len(X.EXPERIMENTS) == 11 and "E5" in X.EXPERIMENTS and "E11" not in X.EXPERIMENTS
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
