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
# # E13 — SuperTickets: search the architecture and prune the weights in one training
#
# **Question.** SuperTickets (You et al., ECCV 2022) find an efficient architecture and its
# sparse subnetwork together, inside one supernet training: a penalty drives the BN scales
# of unneeded channels to zero and the search removes them, while magnitude pruning (with
# optional regrowth) brings the weights to the target sparsity on a schedule. Does that beat
# the pipeline it replaces (search, slim, then IMP) and plain IMP on the dense model, in
# accuracy on T against counted MACs and measured latency? And are the SuperTickets of an
# adversarially trained supernet more transferable than those of a natural one?

# %%
from IPython.display import Markdown, display

from rtstudy import experiments as X
from rtstudy import plots
from rtstudy.experiments import supertickets as E13
from rtstudy.profiles import get_profile
from rtstudy.results import record

# %% tags=["parameters"]
profile = "default"
results_dir = None
targets = None  # None: profile.targets
seeds = None  # None: profile.seeds
source_seeds = None  # source-model seeds, the unit of replication (None: profile.source_seeds)
gate_source_seeds = None  # the transfer gate's: dense models and controls (None: profile.gate_seeds)
sparsity = None  # None: E13's sparsity of the profile
regrow = None  # prune-and-regrow fraction of the SuperTickets (None: E13's of the profile)

# %%
P = get_profile(profile)
S = E13.sizes(P)
[grid] = X.EXPERIMENTS.get("E13").grids(P, source_seeds=source_seeds, gate_source_seeds=gate_source_seeds, targets=targets, seeds=seeds,
                                         sparsity=sparsity, regrow=regrow)
sources = grid.sources
robust_name = sources[1].label
sparsity = grid.tickets[1].sparsity
print([t.label for t in grid.tickets], [s.label for s in sources])

# %% [markdown]
# ## The source models (the supernets start from them)

# %%
table, source_rows = X.source_table(P, sources)
display(Markdown(table))

# %% [markdown]
# ## What each ticket costs
# Counted multiply-accumulates per image of the physically slimmed network (all of it, and
# its non-zero weights only), parameters, the median latency of a batch on this machine's
# CPU (timed round-robin with the dense model), and the training its drawing took.

# %%
costs = E13.cost_table(P, grid)
summary = E13.cost_summary(costs)
display(Markdown(E13.cost_markdown(summary)))

# %%
fig = X.bar_figure(E13.searched_width_rows(costs), x="stage", series="source", facet="method",
                   metric="width", title="Searched inner width per stage (fraction of the supernet's)",
                   x_title="stage", y_title="width kept")
plots.show(fig)

# %% [markdown]
# ## Transfer: accuracy on T against cost

# %%
rows = X.run(P, grid)
gate_rows = X.run_gate(P, grid)  # the transfer gate: dense models and their controls
points = E13.tradeoff_rows(rows, summary)
plots.show(E13.tradeoff_figure(points, x="macs", x_title="MACs per image of the slim network (M)",
                               title=f"Accuracy–FLOPs at {sparsity:.0%} weight sparsity"))
plots.show(E13.tradeoff_figure(points, x="latency", x_title=f"latency per batch of {S.latency_batch} (ms)",
                               title="Accuracy–latency (measured on this CPU)"))
pre = X.select(rows, init="pretrained")
display(Markdown(X.markdown_table(pre, ["task", "ticket"], "source")))

# %% [markdown]
# ## Finding

# %%
finding = E13.superticket_finding(rows, summary, robust_name=robust_name, gate_rows=gate_rows)
finding = X.lead_with_headline(finding, "E13", rows, P)  # the answer first
display(Markdown(finding.markdown))
eps = {s.role: s.eps for s in sources}
recorded = record("E13", rows + source_rows + gate_rows + E13.cost_rows(costs, P.source, eps), finding,
                  {"profile": profile, "targets": grid.targets, "seeds": grid.seeds,
                   "source_seeds": grid.source_seeds, "sparsity": sparsity, "sizes": S.__dict__},
                  results_dir, contrasts=finding.contrasts)
print(f"recorded {len(recorded['rows'])} rows for {recorded['experiment']}")

# %% [markdown]
# ## Secondary: the primary contrast cell by cell
#
# The same units, each cell on its own (Holm within the cells): a description of where
# the headline's contrast comes from, never the answer itself.

# %%
display(Markdown(X.secondary_markdown("E13", rows, P)))
plots.show(X.secondary_figure("E13", rows, P))
display(Markdown(X.transfer_gain_markdown(gate_rows, P)))
