"""Finetuning and evaluating a text classifier on token tensors (natural or adversarial).

``TextRecipe`` is the training recipe of the text track (what a source is pretrained with
and what a transfer finetunes with): AdamW (the new head at its own, larger ``head_lr``: a
few hundred steps must train it from scratch), a linear learning-rate decay, ``n_train``
examples (a seeded stratified subset; 0 = all), and, for a robust model, embedding-space
PGD (``eps`` > 0, ``steps``) as the inner maximisation (Madry et al.: the loss of the
perturbed batch only). ``train_embeddings=False`` freezes the word-embedding matrix (the
largest tensor of a small BERT: its AdamW update dominates a CPU step), position and
type embeddings and layer norms still train.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, replace
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from rtstudy.core.checks import check_int, check_range
from rtstudy.text.attacks import pgd_embeddings
from rtstudy.text.data import stratified_first


@dataclass(frozen=True)
class TextRecipe:
    """How a text model is trained (see the module doc)."""

    epochs: float = 1.0
    batch_size: int = 32
    lr: float = 1e-4
    head_lr: float = 3e-3
    weight_decay: float = 0.01
    n_train: int = 0
    eps: float = 0.0
    steps: int = 2
    train_embeddings: bool = False

    def __post_init__(self):
        check_range("epochs", self.epochs, 0.0, float("inf"), low_open=True)
        check_int("batch_size", self.batch_size, 1)
        check_range("lr", self.lr, 0.0, float("inf"), low_open=True)
        check_range("head_lr", self.head_lr, 0.0, float("inf"), low_open=True)
        check_range("weight_decay", self.weight_decay, 0.0, float("inf"))
        check_int("n_train", self.n_train, 0)
        check_range("eps", self.eps, 0.0, float("inf"))
        check_int("steps", self.steps, 1)

    @property
    def adversarial(self) -> bool:
        return self.eps > 0

    def with_(self, **changes) -> TextRecipe:
        return replace(self, **changes)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> TextRecipe:
        return cls(**dict(d))


def subset(ids: torch.Tensor, mask: torch.Tensor, y: torch.Tensor, n: int, seed: int):
    """A seeded stratified subset of ``n`` examples (all at 0), shuffled."""
    idx = stratified_first(y, n, seed)
    return ids[idx], mask[idx], y[idx]


def make_optimizer(model: nn.Module, recipe: TextRecipe) -> torch.optim.AdamW:
    """AdamW over what ``recipe`` trains: decay on matrices, none on vectors, the head at
    ``head_lr``; the word embeddings only with ``train_embeddings``."""
    emb = model.encoder.embeddings.word_embeddings.weight
    head = {id(p) for p in model.head.parameters()}
    body = [p for p in model.parameters()
            if id(p) not in head and (recipe.train_embeddings or p is not emb)]
    return torch.optim.AdamW([
        {"params": [p for p in body if p.dim() >= 2], "weight_decay": recipe.weight_decay},
        {"params": [p for p in body if p.dim() < 2], "weight_decay": 0.0},
        {"params": list(model.head.parameters()), "lr": recipe.head_lr, "weight_decay": 0.0},
    ], lr=recipe.lr)


def train_step(model: nn.Module, opt: torch.optim.Optimizer, ids: torch.Tensor, mask: torch.Tensor,
               y: torch.Tensor, recipe: TextRecipe, generator: torch.Generator | None = None
               ) -> torch.Tensor:
    """One optimiser step on a batch (on the PGD-perturbed embeddings when adversarial)."""
    if recipe.adversarial:
        embeds = pgd_embeddings(model, ids, mask, y, eps=recipe.eps, steps=recipe.steps,
                                generator=generator)
        logits = model(inputs_embeds=embeds, attention_mask=mask)
    else:
        logits = model(ids, mask)
    loss = F.cross_entropy(logits, y)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return loss.detach()


def train(model: nn.Module, ids: torch.Tensor, mask: torch.Tensor, y: torch.Tensor,
          recipe: TextRecipe, *, seed: int, device: torch.device,
          on_optimizer: Callable[[torch.optim.Optimizer], Any] | None = None) -> dict:
    """Train ``model`` on (ids, mask, y) as ``recipe`` says; ``on_optimizer(opt)`` is called
    once on the AdamW optimiser (e.g. to keep a mask). Returns the mean loss and throughput."""
    model.to(device).train()
    opt = make_optimizer(model, recipe)
    if on_optimizer is not None:
        on_optimizer(opt)
    n = len(y)
    steps = max(1, round(recipe.epochs * n / recipe.batch_size))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0 - s / steps)
    gen = torch.Generator().manual_seed(seed)
    emb = model.encoder.embeddings.word_embeddings.weight
    emb.requires_grad_(recipe.train_embeddings)
    losses, tokens, t0 = [], 0, time.perf_counter()
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)  # dropout
            order = torch.cat([torch.randperm(n, generator=gen)
                               for _ in range(-(-steps * recipe.batch_size // n))])
            for s in range(steps):
                b = order[s * recipe.batch_size:(s + 1) * recipe.batch_size]
                xb, mb, yb = ids[b].to(device), mask[b].to(device), y[b].to(device)
                losses.append(float(train_step(model, opt, xb, mb, yb, recipe, gen)))
                sched.step()
                tokens += int(mb.sum())
    finally:
        emb.requires_grad_(True)
    model.eval()
    seconds = time.perf_counter() - t0
    return {"train_loss": sum(losses) / len(losses), "train_steps": steps,
            "train_tokens_per_s": tokens / max(seconds, 1e-9)}


@torch.no_grad()
def _clean_correct(model, ids, mask, y, device, batch: int) -> int:
    correct = 0
    for i in range(0, len(y), batch):
        logits = model(ids[i:i + batch].to(device), mask[i:i + batch].to(device))
        correct += int((logits.argmax(1) == y[i:i + batch].to(device)).sum())
    return correct


def evaluate(model: nn.Module, ids: torch.Tensor, mask: torch.Tensor, y: torch.Tensor, *,
             device: torch.device, eval_eps: float | None = None, steps: int = 5,
             robust_n: int = 0, batch: int = 128, seed: int = 0) -> dict:
    """Clean accuracy, and robust accuracy under embedding PGD at ``eval_eps`` on the first
    ``robust_n`` examples (0: all) when ``eval_eps`` is given."""
    model.to(device).eval()
    out = {"test_acc": _clean_correct(model, ids, mask, y, device, batch) / len(y)}
    if eval_eps is not None:
        n = robust_n or len(y)
        gen = torch.Generator().manual_seed(seed)
        correct = 0
        for i in range(0, n, batch):
            xb, mb, yb = (t[i:min(i + batch, n)].to(device) for t in (ids, mask, y))
            embeds = pgd_embeddings(model, xb, mb, yb, eps=eval_eps, steps=steps, generator=gen)
            with torch.no_grad():
                correct += int((model(inputs_embeds=embeds, attention_mask=mb).argmax(1) == yb).sum())
        out["robust_acc"] = correct / n
    return out
