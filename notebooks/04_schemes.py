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
# # E4 — Does it hold for every way of drawing a ticket?
#
# **Question.** Tickets can be drawn by one-shot magnitude pruning of the pretrained
# weights (**OMP**), by iterative magnitude pruning with rewinding on the source task
# (**IMP-source**, retraining adversarially for the robust source) or on each downstream
# task (**IMP-target**), or at random (**random**, same per-layer sparsity as OMP). Does
# the robust source win under each scheme? IMP is the costly part, so this runs at one
# fixed sparsity.

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
schemes = None  # None: ["omp", "imp_source", "imp_target", "random"]
seeds = None  # None: profile.seeds
source_seeds = None  # source-model seeds, the unit of replication (None: profile.source_seeds)
gate_source_seeds = None  # the transfer gate's: dense models and controls (None: profile.gate_seeds)

# %%
P = get_profile(profile)
[grid] = X.EXPERIMENTS.get("E4").grids(P, source_seeds=source_seeds, gate_source_seeds=gate_source_seeds, targets=targets, sparsity=sparsity, schemes=schemes,
                                        seeds=seeds)
sources, targets, seeds = grid.sources, grid.targets, grid.seeds
sparsity = grid.tickets[0].sparsity
schemes = [t.scheme for t in grid.tickets]
print(f"schemes {schemes} at {sparsity:.0%}; IMP prunes {P.imp_rate:.0%} of the remaining weights "
      f"per round, {P.imp_epochs} epochs of retraining per round; targets {targets}; seeds {seeds}")

# %%
rows = X.run(P, grid)
gate_rows = X.run_gate(P, grid)  # the transfer gate: dense models and their controls
pre = X.select(rows, init="pretrained")  # figures and tables: the pretrained tickets
fig = X.bar_figure(pre, x="scheme", series="source",
                   title=f"Pruning schemes at {sparsity:.0%} sparsity: natural vs robust source",
                   x_title="how the ticket was drawn", y_title="test accuracy on T")
plots.show(fig)
display(Markdown(X.markdown_table(pre, ["task", "scheme"], "source")))

# %% [markdown]
# ## Finding

# %%
robust_name = sources[1].label
finding = X.scheme_finding(rows, robust_name, schemes, gate_rows=gate_rows)
# why OMP and random tickets end up where they do: what each keeps before finetuning, what moves
finding = finding.with_paragraph(X.omp_random_explanation(rows, X.ticket_diagnostics(P, grid)))
finding = X.lead_with_headline(finding, "E4", rows, P)  # the answer first
display(Markdown(finding.markdown))
recorded = record("E4", rows + gate_rows, finding, {"profile": profile, "targets": targets, "sparsity": sparsity,
                                        "schemes": schemes, "seeds": seeds, "imp_rate": P.imp_rate,
                                        "imp_epochs": P.imp_epochs, "robust_source": robust_name}, results_dir,
                  contrasts=finding.contrasts)
print(f"recorded {len(recorded['rows'])} rows for {recorded['experiment']}")

# %% [markdown]
# ## Secondary: the primary contrast cell by cell
#
# The same units, each cell on its own (Holm within the cells): a description of where
# the headline's contrast comes from, never the answer itself.

# %%
display(Markdown(X.secondary_markdown("E4", rows, P)))
plots.show(X.secondary_figure("E4", rows, P))
display(Markdown(X.transfer_gain_markdown(gate_rows, P)))
