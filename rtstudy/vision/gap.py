"""A measured source -> target domain distance (E8).

The distance between a source task S and a target task T is the Fréchet distance
between the natural source model's penultimate features of S and of T (the FID recipe,
with the study's own source model as the feature extractor):

    d(S, T) = |mu_S - mu_T|^2 + Tr(C_S + C_T - 2 (C_S^1/2 C_T C_S^1/2)^1/2)

S is sampled from its test split and T from its train split, ``n`` images each, so
``d(S, S)`` compares two disjoint samples of one distribution: near 0 (only the
finite-sample bias), while a shifted or different task scores higher. Features are
computed in batches in eval mode; the result is stored like every other artifact.
"""

from __future__ import annotations

import numpy as np
import torch

from rtstudy.core.checks import check_positive
from rtstudy.core.pipeline import Source
from rtstudy.core.store import Store
from rtstudy.vision.track import source_task


@torch.inference_mode()
def penultimate_features(model, x: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    """``model.features`` of ``x`` (in [0, 1]) in eval mode, batched; float64 on CPU."""
    check_positive("batch_size", batch_size)
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    try:
        feats = [model.features(xb.to(device)).flatten(1).double().cpu() for xb in x.split(batch_size)]
    finally:
        model.train(was_training)
    return torch.cat(feats) if feats else torch.empty(0, 0, dtype=torch.float64)


def _sqrtm_psd(c: np.ndarray) -> np.ndarray:
    w, v = np.linalg.eigh((c + c.T) / 2)
    return (v * np.sqrt(np.clip(w, 0, None))) @ v.T


def frechet_distance(a: torch.Tensor | np.ndarray, b: torch.Tensor | np.ndarray) -> float:
    """Fréchet distance between Gaussians fitted to the rows of ``a`` [N, D] and ``b`` [M, D].

    The matrix square root uses symmetric eigendecompositions (stable for the rank-deficient
    covariances of a few hundred samples); the result is clipped at 0.
    """
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise ValueError(f"features must be [N, D] and [M, D] with the same D; got {a.shape} and {b.shape}")
    if len(a) < 2 or len(b) < 2:
        raise ValueError(f"need at least 2 samples per set, got {len(a)} and {len(b)}")
    mu_a, mu_b = a.mean(0), b.mean(0)
    ca, cb = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    ca, cb = np.atleast_2d(ca), np.atleast_2d(cb)
    sa = _sqrtm_psd(ca)
    cross = _sqrtm_psd(sa @ cb @ sa)
    d = float(((mu_a - mu_b) ** 2).sum() + np.trace(ca) + np.trace(cb) - 2 * np.trace(cross))
    return max(d, 0.0)


def _sample(x: torch.Tensor, n: int, seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    idx = torch.randperm(len(x), generator=gen)[: min(n, len(x))]
    return x[idx]


def domain_distance(source: Source, target: str, *, n: int = 500, seed: int = 0,
                    store: Store | None = None) -> float:
    """Fréchet distance between ``source``'s features of S (test split) and of ``target``
    (train split), ``n`` images each; stored (kind ``gap``)."""
    check_positive("n", n)
    store = store or Store()
    d = source.desc
    config = {"source": source.artifact.key, "source_task": d.task, "target": target,
              "n": n, "seed": seed, "image_size": d.image_size, "channels": d.channels,
              "measure": "frechet-penultimate-v1"}

    def compute(b) -> None:
        s, t = source_task(d), source_task(d, target)
        fs = penultimate_features(source.model, _sample(s.test_x, n, seed))
        ft = penultimate_features(source.model, _sample(t.train_x, n, seed + 1))
        b.metrics.update(distance=frechet_distance(fs, ft), n_source=len(fs), n_target=len(ft),
                         feature_dim=int(fs.shape[1]))

    return store.get_or_create("gap", config, compute).metrics["distance"]
