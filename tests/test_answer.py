"""The report's answer: the paragraph, the forest plot and the replication check, on hand-made contrasts."""

import json

import pytest

from rtstudy.experiments.answer import (
    ROBUST_VS_NATURAL,
    TRANSFER_GAIN,
    answer_figure,
    answer_paragraph,
    compare_replicates,
    contrasts_of,
)
from rtstudy.report import write_index
from rtstudy.results import record


def c(exp, cell, kind, diff, half, verdict, mde=3.0):
    return {"experiment": exp, "cell": cell, "kind": kind, "diff": diff, "low": diff - half,
            "high": diff + half, "verdict": verdict, "mde": mde}


CONTRASTS = [
    c("E1", "mnist5k dense", TRANSFER_GAIN, 6.0, 1.5, "better"),
    c("E1", "digits dense", TRANSFER_GAIN, 0.5, 2.0, "tie"),
    c("E1", "mnist5k 90%", ROBUST_VS_NATURAL, 4.0, 1.0, "better"),
    c("E1", "mnist5k 50%", ROBUST_VS_NATURAL, -0.4, 1.8, "tie", mde=2.5),
    c("E2", "mnist5k ε=32/255", ROBUST_VS_NATURAL, -3.0, 1.0, "worse", mde=1.5),
]


def test_paragraph_counts_where_pretraining_transfers_and_robust_helps():
    text = answer_paragraph(CONTRASTS)
    assert "Pretraining transfers" in text and "in 1 of 2 cells, by +6.0 to +6.0 points" in text
    assert "not separated in 1 (E1 digits dense)" in text
    assert "better in 1 (E1 mnist5k 90% +4.0)" in text and "worse in 1 (E2 mnist5k ε=32/255 -3.0)" in text
    assert "not distinguishable in 1, where the design could have detected differences of 2.5 to 2.5" in text
    assert answer_paragraph([]) == "No experiment recorded a contrast."


def test_figure_draws_every_cell_coloured_by_verdict():
    fig = answer_figure(CONTRASTS)
    names = {t.name: len(t.x) for t in fig.data}
    assert names == {"separated, > 0": 2, "separated, < 0": 1, "not separated": 2}
    tie = next(t for t in fig.data if t.name == "not separated")
    assert list(tie.error_x.array) == pytest.approx([2.0, 1.8])


def test_replication_counts_agreement_flips_and_reversals():
    second = [dict(x) for x in CONTRASTS]
    second[1] |= {"diff": -0.2, "verdict": "tie"}  # sign flip, still a tie
    second[3] |= {"diff": 2.0, "verdict": "better"}  # moves from tie to separated
    rep = compare_replicates(CONTRASTS, second)
    assert rep["cells"] == 5 and rep["same_verdict"] == 4 and rep["sign_flips"] == 2
    assert rep["moved_separated"] == 1 and rep["reversed"] == []
    assert "no separated verdict reverses" in rep["sentence"]
    second[2] |= {"diff": -4.0, "verdict": "worse"}
    bad = compare_replicates(CONTRASTS, second)
    assert bad["reversed"] == [["E1", ROBUST_VS_NATURAL, "mnist5k 90%"]]
    assert "a defect of the design" in bad["sentence"]


def test_index_leads_with_the_answer(tmp_path):
    rec = record("E1", [], "a finding", {}, None, contrasts=[{k: v for k, v in x.items() if k != "experiment"}
                                                             for x in CONTRASTS[:4]])
    summary = {"profile": "smoke", "created": "now", "device": "CPU", "wall_seconds": 1.0,
               "experiments": {"E1": {"title": "main", "html": "01_main.html", "wall_seconds": 1.0,
                                      "finding": "a finding", "contrasts": rec["contrasts"]}},
               "replication": {"sentence": "4 of 4 cells have the same verdict"}}
    assert len(contrasts_of(summary)) == 4
    write_index(tmp_path, summary)
    page = (tmp_path / "index.html").read_text()
    assert page.index("The answer") < page.index("The experiments")
    assert "Pretraining transfers" in page and "plotly.min.js" in page and "Plotly.newPlot" in page
    assert "4 of 4 cells have the same verdict" in page
    with pytest.raises(ValueError, match="lacks"):
        record("E1", [], "a finding", {}, None, contrasts=[{"cell": "x"}])
    json.dumps(summary)
