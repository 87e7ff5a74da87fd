"""What a ticket keeps of its source before finetuning: masked accuracy on S, dead filters.

Finetuning can wash out what a mask kept of the pretrained function (a random ticket and
an OMP ticket then end up alike). ``masked_source_accuracy`` measures it before any
finetuning: the masked source model on S's test set, with batch-norm statistics
recomputed on S's training images (pruning shifts the activations; without that a
magnitude ticket looks broken when it is only miscalibrated), and the fraction of conv
filters the mask removes whole. Stored (kind ``ticket_eval``).
"""

from __future__ import annotations

import torch
import torch.nn as nn

from rtstudy.core import masks as masks_mod
from rtstudy.core.pipeline import Source, Ticket, load_model
from rtstudy.core.store import Builder, Store
from rtstudy.vision.attacks import accuracy
from rtstudy.vision.track import source_task, test_split


@torch.no_grad()
def recompute_batchnorm(model: nn.Module, x: torch.Tensor, batch_size: int = 256) -> None:
    """Re-estimate every batch-norm layer's running statistics on ``x`` (cumulative average)."""
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not bns:
        return
    saved = [(m, m.momentum) for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative moving average over the batches below
    was_training = model.training
    model.train()
    device = next(model.parameters()).device
    try:
        for xb in x.split(batch_size):
            model(xb.to(device))
    finally:
        for m, momentum in saved:
            m.momentum = momentum
        model.train(was_training)


def dead_filters(mask: dict[str, torch.Tensor]) -> float:
    """Fraction of conv/linear output filters with every weight pruned."""
    rows = [v.reshape(v.shape[0], -1).any(1) for v in masks_mod.weight_entries(mask).values()]
    total = sum(len(r) for r in rows)
    return sum(int((~r).sum()) for r in rows) / total if total else 0.0


def masked_source_accuracy(
    source: Source,
    ticket: Ticket,
    *,
    n_bn: int = 2000,
    test_n: int = 2000,
    store: Store | None = None,
) -> dict:
    """The masked source model on S before finetuning: ``source_acc`` (BN recomputed on
    ``n_bn`` training images), ``source_acc_raw`` (stored BN statistics), ``dead_filters``."""
    store = store or Store()
    config = {
        "source": source.key,
        "ticket": ticket.key,
        "n_bn": n_bn,
        "test_n": test_n,
        "measure": "masked-source-accuracy-v1",
    }

    def compute(b: Builder) -> None:
        model = load_model(source.desc, source.artifact, source.device)
        if ticket.mask is not None:
            masks_mod.apply_mask(model, ticket.mask)
        data = source_task(source.desc)
        tx, ty = test_split(data, test_n)
        b.metrics["source_acc_raw"] = accuracy(model, tx, ty)
        gen = torch.Generator().manual_seed(0)
        idx = torch.randperm(len(data.train_y), generator=gen)[:n_bn]
        recompute_batchnorm(model, data.train_x[idx])
        b.metrics["source_acc"] = accuracy(model, tx, ty)
        b.metrics["dead_filters"] = dead_filters(ticket.mask) if ticket.mask is not None else 0.0

    return store.get_or_create("ticket_eval", config, compute).metrics
