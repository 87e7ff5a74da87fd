"""Every notebook runs end to end on the smoke profile and its report page is sound.

One module-scoped fixture builds the whole smoke report once (every ``NN_*.ipynb`` in
``notebooks/``, E10 included when it exists) into a temporary folder with a temporary
artifact store; the tests then read what it wrote.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

from rtstudy import notebooks_sync
from rtstudy.report import NOTEBOOKS, build_report, notebook_order

pytestmark = [pytest.mark.slow, pytest.mark.timeout(3600)]

NOTEBOOK_FILES = sorted(p for p in NOTEBOOKS.glob("*.ipynb") if re.match(r"\d\d_", p.name))
EXPECTED = [e for e, _ in notebook_order()]


STORE_DIRS = []


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    out = tmp_path_factory.mktemp("report") / "smoke"
    store = tmp_path_factory.mktemp("store")
    STORE_DIRS.append(store)
    threads = os.environ.get("RTSTUDY_TEST_THREADS", "1")
    old = {k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    os.environ.update(OMP_NUM_THREADS=threads, MKL_NUM_THREADS=threads)  # the kernels inherit these
    try:
        summary = build_report(profile="smoke", out=out, store=str(store), workers=2, log=lambda *a: None)
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return out, summary


def test_every_notebook_is_found():
    assert len(NOTEBOOK_FILES) >= 10, NOTEBOOK_FILES
    assert len(EXPECTED) == len(NOTEBOOK_FILES)
    assert EXPECTED[:10] == [f"E{i}" for i in range(10)]


def test_notebooks_in_step_with_their_text_twins():
    assert notebooks_sync.out_of_step() == []


def test_every_notebook_takes_profile_and_results_dir_parameters():
    import jupytext

    for path in NOTEBOOK_FILES:
        nb = jupytext.read(path)
        params = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
        assert len(params) == 1, f"{path.name}: one cell tagged 'parameters'"
        assert re.search(r'^profile = "default"', params[0].source, re.M), path.name
        assert re.search(r"^results_dir = None", params[0].source, re.M), path.name
        body = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
        assert "record(" in body, f"{path.name} must record its results"
        assert ".show()" not in body.replace("plots.show(", ""), f"{path.name}: use plots.show(fig)"


def test_summary_has_every_experiment_with_rows_and_a_finding(report):
    out, summary = report
    on_disk = json.loads((out / "summary.json").read_text())
    assert on_disk["profile"] == "smoke"
    assert list(on_disk["experiments"]) == EXPECTED
    for exp, info in on_disk["experiments"].items():
        assert info["status"] == "ok", exp
        assert info["finding"].strip(), f"{exp} has an empty finding"
        assert info["rows"], f"{exp} recorded no rows"
        assert info["parameters"].get("profile") == "smoke", exp
        for r in info["rows"]:
            for k in ("task", "source", "metric", "value"):
                assert k in r, f"{exp}: row lacks {k}: {r}"
            if r["metric"].endswith("_acc"):
                assert 0.0 <= r["value"] <= 1.0, f"{exp}: accuracy outside [0, 1]: {r}"


def test_findings_are_computed_from_the_numbers(report):
    _, summary = report
    ex = summary["experiments"]
    # sentences built from the numbers carry numbers and the CI language of rtstudy.core.stats
    for exp in ("E1", "E3", "E4", "E6", "E7", "E9"):
        if exp in ex:
            assert "95% CI" in ex[exp]["finding"], exp
            assert re.search(r"[+-]\d+\.\d points", ex[exp]["finding"]), exp
    if "E8" in ex:
        assert re.search(r"(spearman|no correlation)", ex["E8"]["finding"]), ex["E8"]["finding"]
    if "E2" in ex:  # a shape is claimed, suggested or not shown, or the cells are gated out
        assert re.search(r"(inverted U|not ranked)", ex["E2"]["finding"]), ex["E2"]["finding"]
    for exp in ("E1", "E2", "E3", "E4", "E5", "E6", "E7", "E8", "E9", "E11", "E12", "E13"):
        if exp in ex:  # the headline first: the primary estimate, its CI, verdict and power
            assert re.match(rf"{exp}( \w+)? \(", ex[exp]["finding"]), ex[exp]["finding"][:80]
            assert "95% CI" in ex[exp]["finding"].split(". ")[0] or "no interval" in ex[exp]["finding"]
            assert "design power" in ex[exp]["finding"], exp
    for exp in ("E1", "E2", "E3", "E4", "E5", "E6", "E7", "E8", "E9"):
        if exp in ex:  # paired contrasts over source seeds, Holm-corrected, with the design said
            assert "Holm" in ex[exp]["finding"] and "source seeds" in ex[exp]["finding"], exp
            assert ex[exp]["contrasts"], f"{exp} recorded no contrast for the report's answer"


def test_html_pages_render_offline_with_plotly(report):
    out, summary = report
    assert (out / "plotly.min.js").stat().st_size > 1_000_000
    assert (out / "index.html").exists()
    index = (out / "index.html").read_text()
    assert index.index("The answers") < index.index('class="headlines"') < index.index(
        "The experiments"), "the index opens with the primary estimates"
    for info in summary["experiments"].values():
        page = (out / info["html"]).read_text()
        assert "plotly-graph-div" in page, f"{info['html']} has no plotly figure"
        assert '<script src="plotly.min.js"' in page, info["html"]
        assert not re.search(r'<script[^>]+src="https?://', page), f"{info['html']} loads a remote script"
        assert info["html"] in index


def test_no_machine_path_in_any_generated_file(report):
    out, summary = report
    machine = [str(out.parent), str(STORE_DIRS[0]), str(NOTEBOOKS.parent), str(Path.home())]
    for path in out.rglob("*"):
        if path.is_file() and path.suffix in (".ipynb", ".html", ".json"):
            text = path.read_text()
            for m in machine:
                assert m not in text, f"{path.name} names the machine path {m}"


def test_plan_stage_times_are_in_the_summary(report):
    _, summary = report
    stages = summary["stages"]
    assert {"source", "ticket", "transfer", "render"} <= set(stages)
    assert stages["source"]["computed"] == stages["source"]["tasks"] > 0  # an empty store: all built
    assert stages["render"]["notebooks"] == len(summary["experiments"])
    assert 0 < summary["cpu_utilisation"] <= 1.0
