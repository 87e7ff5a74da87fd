"""The E10 mask explorer driven from Python: controls -> view data -> figure data.

A smoke store (natural + robust eps* source models, OMP tickets at 80% with two transfer
seeds each, and IMP-source tickets) is built once in a temporary folder.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from rtstudy.core import masks, tickets
from rtstudy.core.pipeline import draw_ticket, load_model, pretrain, transfer
from rtstudy.core.stats import mean_ci
from rtstudy.core.store import Store
from rtstudy.explorer import (
    BOTH_KEPT,
    BOTH_PRUNED,
    NATURAL_ONLY,
    ROBUST_ONLY,
    ExplorerData,
    ExplorerState,
    MaskExplorer,
    anatomy,
    anatomy_finding,
    default_view_figures,
    draw_in_memory,
    expected_random_iou,
    random_iou,
)
from rtstudy.profiles import get_profile
from rtstudy.results import record

SMOKE = get_profile("smoke")


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    store = Store(tmp_path_factory.mktemp("explorer-store"))
    natural = pretrain(SMOKE.source_model(0.0), store=store, progress=False)
    robust = pretrain(SMOKE.source_model(SMOKE.eps_star), store=store, progress=False)
    accs = {}
    for name, src in (("natural", natural), ("robust", robust)):
        ticket = draw_ticket(SMOKE.ticket(src.desc, "omp", "unstructured", 0.8), store=store)
        accs[name] = [transfer(SMOKE.transfer(src.desc, ticket.desc, "mnist5k", seed=s),
                               store=store).metrics["test_acc"] for s in (0, 1)]
        draw_ticket(SMOKE.ticket(src.desc, "imp_source", "unstructured", 0.8), store=store,
                    progress=False)
    return {"store": store, "natural": natural, "robust": robust, "accs": accs}


@pytest.fixture()
def explorer(smoke):
    return MaskExplorer(smoke["store"], "smoke")


def _omp(source, pattern="unstructured", sparsity=0.8, **kw):
    """The ticket, computed independently of the explorer."""
    model = load_model(source.desc, source.artifact)
    return masks.weight_entries(tickets.omp(model, pattern, sparsity, **kw))


def test_default_view_is_natural_vs_robust_omp(explorer, smoke):
    c = explorer.controls
    assert c["source"].value == smoke["robust"].artifact.key
    assert (c["scheme"].value, c["pattern"].value, c["sparsity"].value) == ("omp", "unstructured", 0.8)
    assert set(c) == {"source", "scheme", "pattern", "sparsity", "layer", "target"}
    assert set(explorer.figures) == {"masks", "sparsity", "iou", "channels", "transfer"}
    nat, rob = _omp(smoke["natural"]), _omp(smoke["robust"])
    layer = c["layer"].value
    fig = explorer.figures["masks"]
    left, right, code = (np.asarray(t.z) for t in fig.data)
    np.testing.assert_array_equal(left, masks.layer_matrix(nat[layer]).numpy().astype(np.uint8))
    np.testing.assert_array_equal(right, masks.layer_matrix(rob[layer]).numpy().astype(np.uint8))
    a, b = masks.layer_matrix(nat[layer]).numpy(), masks.layer_matrix(rob[layer]).numpy()
    np.testing.assert_array_equal(code >= NATURAL_ONLY, a ^ b)  # disagreement = XOR
    np.testing.assert_array_equal(code == NATURAL_ONLY, a & ~b)
    np.testing.assert_array_equal(code == ROBUST_ONLY, ~a & b)
    np.testing.assert_array_equal(code == BOTH_KEPT, a & b)
    np.testing.assert_array_equal(code == BOTH_PRUNED, ~a & ~b)
    np.testing.assert_array_equal(explorer.view.disagree, a ^ b)
    assert "natural" in fig.layout.annotations[0].text and "robust" in fig.layout.annotations[1].text


def test_layer_control_changes_heatmap(explorer):
    fig = explorer.figures["masks"]
    assert np.asarray(fig.data[0].z).shape == (8, 8 * 9)  # layer1.0.conv1 of the smoke resnet8
    before = explorer.views["masks"].output.outputs if explorer.views["masks"].output else None
    explorer.controls["layer"].value = "net.layer3.0.conv2.weight"
    assert np.asarray(fig.data[0].z).shape == (32, 32 * 9)
    assert np.asarray(fig.data[2].z).shape == (32, 32 * 9)
    assert "layer3.0.conv2" in fig.layout.title.text
    if before is not None:  # without anywidget the Output shows the new figure
        assert explorer.views["masks"].output.outputs != before
    explorer.set(layer="layer2.0.shortcut.0")  # short names work too
    assert np.asarray(fig.data[1].z).shape == (16, 8)
    with pytest.raises(ValueError, match="layer"):
        explorer.set(layer="no.such.layer")


def test_bars_match_masks_analytics(explorer, smoke):
    explorer.set(sparsity=0.5)
    nat, rob = _omp(smoke["natural"], sparsity=0.5), _omp(smoke["robust"], sparsity=0.5)
    names = list(nat)
    sp = explorer.figures["sparsity"]
    assert list(sp.data[0].y) == pytest.approx([masks.layer_sparsity(nat)[k] for k in names])
    assert list(sp.data[1].y) == pytest.approx([masks.layer_sparsity(rob)[k] for k in names])
    iou = explorer.figures["iou"]
    assert list(iou.data[0].y) == pytest.approx([masks.layer_iou(nat, rob)[k] for k in names])
    keep_a, keep_b = 1 - np.array(sp.data[0].y), 1 - np.array(sp.data[1].y)
    assert list(iou.data[1].y) == pytest.approx(list(keep_a * keep_b / (keep_a + keep_b - keep_a * keep_b)))
    v = explorer.view
    assert v.overall_iou == pytest.approx(masks.iou(nat, rob))
    assert v.hamming == pytest.approx(masks.hamming(nat, rob, normalized=True))
    assert f"{masks.iou(nat, rob):.2f}" in iou.layout.title.text


def test_source_control_switches_the_right_hand_ticket(explorer, smoke):
    nat_key = smoke["natural"].artifact.key
    explorer.controls["source"].value = nat_key  # natural vs natural: the same ticket
    fig = explorer.figures["masks"]
    np.testing.assert_array_equal(np.asarray(fig.data[0].z), np.asarray(fig.data[1].z))
    assert not np.asarray(explorer.view.disagree).any()
    assert explorer.view.overall_iou == 1.0
    assert set(explorer.figures["iou"].data[0].y) == {1.0}
    explorer.set(source="robust fgsm_rs linf ε=2/255")  # by label
    assert explorer.controls["source"].value == smoke["robust"].artifact.key
    nat = tickets.omp(smoke["natural"].model, "unstructured", explorer.state().sparsity)
    rob = tickets.omp(smoke["robust"].model, "unstructured", explorer.state().sparsity)
    assert explorer.view.overall_iou == pytest.approx(masks.iou(nat, rob))


def test_channel_pattern_shows_filter_survival(explorer, smoke):
    explorer.set(pattern="channel", layer="layer2.0.conv1", sparsity=0.5)
    nat = _omp(smoke["natural"], "channel", 0.5)
    rob = _omp(smoke["robust"], "channel", 0.5)
    z = np.asarray(explorer.figures["channels"].data[0].z)
    layer = "net.layer2.0.conv1.weight"
    np.testing.assert_allclose(z[0], masks.channel_survival(nat)[layer].numpy())
    np.testing.assert_allclose(z[1], masks.channel_survival(rob)[layer].numpy())
    assert set(np.unique(z)) <= {0.0, 1.0}  # whole filters go
    assert z.min() == 0.0
    kept = len(masks.surviving_channels(nat)[layer])
    assert f"natural {kept}/16" in explorer.figures["channels"].layout.title.text


def test_nm_pattern_shows_groups(explorer, smoke):
    explorer.set(pattern="nm", layer="layer1.0.conv2")
    assert explorer.controls["sparsity"].disabled
    assert explorer.controls["sparsity"].value == 0.5
    nat = _omp(smoke["natural"], "nm", 0.5)
    groups = masks.nm_groups(nat["net.layer1.0.conv2.weight"], 4)
    left = np.asarray(explorer.figures["masks"].data[0].z)
    np.testing.assert_array_equal(left, groups.reshape(8, -1).numpy().astype(np.uint8))
    assert (left.reshape(8, -1, 4).sum(-1) == 2).all()  # 2 kept in every group of 4
    explorer.set(pattern="unstructured")
    assert not explorer.controls["sparsity"].disabled
    assert explorer.controls["sparsity"].value == 0.8  # back to the sparsity chosen before


def test_transfer_accuracies_of_both_tickets(explorer, smoke):
    fig = explorer.figures["transfer"]
    assert list(fig.data[0].x) == ["mnist5k finetune"]
    assert fig.data[0].y[0] == pytest.approx(mean_ci(smoke["accs"]["natural"]).mean)
    assert fig.data[1].y[0] == pytest.approx(mean_ci(smoke["accs"]["robust"]).mean)
    assert not fig.layout.annotations
    explorer.set(sparsity=0.9)  # no transfer stored there
    assert list(fig.data[0].x) == []
    assert "no transfer results" in fig.layout.annotations[0].text


def test_imp_only_where_stored(explorer, smoke):
    assert explorer.controls["scheme"].options == ("omp", "imp_source", "random")
    explorer.set(scheme="imp_source")
    assert [v for _, v in explorer.controls["pattern"].options] == ["unstructured"]
    assert [v for _, v in explorer.controls["sparsity"].options] == [0.8]
    stored = draw_ticket(SMOKE.ticket(smoke["robust"].desc, "imp_source", "unstructured", 0.8),
                         store=smoke["store"])
    layer = explorer.controls["layer"].value
    np.testing.assert_array_equal(np.asarray(explorer.figures["masks"].data[1].z),
                                  masks.layer_matrix(stored.mask[layer]).numpy().astype(np.uint8))
    assert explorer.view.robust.stored and explorer.view.robust.ticket_key == stored.key
    assert explorer.data.mask(smoke["robust"].artifact.key, "imp_target", "unstructured", 0.8, "digits") is None


def test_random_scheme_and_expected_iou(explorer, smoke):
    v = explorer.set(scheme="random")
    nat = smoke["natural"]
    ref = tickets.omp(load_model(nat.desc, nat.artifact), "unstructured", 0.8)
    rnd = masks.weight_entries(tickets.random_mask(ref, "unstructured", seed=0))
    layer = v.layer
    np.testing.assert_array_equal(v.natural.matrix, masks.layer_matrix(rnd[layer]).numpy())
    # the analytic chance level agrees with drawn random masks
    a = tickets.random_mask(ref, "unstructured", seed=1)
    drawn = [masks.iou(a, tickets.random_mask(ref, "unstructured", seed=s)) for s in range(2, 7)]
    assert expected_random_iou(ref, ref) == pytest.approx(float(np.mean(drawn)), abs=0.03)
    assert random_iou(0.5, 0.5) == pytest.approx(1 / 3)
    assert random_iou(0.2, 0.2) == pytest.approx(0.2 / 1.8)


def test_draw_in_memory_omp_and_random(smoke):
    src = smoke["robust"]
    model = load_model(src.desc, src.artifact)
    for pattern, kw in (("unstructured", {}), ("channel", {}), ("nm", {"n": 2, "m": 4})):
        omp = tickets.omp(model, pattern, 0.5, **kw)
        drawn = draw_in_memory(SMOKE.ticket(src.desc, "omp", pattern, 0.5), model)
        assert drawn.keys() == omp.keys() and all(drawn[k].equal(omp[k]) for k in omp)
        rnd = tickets.random_mask(omp, pattern, seed=3, **kw)
        desc = SMOKE.ticket(src.desc, "random", pattern, 0.5, seed=3)
        for reference in (lambda d, o=omp: o, None):  # the OMP twin handed in, or drawn here
            drawn = draw_in_memory(desc, model, reference=reference)
            assert drawn.keys() == rnd.keys() and all(drawn[k].equal(rnd[k]) for k in rnd)
    with pytest.raises(ValueError, match="imp_source"):
        draw_in_memory(SMOKE.ticket(src.desc, "imp_source", "unstructured", 0.5), model)


def test_view_data_is_pure_and_pools_big_layers(smoke):
    data = ExplorerData(smoke["store"], "smoke", max_cells=500)
    state = data.default_state()
    assert isinstance(state, ExplorerState)
    v = data.view_data(ExplorerState(source=state.source, layer="net.layer3.0.conv2.weight"))
    assert v.pooled is not None
    assert v.natural.matrix.size <= 500
    assert v.natural.mask_matrix.shape == (32, 288)
    assert 0.0 <= v.disagree_shown.min() and v.disagree_shown.max() <= 1.0
    assert v.natural.matrix.mean() == pytest.approx(v.natural.mask_matrix.mean(), abs=0.05)
    with pytest.raises(ValueError, match="source"):
        data.view_data(ExplorerState(source="nope"))
    figs = default_view_figures(ExplorerData(smoke["store"], "smoke"))
    assert len(figs) == 5 and all(f.data for f in figs)


def test_control_change_timing_is_reported(explorer):
    # measured and printed, not asserted (DESIGN.md: speed is benchmarked, not a timed test)
    timing = explorer.time_changes(repeats=3)
    assert set(timing) >= {"layer", "sparsity", "source"}
    assert all(t > 0 for t in timing.values())
    print("\n[explorer] control change, Python side (median s): "
          + ", ".join(f"{k} {v:.3f}" for k, v in timing.items()))


def test_empty_store_shows_a_message(tmp_path):
    ex = MaskExplorer(Store(tmp_path / "empty"), "smoke")
    assert ex.controls == {} and ex.figures == {}
    assert "No source models are stored" in ex.message
    assert any("No source models are stored" in getattr(w, "value", "") for w in ex.widget.children)
    with pytest.raises(ValueError, match="no controls"):
        ex.set(layer="x")
    assert default_view_figures(ex.data) == []
    rows, summary = anatomy(ex.data)
    assert rows == [] and anatomy_finding(summary, ex.data).startswith("Nothing to compare")


def test_other_profile_falls_back_with_a_note(smoke):
    data = ExplorerData(smoke["store"], "default")
    assert "No source models of profile 'default'" in data.note
    assert len(data.sources) == 2


def test_anatomy_numbers_and_record(smoke, tmp_path):
    data = ExplorerData(smoke["store"], "smoke")
    rows, summary = anatomy(data, patterns=("unstructured", "channel", "nm"), random_draws=2)
    nat, rob = _omp(smoke["natural"], sparsity=0.8), _omp(smoke["robust"], sparsity=0.8)
    item = next(s for s in summary if s["pattern"] == "unstructured" and s["sparsity"] == 0.8)
    assert item["iou"] == pytest.approx(masks.iou(nat, rob))
    assert item["iou_random"] == pytest.approx(expected_random_iou(nat, rob))
    assert abs(item["iou_random_drawn"] - item["iou_random"]) < 0.05
    chan = [s for s in summary if s["pattern"] == "channel"]
    assert chan and all(0 <= s["filter_iou"] <= 1 for s in chan)
    metrics = {r["metric"] for r in rows}
    assert {"iou", "iou_random", "iou_random_drawn", "hamming", "layer_iou", "layer_sparsity_diff",
            "filter_iou", "filters_alive_natural", "filters_alive_robust", "filters_alive_shared"} <= metrics
    finding = anatomy_finding(summary, data)
    assert f"{item['iou']:.2f}" in finding and f"{item['iou_random']:.2f}" in finding
    out = record("E10", rows, finding, {"profile": "smoke"}, tmp_path)
    assert (tmp_path / "E10.json").exists() and out["rows"]
    assert all(not math.isnan(r["value"]) for r in rows)


def test_server_page_and_template(tmp_path):
    import nbformat

    from rtstudy.explorer.server import TEMPLATE, voila_argv, write_notebook, write_template

    folder = write_template(tmp_path)
    text = (folder / "index.html.j2").read_text()
    assert "lab/index.html.j2" in text and "fontawesome" in text  # the links it removes
    nb = nbformat.read(write_notebook(tmp_path / "page.ipynb", "smoke"), as_version=4)
    assert "MaskExplorer(profile='smoke')" in nb.cells[-1].source
    argv = voila_argv(tmp_path / "page.ipynb", 8866)
    assert "--Voila.ip=127.0.0.1" in argv and "--no-browser" in argv and f"--template={TEMPLATE}" in argv
    with pytest.raises(ValueError, match="profile"):
        write_notebook(tmp_path / "x.ipynb", "huge")


@pytest.fixture()
def figure_widget_backend(monkeypatch):
    """plotly's FigureWidget, with a stand-in for ``anywidget`` when it is not installed
    (plotly >= 6 needs it; only its Python side matters here: no browser is involved)."""
    import sys
    import types

    try:
        import anywidget  # noqa: F401

        yield
        return
    except ImportError:
        pass
    import ipywidgets
    import traitlets

    stub = types.ModuleType("anywidget")
    stub.AnyWidget = type("AnyWidget", (ipywidgets.DOMWidget,), {"_esm": traitlets.Any()})
    before = set(sys.modules)
    monkeypatch.setitem(sys.modules, "anywidget", stub)
    try:
        yield
    finally:  # forget the plotly modules imported against the stand-in
        for name in set(sys.modules) - before:
            if name.startswith("plotly"):
                del sys.modules[name]


def test_figure_widgets_update_in_one_message_each(smoke, figure_widget_backend):
    import plotly.graph_objects as go

    ex = MaskExplorer(smoke["store"], "smoke", figure_widgets=True)
    assert all(isinstance(f, go.FigureWidget) for f in ex.figures.values())
    sent = {name: [] for name in ex.figures}
    for name, fig in ex.figures.items():
        for kind in ("restyle", "relayout", "update", "addTraces", "deleteTraces"):
            original = getattr(fig, f"_send_{kind}_msg")

            def spy(*args, _name=name, _kind=kind, _original=original, **kw):
                sent[_name].append(_kind)
                return _original(*args, **kw)

            setattr(fig, f"_send_{kind}_msg", spy)
    ex.controls["layer"].value = "net.layer3.0.conv2.weight"
    assert np.asarray(ex.figures["masks"].data[0].z).shape == (32, 288)
    # every figure that changed got exactly one message (batch_update): no trace re-adds
    for name in ("masks", "sparsity", "iou", "channels"):
        assert len(sent[name]) == 1 and sent[name][0] in ("update", "restyle", "relayout"), (name, sent)
    assert all(len(v) <= 1 for v in sent.values()), sent


def test_figure_widgets_hand_out_their_current_state(smoke, figure_widget_backend):
    """A front end that builds the widgets after the notebook ran (Voilà asks the kernel for
    every widget's state) gets the explorer's current view, not the figures as constructed;
    a change still sends only the in-place update, never the full state again."""
    ex = MaskExplorer(smoke["store"], "smoke", figure_widgets=True)
    fig = ex.figures["masks"]

    def shown(state):
        z = state["_widget_data"][0]["z"]
        return len(z), len(z[0]), state["_widget_layout"]["title"]["text"]

    rows, cols, title = shown(fig.get_state())
    assert (rows, cols) == (8, 8 * 9) and "layer1.0.conv1" in title
    np.testing.assert_array_equal(np.asarray(fig.get_state()["_widget_data"][0]["z"]), np.asarray(fig.data[0].z))
    assert "channel survival, layer1.0.conv1" in ex.figures["channels"].get_state()["_widget_layout"]["title"]["text"]
    sent_keys = []
    original = type(fig).send_state

    def spy(self, key=None):
        sent_keys.append(key)
        return original(self, key)

    type(fig).send_state = spy
    try:
        ex.controls["layer"].value = "net.layer3.0.conv2.weight"
    finally:
        type(fig).send_state = original
    assert "_py2js_update" in sent_keys or "_py2js_restyle" in sent_keys, sent_keys  # the in-place update
    assert not {"_widget_data", "_widget_layout"} & {k for k in sent_keys if isinstance(k, str)}, sent_keys
    rows, cols, title = shown(fig.get_state())
    assert (rows, cols) == (32, 32 * 9) and "layer3.0.conv2" in title
    assert fig.get_state()["_config"]["responsive"] is True


def test_figure_widget_front_end_is_loaded_once_per_page(smoke, figure_widget_backend, monkeypatch):
    import plotly.graph_objects as go

    from rtstudy.explorer import PLOTLY_WIDGET_URL_ENV, plotly_widget_bundle, plotly_widget_key

    if not plotly_widget_bundle().is_file():
        pytest.skip("plotly's widget bundle is not installed")
    key = f"Symbol.for({json.dumps(plotly_widget_key())})"
    monkeypatch.delenv(PLOTLY_WIDGET_URL_ENV, raising=False)
    esm = str(MaskExplorer(smoke["store"], "smoke", figure_widgets=True).figures["masks"]._esm)
    # no URL (JupyterLab): plotly's bundle travels inside, evaluated once per page
    assert key in esm and "globalThis[key] ??=" in esm and len(esm) > 1_000_000
    assert "FigureModel" in esm and "export default" in esm
    url = "voila/templates/x/static/plotly-widget.js"
    monkeypatch.setenv(PLOTLY_WIDGET_URL_ENV, url)
    ex = MaskExplorer(smoke["store"], "smoke", figure_widgets=True)
    esms = {str(f._esm) for f in ex.figures.values()}
    assert len(esms) == 1 and all(isinstance(f, go.FigureWidget) for f in ex.figures.values())
    (esm,) = esms
    assert key in esm and json.dumps(url) in esm and len(esm) < 3000  # a few lines, not the 5 MB bundle


def test_server_template_serves_the_widget_front_end(tmp_path):
    from rtstudy.explorer import plotly_widget_bundle, plotly_widget_key
    from rtstudy.explorer.server import TEMPLATE, widget_url, write_template

    folder = write_template(tmp_path)
    url = widget_url()
    assert url.startswith(f"voila/templates/{TEMPLATE}/static/")
    text = (folder / "index.html.j2").read_text()
    assert json.dumps(plotly_widget_key()) in text and json.dumps(url) in text and "import(" in text
    if plotly_widget_bundle().is_file():
        copy = folder / "static" / url.rsplit("/", 1)[1]
        assert copy.read_bytes() == plotly_widget_bundle().read_bytes()
