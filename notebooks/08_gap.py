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
# # E8 — Does the gain grow with the domain gap?
#
# **Question.** The paper reports larger gains from robust tickets when the target is
# farther from the source. Here the gap is *measured*: the Fréchet distance between the
# natural source model's penultimate features of S and of T (`rtstudy.vision.gap`; a few
# hundred images each). The targets are the profile's tasks, domain-shifted variants of
# them (e.g. inverted or rotated digits, offline), and the source task itself (distance
# ≈ 0). Per target we compare the robust − natural gain at a fixed sparsity with the
# distance. With a handful of targets, any correlation is weak evidence: the p-value
# says how weak.

# %%
from IPython.display import Markdown, display

from rtstudy import experiments as X
from rtstudy import plots
from rtstudy.profiles import get_profile
from rtstudy.results import record
from rtstudy.vision import gap

# %% tags=["parameters"]
profile = "default"
results_dir = None
targets = None  # None: profile.targets
shifts = ("invert", "rot90")  # domain shifts applied to the first target ("<task>:<shift>")
include_source = True  # also transfer to S itself (same number of training images as targets[0])
sparsity = None  # None: profile.fixed_sparsities[0]
seeds = None  # None: profile.seeds
source_seeds = None  # source-model seeds, the unit of replication (None: profile.source_seeds)
gate_source_seeds = None  # the transfer gate's: dense models and controls (None: profile.gate_seeds)
gap_n = 500  # images per task for the distance

# %%
P = get_profile(profile)
# every target and shift; with include_source also S itself, with as many training images as
# the first target gets, so the source task is not favoured by its size (Fashion-MNIST has 60k)
grids = X.EXPERIMENTS.get("E8").grids(P, source_seeds=source_seeds, gate_source_seeds=gate_source_seeds, targets=targets, shifts=shifts, include_source=include_source,
                                      sparsity=sparsity, seeds=seeds)
sources, tasks, seeds = grids[0].sources, grids[0].targets, grids[0].seeds
sparsity = grids[0].tickets[0].sparsity
print(f"targets {tasks}{' + the source task ' + P.source if include_source else ''}; "
      f"OMP {sparsity:.0%}; seeds {seeds}")

# %% [markdown]
# ## The measured distances

# %%
models = X.pretrain_sources(P, sources)
nat = models[sources[0]]
all_tasks = tasks + ([P.source] if include_source else [])
dist = {t: gap.domain_distance(nat, t, n=gap_n) for t in all_tasks}
display(Markdown("| target | Fréchet distance to " + P.source + " |\n|---|---|\n"
                 + "\n".join(f"| {t} | {d:.3g} |" for t, d in sorted(dist.items(), key=lambda kv: kv[1]))))

# %% [markdown]
# ## Transfer to every target

# %%
rows = [r for grid in grids
        for r in X.run(P, grid, extra=lambda s, t, task, tr, seed: {"distance": dist[task]})]
gate_rows = [r for grid in grids for r in X.run_gate(P, grid)]  # dense models and their controls
pre = X.select(rows, init="pretrained")  # figures and tables: the pretrained tickets
display(Markdown(X.markdown_table(pre, ["task"], "source")))

# %%
cs = {c.key[0]: c for c in X.paired_contrasts(rows, by=("task",))}
transfer_gains = X.transfer_gains(gate_rows, by=("task",))  # the gate: dense models
fig = X.gain_distance_figure(cs, dist, title=f"Robust − natural gain at {sparsity:.0%} sparsity vs "
                             "the measured S→T distance",
                             x_title=f"Fréchet distance of penultimate features ({P.source} → T)")
plots.show(fig)

# %% [markdown]
# ## Finding

# %%
finding = X.gap_finding(cs, dist, transfer_gains)
finding = X.lead_with_headline(finding, "E8", rows, P)  # the answer first
display(Markdown(finding.markdown))
recorded = record("E8", rows + gate_rows, finding, {"profile": profile, "targets": all_tasks, "sparsity": sparsity,
                                        "seeds": seeds, "gap_n": gap_n, "distances": dist,
                                        "robust_source": sources[1].label}, results_dir,
                  contrasts=finding.contrasts)
print(f"recorded {len(recorded['rows'])} rows for {recorded['experiment']}")

# %% [markdown]
# ## Secondary: the primary contrast cell by cell
#
# The same units, each cell on its own (Holm within the cells): a description of where
# the headline's contrast comes from, never the answer itself.

# %%
display(Markdown(X.secondary_markdown("E8", rows, P)))
plots.show(X.secondary_figure("E8", rows, P))
display(Markdown(X.transfer_gain_markdown(gate_rows, P)))
