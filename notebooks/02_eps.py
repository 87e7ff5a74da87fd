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
# # E2 — How much robustness is "proper"?
#
# **Question.** The paper's claim is that *properly induced* robustness helps: a small
# adversarial budget ε makes better tickets, too much hurts. Sweep the source model's ε
# (ε = 0 is the natural model) and transfer OMP tickets at fixed sparsities. An inverted
# U — best ε strictly inside the sweep, separated from both ends — is what the paper
# predicts; this notebook reports whether the numbers show one.

# %%
from IPython.display import Markdown, display

from rtstudy import experiments as X
from rtstudy import plots
from rtstudy.profiles import get_profile
from rtstudy.results import record
from rtstudy.vision.track import eps_label

# %% tags=["parameters"]
profile = "default"
results_dir = None
targets = None  # None: profile.targets
eps_sweep = None  # source budgets incl. 0 (None: profile.eps_sweep)
sparsities = None  # None: profile.fixed_sparsities
seeds = None  # None: profile.seeds
source_seeds = None  # source-model seeds, the unit of replication (None: profile.source_seeds)
gate_source_seeds = None  # the transfer gate's: dense models and controls (None: profile.gate_seeds)

# %%
P = get_profile(profile)
[grid] = X.EXPERIMENTS.get("E2").grids(P, source_seeds=source_seeds, gate_source_seeds=gate_source_seeds, targets=targets, eps_sweep=eps_sweep,
                                        sparsities=sparsities, seeds=seeds)
sources, targets, seeds = grid.sources, grid.targets, grid.seeds  # eps 0 -> the natural source
eps_sweep = [s.eps for s in sources]
sparsities = [t.sparsity for t in grid.tickets]
print(f"eps sweep {[eps_label(e) if e else '0' for e in eps_sweep]} ({P.robust_kind}, {P.norm}); "
      f"sparsities {sparsities}; targets {targets}; seeds {seeds}")

# %% [markdown]
# ## The source models along the sweep
# Clean accuracy on S, and PGD accuracy at ε\* (the same yardstick for every source).

# %%
table, source_rows = X.source_table(P, sources, eval_eps=P.eps_star)
display(Markdown(table))
fig = X.source_figure(source_rows, title=f"Source models on {P.source} along the ε sweep")
plots.show(fig)

# %% [markdown]
# ## Transfer along the sweep

# %%
rows = X.run(P, grid)
gate_rows = X.run_gate(P, grid)  # the transfer gate: dense models and their controls
pre = X.select(rows, init="pretrained")  # figures and tables: the pretrained tickets
fig = X.curve_figure(pre, x="eps", series="sparsity", title="Transfer accuracy vs the source's ε "
                     "(OMP tickets)", x_title="pretraining ε (0 = natural)",
                     y_title="test accuracy on T")
fig.update_xaxes(tickvals=eps_sweep, ticktext=[eps_label(e) if e else "0" for e in eps_sweep])
plots.show(fig)
display(Markdown(X.markdown_table(pre, ["task", "sparsity"], "eps")))

# %% [markdown]
# ## Finding

# %%
finding = X.eps_sweep_finding(rows, gate_rows=gate_rows)
finding = X.lead_with_headline(finding, "E2", rows, P)  # the answer first
display(Markdown(finding.markdown))
recorded = record("E2", rows + source_rows + gate_rows, finding,
                  {"profile": profile, "targets": targets, "eps_sweep": eps_sweep, "sparsities": sparsities,
                   "seeds": seeds, "robust_kind": P.robust_kind, "norm": P.norm}, results_dir,
                  contrasts=finding.contrasts)
print(f"recorded {len(recorded['rows'])} rows for {recorded['experiment']}")

# %% [markdown]
# ## Secondary: the primary contrast cell by cell
#
# The same units, each cell on its own (Holm within the cells): a description of where
# the headline's contrast comes from, never the answer itself.

# %%
display(Markdown(X.secondary_markdown("E2", rows, P)))
plots.show(X.secondary_figure("E2", rows, P))
display(Markdown(X.transfer_gain_markdown(gate_rows, P)))
