"""The supernet of SuperTickets: a residual network whose blocks' inner widths are elastic.

The elastic choice is each residual block's inner width (``conv1 -> bn1 -> conv2``, the
channel groups of ``rtstudy.core.patterns.channel_groups``): it may shrink to one of
``widths`` (fractions of the block's full width, e.g. ``"0.25,0.5,0.75,1"``). A channel's
BN scale γ says how much it matters; an L1 penalty on the scales (network slimming, Liu et
al. 2017, applied as its proximal step: shrink |γ| by lr·λ, never past zero) drives the
unneeded ones to zero, and the search removes a block's channels whose |γ| falls below a
threshold, rounded up to the next allowed width. A removed channel is a channel ticket's
entry (its filter, its BN scale and shift, the next conv's input slice), so the ticket
exports as a physically smaller network (:func:`slim_ticket`).

Costs of a ticket (:func:`ticket_costs`): parameters, multiply-accumulates counted by
forward hooks (of the slim network, and of its non-zero weights only); :func:`latencies`
measures the slim networks' CPU latency side by side.
"""

from __future__ import annotations

import copy
import math
import re
import statistics
from collections.abc import Mapping

import torch
import torch.nn as nn

from rtstudy.core.checks import check_int
from rtstudy.core.masks import Mask, apply_mask
from rtstudy.core.patterns import ChannelGroup, channel_groups
from rtstudy.core.prunable import prunable_names
from rtstudy.vision.slim import count_macs, latency, slim_channel_ticket

WIDTHS = "0.25,0.5,0.75,1"  # the default elastic width choices of every block
_STAGE = re.compile(r"(?:^|\.)(layer\d+)\.")


# ----------------------------------------------------------------------------- elastic choices
def parse_widths(widths: str) -> tuple[float, ...]:
    """The allowed width fractions of ``widths`` (comma-separated, each in (0, 1]); the full
    width 1 is always allowed. A clear ``ValueError`` names a value that is not one."""
    if not isinstance(widths, str) or not widths.strip():
        raise ValueError(f"widths must be comma-separated fractions in (0, 1], e.g. {WIDTHS!r}; "
                         f"got {widths!r}")
    out = set()
    for part in widths.split(","):
        try:
            w = float(part)
        except ValueError:
            raise ValueError(f"width choice {part.strip()!r} in widths={widths!r} is not a number; "
                             f"allowed: fractions in (0, 1]") from None
        if not 0.0 < w <= 1.0 or math.isnan(w):
            raise ValueError(f"width choice {w!r} in widths={widths!r} is outside (0, 1]")
        out.add(w)
    out.add(1.0)
    return tuple(sorted(out))


def elastic_groups(model: nn.Module) -> list[ChannelGroup]:
    """The blocks whose inner width is elastic (an error when the model has none)."""
    groups = channel_groups(prunable_names(model), model)
    if not groups:
        raise ValueError(f"{type(model).__name__} has no residual block with an inner "
                         "conv -> BN -> conv (CIFAR or torchvision ResNets): no elastic width")
    return groups


def _module(model: nn.Module, weight_name: str) -> nn.Module:
    return model.get_submodule(weight_name.removesuffix(".weight"))


def width_counts(model: nn.Module, widths: str) -> dict[str, list[int]]:
    """Per elastic block (its first conv's weight name) the channel counts it may keep.
    A choice that leaves a block no channel is an error naming the choice and the block."""
    choices = parse_widths(widths)
    out = {}
    for g in elastic_groups(model):
        channels = _module(model, g.conv).out_channels
        counts = []
        for w in choices:
            n = round(w * channels)
            if n < 1:
                raise ValueError(f"width choice {w!r} leaves {g.conv} ({channels} channels) "
                                 f"{n} channels; the smallest choice this model can take is "
                                 f"{1 / channels:.3g}")
            counts.append(n)
        out[g.conv] = sorted(set(counts))
    return out


def stage_of(name: str) -> str:
    """``layer2`` for ``net.layer2.0.conv1.weight`` (the stage a block belongs to)."""
    m = _STAGE.search(name)
    return m.group(1) if m else name


# ----------------------------------------------------------------------------- scales
def scales(model: nn.Module, groups: list[ChannelGroup]) -> dict[str, torch.Tensor]:
    """The BN scale γ (a live parameter) of each elastic block, by its conv's weight name."""
    return {g.conv: model.get_submodule(g.bn).weight for g in groups}


@torch.no_grad()
def shrink_scales(model: nn.Module, groups: list[ChannelGroup], amount: float) -> None:
    """The proximal step of an L1 penalty on the scales: |γ| shrinks by ``amount``, and stops
    at zero."""
    if amount <= 0:
        return
    for gamma in scales(model, groups).values():
        gamma.copy_(gamma.sign() * (gamma.abs() - amount).clamp_min(0.0))


def keep_channels(gamma: torch.Tensor, alive: torch.Tensor, threshold: float,
                  counts: list[int]) -> torch.Tensor:
    """The channels a block keeps: those alive whose |γ| reaches ``threshold``, rounded up to
    the next allowed count (the largest |γ| first), never more than are alive."""
    g = gamma.detach().abs().float().cpu()
    alive = alive.cpu()
    above = int(((g >= threshold) & alive).sum())
    n_alive = int(alive.sum())
    n = min(next((c for c in counts if c >= above), counts[-1]), n_alive)
    score = torch.where(alive, g, torch.full_like(g, -1.0))
    keep = torch.zeros_like(alive)
    keep[torch.sort(score, descending=True, stable=True).indices[:n]] = True
    return keep


def channel_mask(model: nn.Module, groups: list[ChannelGroup],
                 alive: Mapping[str, torch.Tensor]) -> Mask:
    """A mask over the prunable weights (and the elastic blocks' BN scale and shift) that
    removes every channel not ``alive`` (``{conv weight name: bool per channel}``)."""
    params = dict(model.named_parameters())
    out: Mask = {k: torch.ones(params[k].shape, dtype=torch.bool) for k in prunable_names(model)}
    for g in groups:
        a = alive[g.conv].cpu()
        out[g.conv][~a] = False
        out[g.consumer][:, ~a] = False
        out[f"{g.bn}.weight"] = a.clone()
        out[f"{g.bn}.bias"] = a.clone()
    return out


# ----------------------------------------------------------------------------- reading a ticket
def removed_channels(model: nn.Module, mask: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``{conv weight name: bool kept per channel}`` of the elastic blocks: a channel is
    removed where the mask drops its BN scale (the ticket's structural part)."""
    out = {}
    for g in elastic_groups(model):
        key = f"{g.bn}.weight"
        n = _module(model, g.conv).out_channels
        out[g.conv] = mask[key].cpu().clone() if key in mask else torch.ones(n, dtype=torch.bool)
    return out


def searched_widths(model: nn.Module, mask: Mapping[str, torch.Tensor]) -> dict[str, float]:
    """Per stage (``layer1``, ...) the fraction of the elastic blocks' inner channels kept."""
    kept: dict[str, list[int]] = {}
    for conv, alive in removed_channels(model, mask).items():
        k = kept.setdefault(stage_of(conv), [0, 0])
        k[0] += int(alive.sum())
        k[1] += len(alive)
    return {s: a / b for s, (a, b) in sorted(kept.items())}


def structural_mask(model: nn.Module, mask: Mapping[str, torch.Tensor]) -> Mask:
    """The part of ``mask`` that removes whole channels (everything else kept)."""
    groups = elastic_groups(model)
    return channel_mask(model, groups, removed_channels(model, mask))


def slim_ticket(model: nn.Module, mask: Mapping[str, torch.Tensor]) -> nn.Module:
    """``model ⊙ mask`` with its removed channels physically gone: a deep copy, masked, then
    slimmed by ``rtstudy.vision.slim`` (the other zeros stay zeros). Its outputs equal the
    masked network's."""
    masked = copy.deepcopy(model)
    apply_mask(masked, mask)
    return slim_channel_ticket(masked, structural_mask(model, mask))


def sparse_macs(model: nn.Module, x: torch.Tensor) -> int:
    """Multiply-accumulates per example counting only non-zero weights (conv and linear)."""
    total = 0

    def conv_hook(mod: nn.Conv2d, inputs, out):
        nonlocal total
        total += out.shape[0] * out.shape[2] * out.shape[3] * int((mod.weight != 0).sum())

    def linear_hook(mod: nn.Linear, inputs, out):
        nonlocal total
        total += (out.numel() // mod.out_features) * int((mod.weight != 0).sum())

    hooks = [m.register_forward_hook(conv_hook) for m in model.modules() if isinstance(m, nn.Conv2d)]
    hooks += [m.register_forward_hook(linear_hook) for m in model.modules() if isinstance(m, nn.Linear)]
    was_training = model.training
    try:
        model.eval()
        with torch.inference_mode():
            model(x)
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    return int(total) // max(1, x.shape[0])


def ticket_costs(model: nn.Module, mask: Mapping[str, torch.Tensor] | None, x: torch.Tensor) -> dict:
    """What ``model ⊙ mask`` costs to run (``mask=None``: the dense model): ``params`` (stored
    by the slim network), ``params_nonzero``, ``macs`` (the slim network's multiply-accumulates
    per example) and ``macs_nonzero`` (its non-zero weights' only)."""
    net = copy.deepcopy(model) if mask is None else slim_ticket(model, mask)
    return {"params": sum(p.numel() for p in net.parameters()),
            "params_nonzero": sum(int((p != 0).sum()) for p in net.parameters()),
            "macs": count_macs(net, x), "macs_nonzero": sparse_macs(net, x)}


def latencies(model: nn.Module, masks: Mapping[str, Mapping[str, torch.Tensor] | None],
              x: torch.Tensor, *, repeats: int = 20) -> dict[str, float]:
    """Median seconds of a forward pass on ``x`` of each slim ticket (``None``: the dense
    model), timed round-robin (A, B, C, A, B, C, ...) so that machine load hits all alike."""
    check_int("repeats", repeats, 1)
    nets = {k: (copy.deepcopy(model) if m is None else slim_ticket(model, m)).eval()
            for k, m in masks.items()}
    times: dict[str, list[float]] = {k: [] for k in nets}
    for i in range(repeats + 1):  # the first round warms up
        for k, net in nets.items():
            t = latency(net, x, repeats=1, warmup=0)
            if i:
                times[k].append(t)
    return {k: statistics.median(v) for k, v in times.items()}
