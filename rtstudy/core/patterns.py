"""Sparsity patterns: which weights a ticket may remove, as objects in a registry.

A mask is ``dict[str, torch.Tensor]`` of bool tensors keyed by parameter name, ``True`` =
kept (``rtstudy.core.masks``). A ``Pattern`` draws a magnitude mask over a dict of
prunable weights (``magnitude``), a random mask with the per-layer sparsity of a
reference (``random``), knows its implied sparsity (N:M) and its IMP schedule.
Masks come back on the CPU; the same inputs give the same mask bit for bit.

``unstructured``
    one global magnitude threshold: the ``round(s * total)`` smallest |w| go (exactly
    ``torch.nn.utils.prune.global_unstructured`` with ``L1Unstructured``). With
    ``current``, already-pruned weights stay pruned and count towards the target, so
    IMP prunes a fraction of the *remaining* weights and its masks are nested.
``unstructured_layerwise``
    the same with the fraction ``s`` in every prunable layer.
``channel``
    whole output filters by L2 norm, the same fraction in every *internal* conv of a
    residual block (``<block>.conv{k}`` followed by ``<block>.bn{k}`` and read only by
    ``<block>.conv{k+1}``; block types are declared with ``register_residual_block``).
    The mask also marks the input slices of ``conv{k+1}`` that read a pruned channel and
    the BN affine entries at the pruned channels (1-D *companion entries*), so the masked
    network computes what the physically slimmed one does. The filter fraction is chosen
    so the achieved sparsity over all prunable weights is as close as rounding allows.
``nm``
    N:M along the input dimension (``[O, I, kh, kw]``: groups of M along I): the N
    largest |w| of each group are kept. The sparsity is implied (1 - N/M): a requested
    sparsity must be 0 ("implied") or equal to it. IMP goes to N:M in one round.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn as nn

from rtstudy.core.checks import check_range
from rtstudy.core.masks import Mask, check_mask
from rtstudy.core.registry import Registry

_CONV = re.compile(r"^(?P<block>.*)\.conv(?P<k>\d+)\.weight$")


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


RESIDUAL_BLOCKS: list[type] = []  # module types whose conv{k} -> bn{k} -> conv{k+1} is the data flow


def register_residual_block(*types: type) -> None:
    """Declare residual-block module types (a track does this for its models)."""
    RESIDUAL_BLOCKS.extend(t for t in types if t not in RESIDUAL_BLOCKS)


def _block_types() -> tuple[type, ...]:
    return tuple(RESIDUAL_BLOCKS)


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


# ----------------------------------------------------------------------------- random masks
def _random_entries(weights: Mapping[str, torch.Tensor], gen: torch.Generator) -> Mask:
    out = {}
    for k in sorted(weights):
        ref = weights[k]
        flat = torch.zeros(ref.numel(), dtype=torch.bool)
        flat[torch.randperm(ref.numel(), generator=gen)[: int(ref.sum())]] = True
        out[k] = flat.view(ref.shape)
    return {k: out[k] for k in weights}


def _random_nm(weights: Mapping[str, torch.Tensor], n: int, m: int, gen: torch.Generator) -> Mask:
    _check_nm_divides(weights, m)
    out = {}
    for k in sorted(weights):
        scores = torch.rand(weights[k].shape, generator=gen)
        out[k] = _nm_keep(scores, n, m, weights[k].shape)
    return {k: out[k] for k in weights}


def _random_channel(reference: Mapping[str, torch.Tensor], weights: Mapping[str, torch.Tensor],
                    gen: torch.Generator) -> Mask:
    groups = [g for g in channel_groups(sorted(weights)) if f"{g.bn}.weight" in reference]
    if not groups:
        raise ValueError("reference mask is not a channel mask: it has no batch-norm companion entries")
    pruned = {}
    for g in groups:
        ref = weights[g.conv].reshape(weights[g.conv].shape[0], -1)
        count = int((~ref.any(1)).sum())
        perm = torch.randperm(ref.shape[0], generator=gen)
        pruned[g.conv] = torch.sort(perm[:count]).values
    return _channel_mask_from_pruned(dict(weights), groups, pruned)


# ----------------------------------------------------------------------------- the objects
@dataclass(frozen=True)
class Pattern:
    """A sparsity pattern. Subclasses set ``name`` and implement ``_magnitude``/``_random``."""

    name: ClassVar[str] = ""
    whole_filters: ClassVar[bool] = False  # removes whole output filters (structured)

    @classmethod
    def from_config(cls, config: Mapping) -> Pattern:
        """The pattern of a stored config (its own keys only)."""
        return cls()

    def config(self) -> dict:
        """The keys a ticket's config holds for this pattern."""
        return {"pattern": self.name}

    @property
    def label(self) -> str:
        return self.name

    @property
    def implied_sparsity(self) -> float | None:
        """The sparsity the pattern fixes by itself (N:M), else ``None``."""
        return None

    def check_sparsity(self, sparsity: float) -> float:
        """The sparsity a ticket of this pattern has, validated."""
        return check_range("sparsity", sparsity, 0.0, 1.0, high_open=True)

    def is_dense(self, sparsity: float) -> bool:
        """True when a ticket at ``sparsity`` keeps every weight (no mask is drawn)."""
        return self.implied_sparsity is None and sparsity == 0

    def magnitude(self, weights: Mapping[str, torch.Tensor], sparsity: float, *,
                  current: Mapping[str, torch.Tensor] | None = None,
                  model: nn.Module | None = None) -> Mask:
        """A magnitude mask over ``weights`` (``current``: prune further, nested)."""
        self.check_sparsity(sparsity)
        _check_weights(weights)
        _check_current(current, weights)
        return self._magnitude(weights, sparsity, current, model)

    def random(self, reference: Mapping[str, torch.Tensor], *, seed: int) -> Mask:
        """A random mask with the per-layer sparsity of ``reference`` (seeded, CPU)."""
        check_mask(reference, name="reference mask")
        if not isinstance(seed, int) or isinstance(seed, bool):
            raise ValueError(f"seed must be an integer, got {seed!r}")
        weights = {k: v for k, v in reference.items() if v.dim() >= 2}
        if not weights:
            raise ValueError(f"reference mask has no conv/linear entries (keys {list(reference)[:5]})")
        return self._random(reference, weights, torch.Generator().manual_seed(seed))

    def imp_schedule(self, sparsity: float, rate: float) -> list[float]:
        """Per-round targets ``1 - (1 - rate)^r`` below ``sparsity``, the last exactly it."""
        self.check_sparsity(sparsity)
        check_range("rate", rate, 0.0, 1.0, low_open=True, high_open=True)
        if sparsity == 0:
            return []
        rounds = max(1, math.ceil(math.log(1 - sparsity) / math.log(1 - rate) - 1e-9))
        return [*(1 - (1 - rate) ** r for r in range(1, rounds)), sparsity]

    def _magnitude(self, weights, sparsity, current, model) -> Mask:
        raise NotImplementedError

    def _random(self, reference, weights, gen) -> Mask:
        return _random_entries(weights, gen)


PATTERNS: Registry[type[Pattern]] = Registry("pattern")


@PATTERNS.register("unstructured")
@dataclass(frozen=True)
class Unstructured(Pattern):
    name: ClassVar[str] = "unstructured"

    def _magnitude(self, weights, sparsity, current, model) -> Mask:
        return _unstructured(weights, sparsity, current, layerwise=False)


@PATTERNS.register("unstructured_layerwise")
@dataclass(frozen=True)
class UnstructuredLayerwise(Pattern):
    name: ClassVar[str] = "unstructured_layerwise"

    def _magnitude(self, weights, sparsity, current, model) -> Mask:
        return _unstructured(weights, sparsity, current, layerwise=True)


@PATTERNS.register("channel")
@dataclass(frozen=True)
class Channel(Pattern):
    name: ClassVar[str] = "channel"
    whole_filters: ClassVar[bool] = True

    def _magnitude(self, weights, sparsity, current, model) -> Mask:
        return _channel(weights, sparsity, current, model)

    def _random(self, reference, weights, gen) -> Mask:
        return _random_channel(reference, weights, gen)


@PATTERNS.register("nm")
@dataclass(frozen=True)
class NM(Pattern):
    """N of every M consecutive input weights kept."""

    name: ClassVar[str] = "nm"
    n: int = 2
    m: int = 4

    def __post_init__(self):
        _check_nm(self.n, self.m)

    @classmethod
    def from_config(cls, config: Mapping) -> NM:
        return cls(config.get("n", 2), config.get("m", 4))

    def config(self) -> dict:
        return {"pattern": self.name, "n": self.n, "m": self.m}

    @property
    def label(self) -> str:
        return f"N:M {self.n}:{self.m}"

    @property
    def implied_sparsity(self) -> float:
        return 1.0 - self.n / self.m

    def check_sparsity(self, sparsity: float) -> float:
        check_range("sparsity", sparsity, 0.0, 1.0, high_open=True)
        _check_nm_sparsity(sparsity, self.n, self.m)
        return self.implied_sparsity

    def imp_schedule(self, sparsity: float, rate: float) -> list[float]:
        self.check_sparsity(sparsity)
        check_range("rate", rate, 0.0, 1.0, low_open=True, high_open=True)
        return [sparsity]

    def _magnitude(self, weights, sparsity, current, model) -> Mask:
        return _nm(weights, self.n, self.m, current)

    def _random(self, reference, weights, gen) -> Mask:
        return _random_nm(weights, self.n, self.m, gen)


def make_pattern(pattern: str | Pattern, *, n: int = 2, m: int = 4) -> Pattern:
    """A ``Pattern`` from itself or its name (``n``, ``m`` are read by N:M only)."""
    if isinstance(pattern, Pattern):
        return pattern
    return PATTERNS.get(pattern).from_config({"pattern": pattern, "n": n, "m": m})


def pattern_from_config(config: Mapping) -> Pattern:
    """The pattern a stored ticket config names."""
    return PATTERNS.get(config["pattern"]).from_config(config)
