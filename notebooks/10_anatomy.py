# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # E10 — Mask anatomy: how do robust and natural tickets differ?
#
# A ticket is a binary mask over the prunable weights. Drawn by one-shot magnitude
# pruning (OMP) from a **natural** model and from a **robust** (adversarially trained)
# model of the same architecture, task and recipe, how alike are the two masks? This
# notebook measures it — overlap (IoU of the kept weights), per-layer sparsity, channel
# survival — against what two *random* masks of the same per-layer sparsity would share,
# and offers an interactive explorer for teaching.
#
# Nothing is trained here: the source models are the ones the pipeline stored (E1–E9
# create them); OMP and random tickets are drawn from them in memory when the store does
# not hold them (OMP needs no data); IMP tickets are shown only where they are stored.
#
# The same explorer as a standalone page: `python -m rtstudy.explorer.server --profile default`
# (Voilà, http://127.0.0.1:8866).

# %%
import html

import plotly.graph_objects as go
import torch
from IPython.display import HTML, display

from rtstudy import plots, results
from rtstudy.core.store import Store
from rtstudy.explorer import (
    ExplorerData,
    MaskExplorer,
    anatomy,
    anatomy_finding,
    default_view_figures,
    describe_environment,
    short_name,
    summary_table,
)
from rtstudy.vision.track import eps_label

# %% tags=["parameters"]
profile = "default"  # smoke | default | paper: which stored source family to analyse
results_dir = None  # set by the report runner (None: record nothing)
store_dir = None  # artifact store (None: $RTSTUDY_STORE or ~/.cache/rtstudy/artifacts)
scheme = "omp"  # pruning scheme of the E10 numbers: omp or random (IMP only where stored)
patterns = ["unstructured", "channel", "nm"]  # sparsity patterns of the E10 numbers
random_draws = 5  # pairs of random tickets drawn per condition (chance level, empirically)
threads = 1  # torch CPU threads
live_explorer = None  # show the live widgets (None: only interactively, i.e. when results_dir is None)

# %%
torch.set_num_threads(threads)
data = ExplorerData(Store(store_dir), profile)
print(f"{len(data.sources)} stored source model(s) of this family")
for entry in data.sources:
    metrics = entry.artifact.metrics
    print(f"  {entry.label:34s} test acc {metrics.get('test_acc', float('nan')):.3f}"
          + (f", robust acc {metrics['robust_acc']:.3f}" if "robust_acc" in metrics else ""))
if data.note:
    print("note:", data.note)
if not data.sources:
    print(data.message)

# %% [markdown]
# ## The explorer
#
# Pick a source model (the right-hand ticket; the left one always comes from the natural
# model), a scheme, a pattern, a sparsity and a layer. The third heatmap colours the
# disagreement (XOR): blue = only the natural ticket keeps the weight, red = only the
# robust one. The bars compare per-layer sparsity and per-layer IoU with the IoU two
# random masks of those sparsities would have (black dashes).

# %%
live = (results_dir is None) if live_explorer is None else live_explorer
explorer = None
if live:
    explorer = MaskExplorer(profile=profile, data=data)
    display(explorer.widget)
else:  # a static report: no live widgets (they need a kernel); the default view follows
    print("The live explorer needs a kernel: open this notebook in Jupyter, or run "
          f"`python -m rtstudy.explorer.server --profile {profile}`.")

# %% [markdown]
# ## The default view (static, for the report)

# %%
for fig in default_view_figures(data):
    plots.show(fig)
if not data.sources:
    display(HTML(f"<p><b>{html.escape(data.message)}</b></p>"))

# %% [markdown]
# ## E10 numbers: every stored robust model vs the natural one
#
# *IoU* of the kept weights of the two tickets; *random IoU (expected)*: two independent
# uniform masks with the same per-layer kept fractions k₁, k₂ share
# Σ k₁k₂n / Σ (k₁+k₂−k₁k₂)n (k/(2−k) for equal k = 1 − s); *drawn*: the mean over
# `random_draws` pairs of the pipeline's random tickets. For channel tickets, *filter IoU*
# compares the sets of surviving filters.

# %%
rows, summary = anatomy(data, scheme=scheme, patterns=patterns, random_draws=random_draws)
display(HTML(summary_table(summary)))

# %%
fig = go.Figure()
palette = plots.PALETTE
sources = list(dict.fromkeys(s["source"] for s in summary))
for j, pattern in enumerate(patterns):
    dash = ("solid", "dash", "dot", "dashdot")[j % 4]
    for i, source in enumerate(sources):
        pts = [s for s in summary if s["source"] == source and s["pattern"] == pattern]
        if pts:
            fig.add_trace(go.Scatter(x=[p["sparsity"] for p in pts], y=[p["iou"] for p in pts],
                                     mode="lines+markers", name=f"{source}, {pattern}",
                                     line={"color": palette[(i + 1) % len(palette)], "dash": dash}))
    pts = [s for s in summary if s["source"] == (sources[0] if sources else None) and s["pattern"] == pattern]
    if pts:
        fig.add_trace(go.Scatter(x=[p["sparsity"] for p in pts], y=[p["iou_random"] for p in pts],
                                 mode="lines+markers", name=f"two random masks, {pattern}",
                                 line={"color": plots.COLORS["random"], "dash": dash}))
fig.update_layout(template="plotly_white", height=420, xaxis={"title": "sparsity", "tickformat": ".0%"},
                  yaxis={"title": "IoU with the natural ticket", "range": [0, 1.02]},
                  title=f"E10: overlap of {scheme.upper()} tickets, robust vs natural (profile {profile})")
plots.show(fig)

# %%
if data.sources:
    layer_fig = go.Figure()
    star = data.default_source()
    mid = [s for s in summary if s["source"] == star.label and s["pattern"] == "unstructured"]
    if mid:
        pick = min(mid, key=lambda s: abs(s["sparsity"] - data.profile.fixed_sparsities[0]))
        names = [short_name(k) for k in pick["layer_sparsity_diff"]]
        layer_fig.add_trace(go.Bar(x=names, y=[100 * v for v in pick["layer_sparsity_diff"].values()],
                                   marker_color=plots.COLORS["robust"]))
        layer_fig.update_layout(
            template="plotly_white", height=360, yaxis={"title": "robust − natural (points)"},
            title=f"Per-layer sparsity difference at {pick['sparsity']:.0%} ({star.label}, unstructured OMP)")
        plots.show(layer_fig)

# %%
chan = [s for s in summary if data.sources and s["source"] == data.default_source().label
        and s["pattern"] == "channel" and s.get("filters_alive")]
if chan:
    pick = min(chan, key=lambda s: abs(s["sparsity"] - data.profile.fixed_sparsities[0]))
    names = [short_name(k) for k in pick["filters_alive"]]
    alive = list(pick["filters_alive"].values())
    chan_fig = go.Figure([
        go.Bar(x=names, y=[a[0] for a in alive], name="natural ticket", marker_color=plots.COLORS["natural"]),
        go.Bar(x=names, y=[a[1] for a in alive], name="robust ticket", marker_color=plots.COLORS["robust"]),
        go.Bar(x=names, y=[a[2] for a in alive], name="alive in both", marker_color=plots.COLORS["random"]),
    ])
    chan_fig.update_layout(
        template="plotly_white", barmode="group", height=360, yaxis={"title": "filters alive", "range": [0, 1]},
        title=f"Channel survival at {pick['sparsity']:.0%} ({pick['source']} vs natural, channel OMP)")
    plots.show(chan_fig)

# %% [markdown]
# ## Finding

# %%
finding = anatomy_finding(summary, data)
print(finding)
env = describe_environment()
timing = explorer.time_changes(repeats=3) if explorer is not None else {}
if timing:
    print("explorer control change (Python side, median s):",
          ", ".join(f"{k} {v:.3f}" for k, v in timing.items()))
if env["note"]:
    print(env["note"])
parameters = {"profile": profile, "scheme": scheme, "patterns": list(patterns), "random_draws": random_draws,
              "sources": [s.label for s in data.sources],
              "eps": [eps_label(s.eps, s.norm) for s in data.sources]}  # no store path: it is the machine's
record = results.record("E10", rows, finding, parameters, results_dir)
print(f"{len(rows)} result rows")
