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
# # E12 — Image prior: does a learned sparse mask keep a deep image prior from fitting noise?
#
# **Question.** A deep image prior (DIP) is an untrained hourglass network fitted to one
# noisy image from a fixed random input. Over-parameterised, it first reconstructs the
# image, then fits the noise: its PSNR against the clean image peaks, then falls.
# *Optimal Eye Surgeon* (OES, Ghosh et al., ICML 2024) learns a mask at the random
# initialisation, weights frozen (relaxed Bernoulli mask logits, a KL term towards the
# target keep-rate, then the top-k), and fits only the sparse network. Does it resist the
# noise better than the dense prior and than masks from magnitude at init, random masks
# (also with OES's own per-layer budgets) and IMP rewound to init? Does a mask learned on
# one image work on another?

# %%
from IPython.display import Markdown, display

from rtstudy import experiments as X
from rtstudy import plots
from rtstudy.experiments import prior as E
from rtstudy.experiments.registry import EXPERIMENTS
from rtstudy.prior import figures
from rtstudy.prior.images import add_noise, load_image
from rtstudy.profiles import get_profile
from rtstudy.results import record

# %% tags=["parameters"]
profile = "default"
results_dir = None
images = None  # None: the profile's images (rtstudy.prior.sizes)
source_seeds = None  # network initialisations: with the image, the unit of replication (None: the profile's)
seeds = None  # noise seeds: the noise drawn on each image (None: the profile's)
sparsity = None  # None: the profile's
sigma = None  # noise standard deviation in [0, 1] pixel units (None: the profile's)

# %%
P = get_profile(profile)
[grid] = EXPERIMENTS.get("E12").grids(P, images=images, source_seeds=source_seeds, seeds=seeds,
                                      sparsity=sparsity, sigma=sigma)
s = grid.sizes
print(f"{s.image_size}x{s.image_size} images {list(grid.images)}, sigma {grid.sigma:g}, network seeds "
      f"{list(grid.seeds)}, noise seeds {list(grid.noise_seeds)}; {grid.source(grid.seeds[0]).label}, "
      f"{s.iterations} iterations, sparsity {grid.sparsity:.0%}")
res = E.run_e12(grid)

# %% [markdown]
# ## PSNR over iterations
# The mean over seeds, per image. The dense prior (dashed) peaks early, then fits the noise.

# %%
plots.show(figures.psnr_curves_figure(res.curves, E.LABELS, grid.images,
                                      title=f"PSNR against the clean image, sparsity {grid.sparsity:.0%}"))

# %% [markdown]
# ## What the priors give
# Clean, noisy, the dense prior at its last iteration, the OES prior at its last iteration
# (the first network and noise seed).

# %%
seed, noise = grid.seeds[0], grid.noise_seeds[0]
strip = []
for image in grid.images:
    clean = load_image(image, s.image_size, s.channels)
    noisy = add_noise(clean, grid.sigma, noise)
    strip.append((image, [("clean", clean.numpy()), ("noisy", noisy.clamp(0, 1).numpy()),
                          ("dense, last", res.outputs[("dense", image, seed, noise)]),
                          ("OES, last", res.outputs[("oes", image, seed, noise)])]))
plots.show(figures.image_strip_figure(strip, title="Clean, noisy, dense and sparse outputs"))

# %% [markdown]
# ## Where the masks keep weights
# Each layer's kept fraction (mean over images and seeds). OES chooses one global top-k, so
# its per-layer budgets are learned; magnitude, random and IMP keep the same fraction in
# every layer; "random, OES layer budgets" keeps OES's per-layer fractions at random.

# %%
plots.show(figures.keep_rate_figure(E.layer_keep_rates(res.masks), E.LABELS,
                                    title="Kept fraction per layer"))

# %% [markdown]
# ## Mask transfer
# Final PSNR (dB, mean over seeds): the OES mask learned on the previous image of the list,
# applied at initialisation to this one, beside the mask learned on this image and random.

# %%
display(Markdown(figures.transfer_table(
    res.rows, ["dense", "oes", E.TRANSFERRED, "random", "oes_random"], E.LABELS)))

# %% [markdown]
# ## Finding

# %%
finding = E.prior_finding(res.rows)
finding = X.lead_with_headline(finding, "E12", res.rows, P)  # the answer first
display(Markdown(finding.markdown))
recorded = record("E12", res.rows, finding,
                  {"profile": profile, "images": list(grid.images), "source_seeds": list(grid.seeds),
                   "seeds": list(grid.noise_seeds),
                   "sparsity": grid.sparsity, "sigma": grid.sigma, "image_size": s.image_size,
                   "iterations": s.iterations}, results_dir)
print(f"recorded {len(recorded['rows'])} rows for {recorded['experiment']}")

# %% [markdown]
# ## Secondary: the primary contrast cell by cell
#
# The same units, each cell on its own (Holm within the cells): a description of where
# the headline's contrast comes from, never the answer itself.

# %%
display(Markdown(X.secondary_markdown("E12", res.rows, P)))
plots.show(X.secondary_figure("E12", res.rows, P))
