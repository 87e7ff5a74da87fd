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
# # E1 — Do robust tickets transfer better?
#
# **Question.** Take OMP tickets (one-shot global magnitude pruning, unstructured) from a
# natural source model and from a robust one (adversarially pretrained at the small
# budget ε\*), finetune each on every downstream task with the mask fixed. Across
# sparsities from dense to 95%+, does the robust ticket reach higher test accuracy?
#
# The answer is one number declared before the data: the robust − natural difference
# averaged over the sparsities 50–95% and every target, a 95% t interval over source seeds,
# its verdict against a 2-point margin and the design's power (the finding's first
# sentence). Curves, tables and per-cell estimates describe where it comes from.

# %%
from IPython.display import Markdown, display

from rtstudy import experiments as X
from rtstudy import plots
from rtstudy.profiles import get_profile
from rtstudy.results import record

# %% tags=["parameters"]
profile = "default"  # "smoke" | "default" | "paper"
results_dir = None  # set by the report runner
targets = None  # downstream tasks (None: profile.targets)
sparsities = None  # sparsity axis (None: profile.sparsities)
seeds = None  # finetuning seeds (None: profile.seeds)
source_seeds = None  # source-model seeds, the unit of replication (None: profile.source_seeds)
gate_source_seeds = None  # the transfer gate's: dense models and controls (None: profile.gate_seeds)
eps = None  # the robust source's eps (None: profile.eps_star)

# %%
P = get_profile(profile)
[grid] = X.EXPERIMENTS.get("E1").grids(P, source_seeds=source_seeds, gate_source_seeds=gate_source_seeds, targets=targets, sparsities=sparsities, seeds=seeds, eps=eps)
sources, targets, seeds = grid.sources, grid.targets, grid.seeds
sparsities = [t.sparsity for t in grid.tickets]
robust_name = sources[1].label
print(f"{P.source} -> {targets}; sources: natural, {robust_name}; sparsities {sparsities}; seeds {seeds}")

# %% [markdown]
# ## The source models

# %%
table, source_rows = X.source_table(P, sources)
display(Markdown(table))

# %% [markdown]
# ## The grid: source × sparsity × target × seed

# %%
rows = X.run(P, grid)
gate_rows = X.run_gate(P, grid)  # the transfer gate: dense models and their controls
pre = X.select(rows, init="pretrained")  # figures and tables: the pretrained tickets
fig = X.curve_figure(pre, x="sparsity", series="source", title=f"OMP tickets from {P.source}: "
                     f"natural vs robust ({robust_name}), mean ± 95% CI over {len(seeds)} seeds",
                     x_title="sparsity of the ticket", y_title="test accuracy on T")
plots.show(fig)
display(Markdown(X.markdown_table(pre, ["task", "sparsity"], "source")))

# %% [markdown]
# ## Finding

# %%
finding = X.main_finding(rows, robust_name, gate_rows=gate_rows)
finding = X.lead_with_headline(finding, "E1", rows, P)  # the answer first
display(Markdown(finding.markdown))
recorded = record("E1", rows + source_rows + gate_rows, finding,
                  {"profile": profile, "targets": targets, "sparsities": sparsities, "seeds": seeds,
                   "robust_source": robust_name, "scheme": "omp", "pattern": "unstructured"}, results_dir,
                  contrasts=finding.contrasts)
print(f"recorded {len(recorded['rows'])} rows for {recorded['experiment']}")

# %% [markdown]
# ## Secondary: the primary contrast cell by cell
#
# The same units, each cell on its own (Holm within the cells): a description of where
# the headline's contrast comes from, never the answer itself.

# %%
display(Markdown(X.secondary_markdown("E1", rows, P)))
plots.show(X.secondary_figure("E1", rows, P))
display(Markdown(X.transfer_gain_markdown(gate_rows, P)))
