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
# # E3 — Does it hold for structured sparsity?
#
# **Question.** E1 uses unstructured tickets. Hardware-friendly sparsity removes whole
# filters (**channel**) or keeps N of every M weights (**N:M**, 2:4 → 50%). Does the
# robust source still give better tickets under each pattern? Each pattern also gets a
# **random** ticket with the same per-layer sparsity: a ticket worth the name should beat it.

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
sparsity = None  # unstructured / channel sparsity (None: profile.fixed_sparsities[0])
patterns = None  # None: ["unstructured", "channel", "nm"]
nm = (2, 4)  # N:M pattern: keep n of every m
seeds = None  # None: profile.seeds
source_seeds = None  # source-model seeds, the unit of replication (None: profile.source_seeds)
gate_source_seeds = None  # the transfer gate's: dense models and controls (None: profile.gate_seeds)

# %%
P = get_profile(profile)
[grid, probe_grid] = X.EXPERIMENTS.get("E3").grids(P, source_seeds=source_seeds, gate_source_seeds=gate_source_seeds, targets=targets, sparsity=sparsity, patterns=patterns,
                                                    nm=nm, seeds=seeds)
sources, tickets, targets, seeds = grid.sources, grid.tickets, grid.targets, grid.seeds
sparsity = float(P.fixed_sparsities[0] if sparsity is None else sparsity)
patterns = list(dict.fromkeys(t.pattern.name for t in tickets))
print([t.label for t in tickets], targets, seeds)

# %%
SCHEME_NAMES = {"omp": "OMP"}
rows = X.run(P, grid)
gate_rows = X.run_gate(P, grid)  # the transfer gate: dense models and their controls
pre = X.select(rows, init="pretrained")  # figures and tables: the pretrained tickets
short = {t.label: t.short_label for t in tickets}
for r in rows:  # a readable pattern column for figures and tables
    r["pattern_label"] = short[r["ticket"]]
    r["ticket_source"] = f"{r['source']} {SCHEME_NAMES.get(r['scheme'], r['scheme'])}"
fig = X.bar_figure(pre, x="pattern_label", series="ticket_source",
                   title="Sparsity patterns: OMP and random tickets from natural and robust sources",
                   x_title="pattern", y_title="test accuracy on T")
plots.show(fig)
display(Markdown(X.markdown_table(pre, ["task", "pattern_label"], "ticket_source")))

# %% [markdown]
# ## The same tickets under a linear probe
# Only a new head trains on T; the pruned pretrained features stay as they are. Where the
# features carry the transfer, this is where a magnitude ticket's head start should show.

# %%
probe_rows = X.run(P, probe_grid)
for r in probe_rows:
    r["pattern_label"] = short[r["ticket"]]
    r["ticket_source"] = f"{r['source']} {SCHEME_NAMES.get(r['scheme'], r['scheme'])}"
display(Markdown(X.markdown_table(probe_rows, ["task", "pattern_label"], "ticket_source")))

# %% [markdown]
# ## Finding

# %%
robust_name = sources[1].label
finding = X.pattern_finding(rows, robust_name, probe_rows, gate_rows=gate_rows)
# why OMP and random tickets end up where they do: what each keeps before finetuning, what moves
finding = finding.with_paragraph(X.omp_random_explanation(rows, X.ticket_diagnostics(P, grid)))
finding = X.lead_with_headline(finding, "E3", rows, P)  # the answer first
display(Markdown(finding.markdown))
recorded = record("E3", rows + probe_rows + gate_rows, finding, {"profile": profile, "targets": targets, "sparsity": sparsity,
                                        "patterns": patterns, "nm": list(nm), "seeds": seeds,
                                        "robust_source": robust_name}, results_dir,
                  contrasts=finding.contrasts)
print(f"recorded {len(recorded['rows'])} rows for {recorded['experiment']}")

# %% [markdown]
# ## Secondary: the primary contrast cell by cell
#
# The same units, each cell on its own (Holm within the cells): a description of where
# the headline's contrast comes from, never the answer itself.

# %%
display(Markdown(X.secondary_markdown("E3", rows, P)))
plots.show(X.secondary_figure("E3", rows, P))
display(Markdown(X.transfer_gain_markdown(gate_rows, P)))
