"""PGD in embedding space: the text track's threat model.

Text has no continuous input, so the adversary perturbs the word embeddings. Variant: a
per-token ℓ2 ball — every real token's embedding moves by at most ``eps`` (ℓ2), padding
not at all — with a random start inside the ball and ``steps`` normalised-gradient steps of
``2.5 eps / steps`` (Madry et al.'s step rule), projected back each step. Why per token:
the two tasks have very different lengths (a tweet, a news story), and a ball over the
whole sequence would give a long text a smaller budget per token than a short one; a
per-token radius means the same for every task (it is the constraint of the embedding
attacks of FreeLB, Zhu et al. 2020, without their accumulation of gradients). The attack
needs no weight gradients (``torch.autograd.grad`` with respect to the perturbation only).
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from rtstudy.core.checks import check_int, check_range


def _project(delta: torch.Tensor, eps: float, mask: torch.Tensor) -> torch.Tensor:
    norms = delta.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    return delta * (eps / norms).clamp(max=1.0) * mask.unsqueeze(-1)


def random_start(embeds: torch.Tensor, eps: float, mask: torch.Tensor, generator=None) -> torch.Tensor:
    """A random point in every token's ℓ2 ball (uniform direction, radius eps · U)."""
    d = torch.randn(embeds.shape, generator=generator).to(embeds)  # drawn on the CPU: same bits
    d = d / d.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    r = torch.rand((*embeds.shape[:-1], 1), generator=generator).to(embeds)
    return d * r * eps * mask.unsqueeze(-1)


def pgd_embeddings(model: nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                   labels: torch.Tensor, *, eps: float, steps: int,
                   generator: torch.Generator | None = None) -> torch.Tensor:
    """The perturbed word embeddings (``embeds + delta``, detached) that raise the loss of
    ``model`` within each token's ℓ2 ball of radius ``eps``; ``eps = 0`` gives the clean ones."""
    check_range("eps", eps, 0.0, float("inf"))
    check_int("steps", steps, 1)
    with torch.no_grad():
        embeds = model.embed(input_ids)
    if eps == 0:
        return embeds
    mask = attention_mask.to(embeds.dtype)
    alpha = 2.5 * eps / steps
    delta = random_start(embeds, eps, mask, generator)
    for _ in range(steps):
        delta.requires_grad_(True)
        loss = F.cross_entropy(model(inputs_embeds=embeds + delta, attention_mask=attention_mask), labels)
        (grad,) = torch.autograd.grad(loss, delta)
        with torch.no_grad():
            g = grad / grad.norm(dim=-1, keepdim=True).clamp_min(1e-12)
            delta = _project(delta + alpha * g, eps, mask)
    return (embeds + delta).detach()
