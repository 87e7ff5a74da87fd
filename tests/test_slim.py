"""A channel ticket as a physically smaller network: same outputs, fewer params/MACs, faster."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn as nn

from rtstudy.core import masks, tickets
from rtstudy.vision import slim
from rtstudy.vision.models import build_model, count_parameters


def _randomize_bn(model: nn.Module, seed: int = 0) -> None:
    """Non-trivial BN statistics and affine terms, so a missed BN shows up."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for mod in model.modules():
            if isinstance(mod, nn.BatchNorm2d):
                c = mod.num_features
                mod.weight.copy_(0.5 + torch.rand(c, generator=gen))
                mod.bias.copy_(torch.rand(c, generator=gen) - 0.5)
                mod.running_mean.copy_(torch.rand(c, generator=gen) - 0.5)
                mod.running_var.copy_(0.5 + torch.rand(c, generator=gen))


def _masked(model, mask):
    out = copy.deepcopy(model)
    masks.apply_mask(out, mask)
    return out


@pytest.mark.parametrize(
    "name,kw",
    [
        ("resnet8", dict(in_channels=1, image_size=28)),
        ("resnet18", dict(in_channels=3, image_size=32)),
        ("resnet50", dict(in_channels=3, image_size=32)),
    ],
)
def test_slim_equals_masked(name, kw):
    model = build_model(name, 10, seed=0, **kw)
    _randomize_bn(model)
    model.eval()
    mask = tickets.omp(model, "channel", 0.5)
    small = slim.slim_channel_ticket(model, mask)
    masked = _masked(model, mask)
    x = torch.rand(2, kw["in_channels"], kw["image_size"], kw["image_size"], generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        ref, out = masked(x), small(x)
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)
    summary = slim.slim_summary(model, small, x)
    assert summary["params_slim"] < summary["params_dense"]
    assert summary["macs_slim"] < summary["macs_dense"]
    assert summary["params_dense"] - summary["params_slim"] >= masks.sparsity(mask) * 0.9 * sum(
        v.numel() for v in mask.values() if v.dim() >= 2
    )
    assert small.spec["slim"]
    # the original is untouched
    assert all(bool(p.ne(0).any()) for p in model.parameters() if p.dim() >= 2)
    if name == "resnet8":
        small.train(), masked.train()
        torch.testing.assert_close(small(x), masked(x), atol=1e-5, rtol=1e-5)


def test_macs_agree_with_torch_pruning():
    tp = pytest.importorskip("torch_pruning")
    model = build_model("resnet8", 10, in_channels=1, image_size=28)
    small = slim.slim_channel_ticket(model, tickets.omp(model, "channel", 0.5))
    x = torch.rand(1, 1, 28, 28)
    for net in (model, small):
        ops, params = tp.utils.count_ops_and_params(net, x)
        assert params == count_parameters(net)
        assert slim.count_macs(net, x) == pytest.approx(ops, rel=0.05)  # tp adds BN/pool ops


def test_slim_needs_a_channel_ticket():
    model = build_model("resnet8", 10, in_channels=1, image_size=28)
    mask = tickets.omp(model, "unstructured", 0.3)
    k = "net.layer1.0.conv1.weight"
    mask[k][3] = False  # a whole filter, but its BN is not zeroed
    with pytest.raises(ValueError, match="net.layer1.0.bn1.weight"):
        slim.slim_channel_ticket(model, mask)
    unstructured = tickets.omp(model, "unstructured", 0.3)
    assert count_parameters(slim.slim_channel_ticket(model, unstructured)) == count_parameters(model)


def test_slim_resnet20_is_faster():
    torch.manual_seed(0)
    model = build_model("resnet20", 10, image_size=32, width=2, seed=0).eval()
    mask = tickets.omp(model, "channel", 0.5)
    small = slim.slim_channel_ticket(model, mask)
    x = torch.rand(64, 3, 32, 32)
    with torch.inference_mode():
        torch.testing.assert_close(small(x), _masked(model, mask)(x), atol=1e-5, rtol=1e-5)
    summary = slim.slim_summary(model, small, x, repeats=5)
    print(
        f"\nresnet20 w2 32x32 batch 64, channel 50% (achieved {masks.sparsity(mask):.3f}): "
        f"params {summary['params_dense']} -> {summary['params_slim']}, "
        f"MACs {summary['macs_dense']} -> {summary['macs_slim']}, "
        f"latency {summary['latency_dense'] * 1e3:.1f} -> {summary['latency_slim'] * 1e3:.1f} ms, "
        f"speedup x{summary['speedup']:.2f}"
    )
    assert summary["macs_slim"] < 0.6 * summary["macs_dense"]


def test_latency_validates_repeats():
    model = build_model("resnet8", 10, in_channels=1, image_size=28)
    with pytest.raises(ValueError, match="0"):
        slim.latency(model, torch.rand(1, 1, 28, 28), repeats=0)
    assert slim.latency(model, torch.rand(1, 1, 28, 28), repeats=2) > 0
