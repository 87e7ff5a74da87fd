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
# # E0 — Quickstart: pretrain → draw a ticket → transfer
#
# The whole study in a few cells. Robust tickets (Fu et al., DAC 2023) are subnetworks
# drawn from a source model trained *adversarially* at a small budget ε; the claim is
# that they transfer to downstream tasks better than tickets drawn from a naturally
# trained model. Here we walk through one instance of the pipeline:
#
# 1. **pretrain** a natural (ε = 0) and a robust (ε = ε\*) model on the source task S;
# 2. **draw a ticket** from each: one-shot magnitude pruning (OMP) to a fixed sparsity;
# 3. **transfer**: finetune each ticket (mask fixed) on a downstream task T.
#
# Every stage is stored under the hash of its configuration, so running this twice, or
# running the other notebooks afterwards, reuses the work.

# %%
import plotly.graph_objects as go
from IPython.display import Markdown, display

from rtstudy import experiments as X
from rtstudy import plots
from rtstudy.core.pipeline import draw_ticket, pretrain, transfer
from rtstudy.profiles import get_profile
from rtstudy.results import record, row
from rtstudy.vision.track import eps_label, source_task

# %% tags=["parameters"]
profile = "default"  # "smoke" (seconds) | "default" (CPU study) | "paper" (GPU)
results_dir = None  # set by the report runner
target = None  # downstream task (None: the profile's first target)
sparsity = None  # ticket sparsity (None: the profile's first fixed sparsity)
seed = 0  # finetuning seed

# %%
P = get_profile(profile)
target = target or P.targets[0]
sparsity = float(P.fixed_sparsities[0] if sparsity is None else sparsity)
print(f"profile {P.name}: source {P.source} -> target {target}, model {P.model}, "
      f"robust eps* = {eps_label(P.eps_star)} ({P.robust_kind}, {P.norm}), ticket sparsity {sparsity:.0%}")

# %% [markdown]
# ## 1. The data
# Every task is a pair of in-memory tensors in [0, 1] pixel space, resized to the model's
# input; normalisation lives inside the model, so ε means the same thing everywhere.

# %%
S, T = source_task(P.source_model(0.0)), source_task(P.source_model(0.0), target)
print(S)
print(T)

# %% [markdown]
# ## 2. Pretrain a natural and a robust source model
# Every artifact is described once: `P.source_model(eps)` describes the source model
# (ε = 0 is natural training) and `pretrain(description)` trains it, or loads it when it
# is stored already.

# %%
natural = pretrain(P.source_model(0.0))
robust = pretrain(P.source_model(P.eps_star))
for src in (natural, robust):
    m = src.artifact.metrics
    rob = f", robust acc {m['robust_acc']:.1%} at its own ε" if "robust_acc" in m else ""
    print(f"{src.label:>32}: clean test acc on {P.source} {m['test_acc']:.1%}{rob}")

# %% [markdown]
# ## 3. Draw a ticket
# `draw_ticket(P.ticket(source, scheme, pattern, sparsity))` returns a binary mask over the
# prunable weights. OMP keeps the largest-magnitude pretrained weights (globally).

# %%
t_nat = draw_ticket(P.ticket(natural.desc, "omp", "unstructured", sparsity))
t_rob = draw_ticket(P.ticket(robust.desc, "omp", "unstructured", sparsity))
inter = sum(int((t_nat.mask[k] & t_rob.mask[k]).sum()) for k in t_nat.mask)
union = sum(int((t_nat.mask[k] | t_rob.mask[k]).sum()) for k in t_nat.mask)
print(f"achieved sparsity: natural {t_nat.sparsity:.1%}, robust {t_rob.sparsity:.1%}; "
      f"the two masks share {inter / union:.1%} of their kept weights (IoU)")

fig = go.Figure()
for i, (name, t) in enumerate((("natural", t_nat), ("robust", t_rob))):
    layers = t.artifact.meta["report"]["layers"]
    fig.add_trace(go.Bar(x=list(layers), y=[v["sparsity"] for v in layers.values()], name=name,
                         marker_color=plots.color_for(name, i)))
fig.update_layout(title="Per-layer sparsity of the two OMP tickets", barmode="group",
                  template="plotly_white", yaxis_title="sparsity", yaxis_tickformat=".0%",
                  height=380)
plots.show(fig)

# %% [markdown]
# ## 4. Transfer
# `transfer(P.transfer(source, ticket, target))` puts a fresh head on the masked source model
# and finetunes it on T with the mask fixed (pruned weights stay exactly zero).

# %%
rows = []
for name, src, ticket in (("natural", natural, None), ("robust", robust, None),
                          ("natural", natural, t_nat), ("robust", robust, t_rob)):
    art = transfer(P.transfer(src.desc, ticket and ticket.desc, target, seed=seed))
    s = 0.0 if ticket is None else sparsity
    rows.append(row(target, name, src.desc.eps, "omp", "unstructured", s, seed, "test_acc",
                    art.metrics["test_acc"], n_train=art.metrics["n_train"],
                    measured_sparsity=art.metrics["sparsity"]))
    print(f"{name:>8} {'dense' if s == 0 else f'{s:.0%} ticket':>10}: test acc on {target} "
          f"{art.metrics['test_acc']:.1%} ({art.metrics['n_train']} training images, "
          f"measured sparsity after finetuning {art.metrics['sparsity']:.1%})")

fig = X.bar_figure(rows, x="sparsity", series="source", title=f"{P.source} → {target}: one seed",
                   x_title="ticket sparsity", y_title="test accuracy on T")
plots.show(fig)

# %% [markdown]
# ## What this one run says
# A single seed gives no interval, so the sentence below reports numbers and claims
# nothing; E1 repeats this over seeds, sparsities and tasks.

# %%
finding = X.quickstart_finding(rows, source_task=P.source, target=target, sparsity=sparsity,
                               eps=P.eps_star)
display(Markdown(finding.markdown))
recorded = record("E0", rows, finding, {"profile": profile, "target": target, "sparsity": sparsity,
                                        "seed": seed, "eps_star": P.eps_star}, results_dir)
print(f"recorded {len(recorded['rows'])} rows for {recorded['experiment']}")
