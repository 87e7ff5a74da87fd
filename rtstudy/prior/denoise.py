"""A denoising run of the deep image prior: fit the noisy image, watch PSNR/SSIM to the clean one.

The dense prior fits the noise in the end (its PSNR against the clean image peaks, then
falls); ``curve_metrics`` reports the peak, the final value and the drop between them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn as nn

from rtstudy.prior.images import psnr, ssim, to_uint8
from rtstudy.prior.problem import DenoiseRecipe


def fit(model: nn.Module, code: torch.Tensor, noisy: torch.Tensor, recipe: DenoiseRecipe, *,
        on_optimizer: Callable[[torch.optim.Optimizer], Any] | None = None,
        observe: Callable[[int, torch.Tensor], None] | None = None, every: int = 10) -> float:
    """Adam on the mean squared error to ``noisy`` for ``recipe.iterations`` steps;
    ``on_optimizer(opt)`` e.g. keeps a mask; ``observe(i, output)`` sees the output of
    iteration ``i`` every ``every`` steps and after the last. The last loss."""
    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=recipe.lr)
    if on_optimizer is not None:
        on_optimizer(opt)
    loss = torch.tensor(float("nan"))
    for i in range(recipe.iterations):
        opt.zero_grad(set_to_none=True)
        out = model(code)
        loss = nn.functional.mse_loss(out, noisy)
        loss.backward()
        opt.step()
        if observe is not None and i % every == 0:
            observe(i, out.detach())
    if observe is not None:
        with torch.no_grad():
            observe(recipe.iterations, model(code))
    return float(loss.detach())


def curve_metrics(iterations: list[int], psnrs: list[float], ssims: list[float]) -> dict:
    """Peak, final and drop (peak − final) of the PSNR and SSIM curves, with the curves."""
    peak = max(range(len(psnrs)), key=psnrs.__getitem__)
    return {"psnr_peak": psnrs[peak], "psnr_peak_iteration": iterations[peak],
            "psnr_final": psnrs[-1], "psnr_drop": psnrs[peak] - psnrs[-1],
            "ssim_peak": max(ssims), "ssim_final": ssims[-1], "ssim_drop": max(ssims) - ssims[-1],
            "curve_iterations": iterations, "curve_psnr": psnrs, "curve_ssim": ssims}


def denoise(model: nn.Module, code: torch.Tensor, noisy: torch.Tensor, clean: torch.Tensor,
            recipe: DenoiseRecipe, *, every: int = 10,
            on_optimizer: Callable[[torch.optim.Optimizer], Any] | None = None) -> dict:
    """Fit ``noisy`` and measure against ``clean`` every ``every`` iterations: the metrics of
    ``curve_metrics``, ``loss_final`` and ``output_u8`` (the last output, 0..255)."""
    its, ps, ss, last = [], [], [], {}

    def observe(i: int, out: torch.Tensor) -> None:
        its.append(i)
        ps.append(psnr(out[0], clean[0]))
        ss.append(ssim(out[0], clean[0]))
        last["out"] = out[0]

    loss = fit(model, code, noisy, recipe, on_optimizer=on_optimizer, observe=observe, every=every)
    return {**curve_metrics(its, ps, ss), "loss_final": loss, "output_u8": to_uint8(last["out"])}
