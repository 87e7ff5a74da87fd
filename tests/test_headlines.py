"""The headlines: wording from the numbers, the report's family, its index and replication."""

import itertools
import json
import math

import pytest

from rtstudy.core.contrasts import estimate, holm_family
from rtstudy.experiments.estimands import Estimand
from rtstudy.experiments.headlines import (
    Headline,
    answer_sentences,
    compare_headlines,
    headline_sentence,
    notebook_headline,
    report_headlines,
    secondary_markdown,
    verdict_text,
)
from rtstudy.profiles import get_profile
from rtstudy.report import replication, write_index

P = get_profile("smoke")
EST = Estimand("E1", "robust − natural", {"source": "robust"}, {"source": "natural"}, ("task",))


def _h(values, key="E1", margin=2.0):
    return Headline("E1", Estimand(key, "c", {"source": "robust"}, {"source": "natural"}, (),
                                   margin=margin), estimate(values, margin=margin, key=(key,)))


def test_the_verdict_is_worded_from_the_numbers():
    assert verdict_text(EST, estimate([3.0, 4.0, 5.0], margin=2.0)).startswith("better (p = ")
    assert verdict_text(EST, estimate([0.1, -0.1, 0.2], margin=2.0)).startswith(
        "equivalent within ±2 points")
    assert "the CI includes 0 and reaches past ±2 points" in verdict_text(
        EST, estimate([3.0, -2.0, 4.0], margin=2.0))
    z = verdict_text(EST, estimate([-1.17] * 4, margin=2.0))
    assert z.startswith("zero spread: all 4 units give -1.2 points") and "p = 0" not in z
    # separated before the correction, not after: said so, with both p-values
    fam = holm_family([estimate([1.0, 2.0, 1.5, 1.8], margin=0.5, key=(k,)) for k in "abcdefghijklmn"])
    assert fam[0].p < 0.05 <= fam[0].p_adjusted
    assert "excludes 0 (p = " in verdict_text(EST, fam[0]) and "after Holm over 14" in \
        verdict_text(EST, fam[0])


def test_a_notebook_headline_states_estimate_ci_verdict_and_design_power():
    from tests.test_pilot import MAIN, _summary

    rows = _summary(MAIN)["experiments"]["E1"]["rows"]
    text = notebook_headline("E1", rows, get_profile("smoke", pilot_sd={"E1": 1.0}))
    assert text.startswith("E1 (") and "+2.3 points, 95% CI [" in text
    assert "over 3 source seeds" in text and "design power 0.3" not in text
    assert "design power" in text and "with the 2 source seeds the profile plans" in text
    assert "no pilot SD" in notebook_headline("E1", rows, P)
    table = secondary_markdown("E1", rows, P)
    assert table.count("\n") == 3 and "| E1 | mnist5k, 50% | +2.3 points" in table
    assert notebook_headline("E0", rows, P) == "" and secondary_markdown("E0", rows, P) == ""


def _report(shift_e1, shift_e6):
    from tests.test_pilot import _summary

    s = _summary(shift_e1)
    e6 = [dict(r, fraction=min(P.data_fractions), sparsity=P.fixed_sparsities[0])
          for r in _summary(shift_e6)["experiments"]["E1"]["rows"] if r["sparsity"] == 0.5]
    s["experiments"]["E6"] = {"rows": e6}
    return s


def test_the_report_family_holds_each_primary_once_and_replication_counts_it():
    main = report_headlines(_report({0: 0.03, 1: 0.04, 2: 0.05}, {0: 0.0, 1: 0.001, 2: -0.001}))
    assert [h.estimand.id for h in main] == ["E1", "E6"]
    assert {h.estimate.family for h in main} == {2}
    assert [h.estimate.verdict for h in main] == ["better", "equivalent"]
    rep = report_headlines(_report({100: 0.02, 101: -0.01, 102: 0.05},
                                   {100: 0.0, 101: 0.001, 102: -0.002}))
    agree = compare_headlines(main, rep)
    assert agree["estimands"] == 2 and agree["same_verdict"] == 1 and agree["same_sign"] == 2
    assert agree["reversed"] == [] and "no headline verdict reverses" in agree["sentence"]
    flipped = report_headlines(_report({100: -0.03, 101: -0.04, 102: -0.05},
                                       {100: 0.0, 101: 0.001, 102: -0.001}))
    assert compare_headlines(main, flipped)["reversed"] == ["E1"]
    text = answer_sentences(main, agree)
    assert text.startswith("Of 2 headline estimands (Holm over all of them), 1 better (E1); "
                           "1 equivalent (E6).")
    assert "The main question, robust (ε* = " in text and "+4.0 points" in text
    assert text.endswith(agree["sentence"])


def test_the_index_opens_with_the_answers_table_and_replication(tmp_path):
    main = _report({0: 0.03, 1: 0.04, 2: 0.05}, {0: 0.0, 1: 0.001, 2: -0.001})
    rep = _report({100: 0.03, 101: 0.035, 102: 0.04}, {100: 0.0, 101: 0.001, 102: -0.002})
    for s in (main, rep):
        s.update(created="now", device="CPU", wall_seconds=1.0)
        for exp in s["experiments"]:
            s["experiments"][exp].update(title=exp, html=f"{exp}.html", wall_seconds=1.0,
                                         finding="f", contrasts=[])
    main["replication"] = replication(main, rep)
    assert main["replication"]["sentence"].startswith("Headline estimands: 2 of 2 have the same")
    assert main["replication"]["headline_estimates"]["E1"]["verdict"] == "better"
    write_index(tmp_path, main)
    page = (tmp_path / "index.html").read_text()
    assert page.index("The answers") < page.index("class=\"headlines\"") < page.index(
        "The experiments")
    assert "Of 2 headline estimands" in page and "+3.5 points, 95% CI [" in page
    assert json.loads(json.dumps(main["replication"], default=str))
    assert not math.isnan(main["replication"]["headline_estimates"]["E6"]["mean"])
    with pytest.raises(ValueError, match="E42"):
        notebook_headline("E42", [], P)


def test_a_headline_sentence_reads_estimate_units_verdict_and_power():
    text = headline_sentence(_h([3.0, 4.0, 5.0]))
    assert text.startswith("E1 (c): +4.0 points, 95% CI [") and "over 3 source seeds; better" in text
    assert text.endswith("no pilot SD recorded for this profile, so no design power.")


def test_the_transfer_gain_is_described_per_target_source_and_fraction():
    from rtstudy.experiments.headlines import transfer_gain_markdown

    rows = []
    for ss, frac, seed in ((0, 0.05, 0), (1, 0.05, 0), (2, 0.05, 0), (0, 0.25, 0), (1, 0.25, 0)):
        for init, value in (("pretrained", 0.7 + 0.01 * ss), ("scratch", 0.6)):
            rows.append(dict(task="mnist5k", source="natural", sparsity=0.0, seed=seed,
                             metric="test_acc", value=value, source_seed=ss, init=init,
                             fraction=frac, regime="finetune", gate=True))
    text = transfer_gain_markdown(rows + [dict(rows[0], gate=None, value=0.0)], P)
    assert "| mnist5k | natural | 5% | +11.0 points, 95% CI [" in text and "| 3 |" in text
    assert "| mnist5k | natural | 25% | +10.5 points, 95% CI [" in text
    assert "it selects nothing" in text and transfer_gain_markdown([], P) == ""


def test_a_slope_over_too_few_targets_is_said_not_raised():
    rows = []
    for ss, (task, dist) in itertools.product((0, 1), (("a", 1.0), ("b", 2.0))):
        for source, eps, value in (("natural", 0.0, 0.5), ("robust", P.eps_star, 0.52)):
            rows.append(dict(task=task, source=source, eps=eps, scheme="omp", pattern="unstructured",
                             sparsity=P.fixed_sparsities[0], seed=0, metric="test_acc",
                             value=value, source_seed=ss, regime="finetune", distance=dist))
    text = notebook_headline("E8", rows, P)
    assert text.startswith("E8 (") and "no units" in text and "not settled: 0 source seeds" in text
    assert "| E8 | a | +2.0 points" in secondary_markdown("E8", rows, P)
