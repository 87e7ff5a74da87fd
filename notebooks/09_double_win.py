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
# # E9 — Double-win: are transferred tickets robust too?
#
# **Question.** Double-Win Lottery Tickets (Chen et al., ICML 2022) judge a ticket on
# *both* clean and robust accuracy on the downstream task. Here natural and robust
# tickets are finetuned on T either naturally or adversarially (at ε\*), and each is
# measured clean and under PGD at ε\*. A *double win* is a robust ticket that beats the
# natural one on both metrics, with separated intervals.

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
sparsity = None  # None: profile.fixed_sparsities[0]
eps = None  # finetuning and evaluation budget (None: profile.eps_star)
seeds = None  # None: profile.seeds
source_seeds = None  # source-model seeds, the unit of replication (None: profile.source_seeds)
gate_source_seeds = None  # the transfer gate's: dense models and controls (None: profile.gate_seeds)

# %%
P = get_profile(profile)
[grid] = X.EXPERIMENTS.get("E9").grids(P, source_seeds=source_seeds, gate_source_seeds=gate_source_seeds, targets=targets, sparsity=sparsity, eps=eps, seeds=seeds)
sources, targets, seeds = grid.sources, grid.targets, grid.seeds
sparsity = grid.tickets[0].sparsity
eps = grid.transfers[0].eval_eps
print(f"OMP {sparsity:.0%}; eps {eps_label(eps)} ({P.norm}), PGD-{P.eval_attack_steps} on "
      f"{P.robust_n} test images; targets {targets}; seeds {seeds}")

# %%
rows = X.run(P, grid)
gate_rows = X.run_gate(P, grid)  # the transfer gate: dense models and their controls
pre = X.select(rows, init="pretrained")  # figures and tables: the pretrained tickets
for r in rows:
    r["what"] = f"{r['transfer']} · {'clean' if r['metric'] == 'test_acc' else 'robust'}"
for metric, word in (("test_acc", "clean"), ("robust_acc", f"robust (PGD {eps_label(eps)})")):
    fig = X.bar_figure(pre, x="transfer", series="source", metric=metric,
                       title=f"{word} accuracy on T of {sparsity:.0%} OMP tickets",
                       x_title="finetuning", y_title=f"{word} accuracy on T")
    fig.update_yaxes(range=[0, 1])
    plots.show(fig)
display(Markdown(X.markdown_table(pre, ["task", "transfer"], "source", metric="test_acc")))
display(Markdown(X.markdown_table(pre, ["task", "transfer"], "source", metric="robust_acc")))

# %% [markdown]
# ## Finding

# %%
robust_name = sources[1].label
finding = X.double_win_finding(rows, robust_name, eps, gate_rows=gate_rows)
finding = X.lead_with_headline(finding, "E9", rows, P)  # the answer first
display(Markdown(finding.markdown))
recorded = record("E9", rows + gate_rows, finding, {"profile": profile, "targets": targets, "sparsity": sparsity,
                                        "eps": eps, "seeds": seeds, "robust_source": robust_name}, results_dir,
                  contrasts=finding.contrasts)
print(f"recorded {len(recorded['rows'])} rows for {recorded['experiment']}")

# %% [markdown]
# ## Secondary: the primary contrast cell by cell
#
# The same units, each cell on its own (Holm within the cells): a description of where
# the headline's contrast comes from, never the answer itself.

# %%
display(Markdown(X.secondary_markdown("E9", rows, P)))
plots.show(X.secondary_figure("E9", rows, P))
display(Markdown(X.transfer_gain_markdown(gate_rows, P)))
