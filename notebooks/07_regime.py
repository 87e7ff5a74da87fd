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
# # E7 — Finetune vs linear probe
#
# **Question.** Finetuning adapts every surviving weight; a linear probe trains only a
# new head on the frozen (masked) features, so it measures the ticket's features as
# they are. Does the robust advantage hold — or grow — under a linear probe, dense and
# at a fixed sparsity?

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
sparsities = None  # None: [0 (dense), profile.fixed_sparsities[0]]
regimes = ("finetune", "probe")
seeds = None  # None: profile.seeds
source_seeds = None  # source-model seeds, the unit of replication (None: profile.source_seeds)
gate_source_seeds = None  # the transfer gate's: dense models and controls (None: profile.gate_seeds)

# %%
P = get_profile(profile)
[grid] = X.EXPERIMENTS.get("E7").grids(P, source_seeds=source_seeds, gate_source_seeds=gate_source_seeds, targets=targets, sparsities=sparsities, regimes=regimes,
                                        seeds=seeds)
sources, targets, seeds = grid.sources, grid.targets, grid.seeds
sparsities = [t.sparsity for t in grid.tickets]
regimes = [t.regime for t in grid.transfers]
print(f"regimes {regimes}; sparsities {sparsities}; targets {targets}; seeds {seeds}")

# %%
rows = X.run(P, grid)
gate_rows = X.run_gate(P, grid)  # the transfer gate: dense models and their controls
pre = X.select(rows, init="pretrained")  # figures and tables: the pretrained tickets
for r in rows:
    r["setting"] = f"{r['regime']} · {'dense' if r['sparsity'] == 0 else X.pct(r['sparsity'])}"
fig = X.bar_figure(pre, x="setting", series="source",
                   title="Finetuning vs linear probe, dense and sparse: natural vs robust",
                   x_title="regime · sparsity", y_title="test accuracy on T")
plots.show(fig)
display(Markdown(X.markdown_table(pre, ["task", "regime", "sparsity"], "source")))

# %% [markdown]
# ## Finding

# %%
robust_name = sources[1].label
finding = X.regime_finding(rows, robust_name, regimes, gate_rows=gate_rows)
finding = X.lead_with_headline(finding, "E7", rows, P)  # the answer first
display(Markdown(finding.markdown))
recorded = record("E7", rows + gate_rows, finding, {"profile": profile, "targets": targets, "sparsities": sparsities,
                                        "regimes": regimes, "seeds": seeds, "robust_source": robust_name},
                  results_dir, contrasts=finding.contrasts)
print(f"recorded {len(recorded['rows'])} rows for {recorded['experiment']}")

# %% [markdown]
# ## Secondary: the primary contrast cell by cell
#
# The same units, each cell on its own (Holm within the cells): a description of where
# the headline's contrast comes from, never the answer itself.

# %%
display(Markdown(X.secondary_markdown("E7", rows, P)))
plots.show(X.secondary_figure("E7", rows, P))
display(Markdown(X.transfer_gain_markdown(gate_rows, P)))
