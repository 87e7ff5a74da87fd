"""The report runner: offline HTML, summary, and a failing notebook leaves the old report."""

import json
from pathlib import Path

import nbformat
import pytest

from rtstudy.report import NotebookFailed, build_report
from rtstudy.results import record, row


def _notebook(path, body: str) -> None:
    nb = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell('profile = "default"\nresults_dir = None')
    params.metadata["tags"] = ["parameters"]
    nb.cells = [params, nbformat.v4.new_code_cell(body)]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)


def _render(tmp_path, nbs, **kw):
    """Render the notebooks in ``nbs`` into ``tmp_path/out`` (nothing planned: they train nothing)."""
    return build_report("smoke", tmp_path / "out", notebooks_dir=nbs, log=lambda *_: None, build=False,
                        workers=1, store=str(tmp_path / "store"), **kw)


GOOD = """
import plotly.graph_objects as go
from rtstudy import plots, results
plots.show(go.Figure(go.Scatter(x=[0, 1], y=[0.5, 0.7])))
rows = [results.row("mnist5k", "natural", 0.0, "omp", "unstructured", 0.5, 0, "test_acc", 0.7)]
results.record("E1", rows, f"accuracy was {rows[0]['value']:.2f} on profile {profile}", {"profile": profile}, results_dir)
"""


def test_report_writes_offline_html_and_summary(tmp_path):
    nbs = tmp_path / "nbs"
    nbs.mkdir()
    _notebook(nbs / "01_main.ipynb", GOOD)
    summary = _render(tmp_path, nbs)
    out = tmp_path / "out"
    saved = json.loads((out / "summary.json").read_text())
    assert saved["experiments"]["E1"]["rows"][0]["value"] == 0.7
    assert saved["experiments"]["E1"]["finding"] == "accuracy was 0.70 on profile smoke"
    page = (out / "01_main.html").read_text()
    assert 'src="plotly.min.js"' in page and "plotly-graph-div" in page
    assert 'src="https://' not in page and 'src="http://' not in page, "no script from the network"
    assert "libs/mathjax" not in page and "require.min.js" not in page
    assert (out / "plotly.min.js").stat().st_size > 1_000_000
    assert "accuracy was 0.70" in (out / "index.html").read_text()
    assert summary["experiments"]["E1"]["status"] == "ok"
    # no machine path: results_dir is injected relative, papermill's paths are file names
    injected = nbformat.read(out / "01_main.ipynb", as_version=4).cells[1].source
    assert 'results_dir = "results"' in injected
    for name in ("01_main.ipynb", "summary.json", "01_main.html"):
        text = (out / name).read_text()
        assert str(tmp_path) not in text and str(Path.home()) not in text, name


def test_failing_notebook_keeps_previous_report(tmp_path):
    nbs = tmp_path / "nbs"
    nbs.mkdir()
    _notebook(nbs / "01_main.ipynb", GOOD)
    _render(tmp_path, nbs)
    before = (tmp_path / "out" / "summary.json").read_text()
    _notebook(nbs / "02_eps.ipynb", "raise RuntimeError('boom in E2')")
    with pytest.raises(NotebookFailed, match=r"02_eps.ipynb failed at cell 2.*boom in E2"):
        _render(tmp_path, nbs)
    assert (tmp_path / "out" / "summary.json").read_text() == before


def test_notebook_must_record_results(tmp_path):
    nbs = tmp_path / "nbs"
    nbs.mkdir()
    _notebook(nbs / "01_main.ipynb", "x = 1")
    with pytest.raises(NotebookFailed, match="recorded no results"):
        _render(tmp_path, nbs)


def test_record_rejects_bad_input():
    with pytest.raises(ValueError, match="E42"):
        record("E42", [], "x", {}, None)
    with pytest.raises(ValueError, match="finding"):
        record("E1", [], "  ", {}, None)
    with pytest.raises(ValueError, match="lacks"):
        record("E1", [{"task": "t"}], "found", {}, None)
    assert record("E1", [row("t", "natural", 0, "omp", "nm", 0.5, 0, "test_acc", 0.5)], "f", {}, None)["rows"]


def test_only_reruns_one_experiment_and_keeps_the_others(tmp_path):
    nbs = tmp_path / "nbs"
    nbs.mkdir()
    _notebook(nbs / "01_main.ipynb", GOOD)
    _notebook(nbs / "02_eps.ipynb", GOOD.replace('"E1"', '"E2"'))
    _render(tmp_path, nbs)
    summary = _render(tmp_path, nbs, only=["E2"])
    assert set(summary["experiments"]) == {"E1", "E2"}
    assert (tmp_path / "out" / "01_main.html").exists() and (tmp_path / "out" / "02_eps.html").exists()
    saved = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert set(saved["experiments"]) == {"E1", "E2"}


def test_notebooks_may_not_train_at_render_time(tmp_path):
    nbs = tmp_path / "nbs"
    nbs.mkdir()
    _notebook(nbs / "01_main.ipynb", "from rtstudy.core.pipeline import pretrain\n"
              "from rtstudy.profiles import get_profile\n"
              "pretrain(get_profile('smoke').source_model(0.0))")
    with pytest.raises(NotebookFailed, match="NotInStore.*RTSTUDY_READ_ONLY forbids computing source"):
        _render(tmp_path, nbs)


def test_a_notebook_whose_inputs_are_unchanged_is_not_rendered_again(tmp_path):
    nbs = tmp_path / "nbs"
    nbs.mkdir()
    _notebook(nbs / "10_anatomy.ipynb", GOOD.replace('"E1"', '"E10"'))  # no grid: nothing to train

    def build(**kw):
        return build_report("smoke", tmp_path / "out", notebooks_dir=nbs, log=lambda *_: None, workers=1,
                            store=str(tmp_path / "store"), **kw)

    first = build()["experiments"]["E10"]
    assert first["fingerprint"] and not first.get("reused")
    again = build()
    assert again["experiments"]["E10"]["reused"] and again["stages"]["render"]["notebooks"] == 0
    assert again["experiments"]["E10"]["finding"] == first["finding"]
    assert (tmp_path / "out" / "10_anatomy.html").is_file(), "the kept page is in the new report"
    # a stored replicate: a new main report compares its own verdicts with the replicate's
    (tmp_path / "out" / "replicate").mkdir()
    (tmp_path / "out" / "replicate" / "summary.json").write_text(json.dumps(
        {"profile": "smoke", "created": "then", "wall_seconds": 5.0, "experiments": {"E10": {"contrasts": []}}}))
    rep = build()["replication"]
    assert rep["replicate_created"] == "then" and rep["cells"] == 0 and "same verdict" in rep["sentence"]
    assert not build(rerender=True)["experiments"]["E10"].get("reused")
    _notebook(nbs / "10_anatomy.ipynb", GOOD.replace('"E1"', '"E10"') + "\nx = 1")
    assert not build()["experiments"]["E10"].get("reused"), "a changed notebook renders again"


def test_the_fingerprint_follows_source_parameters_and_artifacts(tmp_path):
    from rtstudy.render import notebook_fingerprint

    src = tmp_path / "nb.ipynb"
    src.write_text("{}")
    art = tmp_path / "transfer" / "abc"
    art.mkdir(parents=True)
    (art / "meta.json").write_text("{}")
    base = notebook_fingerprint(src, {"seeds": [0]}, [art], package="p")
    assert base == notebook_fingerprint(src, {"seeds": [0]}, [art], package="p")
    assert base != notebook_fingerprint(src, {"seeds": [1]}, [art], package="p")
    assert base != notebook_fingerprint(src, {"seeds": [0]}, [art], package="q")
    assert base != notebook_fingerprint(src, {"seeds": [0]}, [], package="p")
    (art / "meta.json").write_text('{"rebuilt": true}')
    assert base != notebook_fingerprint(src, {"seeds": [0]}, [art], package="p")


def test_summary_json_writes_one_row_per_line_and_reads_back_equal():
    from rtstudy.report import summary_json

    rows = [row("mnist5k", "natural", 0.0, "omp", "unstructured", s, 0, "test_acc", 0.7) for s in (0.5, 0.9)]
    summary = {"profile": "smoke", "experiments": {"E1": {"finding": "ℓ∞ text", "rows": rows},
                                                   "E10": {"finding": "none", "rows": []}, "E0": {}}}
    text = summary_json(summary)
    assert json.loads(text) == summary and "rows" not in summary["experiments"]["E0"]
    assert sum('"task":"mnist5k"' in line for line in text.splitlines()) == 2, "one line per row"
