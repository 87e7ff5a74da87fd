"""A channel ticket as a physically smaller network, and what it costs to run.

``slim_channel_ticket(model, mask)`` deep-copies ``model``, applies ``mask`` and then
removes every pruned internal filter (see ``rtstudy.core.tickets``, pattern ``"channel"``):
the conv's output channel, the matching channel of the BN after it, and the input
slice of the next conv. Because a channel mask also zeroes that BN's affine weight
and bias, a pruned channel is exactly zero in the masked network, so the slim network
computes the same function (train or eval mode; eval outputs agree to float
round-off). Written for the residual blocks rtstudy builds (its CIFAR ``BasicBlock``,
torchvision ``BasicBlock``/``Bottleneck``); no Torch-Pruning dependency graph needed,
since internal channels touch exactly three modules.
"""

from __future__ import annotations

import copy
import statistics
import time
from collections.abc import Mapping

import torch
import torch.nn as nn

from rtstudy.core.checks import check_int
from rtstudy.core.masks import apply_mask, check_mask_fits
from rtstudy.core.tickets import channel_groups, prunable_names
from rtstudy.vision.models import count_parameters


def _set_module(root: nn.Module, name: str, new: nn.Module) -> None:
    parent, _, child = name.rpartition(".")
    setattr(root.get_submodule(parent) if parent else root, child, new)


def _conv_like(old: nn.Conv2d, in_channels: int, out_channels: int) -> nn.Conv2d:
    return nn.Conv2d(
        in_channels, out_channels, old.kernel_size, old.stride, old.padding, old.dilation,
        old.groups, old.bias is not None, old.padding_mode,
        device=old.weight.device, dtype=old.weight.dtype,
    )


@torch.no_grad()
def _keep_out(conv: nn.Conv2d, keep: torch.Tensor) -> nn.Conv2d:
    new = _conv_like(conv, conv.in_channels, len(keep))
    new.weight.copy_(conv.weight[keep])
    if conv.bias is not None:
        new.bias.copy_(conv.bias[keep])
    return new


@torch.no_grad()
def _keep_in(conv: nn.Conv2d, keep: torch.Tensor) -> nn.Conv2d:
    new = _conv_like(conv, len(keep), conv.out_channels)
    new.weight.copy_(conv.weight[:, keep])
    if conv.bias is not None:
        new.bias.copy_(conv.bias)
    return new


@torch.no_grad()
def _keep_bn(bn: nn.BatchNorm2d, keep: torch.Tensor) -> nn.BatchNorm2d:
    ref = bn.weight if bn.affine else bn.running_mean
    new = nn.BatchNorm2d(
        len(keep), bn.eps, bn.momentum, bn.affine, bn.track_running_stats,
        device=ref.device, dtype=ref.dtype,
    )
    if bn.affine:
        new.weight.copy_(bn.weight[keep])
        new.bias.copy_(bn.bias[keep])
    if bn.track_running_stats:
        new.running_mean.copy_(bn.running_mean[keep])
        new.running_var.copy_(bn.running_var[keep])
        new.num_batches_tracked.copy_(bn.num_batches_tracked)
    return new


def slim_channel_ticket(model: nn.Module, mask: Mapping[str, torch.Tensor]) -> nn.Module:
    """A deep copy of ``model`` with ``mask`` applied and its pruned internal filters removed.

    ``mask`` must be a channel ticket: for every internal conv with pruned filters
    (output rows with nothing kept) the BN entries ``<block>.bn{k}.weight``/``.bias``
    must be in the mask and ``False`` there, or the masked and slim networks would
    differ; otherwise ``ValueError``. Other zeros (e.g. unstructured) stay as zeros.
    A ``Classifier``'s ``spec`` gains ``"slim": {conv weight: kept filters}``.
    """
    check_mask_fits(model, mask)
    slim = copy.deepcopy(model)
    apply_mask(slim, mask)
    modules = dict(slim.named_modules())
    kept_counts = {}
    groups = channel_groups([k for k in prunable_names(model, True, True) if k in mask], slim)
    for g in groups:
        rows = mask[g.conv].reshape(mask[g.conv].shape[0], -1).any(1).cpu()
        if bool(rows.all()):
            continue
        pruned = torch.nonzero(~rows).flatten()
        for key in (f"{g.bn}.weight", f"{g.bn}.bias"):
            if key not in mask or bool(mask[key].cpu()[pruned].any()):
                raise ValueError(
                    f"{g.conv} has {len(pruned)} fully pruned filters but the mask does not zero "
                    f"{key} there; only a channel ticket (rtstudy.core.tickets, pattern 'channel') can be slimmed"
                )
        keep = torch.nonzero(rows).flatten()
        conv_name, consumer_name = g.conv[: -len(".weight")], g.consumer[: -len(".weight")]
        conv, bn, consumer = modules[conv_name], modules[g.bn], modules[consumer_name]
        # module objects are re-read each time: a bottleneck's conv2 is consumer and producer
        new_conv = _keep_out(conv, keep.to(conv.weight.device))
        _set_module(slim, conv_name, new_conv)
        modules[conv_name] = new_conv
        _set_module(slim, g.bn, _keep_bn(bn, keep.to(conv.weight.device)))
        new_consumer = _keep_in(consumer, keep.to(consumer.weight.device))
        _set_module(slim, consumer_name, new_consumer)
        modules[consumer_name] = new_consumer
        kept_counts[g.conv] = len(keep)
    if isinstance(getattr(slim, "spec", None), dict):
        slim.spec["slim"] = kept_counts
    slim.train(model.training)
    return slim


# ----------------------------------------------------------------------------- costs
def count_macs(model: nn.Module, x: torch.Tensor) -> int:
    """Multiply-accumulates per example of a forward pass on ``x`` (conv and linear layers)."""
    total = 0

    def conv_hook(mod: nn.Conv2d, inputs, out):
        nonlocal total
        per_output = (mod.in_channels // mod.groups) * mod.kernel_size[0] * mod.kernel_size[1]
        total += out.numel() * per_output

    def linear_hook(mod: nn.Linear, inputs, out):
        nonlocal total
        total += out.numel() * mod.in_features

    hooks = []
    for mod in model.modules():
        if isinstance(mod, nn.Conv2d):
            hooks.append(mod.register_forward_hook(conv_hook))
        elif isinstance(mod, nn.Linear):
            hooks.append(mod.register_forward_hook(linear_hook))
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


def latency(model: nn.Module, x: torch.Tensor, repeats: int = 20, warmup: int = 3) -> float:
    """Median seconds of one forward pass on ``x`` (eval mode, ``torch.inference_mode``)."""
    check_int("repeats", repeats, 1)
    sync = torch.cuda.synchronize if x.device.type == "cuda" else (lambda: None)
    was_training = model.training
    model.eval()
    times = []
    try:
        with torch.inference_mode():
            for _ in range(max(0, warmup)):
                model(x)
            sync()
            for _ in range(repeats):
                t0 = time.perf_counter()
                model(x)
                sync()
                times.append(time.perf_counter() - t0)
    finally:
        model.train(was_training)
    return statistics.median(times)


def slim_summary(dense: nn.Module, slim: nn.Module, x: torch.Tensor, repeats: int = 0) -> dict:
    """Parameters and MACs of both (and median latency and speedup if ``repeats`` > 0)."""
    out = {
        "params_dense": count_parameters(dense),
        "params_slim": count_parameters(slim),
        "macs_dense": count_macs(dense, x),
        "macs_slim": count_macs(slim, x),
    }
    if repeats:
        out["latency_dense"] = latency(dense, x, repeats)
        out["latency_slim"] = latency(slim, x, repeats)
        out["speedup"] = out["latency_dense"] / out["latency_slim"]
    return out
