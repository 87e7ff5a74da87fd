"""Optimal Eye Surgeon (Ghosh et al., ICML 2024): a mask learned at initialisation, weights frozen.

Each prunable weight gets a logit; its keep probability is ``p = sigmoid(logit)``. A step
samples a relaxed Bernoulli (Gumbel-sigmoid at ``temperature``) mask ``m``, runs the
network with weights ``w ⊙ m`` (``torch.func.functional_call``: no model copy, the
weights never change) and minimises the data fit to the noisy image plus ``kl_weight``
times the mean KL divergence of Bernoulli(p) from Bernoulli(keep rate), which pulls the
probabilities towards the target keep rate. The hard mask keeps the ``k`` weights of
highest probability, ``k = round(keep * n)`` over all prunable weights: the requested
sparsity exactly. ``OES`` is the ticket scheme ``oes`` of the core's registry.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import torch
import torch.nn as nn
from torch.func import functional_call

from rtstudy.core.checks import check_int, check_positive, check_range
from rtstudy.core.masks import Mask
from rtstudy.core.schemes import SCHEMES, Drawing, Scheme
from rtstudy.core.tickets import prunable_names


def check_keep(keep: float) -> float:
    """A keep rate (fraction of weights kept) in (0, 1]."""
    return check_range("keep rate", keep, 0.0, 1.0, low_open=True)


def bernoulli_kl(p: torch.Tensor, q: float) -> torch.Tensor:
    """KL(Bernoulli(p) || Bernoulli(q)) elementwise (p clamped away from 0 and 1)."""
    p = p.clamp(1e-6, 1 - 1e-6)
    return p * torch.log(p / q) + (1 - p) * torch.log((1 - p) / (1 - q))


def topk_mask(probabilities: Mapping[str, torch.Tensor], keep: float) -> Mask:
    """Keep the ``round(keep * n)`` entries of highest probability over all entries (ties:
    the earlier entry); exactly that many are kept."""
    keep = check_keep(keep)
    names = list(probabilities)
    flat = torch.cat([probabilities[k].detach().flatten().float().cpu() for k in names])
    k = int(round(keep * flat.numel()))
    chosen = torch.zeros(flat.numel(), dtype=torch.bool)
    chosen[torch.argsort(flat, descending=True, stable=True)[:k]] = True
    out, i = {}, 0
    for name in names:
        n = probabilities[name].numel()
        out[name] = chosen[i:i + n].reshape(probabilities[name].shape)
        i += n
    return out


class MaskLearner:
    """The OES objective on ``model``'s prunable weights (frozen): ``step()`` samples a relaxed
    mask, fits ``code`` -> ``target`` with ``w ⊙ m`` and takes one Adam step on the logits;
    ``probabilities()`` are the keep probabilities so far."""

    def __init__(self, model: nn.Module, code: torch.Tensor, target: torch.Tensor, keep: float, *,
                 lr: float = 0.05, kl_weight: float = 1.0, temperature: float = 0.5, init: float = 0.5,
                 seed: int = 0, data_weight: float = 1.0):
        self.keep = check_keep(keep)
        check_positive("lr", lr)
        check_positive("temperature", temperature)
        check_range("init", init, 0.0, 1.0, low_open=True, high_open=True)
        self.model, self.code, self.target = model, code, target
        self.kl_weight, self.temperature, self.data_weight = kl_weight, temperature, data_weight
        self.names = prunable_names(model)
        self.frozen = {k: v.detach() for k, v in model.named_parameters()}  # never changed
        init_logit = float(torch.logit(torch.tensor(init)))
        self.logits = {k: torch.full_like(self.frozen[k], init_logit, requires_grad=True)
                       for k in self.names}
        self.opt = torch.optim.Adam(self.logits.values(), lr=lr)
        self.gen = torch.Generator(device=code.device).manual_seed(int(seed))

    def step(self) -> dict:
        """One step; the data loss, the KL term and the mean keep probability before it."""
        self.model.train()
        self.opt.zero_grad(set_to_none=True)
        masked = {}
        for k in self.names:
            w = self.frozen[k]
            u = torch.rand(w.shape, generator=self.gen, device=w.device).clamp(1e-6, 1 - 1e-6)
            m = torch.sigmoid((self.logits[k] + torch.log(u) - torch.log1p(-u)) / self.temperature)
            masked[k] = w * m
        out = functional_call(self.model, {**self.frozen, **masked}, (self.code,))
        data = nn.functional.mse_loss(out, self.target)
        probs = torch.cat([torch.sigmoid(self.logits[k]).flatten() for k in self.names])
        kl = bernoulli_kl(probs, self.keep).mean()
        (self.data_weight * data + self.kl_weight * kl).backward()
        self.opt.step()
        return {"data": float(data.detach()), "kl": float(kl.detach()),
                "mean_keep": float(probs.detach().mean())}

    def probabilities(self) -> dict[str, torch.Tensor]:
        return {k: torch.sigmoid(v.detach()) for k, v in self.logits.items()}


def learn_probabilities(model: nn.Module, code: torch.Tensor, target: torch.Tensor, keep: float, *,
                        steps: int = 200, **options) -> tuple[dict[str, torch.Tensor], list[dict]]:
    """Learn keep probabilities of ``model``'s prunable weights (frozen) so that the masked
    network maps ``code`` to ``target`` (``options``: those of ``MaskLearner``):
    ``(probabilities, history)``, the history one ``step()`` record per step."""
    check_int("steps", steps, 1)
    learner = MaskLearner(model, code, target, keep, **options)
    history = [learner.step() for _ in range(steps)]
    return learner.probabilities(), history


class _WithoutRounds:
    """A scheme as the core's validation sees one that has no IMP rounds (``trains`` False),
    everything else (options, target) its own."""

    trains = False

    def __init__(self, scheme: Scheme):
        self._scheme = scheme

    def __getattr__(self, name: str):
        return getattr(self._scheme, name)


class OES(Scheme):
    """The learned mask of Optimal Eye Surgeon, drawn on the target (the noisy image) at the
    source's initial weights. Options: ``steps``, ``lr`` (Adam on the logits), ``kl_weight``,
    ``temperature`` (of the Gumbel-sigmoid relaxation), ``init`` (initial keep probability)."""

    name = "oes"
    needs_target = True
    options: ClassVar[Mapping[str, Any]] = {"steps": 200, "lr": 0.05, "kl_weight": 1.0,
                                            "temperature": 0.5, "init": 0.5}

    def check_options(self, options: Mapping[str, Any]) -> None:
        check_int("steps", options["steps"], 1)
        for k in ("lr", "temperature"):
            check_positive(k, options[k])
        check_range("kl_weight", options["kl_weight"], 0.0, float("inf"))
        check_range("init", options["init"], 0.0, 1.0, low_open=True, high_open=True)

    # it learns its mask from data (so a mask explorer cannot draw it in memory), in
    # ``steps`` of its own rather than IMP's rounds: no rate or epochs
    trains = True

    def validate(self, desc) -> None:
        if desc.rate is not None or desc.epochs is not None:
            raise ValueError(f"scheme {self.name!r} learns its mask in its own steps (option "
                             f"'steps'); rate/epochs must be None, got {desc.rate!r}, {desc.epochs!r}")
        Scheme.validate(_WithoutRounds(self), desc)
        if desc.pattern.name != "unstructured":
            raise ValueError(f"scheme {self.name!r} learns an unstructured mask; got pattern "
                             f"{desc.pattern.name!r}")

    def draw(self, drawing: Drawing, desc) -> Mask:
        from rtstudy.prior.problem import problem

        code, noisy, _ = problem(desc.source, desc.target, drawing.device)
        probs, _ = learn_probabilities(
            drawing.model, code, noisy, 1.0 - desc.sparsity, steps=desc.option("steps"),
            lr=desc.option("lr"), kl_weight=desc.option("kl_weight"),
            temperature=desc.option("temperature"), init=desc.option("init"), seed=desc.seed)
        return topk_mask(probs, 1.0 - desc.sparsity)


class OESRandom(OES):
    """A random mask with the per-layer sparsity of the OES ticket of the same target and
    options (its random twin): whether the learned choice of weights matters, or only how
    many each layer keeps."""

    name = "oes_random"
    redrawn_per_seed = True

    def draw(self, drawing: Drawing, desc) -> Mask:
        return desc.pattern.random(drawing.ticket(desc.with_(scheme=OES.name, seed=0)), seed=desc.seed)


for _scheme in (OES(), OESRandom()):
    if _scheme.name not in SCHEMES:
        SCHEMES.register(_scheme.name, _scheme)
