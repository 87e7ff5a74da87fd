"""Adversarial attacks in [0, 1] pixel space (models normalise internally).

A threat model is a tiny object with three verbs, as in MadryLab's ``robustness``:
``random_perturb(x)`` (a random start in the ball), ``step(delta, grad, alpha)`` (one
ascent step) and ``project(delta)`` (back onto the eps ball). An attack is a loop
over them; the loop also keeps ``x + delta`` inside [0, 1].

Attacks run the model in whatever mode the caller set and never change it: put the
model in ``eval()`` to attack it (in ``train()`` mode batch-norm statistics would be
updated by every attack step). Gradients are taken w.r.t. the perturbation only
(``torch.autograd.grad``), so no weight gradient is computed and no ``param.grad``
is touched. The loss is computed in float32, so the attacks work under autocast.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from typing import Any, ClassVar

import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm.auto import tqdm

from rtstudy.core.checks import check_bool, check_choice, check_int, check_range
from rtstudy.core.registry import Registry

KINDS = ("pgd", "fgsm_rs", "none")
L2_INITS = ("gaussian", "ball")

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def _check_eps(eps: float) -> float:
    return float(check_range("eps", eps, 0.0, math.inf, high_open=True))


def _check_alpha(alpha: float) -> float:
    return float(check_range("alpha", alpha, 0.0, math.inf, low_open=True, high_open=True))


def _per_sample_norm(t: torch.Tensor) -> torch.Tensor:
    """L2 norm of each sample over all non-batch dims, shaped [N, 1, ...] to broadcast."""
    return torch.linalg.vector_norm(t, dim=tuple(range(1, t.dim())), keepdim=True)


# --------------------------------------------------------------------- threat models


class ThreatModel:
    """An eps ball around the clean input; subclasses define the three verbs."""

    norm: ClassVar[str] = ""

    def __init__(self, eps: float):
        self.eps = _check_eps(eps)

    def random_perturb(self, x: torch.Tensor) -> torch.Tensor:
        """A random delta inside the ball, shaped like ``x``."""
        raise NotImplementedError

    def step(self, delta: torch.Tensor, grad: torch.Tensor, alpha: float) -> torch.Tensor:
        """One steepest-ascent step of length ``alpha`` along ``grad``."""
        raise NotImplementedError

    def project(self, delta: torch.Tensor) -> torch.Tensor:
        """The nearest point of the ball (the caller clamps ``x + delta`` to [0, 1])."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}(eps={self.eps!r})"


class LinfThreat(ThreatModel):
    """``||delta||_inf <= eps``: sign steps, uniform random start in the cube."""

    norm = "linf"

    def random_perturb(self, x: torch.Tensor) -> torch.Tensor:
        return torch.empty_like(x).uniform_(-self.eps, self.eps)

    def step(self, delta: torch.Tensor, grad: torch.Tensor, alpha: float) -> torch.Tensor:
        return torch.add(delta, grad.sign(), alpha=alpha)

    def project(self, delta: torch.Tensor) -> torch.Tensor:
        return delta.clamp(-self.eps, self.eps)


class L2Threat(ThreatModel):
    """``||delta||_2 <= eps`` per sample (over all non-batch dims): normalised-gradient steps.

    ``init="gaussian"`` (default, as torchattacks' PGDL2) starts at a gaussian direction
    scaled to a radius uniform in [0, eps]; ``init="ball"`` starts uniformly in the ball
    by volume, which in high dimension means on its surface and makes PGD slightly weaker.
    """

    norm = "l2"
    tiny: ClassVar[float] = 1e-12  # guards divisions by a zero norm

    def __init__(self, eps: float, init: str = "gaussian"):
        super().__init__(eps)
        self.init = check_choice("init", init, L2_INITS)

    def random_perturb(self, x: torch.Tensor) -> torch.Tensor:
        direction = torch.randn_like(x)
        direction /= _per_sample_norm(direction).clamp_min(self.tiny)
        u = torch.rand((len(x),) + (1,) * (x.dim() - 1), dtype=x.dtype, device=x.device)
        if self.init == "ball":
            u = u.pow(1.0 / math.prod(x.shape[1:]))
        return direction.mul_(u * self.eps)

    def step(self, delta: torch.Tensor, grad: torch.Tensor, alpha: float) -> torch.Tensor:
        return delta + grad * (alpha / _per_sample_norm(grad).clamp_min(self.tiny))

    def project(self, delta: torch.Tensor) -> torch.Tensor:
        scale = (self.eps / _per_sample_norm(delta).clamp_min(self.tiny)).clamp_max(1.0)
        return delta * scale

    def __repr__(self) -> str:
        return f"L2Threat(eps={self.eps!r}, init={self.init!r})"


THREATS: Registry[type[ThreatModel]] = Registry("norm")
THREATS.register("linf", LinfThreat)
THREATS.register("l2", L2Threat)
NORMS = THREATS.names()


def make_threat(norm: str, eps: float) -> ThreatModel:
    """The threat model for ``norm`` ("linf" | "l2") and budget ``eps``."""
    return THREATS.get(norm)(eps)


# --------------------------------------------------------------------------- config


@dataclass(frozen=True, kw_only=True)
class AttackConfig:
    """How inputs are perturbed, for adversarial training and robust evaluation.

    kind: "pgd" (PGD-k, Madry et al. 2018), "fgsm_rs" (one step from a random start,
        Wong et al. 2020; ``steps`` is ignored) or "none" (requires eps == 0).
    norm: "linf" or "l2"; eps: the budget in [0, 1] pixel units (0 means no attack).
    steps: PGD iterations. alpha: step size; None means 2.5 * eps / steps for PGD and
        1.25 * eps for FGSM-RS (see ``step_size``). random_start: start inside the ball.
    """

    kind: str = "pgd"
    norm: str = "linf"
    eps: float
    steps: int = 10
    alpha: float | None = None
    random_start: bool = True

    def __post_init__(self) -> None:
        check_choice("kind", self.kind, KINDS)
        check_choice("norm", self.norm, NORMS)
        object.__setattr__(self, "eps", _check_eps(self.eps))
        check_int("steps", self.steps, 1)
        if self.alpha is not None:
            object.__setattr__(self, "alpha", _check_alpha(self.alpha))
        check_bool("random_start", self.random_start)
        if self.kind == "none" and self.eps != 0:
            raise ValueError(f"kind 'none' needs eps == 0, got eps={self.eps!r}; "
                             f"use kind 'pgd' or 'fgsm_rs' for eps > 0")

    @property
    def step_size(self) -> float:
        """``alpha`` if given, else the customary default for ``kind``."""
        if self.alpha is not None:
            return self.alpha
        if self.kind == "pgd":
            return 2.5 * self.eps / self.steps
        if self.kind == "fgsm_rs":
            return 1.25 * self.eps
        return 0.0

    @property
    def is_attack(self) -> bool:
        """Whether ``perturb`` changes the input at all."""
        return self.kind != "none" and self.eps > 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> AttackConfig:
        allowed = [f.name for f in fields(cls)]
        unknown = sorted(set(d) - set(allowed))
        if unknown:
            raise ValueError(f"unknown AttackConfig keys {unknown}; allowed: {allowed}")
        return cls(**d)


# -------------------------------------------------------------------------- attacks


def _check_batch(x: torch.Tensor, y: torch.Tensor) -> None:
    if not torch.is_floating_point(x) or x.dim() < 2:
        raise ValueError(f"x must be a float tensor [N, ...] in [0, 1], got "
                         f"dtype {x.dtype} and shape {tuple(x.shape)}")
    if len(x) != len(y):
        raise ValueError(f"x and y must have the same length, got {len(x)} and {len(y)}")


def pgd(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    eps: float,
    alpha: float,
    steps: int,
    norm: str = "linf",
    random_start: bool = True,
    targeted: bool = False,
    loss_fn: LossFn | None = None,
) -> torch.Tensor:
    """Projected gradient ascent on the loss within the ``norm`` ball; returns ``x_adv``.

    ``x`` in [0, 1] on the model's device; the model runs in the caller's mode. With
    ``targeted=True`` ``y`` holds target labels and the loss is minimised. ``loss_fn``
    (float32 logits, y) -> loss (per-sample losses are summed) defaults to summed
    cross-entropy: a sum, not a mean, so gradients do not underflow under float16
    autocast. eps == 0 returns ``x`` (detached, not copied).
    """
    _check_batch(x, y)
    threat = make_threat(norm, eps)
    alpha = _check_alpha(alpha)
    steps = check_int("steps", steps, 1)
    x = x.detach()
    if threat.eps == 0:
        return x
    loss_fn = loss_fn or _summed_cross_entropy
    lo, hi = -x, 1.0 - x  # x + delta must stay in [0, 1]

    delta = threat.random_perturb(x) if random_start else torch.zeros_like(x)
    delta = torch.clamp(delta, lo, hi)
    with torch.enable_grad():
        for _ in range(steps):
            delta.requires_grad_(True)
            loss = loss_fn(model(x + delta).float(), y)
            if loss.dim() > 0:
                loss = loss.sum()
            (grad,) = torch.autograd.grad(-loss if targeted else loss, delta)
            delta = threat.project(threat.step(delta.detach(), grad, alpha))
            delta = torch.clamp(delta, lo, hi)
    return (x + delta).clamp_(0.0, 1.0)


def fgsm_rs(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    eps: float,
    alpha: float | None = None,
    norm: str = "linf",
    random_start: bool = True,
    targeted: bool = False,
    loss_fn: LossFn | None = None,
) -> torch.Tensor:
    """FGSM from a random start ("fast is better than free", Wong et al. 2020).

    One step of size ``alpha`` (default 1.25 * eps) from a random point of the ball,
    then projected; otherwise as :func:`pgd`.
    """
    eps = _check_eps(eps)
    if alpha is None:
        alpha = 1.25 * eps if eps > 0 else 1.0  # unused when eps == 0
    return pgd(model, x, y, eps=eps, alpha=alpha, steps=1, norm=norm,
               random_start=random_start, targeted=targeted, loss_fn=loss_fn)


def perturb(model: nn.Module, x: torch.Tensor, y: torch.Tensor, cfg: AttackConfig) -> torch.Tensor:
    """The adversarial ``x`` for ``cfg`` (``x`` itself, detached, when cfg is no attack)."""
    if not cfg.is_attack:
        _check_batch(x, y)
        return x.detach()
    if cfg.kind == "fgsm_rs":
        return fgsm_rs(model, x, y, eps=cfg.eps, alpha=cfg.step_size, norm=cfg.norm,
                       random_start=cfg.random_start)
    return pgd(model, x, y, eps=cfg.eps, alpha=cfg.step_size, steps=cfg.steps,
               norm=cfg.norm, random_start=cfg.random_start)


def _summed_cross_entropy(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(logits, y, reduction="sum")


# ------------------------------------------------------------------------ accuracy


def _model_device(model: nn.Module) -> torch.device:
    for t in model.parameters():
        return t.device
    for t in model.buffers():
        return t.device
    return torch.device("cpu")


def _batches(x: torch.Tensor, y: torch.Tensor, batch_size: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Whole-tensor slices (views until moved), after checking the arguments."""
    _check_batch(x, y)
    check_int("batch_size", batch_size, 1)
    if len(x) == 0:
        raise ValueError("x is empty: accuracy of no samples is undefined")
    return [(x[i:i + batch_size], y[i:i + batch_size]) for i in range(0, len(x), batch_size)]


def accuracy(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    batch_size: int = 512,
    device: torch.device | str | None = None,
) -> float:
    """Clean top-1 accuracy in eval mode, without gradients; the model's mode is restored."""
    device = torch.device(device) if device is not None else _model_device(model)
    was_training = model.training
    model.eval()
    try:
        correct = torch.zeros((), dtype=torch.long, device=device)
        with torch.inference_mode():
            for xb, yb in _batches(x, y, batch_size):
                xb, yb = xb.to(device), yb.to(device)
                correct += (model(xb).argmax(1) == yb).sum()
    finally:
        model.train(was_training)
    return correct.item() / len(x)


def robust_accuracy(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    cfg: AttackConfig,
    *,
    batch_size: int = 256,
    device: torch.device | str | None = None,
    progress: bool = False,
) -> float:
    """Fraction of samples classified correctly both clean and under ``cfg``'s attack.

    Runs in eval mode (restored afterwards); only clean-correct samples are attacked.
    """
    if not cfg.is_attack:
        return accuracy(model, x, y, batch_size=batch_size, device=device)
    device = torch.device(device) if device is not None else _model_device(model)
    was_training = model.training
    model.eval()
    try:
        correct = torch.zeros((), dtype=torch.long, device=device)
        batches = _batches(x, y, batch_size)
        if progress:
            batches = tqdm(batches, desc=f"{cfg.kind} {cfg.norm} eps={cfg.eps:g}")
        for xb, yb in batches:
            xb, yb = xb.to(device), yb.to(device)
            with torch.no_grad():
                ok = model(xb).argmax(1) == yb
            xb, yb = xb[ok], yb[ok]
            if len(xb):
                x_adv = perturb(model, xb, yb, cfg)
                with torch.no_grad():
                    correct += (model(x_adv).argmax(1) == yb).sum()
    finally:
        model.train(was_training)
    return correct.item() / len(x)
