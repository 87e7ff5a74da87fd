"""Speed of the text track, for ``nox -s bench``: finetuning throughput in tokens per second
and a masked finetuning step against a dense one (DESIGN.md §5: at most 1.05)."""

from __future__ import annotations

import torch

from rtstudy.core.masks import apply_mask
from rtstudy.core.tickets import omp
from rtstudy.text.models import build_model
from rtstudy.text.sizes import text_sizes
from rtstudy.text.train import make_optimizer, train_step


def bench_text(profile_name: str, device: torch.device, repeats: int) -> dict:
    """``text_train_tokens_per_s`` (the profile's encoder finetuned at its maximum length and
    batch) and ``text_masked_step_vs_dense_step`` (an 80% unstructured OMP mask over the
    encoder's linear layers, kept by its optimiser hook), timed alternately."""
    from rtstudy.bench import _entry, paired_medians

    sizes = text_sizes(profile_name)
    recipe = sizes.finetune
    batch, length = recipe.batch_size, sizes.max_length
    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(1000, 20000, (batch, length), generator=gen).to(device)
    mask = torch.ones(batch, length, dtype=torch.bool, device=device)
    y = torch.randint(0, 5, (batch,), generator=gen).to(device)
    dense = build_model(sizes.model, 5, seed=0).to(device).train()
    masked = build_model(sizes.model, 5, seed=0).to(device).train()
    for m in (dense, masked):
        m.encoder.embeddings.word_embeddings.weight.requires_grad_(recipe.train_embeddings)
    opt_d, opt_m = make_optimizer(dense, recipe), make_optimizer(masked, recipe)
    apply_mask(masked, omp(masked, "unstructured", 0.8), opt_m)
    t = paired_medians({"dense": lambda: train_step(dense, opt_d, ids, mask, y, recipe),
                        "masked": lambda: train_step(masked, opt_m, ids, mask, y, recipe)},
                       repeats, device)
    ratio = t["masked"] / t["dense"]
    where = f"{sizes.model}, batch {batch} x {length} tokens"
    return {
        "text_train_tokens_per_s": _entry(batch * length / t["dense"], "tokens/s", "report", None,
                                          f"finetuning step, {where}"),
        "text_masked_step_vs_dense_step": _entry(ratio, "ratio", "<= 1.05", ratio <= 1.05,
                                                 f"80% unstructured mask, {where}"),
    }
