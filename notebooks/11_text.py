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
# # E11 — Text tickets: BERT, natural and robust
#
# **Question.** Do lottery tickets of a pre-trained BERT (Chen et al., NeurIPS 2020: the
# encoder's Q, K, V, attention-output, intermediate and output weights pruned; embeddings
# and classifier dense) transfer from one text task to another, and do tickets drawn from a
# *robust* source — finetuned adversarially in embedding space (per-token ℓ2 PGD on the
# word embeddings) — transfer better than tickets from the natural source? OMP, IMP (on
# the source, rewinding to the pre-trained weights) and random tickets at several
# sparsities, in both directions (tweets → BBC News, BBC News → tweets).

# %%
from IPython.display import Markdown, display

from rtstudy import experiments as X
from rtstudy import plots
from rtstudy.experiments import text_tickets as T
from rtstudy.profiles import get_profile
from rtstudy.results import record

# %% tags=["parameters"]
profile = "default"
results_dir = None
directions = None  # None: the profile's (source task, target task) pairs
source_seeds = None  # source-model seeds, the unit of replication (None: the profile's)
seeds = None  # finetuning seeds within each (None: the profile's)

# %%
P = get_profile(profile)
[grid] = X.EXPERIMENTS.get("E11").grids(P, directions=directions, source_seeds=source_seeds, seeds=seeds)
sizes = grid.sizes
robust_name = grid.source(grid.directions[0][0], True, grid.source_seeds[0]).label
print(f"model {sizes.model}, {sizes.max_length} tokens, robust source: {robust_name}, "
      f"source seeds {list(grid.source_seeds)}, {len(grid.cells())} transfers")

# %% [markdown]
# ## The embedding-space attack, checked
# Accuracy of the source models (first source seed) under PGD-5 in embedding space:
# ε = 0 must give the clean accuracy, and accuracy must fall as ε grows.

# %%
check = T.attack_check(grid)
display(Markdown("| source task | source | clean | " + " | ".join(f"ε = {e:g}" for e in sizes.eval_eps)
                 + " |\n|---|---|---|" + "---|" * len(sizes.eval_eps) + "\n" + "\n".join(
    f"| {t} | {s} | {X.select(check, task=t, source=s)[0]['clean_acc']:.1%} | "
    + " | ".join(f"{r['attacked_acc']:.1%}" for r in X.select(check, task=t, source=s)) + " |"
    for t in dict.fromkeys(r["task"] for r in check) for s in ("natural", "robust"))))

# %% [markdown]
# ## Transfer: accuracy vs sparsity per scheme and source

# %%
rows = T.run_e11(grid)
fig = plots.curve_figure(T.with_dense_start(rows), x="sparsity", series="scheme", dash_by="source",
                         facet="task", title="Tickets of a BERT source finetuned on the target task",
                         x_title="sparsity of the encoder's linear layers", y_title="test accuracy on T")
plots.show(fig)
display(Markdown(X.markdown_table(X.select(rows, init="pretrained"), ["task", "scheme", "sparsity"],
                                  "source")))

# %% [markdown]
# ## Where the masks prune: per-layer sparsity of the encoder
# The IMP-source ticket at its highest sparsity (first source seed), per source.

# %%
imp_at = max(sizes.imp_sparsities)
plots.show(T.layer_figure(T.layer_sparsity(grid, T.IMP, imp_at),
                          title=f"IMP-source tickets at {imp_at:.0%}: sparsity per layer and kind"))

# %% [markdown]
# ## Finding

# %%
finding = T.text_finding(rows, robust_name)
finding = X.lead_with_headline(finding, "E11", rows, P)  # the answer first
display(Markdown(finding.markdown))
recorded = record("E11", rows + T.source_summary(rows), finding,
                  {"profile": profile, "model": sizes.model, "max_length": sizes.max_length,
                   "directions": [list(d) for d in grid.directions],
                   "source_seeds": list(grid.source_seeds), "eps": sizes.eps,
                   "sparsities": list(sizes.sparsities), "imp_sparsities": list(sizes.imp_sparsities)},
                  results_dir, contrasts=finding.contrasts)
print(f"recorded {len(recorded['rows'])} rows for {recorded['experiment']}")

# %% [markdown]
# ## Secondary: the primary contrast cell by cell
#
# The same units, each cell on its own (Holm within the cells): a description of where
# the headline's contrast comes from, never the answer itself.

# %%
display(Markdown(X.secondary_markdown("E11", rows, P)))
plots.show(X.secondary_figure("E11", rows, P))
