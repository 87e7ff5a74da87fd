"""The image-prior track: the deep image prior at initialisation as the core's source.

    pretrain   trains nothing: stores the network's initial weights (its seed)
    ticket     a mask at initialisation, drawn on a noisy image: ``oes`` (learned,
               ``rtstudy.prior.oes``), ``omp`` (magnitude at init), ``random``, ``imp_target``
               (IMP on the noisy image, rewinding to the initial weights)
    transfer   a denoising run of source ⊙ mask on a noisy image (``target`` from
               ``noisy_target``): PSNR/SSIM curves, peak, final and drop, the last output

A mask drawn on image A and transferred to image B is a ticket with target A in a
transfer with target B.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
import torch.nn as nn

from rtstudy.core.descriptions import TicketDesc, TransferDesc
from rtstudy.core.masks import Mask, apply_mask
from rtstudy.core.track import TRACKS, Track, register_track
from rtstudy.prior import oes  # registers the scheme "oes"
from rtstudy.prior.denoise import denoise, fit
from rtstudy.prior.models import Hourglass
from rtstudy.prior.problem import (
    TRACK,
    DenoiseEvaluation,
    DenoiseRecipe,
    PriorSource,
    new_network,
    problem,
)

# one 64-pixel DIP iteration (depth 3, width 16) costs about as much CPU as 20 clean training
# images of the classification track's default model (measured on one core: ~70 it/s vs
# ~1,450 img/s), so the plan's time estimate covers E12 too
EXAMPLES_PER_ITERATION = 20.0


class PriorTrack(Track):
    """Deep image priors (``Hourglass``) fitted to one noisy image."""

    name = TRACK
    source_desc = PriorSource
    recipe = DenoiseRecipe

    def pretrain(self, source: PriorSource, *, device: torch.device, progress: bool | None):
        model = new_network(source)
        n = sum(p.numel() for p in model.parameters())
        return model, {"parameters": n}, {"network": model.spec}

    def load_model(self, meta: Mapping, state: Mapping[str, torch.Tensor], device: torch.device):
        model = Hourglass(**meta["network"])
        model.load_state_dict(dict(state))
        return model.to(device).eval()

    def reinitialize(self, model: nn.Module, seed: int) -> None:
        """Fresh initial weights under ``seed`` (the network's own initialisation)."""
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            fresh = Hourglass(**model.spec)
        model.load_state_dict(fresh.state_dict())

    def imp_retrainer(self, ticket: TicketDesc, model: nn.Module, *, on_target: bool,
                      device: torch.device) -> Callable[[nn.Module, Mask], None]:
        if not on_target:
            raise ValueError("an image prior has no source task; IMP runs on the noisy image "
                             "(scheme 'imp_target')")
        code, noisy, _ = problem(ticket.source, ticket.target, device)
        recipe = ticket.finetune.with_(iterations=int(ticket.epochs))
        model.to(device)

        def retrain(net: nn.Module, mask: Mask) -> None:
            fit(net, code, noisy, recipe, on_optimizer=lambda opt: apply_mask(net, mask, opt))

        return retrain

    def transfer(self, desc: TransferDesc, model: nn.Module,
                 keep_mask: Callable[[torch.optim.Optimizer], Any] | None, *,
                 device: torch.device, progress: bool | None) -> dict:
        if desc.regime != "finetune":
            raise ValueError(f"an image prior is fitted, not probed; regime {desc.regime!r} "
                             "is not allowed (use 'finetune')")
        code, noisy, clean = problem(desc.source, desc.target, device)
        evaluation: DenoiseEvaluation = desc.evaluation
        return denoise(model.to(device), code, noisy, clean, desc.recipe, every=evaluation.every,
                       on_optimizer=keep_mask)

    def work(self, desc) -> float | None:
        """Iterations x ``EXAMPLES_PER_ITERATION``: a transfer's iterations, an OES ticket's
        mask steps, an IMP ticket's dense fit and rounds; a source or a data-free mask: 0."""
        if isinstance(desc, TransferDesc):
            return desc.recipe.iterations * EXAMPLES_PER_ITERATION
        if isinstance(desc, TicketDesc) and desc.scheme == oes.OES.name:
            return desc.option("steps") * EXAMPLES_PER_ITERATION
        if isinstance(desc, TicketDesc) and desc.rate is not None:
            rounds = len(desc.pattern.imp_schedule(desc.sparsity, desc.rate)) + 1
            return rounds * desc.epochs * EXAMPLES_PER_ITERATION
        return 0.0


PRIOR = TRACKS.get(TRACK) if TRACK in TRACKS else register_track(PriorTrack())
