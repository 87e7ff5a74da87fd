"""Speed of the image-prior track: dense and masked DIP iterations, an OES mask step."""

from __future__ import annotations

import torch

from rtstudy.core.masks import apply_mask
from rtstudy.core.patterns import make_pattern
from rtstudy.prior.oes import MaskLearner
from rtstudy.prior.problem import PriorSource, new_network, noisy_target, problem
from rtstudy.prior.sizes import prior_sizes


def bench_prior(profile_name: str, device: torch.device, repeats: int) -> dict:
    """``dip_iter_per_s_dense`` and ``dip_iter_per_s_masked`` (a mask at the profile's
    sparsity kept through Adam) at the profile's E12 size, and ``oes_mask_step_vs_dense_step``,
    timed alternately (``rtstudy.bench.paired_medians``)."""
    from rtstudy.bench import _entry, paired_medians

    s = prior_sizes(profile_name)
    source = PriorSource(image_size=s.image_size, channels=s.channels, depth=s.depth, width=s.width,
                         skip=s.skip, code_channels=s.code_channels, seed=0)
    code, noisy, _ = problem(source, noisy_target(s.images[0], s.sigma, 0), device)

    def stepper(masked: bool):
        model = new_network(source).to(device).train()
        opt = torch.optim.Adam(model.parameters(), lr=s.lr)
        if masked:
            weights = {k: p.detach() for k, p in model.named_parameters() if k in model.prunable_names()}
            apply_mask(model, make_pattern("unstructured_layerwise").magnitude(weights, s.sparsity), opt)

        def step():
            opt.zero_grad(set_to_none=True)
            torch.nn.functional.mse_loss(model(code), noisy).backward()
            opt.step()
        return step

    learner = MaskLearner(new_network(source).to(device), code, noisy, 1 - s.sparsity, lr=s.oes_lr,
                          kl_weight=s.kl_weight)
    t = paired_medians({"dense": stepper(False), "masked": stepper(True), "oes": learner.step},
                       repeats=max(repeats, 5) * 4, device=device)
    size = f"{s.image_size}px, depth {s.depth}, width {s.width}"
    ratio = t["oes"] / t["dense"]
    return {
        "dip_iter_per_s_dense": _entry(1 / t["dense"], "it/s", "", None, f"DIP {size} ({profile_name})"),
        "dip_iter_per_s_masked": _entry(1 / t["masked"], "it/s", "", None,
                                        f"DIP {size}, {s.sparsity:.0%} sparse, mask kept through Adam; "
                                        f"masked / dense step {t['masked'] / t['dense']:.2f}"),
        "oes_mask_step_vs_dense_step": _entry(ratio, "ratio", "", None,
                                              f"one OES mask-learning step (Gumbel sample, functional "
                                              f"masked forward, KL) / one dense DIP step, {size}"),
    }
