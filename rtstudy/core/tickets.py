"""Drawing tickets: which weights are prunable, one-shot and iterative magnitude pruning.

Every drawing function is ``(weights, hparams, current mask) -> new mask`` (OpenLTH
style); the sparsity pattern is a ``rtstudy.core.patterns.Pattern`` (or its name, with
``n``/``m`` for N:M). Schemes (OMP, IMP, random, ...) that use these live in
``rtstudy.core.schemes``.

Prunable weights: ``rtstudy.core.prunable``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping

import torch
import torch.nn as nn

from rtstudy.core.masks import Mask, apply_mask, check_mask_fits
from rtstudy.core.patterns import PATTERNS as _PATTERN_REGISTRY
from rtstudy.core.patterns import Pattern, channel_groups, make_pattern
from rtstudy.core.prunable import prunable_names, prunable_weights

PATTERNS = _PATTERN_REGISTRY.names()

__all__ = ["PATTERNS", "channel_groups", "imp", "imp_schedule", "magnitude_mask", "mask_report",
           "omp", "prunable_names", "prunable_weights", "random_mask"]


# ----------------------------------------------------------------------------- drawing
def magnitude_mask(
    weights: Mapping[str, torch.Tensor],
    pattern: str | Pattern,
    sparsity: float,
    *,
    n: int = 2,
    m: int = 4,
    current: Mapping[str, torch.Tensor] | None = None,
    model: nn.Module | None = None,
) -> Mask:
    """A magnitude mask over ``weights`` (``{name: conv/linear weight}``, the prunable ones).

    ``current``: a mask to prune further (nested: whatever it pruned stays pruned and
    counts towards ``sparsity``). ``model``: only for ``channel``, to check the blocks.
    """
    return make_pattern(pattern, n=n, m=m).magnitude(weights, sparsity, current=current, model=model)


def omp(
    model: nn.Module,
    pattern: str | Pattern,
    sparsity: float,
    *,
    n: int = 2,
    m: int = 4,
    include_first: bool = False,
    include_classifier: bool = False,
    current: Mapping[str, torch.Tensor] | None = None,
) -> Mask:
    """One-shot magnitude pruning of ``model``'s (pretrained) weights; no data."""
    weights = prunable_weights(model, include_first, include_classifier)
    return magnitude_mask(weights, pattern, sparsity, n=n, m=m, current=current, model=model)


def random_mask(reference: Mapping[str, torch.Tensor], pattern: str | Pattern, *, seed: int,
                n: int = 2, m: int = 4) -> Mask:
    """A random ticket with the per-layer sparsity of ``reference`` (its magnitude twin):
    the same number of kept weights per entry (unstructured), of whole filters per internal
    conv (channel), or a random N of each M (N:M). The same seed gives the same bits."""
    return make_pattern(pattern, n=n, m=m).random(reference, seed=seed)


def imp_schedule(sparsity: float, rate: float, pattern: str | Pattern) -> list[float]:
    """Per-round target sparsities (see ``Pattern.imp_schedule``); N:M: one round."""
    return make_pattern(pattern).imp_schedule(sparsity, rate)


# ----------------------------------------------------------------------------- IMP
def imp(
    model: nn.Module,
    pattern: str | Pattern,
    sparsity: float,
    *,
    rate: float = 0.2,
    retrain: Callable[[nn.Module, Mask], None],
    rewind_state: Mapping[str, torch.Tensor] | None = None,
    start: tuple[int, Mapping[str, torch.Tensor]] | None = None,
    n: int = 2,
    m: int = 4,
    include_first: bool = False,
    include_classifier: bool = False,
    train_first: bool = False,
) -> Iterator[tuple[int, Mask]]:
    """Iterative magnitude pruning; yields ``(round_index, mask)`` after each round.

    Round ``r`` (0-based, targets ``imp_schedule``): prune ``model``'s current weights
    to the round's target, nested in the previous mask (a fraction ``rate`` of the
    remaining weights goes); rewind the whole model to ``rewind_state`` (default: its
    state at entry, i.e. the pretrained weights); zero the pruned weights; call
    ``retrain(model, mask)`` (the caller's training loop, which must keep the mask, e.g.
    with ``rtstudy.core.masks.apply_mask(model, mask, optimizer)``); re-zero; yield. The
    masks of round 0 come from the weights at entry (pretrained on S, so IMP-source
    needs no dense pass first); ``train_first=True`` first calls ``retrain`` with an
    all-kept mask (e.g. a dense finetune on T for IMP-target).

    ``start=(r, mask_r)`` resumes after a finished round ``r``: the model is rewound,
    masked and retrained with ``mask_r`` once more to recover that round's weights
    (so ``retrain`` must be deterministic for a resumed run to match an uninterrupted
    one), then rounds ``r + 1, ...`` run and are yielded. On exit the model holds the
    last round's retrained, masked weights.
    """
    pattern = make_pattern(pattern, n=n, m=m)
    schedule = pattern.imp_schedule(sparsity, rate)
    if not callable(retrain):
        raise ValueError(f"retrain must be callable(model, mask), got {retrain!r}")
    if rewind_state is None:
        rewind_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    names = prunable_names(model, include_first, include_classifier)

    def rewind_and_train(mask: Mask) -> None:
        model.load_state_dict(rewind_state)
        apply_mask(model, mask)
        retrain(model, mask)
        apply_mask(model, mask)

    current: Mask | None = None
    first = 0
    if start is not None:
        if not (isinstance(start, tuple) and len(start) == 2):
            raise ValueError(f"start must be (round_index, mask), got {type(start).__name__}")
        r0, mask0 = start
        if not isinstance(r0, int) or not 0 <= r0 < len(schedule):
            raise ValueError(f"start round {r0!r} is outside the schedule's rounds 0..{len(schedule) - 1}")
        check_mask_fits(model, mask0, name="start mask")
        missing = [k for k in names if k not in mask0]
        if missing:
            raise ValueError(f"start mask lacks prunable weights {missing[:5]}")
        current = {k: v.cpu() for k, v in mask0.items()}
        first = r0 + 1
        if first < len(schedule):
            rewind_and_train(current)
    elif train_first:
        params = dict(model.named_parameters())
        retrain(model, {k: torch.ones_like(params[k], dtype=torch.bool) for k in names})

    for r in range(first, len(schedule)):
        params = dict(model.named_parameters())
        weights = {k: params[k].detach() for k in names}
        prev = {k: current[k] for k in names} if current is not None else None
        mask = pattern.magnitude(weights, schedule[r], current=prev, model=model)
        rewind_and_train(mask)
        current = mask
        yield r, {k: v.clone() for k, v in mask.items()}



# ----------------------------------------------------------------------------- reporting
def mask_report(model: nn.Module, mask: Mapping[str, torch.Tensor], requested: float) -> dict:
    """Requested vs achieved sparsity, overall and per layer.

    ``achieved``: pruned fraction of the mask's weight entries (the prunable weights
    it was drawn over). ``achieved_all``: pruned fraction of all conv + linear weights
    of ``model`` (stem and classifier included). ``layers``: per weight entry its size,
    sparsity and fully pruned output filters. ``companions``: the 1-D entries (BN affine
    of a channel ticket), which the sparsities do not count.
    """
    check_mask_fits(model, mask)
    weights = {k: v for k, v in mask.items() if v.dim() >= 2}
    every = prunable_names(model, include_first=True, include_classifier=True)
    params = dict(model.named_parameters())
    layers = {}
    pruned_total = total = 0
    for k, v in weights.items():
        pruned = int(v.numel() - int(v.sum()))
        rows = v.reshape(v.shape[0], -1).any(1)
        layers[k] = {
            "numel": v.numel(),
            "pruned": pruned,
            "sparsity": pruned / v.numel() if v.numel() else 0.0,
            "filters": int(v.shape[0]),
            "filters_pruned": int((~rows).sum()),
        }
        pruned_total += pruned
        total += v.numel()
    all_total = sum(params[k].numel() for k in every)
    all_pruned = sum(layers[k]["pruned"] for k in every if k in layers)
    return {
        "requested": float(requested),
        "achieved": pruned_total / total if total else 0.0,
        "achieved_all": all_pruned / all_total if all_total else 0.0,
        "prunable_numel": total,
        "all_numel": all_total,
        "filters_pruned": sum(x["filters_pruned"] for x in layers.values()),
        "layers": layers,
        "companions": sorted(k for k, v in mask.items() if v.dim() < 2),
    }
