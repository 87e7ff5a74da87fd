"""Drawing tickets: masks by scheme x pattern x sparsity (pure functions, OpenLTH style).

A mask is ``dict[str, torch.Tensor]`` of bool tensors keyed by parameter name, the
shape of the parameter, ``True`` = kept (see ``rtstudy.core.masks``). Every drawing
function is ``(weights, hparams, current mask) -> new mask``; masks come back on the
CPU, and the same inputs give the same mask bit for bit (stable sorts, seeded
``torch.Generator`` on the CPU).

Which weights are prunable (``prunable_names``): every ``Conv2d`` and ``Linear``
weight except, by default, the first conv (the stem, ``net.conv1``) and the
classifier (the last ``Linear``, ``net.fc``). The 1x1 shortcut/downsample convs are
prunable for the unstructured and N:M patterns; the channel pattern never removes
their filters (their outputs join the residual sum) and keeps them whole.

Patterns (``PATTERNS``):

``unstructured``
    one global magnitude threshold over all prunable weights: the ``round(s * total)``
    smallest |w| go (exactly ``torch.nn.utils.prune.global_unstructured`` with
    ``L1Unstructured``). With ``current``, already-pruned weights stay pruned and
    count towards the target, so IMP prunes a fraction of the *remaining* weights and
    its masks are nested.
``unstructured_layerwise``
    the same with the fraction ``s`` in every prunable layer.
``channel``
    whole output filters by L2 filter norm, the same fraction in every *internal* conv
    of a residual block: ``conv1`` of a basic block, ``conv1`` and ``conv2`` of a
    bottleneck, i.e. every ``<block>.conv{k}`` followed by ``<block>.bn{k}`` and read only
    by ``<block>.conv{k+1}``. Block outputs (on the residual path), the stem, the
    shortcuts and the classifier keep every channel, so the pruned network stays
    valid and can be made physically smaller (``rtstudy.vision.slim``). The mask also marks
    as pruned (a) the input slices of ``conv{k+1}`` that read a pruned channel (they
    only ever see zeros; ``slim`` removes them, so the mask's sparsity is the true
    fraction of prunable weights removed) and (b) the batch-norm affine entries
    ``<block>.bn{k}.weight``/``.bias`` at the pruned channels (so the channel is
    exactly zero after BN, and the masked network computes what the slim one does).
    The filter fraction ``f`` (one for all internal convs, rounded per layer, at
    least one filter kept per layer) is chosen so that the achieved sparsity over all
    prunable weights is as close as the rounding allows to the requested one (so ``f``
    is a bit above ``s``, since the shortcuts are never pruned); if the internal
    convs cannot supply it, the most they can is taken. ``mask_report`` gives
    requested and achieved, and the pruned-filter count per layer.
``nm``
    N:M along the input dimension: for a conv weight ``[O, I, kh, kw]`` the groups of M
    run along I at each (o, kh, kw); for a linear ``[O, I]`` along I. The N largest |w|
    of each group are kept. The sparsity is implied (1 - N/M): the requested
    ``sparsity`` must be 0 (meaning "implied") or equal 1 - N/M, anything else is a
    ``ValueError``. IMP goes straight to N:M in a single round.

Schemes (``SCHEMES``): ``omp`` (one-shot magnitude on the pretrained weights,
``omp``), ``imp_source`` / ``imp_target`` (``imp`` with the caller's retraining on S
or on T), ``random`` (``random_mask``: the same per-layer sparsity as its magnitude
twin, seeded).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass

import torch
import torch.nn as nn

from rtstudy.core.checks import check_choice, check_range
from rtstudy.core.masks import Mask, apply_mask, check_mask, check_mask_fits

PATTERNS = ("unstructured", "unstructured_layerwise", "channel", "nm")
SCHEMES = ("omp", "imp_source", "imp_target", "random")

_CONV = re.compile(r"^(?P<block>.*)\.conv(?P<k>\d+)\.weight$")


# ----------------------------------------------------------------------------- which weights
def prunable_names(model: nn.Module, include_first: bool = False, include_classifier: bool = False) -> list[str]:
    """Names of the prunable weights: every conv and linear weight, in registration order,
    except the first conv (the stem) and the last linear (the classifier) unless asked."""
    convs, linears = [], []
    order = []
    for mod_name, mod in model.named_modules():
        if isinstance(mod, (nn.Conv1d, nn.Conv2d, nn.Conv3d)):
            convs.append(mod_name)
        elif isinstance(mod, nn.Linear):
            linears.append(mod_name)
        else:
            continue
        order.append(mod_name)
    skip = set()
    if convs and not include_first:
        skip.add(convs[0])
    if linears and not include_classifier:
        skip.add(linears[-1])
    return [f"{n}.weight" if n else "weight" for n in order if n not in skip]


def prunable_weights(model: nn.Module, include_first: bool = False, include_classifier: bool = False) -> dict[str, torch.Tensor]:
    """``{name: weight}`` (detached) for ``prunable_names``."""
    params = dict(model.named_parameters())
    return {k: params[k].detach() for k in prunable_names(model, include_first, include_classifier)}


# ----------------------------------------------------------------------------- validation
def _check_sparsity(sparsity: float) -> float:
    return check_range("sparsity", sparsity, 0.0, 1.0, high_open=True)


def _check_nm(n: int, m: int) -> None:
    for name, value in (("n", n), ("m", m)):
        if not isinstance(value, int) or isinstance(value, bool):
            raise ValueError(f"N:M needs integers, got {name}={value!r}")
    if n < 1:
        raise ValueError(f"N:M needs N >= 1, got N={n} (M={m})")
    if n >= m:
        raise ValueError(f"N:M needs N < M, got N={n}, M={m}")


def _check_nm_sparsity(sparsity: float, n: int, m: int) -> None:
    implied = 1.0 - n / m
    if sparsity != 0 and abs(sparsity - implied) > 1e-9:
        raise ValueError(
            f"pattern 'nm' with N={n}, M={m} has sparsity 1 - N/M = {implied:g}; the requested "
            f"sparsity {sparsity!r} does not match (pass 0 or {implied:g}, or choose N and M)"
        )


def _check_weights(weights: Mapping[str, torch.Tensor]) -> None:
    if not isinstance(weights, Mapping) or not weights:
        raise ValueError(f"weights must be a non-empty dict of conv/linear weights, got {type(weights).__name__}")
    for k, w in weights.items():
        if not isinstance(w, torch.Tensor) or w.dim() < 2:
            shape = tuple(w.shape) if isinstance(w, torch.Tensor) else type(w).__name__
            raise ValueError(
                f"weight {k!r} has shape {shape}; only conv/linear weights (>= 2 dims) can be pruned"
            )


def _check_current(current: Mapping[str, torch.Tensor] | None, weights: Mapping[str, torch.Tensor]) -> None:
    if current is None:
        return
    check_mask(current, name="current mask")
    missing = [k for k in weights if k not in current]
    if missing:
        raise ValueError(f"current mask lacks prunable weights {missing[:5]}; it has {list(current)[:5]}")
    bad = [
        f"{k}: current {tuple(current[k].shape)} vs weight {tuple(w.shape)}"
        for k, w in weights.items()
        if current[k].shape != w.shape
    ]
    if bad:
        raise ValueError(f"current mask does not fit the weights: {bad[:5]}")


# ----------------------------------------------------------------------------- magnitude masks
def _scores(w: torch.Tensor, kept: torch.Tensor | None) -> torch.Tensor:
    """|w| as float32, with already-pruned entries at -1 (always the smallest)."""
    s = w.detach().abs().float()
    if kept is not None:
        s = torch.where(kept.to(s.device), s, torch.full_like(s, -1.0))
    return s


def _prune_smallest(scores: torch.Tensor, k: int) -> torch.Tensor:
    """Bool keep-mask of a flat score vector with its ``k`` smallest entries pruned."""
    keep = torch.ones_like(scores, dtype=torch.bool)
    if k > 0:
        order = torch.sort(scores, stable=True).indices
        keep[order[:k]] = False
    return keep


def _unstructured(weights, sparsity, current, *, layerwise: bool) -> Mask:
    out: Mask = {}
    if layerwise:
        for k, w in weights.items():
            kept = current[k] if current is not None else None
            already = int(w.numel() - kept.sum()) if kept is not None else 0
            n_prune = max(already, round(sparsity * w.numel()))
            keep = _prune_smallest(_scores(w, kept).flatten(), n_prune)
            out[k] = keep.view(w.shape).cpu()
        return out
    names = list(weights)
    flat = torch.cat([_scores(weights[k], current[k] if current is not None else None).flatten() for k in names])
    already = int(sum(int((~current[k]).sum()) for k in names)) if current is not None else 0
    n_prune = max(already, round(sparsity * flat.numel()))  # as torch.nn.utils.prune does
    keep = _prune_smallest(flat, n_prune).cpu()
    start = 0
    for k in names:
        numel = weights[k].numel()
        out[k] = keep[start:start + numel].view(weights[k].shape)
        start += numel
    return out


def _nm_view(t: torch.Tensor, m: int) -> torch.Tensor:
    """[O, I, *k] -> [..., M] groups along I (a copy, contiguous)."""
    t = t if t.dim() == 2 else t.movedim(1, -1)
    return t.reshape(-1, m)


def _nm_unview(groups: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    if len(shape) == 2:
        return groups.reshape(shape)
    moved = (shape[0], *shape[2:], shape[1])
    return groups.reshape(moved).movedim(-1, 1).contiguous()


def _check_nm_divides(weights: Mapping[str, torch.Tensor], m: int) -> None:
    for k, w in weights.items():
        if w.shape[1] % m:
            raise ValueError(
                f"N:M with M={m} needs M to divide the input dimension; layer {k!r} has input "
                f"dimension {w.shape[1]} (weight shape {tuple(w.shape)})"
            )


def _nm_keep(scores: torch.Tensor, n: int, m: int, shape: torch.Size) -> torch.Tensor:
    groups = _nm_view(scores, m)
    top = torch.sort(groups, dim=1, descending=True, stable=True).indices[:, :n]
    keep = torch.zeros_like(groups, dtype=torch.bool)
    keep.scatter_(1, top, True)
    return _nm_unview(keep, shape)


def _nm(weights, n, m, current) -> Mask:
    _check_nm_divides(weights, m)
    out: Mask = {}
    for k, w in weights.items():
        kept = current[k] if current is not None else None
        keep = _nm_keep(_scores(w, kept), n, m, w.shape).cpu()
        out[k] = keep & kept.cpu() if kept is not None else keep
    return out


# ----------------------------------------------------------------------------- channel masks
@dataclass(frozen=True)
class ChannelGroup:
    """An internal conv of a residual block: its filters can go, with its BN and the
    matching input slices of the next conv."""

    conv: str  # "<block>.conv{k}.weight"
    bn: str  # "<block>.bn{k}" (module name; the mask holds .weight and .bias)
    consumer: str  # "<block>.conv{k+1}.weight"


def _block_types() -> tuple[type, ...]:
    import torchvision.models.resnet as tv

    from rtstudy.vision.models import BasicBlock

    return (BasicBlock, tv.BasicBlock, tv.Bottleneck)


def channel_groups(names, model: nn.Module | None = None) -> list[ChannelGroup]:
    """The channel-prunable internal convs among ``names`` (weight names).

    Rule: ``<block>.conv{k}.weight`` is internal when ``<block>.conv{k+1}.weight`` is also
    among ``names``; its BN is ``<block>.bn{k}``. With ``model``, a group is kept only if
    ``<block>`` is a residual block rtstudy knows (its own ``BasicBlock``, torchvision's
    ``BasicBlock``/``Bottleneck``) and the BN exists with matching width.
    """
    names = list(names)
    present = set(names)
    modules = dict(model.named_modules()) if model is not None else None
    groups = []
    for name in names:
        match = _CONV.match(name)
        if not match:
            continue
        block, k = match["block"], int(match["k"])
        consumer = f"{block}.conv{k + 1}.weight"
        if consumer not in present:
            continue
        bn = f"{block}.bn{k}"
        if modules is not None:
            if not isinstance(modules.get(block), _block_types()):
                continue
            conv_mod, bn_mod = modules.get(f"{block}.conv{k}"), modules.get(bn)
            if not isinstance(bn_mod, nn.BatchNorm2d) or bn_mod.num_features != conv_mod.out_channels:
                continue
            if getattr(conv_mod, "groups", 1) != 1 or getattr(modules[f"{block}.conv{k + 1}"], "groups", 1) != 1:
                continue
        groups.append(ChannelGroup(name, bn, consumer))
    return groups


def _channel_mask_from_pruned(
    weights: Mapping[str, torch.Tensor], groups: list[ChannelGroup], pruned: dict[str, torch.Tensor]
) -> Mask:
    """Build a full channel mask from the pruned filter indices of each group's conv."""
    out: Mask = {k: torch.ones(tuple(w.shape), dtype=torch.bool) for k, w in weights.items()}
    for g in groups:
        idx = pruned[g.conv]
        out[g.conv][idx] = False
        out[g.consumer][:, idx] = False
        channels = weights[g.conv].shape[0]
        bn_keep = torch.ones(channels, dtype=torch.bool)
        bn_keep[idx] = False
        out[f"{g.bn}.weight"] = bn_keep
        out[f"{g.bn}.bias"] = bn_keep.clone()
    return out


def _channel_removed(shapes: dict[str, tuple], groups: list[ChannelGroup], counts: dict[str, int]) -> int:
    """How many prunable weights a channel mask with ``counts`` pruned filters removes."""
    rows = {g.conv: counts[g.conv] for g in groups}
    cols = {g.consumer: counts[g.conv] for g in groups}
    removed = 0
    for k, shape in shapes.items():
        r, c = rows.get(k, 0), cols.get(k, 0)
        if r or c:
            kernel = math.prod(shape[2:]) if len(shape) > 2 else 1
            removed += (r * shape[1] + c * shape[0] - r * c) * kernel
    return removed


def _channel_counts(f: float, groups, shapes, floor: dict[str, int]) -> dict[str, int]:
    out = {}
    for g in groups:
        channels = shapes[g.conv][0]
        out[g.conv] = max(floor[g.conv], min(channels - 1, round(f * channels)))
    return out


def _channel(weights, sparsity, current, model) -> Mask:
    groups = channel_groups(weights, model)
    if not groups:
        raise ValueError(
            "pattern 'channel' found no internal residual-block convs among the prunable weights "
            f"{list(weights)[:4]}...; it needs <block>.conv{{k}} followed by <block>.bn{{k}} and "
            "<block>.conv{k+1} (CIFAR ResNets, torchvision ResNets)"
        )
    shapes = {k: tuple(w.shape) for k, w in weights.items()}
    total = sum(math.prod(s) for s in shapes.values())
    # filters already pruned by ``current`` (rows with nothing kept) stay pruned
    already: dict[str, torch.Tensor] = {}
    for g in groups:
        if current is not None:
            rows = current[g.conv].reshape(shapes[g.conv][0], -1).any(1).cpu()
            already[g.conv] = torch.nonzero(~rows).flatten()
        else:
            already[g.conv] = torch.zeros(0, dtype=torch.long)
    floor = {k: len(v) for k, v in already.items()}
    target = sparsity * total

    def removed(f: float) -> int:
        return _channel_removed(shapes, groups, _channel_counts(f, groups, shapes, floor))

    if removed(0.0) >= target:
        f = 0.0
    elif removed(1.0) <= target:
        f = 1.0
    else:  # removed(f) is a non-decreasing step function: bisect, then take the nearer step
        lo, hi = 0.0, 1.0
        for _ in range(60):
            mid = (lo + hi) / 2
            if removed(mid) >= target:
                hi = mid
            else:
                lo = mid
        f = hi if removed(hi) - target <= target - removed(lo) else lo
    counts = _channel_counts(f, groups, shapes, floor)
    pruned = {}
    for g in groups:
        w = weights[g.conv]
        norms = w.detach().float().reshape(w.shape[0], -1).norm(dim=1).cpu()
        if len(already[g.conv]):
            norms[already[g.conv]] = -1.0
        order = torch.sort(norms, stable=True).indices
        pruned[g.conv] = torch.sort(order[: counts[g.conv]]).values
    return _channel_mask_from_pruned(weights, groups, pruned)


# ----------------------------------------------------------------------------- public drawing
def magnitude_mask(
    weights: Mapping[str, torch.Tensor],
    pattern: str,
    sparsity: float,
    *,
    n: int = 2,
    m: int = 4,
    current: Mapping[str, torch.Tensor] | None = None,
    model: nn.Module | None = None,
) -> Mask:
    """A magnitude mask over ``weights`` (``{name: conv/linear weight}``, the prunable ones).

    ``current``: a mask to prune further (nested: whatever it pruned stays pruned and
    counts towards ``sparsity``, so a fraction of the *remaining* weights goes).
    ``model``: only for ``channel``, to check the residual-block structure.
    See the module docstring for each pattern's rule.
    """
    check_choice("pattern", pattern, PATTERNS)
    _check_sparsity(sparsity)
    _check_weights(weights)
    _check_current(current, weights)
    if pattern == "nm":
        _check_nm(n, m)
        _check_nm_sparsity(sparsity, n, m)
        return _nm(weights, n, m, current)
    if pattern == "channel":
        return _channel(weights, sparsity, current, model)
    return _unstructured(weights, sparsity, current, layerwise=pattern == "unstructured_layerwise")


def omp(
    model: nn.Module,
    pattern: str,
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


def random_mask(reference: Mapping[str, torch.Tensor], pattern: str, *, seed: int, n: int = 2, m: int = 4) -> Mask:
    """A random ticket with the per-layer sparsity of ``reference`` (its magnitude twin).

    ``unstructured``/``unstructured_layerwise``: in each weight entry the same number of
    kept weights, uniformly at random. ``channel``: in each internal conv the same
    number of whole filters (with their BN entries and next-conv input slices).
    ``nm``: a random N of each group of M. Seeded ``torch.Generator`` on the CPU:
    the same seed gives the same mask bit for bit.
    """
    check_choice("pattern", pattern, PATTERNS)
    check_mask(reference, name="reference mask")
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise ValueError(f"seed must be an integer, got {seed!r}")
    gen = torch.Generator().manual_seed(seed)
    weights = {k: v for k, v in reference.items() if v.dim() >= 2}
    if not weights:
        raise ValueError(f"reference mask has no conv/linear entries (keys {list(reference)[:5]})")
    names = sorted(weights)
    if pattern == "nm":
        _check_nm(n, m)
        _check_nm_divides(weights, m)
        out = {}
        for k in names:
            scores = torch.rand(weights[k].shape, generator=gen)
            out[k] = _nm_keep(scores, n, m, weights[k].shape)
        return {k: out[k] for k in weights}
    if pattern == "channel":
        groups = [g for g in channel_groups(sorted(weights)) if f"{g.bn}.weight" in reference]
        if not groups:
            raise ValueError("reference mask is not a channel mask: it has no batch-norm companion entries")
        pruned = {}
        for g in groups:
            ref = weights[g.conv].reshape(weights[g.conv].shape[0], -1)
            count = int((~ref.any(1)).sum())
            perm = torch.randperm(ref.shape[0], generator=gen)
            pruned[g.conv] = torch.sort(perm[:count]).values
        shaped = {k: v for k, v in weights.items()}
        return _channel_mask_from_pruned(shaped, groups, pruned)
    out = {}
    for k in names:
        ref = weights[k]
        kept = int(ref.sum())
        flat = torch.zeros(ref.numel(), dtype=torch.bool)
        flat[torch.randperm(ref.numel(), generator=gen)[:kept]] = True
        out[k] = flat.view(ref.shape)
    return {k: out[k] for k in weights}


# ----------------------------------------------------------------------------- IMP
def imp_schedule(sparsity: float, rate: float, pattern: str) -> list[float]:
    """Per-round target sparsities: ``1 - (1 - rate)^r`` while below ``sparsity``, the last
    round exactly ``sparsity`` (so each round prunes ``rate`` of the remaining weights,
    the last one at most that). ``nm``: one round. ``sparsity == 0``: no rounds.

    For ``channel`` the targets are sparsities of the prunable weights, like the other
    patterns; since the filter fraction of each internal conv moves with the weight
    fraction, each round prunes about ``rate`` of the remaining filters.
    """
    check_choice("pattern", pattern, PATTERNS)
    _check_sparsity(sparsity)
    check_range("rate", rate, 0.0, 1.0, low_open=True, high_open=True)
    if pattern == "nm":
        return [sparsity]
    if sparsity == 0:
        return []
    rounds = max(1, math.ceil(math.log(1 - sparsity) / math.log(1 - rate) - 1e-9))
    targets = [1 - (1 - rate) ** r for r in range(1, rounds)]
    return [*targets, sparsity]


def _mask_pattern_kwargs(pattern: str, n: int, m: int) -> dict:
    return {"n": n, "m": m} if pattern == "nm" else {}


def imp(
    model: nn.Module,
    pattern: str,
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
    check_choice("pattern", pattern, PATTERNS)
    schedule = imp_schedule(sparsity, rate, pattern)
    if pattern == "nm":
        _check_nm(n, m)
        _check_nm_sparsity(sparsity, n, m)
    if not callable(retrain):
        raise ValueError(f"retrain must be callable(model, mask), got {retrain!r}")
    if rewind_state is None:
        rewind_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    names = prunable_names(model, include_first, include_classifier)
    kw = _mask_pattern_kwargs(pattern, n, m)

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
        mask = magnitude_mask(weights, pattern, schedule[r], current=prev, model=model, **kw)
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
