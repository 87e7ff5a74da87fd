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
# # E5 — Which robustification?
#
# **Question.** Robustness can be induced with multi-step PGD-k or with single-step FGSM
# with a random start ("fast AT"), and against ℓ∞ or ℓ2 perturbations. Do the tickets of
# every robust source beat the natural ticket, and does the kind of adversarial
# training matter? All at one fixed sparsity, OMP unstructured.

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
sparsity = None  # None: profile.fixed_sparsities[0]
seeds = None  # None: profile.seeds
source_seeds = None  # source-model seeds, the unit of replication (None: profile.source_seeds)
gate_source_seeds = None  # the transfer gate's: dense models and controls (None: profile.gate_seeds)
eps_linf = None  # ℓ∞ budget (None: profile.eps_star)
eps_l2 = None  # ℓ2 budget (None: profile.eps_l2)

# %%
P = get_profile(profile)
# natural; E1's robust source (shared); the other attack kind; the other norm
[grid] = X.EXPERIMENTS.get("E5").grids(P, source_seeds=source_seeds, gate_source_seeds=gate_source_seeds, targets=targets, sparsity=sparsity, seeds=seeds,
                                        eps_linf=eps_linf, eps_l2=eps_l2)
sources, targets, seeds = grid.sources, grid.targets, grid.seeds
sparsity = grid.tickets[0].sparsity
eps_linf, eps_l2 = sources[1].eps, sources[3].eps
names = [s.label for s in sources]
print(names)

# %% [markdown]
# ## The source models
# Clean accuracy on S and PGD accuracy at each source's own budget (natural: at ε\* ℓ∞).

# %%
table, source_rows = X.source_table(P, sources)
display(Markdown(table))

# %%
rows = X.run(P, grid)
gate_rows = X.run_gate(P, grid)  # the transfer gate: dense models and their controls
pre = X.select(rows, init="pretrained")  # figures and tables: the pretrained tickets
fig = X.bar_figure(pre, x="task", series="source_label", facet="sparsity",
                   title=f"OMP tickets at {sparsity:.0%} from differently robustified sources",
                   x_title="target task", y_title="test accuracy on T")
plots.show(fig)
display(Markdown(X.markdown_table(pre, ["task"], "source_label")))

# %% [markdown]
# ## Finding

# %%
finding = X.attack_finding(rows, names, gate_rows=gate_rows)
finding = X.lead_with_headline(finding, "E5", rows, P)  # the answer first
display(Markdown(finding.markdown))
recorded = record("E5", rows + source_rows + gate_rows, finding,
                  {"profile": profile, "targets": targets, "sparsity": sparsity, "seeds": seeds,
                   "sources": names, "eps_linf": eps_linf, "eps_l2": eps_l2,
                   "pgd_steps": P.robust_steps}, results_dir,
                  contrasts=finding.contrasts)
print(f"recorded {len(recorded['rows'])} rows for {recorded['experiment']}")

# %% [markdown]
# ## Secondary: the primary contrast cell by cell
#
# The same units, each cell on its own (Holm within the cells): a description of where
# the headline's contrast comes from, never the answer itself.

# %%
display(Markdown(X.secondary_markdown("E5", rows, P)))
plots.show(X.secondary_figure("E5", rows, P))
display(Markdown(X.transfer_gain_markdown(gate_rows, P)))
