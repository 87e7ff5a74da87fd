# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # E6 — Data-limited transfer
#
# **Question.** Robust features are often said to help most when the downstream task
# has little data (Double-Win Lottery Tickets, Chen et al., ICML 2022). Finetune the
# natural and robust tickets on a stratified fraction (e.g. 1%, 10%, 100%) of each
# target's training set: does the robust advantage grow as data shrinks?

# %%
from IPython.display import Markdown, display

from rtstudy import experiments as X
from rtstudy import plots
from rtstudy.profiles import get_profile
from rtstudy.results import record

# %% tags=["parameters"]
profile = "default"
results_dir = None
targets = None  # None: profile.targets
fractions = None  # fractions of T's training set (None: profile.data_fractions)
sparsity = None  # None: profile.fixed_sparsities[0]
seeds = None  # None: profile.seeds
source_seeds = None  # source-model seeds, the unit of replication (None: profile.source_seeds)
gate_source_seeds = None  # the transfer gate's: dense models and controls (None: profile.gate_seeds)

# %%
P = get_profile(profile)
[grid] = X.EXPERIMENTS.get("E6").grids(P, source_seeds=source_seeds, gate_source_seeds=gate_source_seeds, targets=targets, fractions=fractions, sparsity=sparsity,
                                        seeds=seeds)
sources, targets, seeds = grid.sources, grid.targets, grid.seeds
fractions = [t.fraction for t in grid.transfers]
sparsity = grid.tickets[0].sparsity
print(f"fractions {fractions}; OMP {sparsity:.0%}; targets {targets}; seeds {seeds}")

# %%
rows = X.run(P, grid)
gate_rows = X.run_gate(P, grid)  # the transfer gate: dense models and their controls
pre = X.select(rows, init="pretrained")  # figures and tables: the pretrained tickets
fig = X.curve_figure(pre, x="fraction", series="source", log_x=True,
                     title=f"Data-limited transfer: OMP {sparsity:.0%} tickets, natural vs robust",
                     x_title="fraction of T's training set (log)", y_title="test accuracy on T")
fig.update_xaxes(tickvals=fractions, ticktext=[X.pct(f) for f in fractions])
plots.show(fig)
display(Markdown(X.markdown_table(pre, ["task", "fraction"], "source")))
n_train = {(r["task"], r["fraction"]): r["n_train"] for r in rows}
print("training images per (task, fraction):", {f"{t} {X.pct(f)}": n for (t, f), n in n_train.items()})

# %% [markdown]
# ## Finding

# %%
robust_name = sources[1].label
finding = X.data_finding(rows, robust_name, targets, gate_rows=gate_rows)
finding = X.lead_with_headline(finding, "E6", rows, P)  # the answer first
display(Markdown(finding.markdown))
recorded = record("E6", rows + gate_rows, finding, {"profile": profile, "targets": targets, "fractions": fractions,
                                        "sparsity": sparsity, "seeds": seeds, "robust_source": robust_name},
                  results_dir, contrasts=finding.contrasts)
print(f"recorded {len(recorded['rows'])} rows for {recorded['experiment']}")

# %% [markdown]
# ## Secondary: the primary contrast cell by cell
#
# The same units, each cell on its own (Holm within the cells): a description of where
# the headline's contrast comes from, never the answer itself.

# %%
display(Markdown(X.secondary_markdown("E6", rows, P)))
plots.show(X.secondary_figure("E6", rows, P))
display(Markdown(X.transfer_gain_markdown(gate_rows, P)))
