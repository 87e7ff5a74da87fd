"""One training loop for every stage: natural or adversarial, dense or masked, full or probe.

The loop works on whole tensors (``rtstudy.vision.data.batches``): no per-sample Python in the
hot path. A recipe's ``precision`` says how it computes: ``bf16`` is bf16 autocast with
channels-last tensors on any device (``rtstudy.core.precision`` picks it where the processor
computes bf16 natively), ``fp32`` is plain float32 (on a GPU still bf16 while ``amp``).
Adversarial examples are crafted with the model in eval mode (as the ``robustness``
library does) and the attack computes gradients for the input only.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field, replace

import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm.auto import tqdm

from rtstudy.core.checks import (
    check_bool,
    check_choice,
    check_int,
    check_positive,
    check_range,
    check_type,
)
from rtstudy.core.precision import PRECISIONS, autocast
from rtstudy.vision.attacks import AttackConfig, perturb, robust_accuracy
from rtstudy.vision.data import augment_flip_crop, batches

SCHEDULES = ("cosine", "onecycle", "constant")
OPTIMIZERS = ("sgd", "adam")
NO_ATTACK = AttackConfig(kind="none", eps=0.0)


@dataclass(frozen=True)
class TrainConfig:
    """Hyperparameters of one training run (OpenLTH style: help text beside each field)."""

    epochs: float = 1.0  # passes over the training set; a fraction trains on part of one
    min_steps: int = 0  # at least this many optimiser steps (data-limited transfer still learns)
    batch_size: int = 128  # minibatch size
    lr: float = 0.1  # peak learning rate
    momentum: float = 0.9  # SGD momentum
    weight_decay: float = 5e-4  # L2 penalty (decoupled for Adam: AdamW)
    optimizer: str = "sgd"  # "sgd" | "adam"
    schedule: str = "onecycle"  # "cosine" | "onecycle" | "constant"
    warmup: float = 0.15  # onecycle: fraction of steps spent warming up
    label_smoothing: float = 0.0  # cross-entropy label smoothing
    augment: bool = False  # batched random crop + flip (CIFAR-like data only)
    attack: AttackConfig = field(default_factory=lambda: NO_ATTACK)  # adversarial training
    amp: bool = True  # bf16 autocast on CUDA even at precision fp32
    channels_last: bool = True  # channels-last memory format where training runs in bf16
    precision: str = "fp32"  # "fp32" | "bf16" (autocast on any device); not in to_dict when fp32

    def __post_init__(self):
        check_positive("epochs", self.epochs)
        check_int("batch_size", self.batch_size, 1)
        check_int("min_steps", self.min_steps, 0)
        check_positive("lr", self.lr)
        check_range("momentum", self.momentum, 0.0, 1.0, high_open=True)
        check_range("weight_decay", self.weight_decay, 0.0, 1.0)
        check_choice("optimizer", self.optimizer, OPTIMIZERS)
        check_choice("schedule", self.schedule, SCHEDULES)
        check_range("warmup", self.warmup, 0.0, 1.0, high_open=True)
        check_range("label_smoothing", self.label_smoothing, 0.0, 1.0, high_open=True)
        check_choice("precision", self.precision, PRECISIONS)
        for flag in ("augment", "amp", "channels_last"):
            check_bool(flag, getattr(self, flag))
        if isinstance(self.attack, dict):
            object.__setattr__(self, "attack", AttackConfig.from_dict(self.attack))
        check_type("attack", self.attack, AttackConfig, "an AttackConfig or a dict")

    def to_dict(self) -> dict:
        """The recipe as a dict; an fp32 recipe leaves ``precision`` out, so it keeps the key
        it had before recipes recorded their precision."""
        d = asdict(self)
        d["attack"] = self.attack.to_dict()
        if self.precision == "fp32":
            del d["precision"]
        return d

    def compute_precision(self, device: torch.device) -> str:
        """What this recipe computes in on ``device``: ``bf16`` or ``fp32``."""
        return "bf16" if self.precision == "bf16" or (self.amp and device.type == "cuda") else "fp32"

    def uses_channels_last(self, device: torch.device) -> bool:
        """Whether images and conv weights are channels-last on ``device``."""
        return self.channels_last and (device.type == "cuda" or self.precision == "bf16")

    @classmethod
    def from_dict(cls, d: dict) -> TrainConfig:
        return cls(**d)

    def with_(self, **changes) -> TrainConfig:
        return replace(self, **changes)


def default_progress() -> bool:
    """Progress bars on, unless ``RTSTUDY_PROGRESS=0`` (the report runner and tests set it)."""
    import os

    return os.environ.get("RTSTUDY_PROGRESS", "1") != "0"


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def make_optimizer(params: Iterable[nn.Parameter], cfg: TrainConfig) -> torch.optim.Optimizer:
    params = list(params)
    if cfg.optimizer == "adam":
        return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    return torch.optim.SGD(
        params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay, nesterov=cfg.momentum > 0
    )


def lr_at(step: int, total: int, cfg: TrainConfig) -> float:
    """Learning rate after ``step`` of ``total`` optimiser steps."""
    t = step / max(1, total)
    if cfg.schedule == "constant":
        return cfg.lr
    if cfg.schedule == "cosine":
        return cfg.lr * 0.5 * (1 + math.cos(math.pi * t))
    if t < cfg.warmup:  # onecycle: linear warm-up, then linear decay to zero
        return cfg.lr * t / cfg.warmup
    return cfg.lr * max(0.0, (1 - t) / (1 - cfg.warmup))


@dataclass
class EvalSet:
    """What to measure after each epoch: a test split and, optionally, an attack."""

    x: torch.Tensor
    y: torch.Tensor
    attack: AttackConfig | None = None  # robust accuracy under this attack
    robust_n: int = 500  # first n test samples for robust accuracy (it is costly)


def evaluate(model: nn.Module, ev: EvalSet, device: torch.device, batch_size: int = 512,
             precision: str = "fp32") -> dict:
    """Clean (and robust, if asked) accuracy on an ``EvalSet``, computed in ``precision``."""
    from rtstudy.vision.attacks import accuracy

    with autocast(device, precision):
        out = {"test_acc": accuracy(model, ev.x, ev.y, batch_size=batch_size, device=device)}
        if ev.attack is not None and ev.attack.kind != "none" and ev.attack.eps > 0:
            n = min(ev.robust_n, len(ev.y))
            out["robust_acc"] = robust_accuracy(
                model, ev.x[:n], ev.y[:n], ev.attack, batch_size=batch_size, device=device
            )
    return out


def train_step(model: nn.Module, optimizer: torch.optim.Optimizer, xb: torch.Tensor, yb: torch.Tensor,
               cfg: TrainConfig, precision: str, lr: float) -> tuple[torch.Tensor, torch.Tensor]:
    """One optimiser step on a batch (adversarial first if ``cfg.attack`` is an attack): its
    loss and logits. The attack runs the model in eval mode with its weights frozen."""
    device = xb.device
    if cfg.attack.is_attack:
        model.eval()
        with autocast(device, precision), frozen(model):
            xb = perturb(model, xb, yb, cfg.attack)
    model.train()
    for group in optimizer.param_groups:
        group["lr"] = lr
    with autocast(device, precision):
        logits = model(xb)
        loss = F.cross_entropy(logits.float(), yb, label_smoothing=cfg.label_smoothing)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return loss, logits


@contextlib.contextmanager
def frozen(model: nn.Module):
    """No parameter of ``model`` requires a gradient inside (restored on exit): a forward pass
    that only an input gradient follows records nothing for the weights."""
    trainable = [p for p in model.parameters() if p.requires_grad]
    for p in trainable:
        p.requires_grad_(False)
    try:
        yield model
    finally:
        for p in trainable:
            p.requires_grad_(True)


def train(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    cfg: TrainConfig,
    *,
    seed: int = 0,
    device: torch.device | str | None = None,
    params: Iterable[nn.Parameter] | None = None,
    on_optimizer: Callable[[torch.optim.Optimizer], None] | None = None,
    eval_set: EvalSet | None = None,
    eval_every_epoch: bool = True,
    progress: bool | str | None = None,
) -> list[dict]:
    """Train ``model`` in place on (x, y) and return one log row per epoch.

    ``params``: the parameters to optimise (default: all); a linear probe passes only
    the head's. ``on_optimizer`` is called with the optimiser before the first step,
    e.g. to attach a mask (``rtstudy.core.masks.apply_mask(model, mask, optimizer)``).
    """
    device = torch.device(device) if device is not None else default_device()
    gen = torch.Generator(device="cpu").manual_seed(seed)
    torch.manual_seed(seed)
    model.to(device)
    precision, channels_last = cfg.compute_precision(device), cfg.uses_channels_last(device)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    x, y = x.to(device), y.to(device)
    params = list(params) if params is not None else [p for p in model.parameters() if p.requires_grad]
    optimizer = make_optimizer(params, cfg)
    if on_optimizer is not None:
        on_optimizer(optimizer)
    if len(y) == 0:
        raise ValueError("train needs at least one training sample, got 0")
    batch_size = min(cfg.batch_size, len(y))  # a tiny data fraction still makes one batch
    steps_per_epoch = len(y) // batch_size
    total = max(1, cfg.min_steps, round(cfg.epochs * steps_per_epoch))
    adversarial = cfg.attack.kind != "none" and cfg.attack.eps > 0
    if progress is None:
        progress = default_progress()
    elif isinstance(progress, str) and not default_progress():
        progress = False
    desc = progress if isinstance(progress, str) else ("adv-train" if adversarial else "train")
    bar = tqdm(total=total, desc=desc, disable=not progress, leave=False, mininterval=1.0)
    history, step, epoch = [], 0, 0
    while step < total:
        epoch += 1
        t0, seen, loss_sum, correct = time.perf_counter(), 0, 0.0, 0
        for xb, yb in batches(x, y, batch_size, shuffle=True, generator=gen, drop_last=True):
            if step >= total:
                break
            if cfg.augment:
                xb = augment_flip_crop(xb, generator=gen)
            if channels_last and xb.dim() == 4:
                xb = xb.contiguous(memory_format=torch.channels_last)
            loss, logits = train_step(model, optimizer, xb, yb, cfg, precision, lr_at(step, total, cfg))
            step += 1
            seen += len(yb)
            loss_sum += loss.detach() * len(yb)
            correct += (logits.detach().argmax(1) == yb).sum()
            bar.update(1)
        row = {
            "epoch": epoch,
            "step": step,
            "train_loss": float(loss_sum) / max(1, seen),
            "train_acc": float(correct) / max(1, seen),
            "seconds": round(time.perf_counter() - t0, 3),
            "img_per_s": round(seen / max(1e-9, time.perf_counter() - t0), 1),
        }
        if eval_set is not None and (eval_every_epoch or step >= total):
            row.update(evaluate(model, eval_set, device, precision=precision))
            bar.set_postfix({k: round(v, 4) for k, v in row.items() if k.endswith("acc")})
        history.append(row)
    bar.close()
    model.eval()
    return history

