"""Drawing tickets: magnitude masks per pattern, random twins, IMP, reports, errors."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.utils import prune

from rtstudy.core import masks, tickets
from rtstudy.vision.models import build_model


def _model(seed: int = 0, name: str = "resnet8"):
    return build_model(name, 10, in_channels=1, image_size=28, width=1, seed=seed)


@pytest.fixture(scope="module")
def model():
    return _model()


def _nm_group_view(t: torch.Tensor, m: int) -> torch.Tensor:
    t = t if t.dim() == 2 else t.permute(0, 2, 3, 1)
    return t.reshape(-1, m)


# ----------------------------------------------------------------------------- prunable
def test_prunable_names_skip_stem_and_classifier(model):
    names = tickets.prunable_names(model)
    assert "net.conv1.weight" not in names and "net.fc.weight" not in names
    assert "net.layer1.0.conv1.weight" in names
    assert "net.layer2.0.shortcut.0.weight" in names  # 1x1 shortcuts stay prunable
    full = tickets.prunable_names(model, include_first=True, include_classifier=True)
    assert full[0] == "net.conv1.weight" and full[-1] == "net.fc.weight"
    assert len(full) == len(names) + 2


# ----------------------------------------------------------------------------- unstructured
@pytest.mark.parametrize("amount", [0.3, 0.8])
def test_global_unstructured_equals_torch_prune(model, amount):
    ours = tickets.omp(model, "unstructured", amount)
    ref = copy.deepcopy(model)
    modules = dict(ref.named_modules())
    names = tickets.prunable_names(model)
    pairs = [(modules[k[: -len(".weight")]], "weight") for k in names]
    prune.global_unstructured(pairs, pruning_method=prune.L1Unstructured, amount=amount)
    for k, (mod, _) in zip(names, pairs, strict=True):
        assert torch.equal(ours[k], mod.weight_mask.bool()), k
    assert set(ours) == set(names)
    assert masks.sparsity(ours) == pytest.approx(amount, abs=1e-4)


def test_layerwise_has_the_fraction_in_every_layer(model):
    mask = tickets.omp(model, "unstructured_layerwise", 0.6)
    for k, s in masks.layer_sparsity(mask).items():
        numel = mask[k].numel()
        assert s == pytest.approx(round(0.6 * numel) / numel), k
    # and the kept weights are the largest of their layer
    params = dict(model.named_parameters())
    for k, keep in mask.items():
        w = params[k].detach().abs()
        assert w[keep].min() >= w[~keep].max()


def test_same_inputs_same_mask_bit_for_bit(model):
    for pattern in tickets.PATTERNS:
        sparsity = 0.5
        a = tickets.omp(model, pattern, sparsity)
        b = tickets.omp(copy.deepcopy(model), pattern, sparsity)
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), pattern


# ----------------------------------------------------------------------------- N:M
@pytest.mark.parametrize("n,m", [(2, 4), (4, 8), (1, 4)])
def test_nm_at_most_n_per_group_along_inputs(model, n, m):
    mask = tickets.omp(model, "nm", 0.0, n=n, m=m, include_classifier=True)
    params = dict(model.named_parameters())
    assert "net.fc.weight" in mask  # a linear layer too
    for k, keep in mask.items():
        groups = _nm_group_view(keep, m)
        assert int(groups.sum(1).max()) <= n, k
        assert bool((groups.sum(1) == n).all()), k  # dense weights: exactly N
        w = _nm_group_view(params[k].detach().abs(), m)
        kept_min = torch.where(groups, w, torch.full_like(w, float("inf"))).min(1).values
        pruned_max = torch.where(~groups, w, torch.full_like(w, -1.0)).max(1).values
        assert bool((kept_min >= pruned_max).all()), k  # the N largest of each group
    assert masks.sparsity(mask) == pytest.approx(1 - n / m)


def test_nm_groups_run_along_the_input_dimension():
    conv = nn.Conv2d(8, 2, 1, bias=False)
    with torch.no_grad():  # magnitudes grow along the input dim: keep the last 2 of each 4
        conv.weight.copy_(torch.arange(1.0, 9.0).view(1, 8, 1, 1).repeat(2, 1, 1, 1))
    mask = tickets.magnitude_mask({"w": conv.weight}, "nm", 0.5, n=2, m=4)
    expected = torch.tensor([False, False, True, True] * 2).view(1, 8, 1, 1).repeat(2, 1, 1, 1)
    assert torch.equal(mask["w"], expected)
    assert torch.equal(masks.nm_groups(mask["w"], 4).sum(-1), torch.full((2, 2), 2))


def test_nm_errors_name_the_bad_value(model):
    with pytest.raises(ValueError, match="N=4, M=4"):
        tickets.omp(model, "nm", 0.0, n=4, m=4)
    with pytest.raises(ValueError, match="N=5"):
        tickets.omp(model, "nm", 0.0, n=5, m=4)
    with pytest.raises(ValueError, match="N=0"):
        tickets.omp(model, "nm", 0.0, n=0, m=4)
    with pytest.raises(ValueError, match=r"'net.layer1.0.conv1.weight'.*input dimension 16") as err:
        tickets.omp(model, "nm", 0.0, n=1, m=3)
    assert "M=3" in str(err.value)
    with pytest.raises(ValueError, match="0.9"):
        tickets.omp(model, "nm", 0.9, n=2, m=4)
    assert masks.sparsity(tickets.omp(model, "nm", 0.5, n=2, m=4)) == 0.5  # matching is fine


# ----------------------------------------------------------------------------- channel
def _check_channel_mask(model, mask):
    groups = tickets.channel_groups(tickets.prunable_names(model), model)
    internal = {g.conv for g in groups}
    consumers = {g.consumer: g.conv for g in groups}
    for g in groups:
        rows = mask[g.conv].reshape(mask[g.conv].shape[0], -1)
        assert bool((rows.all(1) | ~rows.any(1)).all()), f"{g.conv}: partial filters"
        pruned = ~rows.any(1)
        assert rows.shape[0] - int(pruned.sum()) >= 1
        assert torch.equal(mask[f"{g.bn}.weight"], ~pruned) and torch.equal(mask[f"{g.bn}.bias"], ~pruned)
        cols = mask[g.consumer].transpose(0, 1).reshape(mask[g.consumer].shape[1], -1)
        assert torch.equal(~cols.any(1), pruned), f"{g.consumer}: input slices"
    for k, v in mask.items():
        if v.dim() >= 2 and k not in internal and k not in consumers:
            assert bool(v.all()), f"{k} is not channel-prunable but has pruned weights"


@pytest.mark.parametrize("sparsity", [0.3, 0.5, 0.8])
def test_channel_masks_zero_whole_filters(model, sparsity):
    mask = tickets.omp(model, "channel", sparsity)
    _check_channel_mask(model, mask)
    report = tickets.mask_report(model, mask, sparsity)
    assert report["requested"] == sparsity
    assert report["achieved"] == pytest.approx(sparsity, abs=0.03)
    assert report["achieved"] == pytest.approx(masks.sparsity(mask))
    assert report["filters_pruned"] > 0 and report["companions"]
    # the lowest-norm filters went
    params = dict(model.named_parameters())
    w = params["net.layer3.0.conv1.weight"].detach()
    norms = w.reshape(w.shape[0], -1).norm(dim=1)
    pruned = ~mask["net.layer3.0.conv1.weight"].reshape(w.shape[0], -1).any(1)
    assert norms[pruned].max() <= norms[~pruned].min()


def test_channel_groups_of_torchvision_blocks():
    bottleneck = build_model("resnet50", 10, image_size=32)
    groups = tickets.channel_groups(tickets.prunable_names(bottleneck), bottleneck)
    convs = {g.conv for g in groups}
    assert "net.layer1.0.conv1.weight" in convs and "net.layer1.0.conv2.weight" in convs
    assert "net.layer1.0.conv3.weight" not in convs and "net.layer1.0.downsample.0.weight" not in convs
    assert len(groups) == 2 * 16


# ----------------------------------------------------------------------------- random twins
@pytest.mark.parametrize("pattern", tickets.PATTERNS)
def test_random_matches_layer_sparsity_and_differs(model, pattern):
    ref = tickets.omp(model, pattern, 0.5)
    a = tickets.random_mask(ref, pattern, seed=1)
    b = tickets.random_mask(ref, pattern, seed=1)
    c = tickets.random_mask(ref, pattern, seed=2)
    assert a.keys() == ref.keys()
    assert all(torch.equal(a[k], b[k]) for k in a), "same seed, same mask"
    assert any(not torch.equal(a[k], c[k]) for k in a), "different seed, different mask"
    assert masks.hamming(a, ref) > 0, "random differs from its magnitude twin"
    for k, s in masks.layer_sparsity(ref).items():
        assert masks.layer_sparsity(a)[k] == pytest.approx(s), k
    if pattern == "channel":
        _check_channel_mask(model, a)
        for k, rows in masks.surviving_channels(ref).items():
            assert len(masks.surviving_channels(a)[k]) == len(rows), k
    if pattern == "nm":
        for k, v in a.items():
            assert bool((_nm_group_view(v, 4).sum(1) == 2).all()), k


# ----------------------------------------------------------------------------- IMP
def _one_step_retrain(seed: int = 0):
    def retrain(net: nn.Module, mask) -> None:
        gen = torch.Generator().manual_seed(seed)
        x = torch.rand(16, 1, 28, 28, generator=gen)
        y = torch.randint(0, 10, (16,), generator=gen)
        opt = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
        masks.apply_mask(net, mask, opt)
        net.train()
        for _ in range(2):
            loss = F.cross_entropy(net(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()

    return retrain


def _nested(inner, outer) -> bool:
    """Every weight kept by ``inner`` is kept by ``outer``."""
    return all(bool((inner[k] <= outer[k]).all()) for k in inner if inner[k].dim() >= 2)


@pytest.mark.parametrize("pattern", ["unstructured", "unstructured_layerwise", "channel"])
def test_imp_nested_and_resumable(pattern):
    sparsity, rate = 0.6, 0.35
    schedule = tickets.imp_schedule(sparsity, rate, pattern)
    assert len(schedule) == 3 and schedule[-1] == sparsity
    net = _model()
    pretrained = {k: v.clone() for k, v in net.state_dict().items()}
    rounds = list(tickets.imp(net, pattern, sparsity, rate=rate, retrain=_one_step_retrain()))
    assert [r for r, _ in rounds] == [0, 1, 2]
    for (_, a), (_, b) in zip(rounds, rounds[1:], strict=False):
        assert _nested(b, a)
        assert masks.sparsity(b) > masks.sparsity(a)
    for (_, mask), target in zip(rounds, schedule, strict=True):
        assert masks.sparsity(mask) == pytest.approx(target, abs=0.03 if pattern == "channel" else 1e-3)
    # round 0 prunes the pretrained weights
    assert all(torch.equal(rounds[0][1][k], v) for k, v in tickets.omp(_model(), pattern, schedule[0]).items())
    # resume from round 1 on a fresh copy of the pretrained model: same final mask
    again = _model()
    again.load_state_dict(pretrained)
    resumed = list(tickets.imp(again, pattern, sparsity, rate=rate, retrain=_one_step_retrain(),
                               start=(1, rounds[1][1])))
    assert [r for r, _ in resumed] == [2]
    final, final2 = rounds[-1][1], resumed[-1][1]
    assert final.keys() == final2.keys() and all(torch.equal(final[k], final2[k]) for k in final)
    # on exit the model holds the last round's weights, pruned ones exactly zero
    params = dict(net.named_parameters())
    assert all(bool((params[k][~v] == 0).all()) for k, v in final.items())


def test_imp_nm_is_one_round():
    assert tickets.imp_schedule(0.5, 0.2, "nm") == [0.5]
    net = _model()
    calls = []
    out = list(tickets.imp(net, "nm", 0.0, retrain=lambda model, mask: calls.append(1)))
    assert len(out) == 1 and len(calls) == 1
    assert masks.sparsity(out[0][1]) == 0.5


def test_imp_schedule():
    s = tickets.imp_schedule(0.9, 0.2, "unstructured")
    assert s[0] == pytest.approx(0.2) and s[-1] == 0.9 and len(s) == 11
    assert all(b > a for a, b in zip(s, s[1:], strict=False))
    assert tickets.imp_schedule(0.2, 0.2, "unstructured") == [0.2]
    assert tickets.imp_schedule(0.0, 0.2, "unstructured") == []
    with pytest.raises(ValueError, match="1.2"):
        tickets.imp_schedule(0.5, 1.2, "unstructured")


# ----------------------------------------------------------------------------- errors and report
@pytest.mark.parametrize("bad", [-0.1, 1.0, 1.5])
def test_bad_sparsity(model, bad):
    with pytest.raises(ValueError, match=str(bad)):
        tickets.omp(model, "unstructured", bad)


def test_unknown_pattern(model):
    with pytest.raises(ValueError, match="blocky"):
        tickets.omp(model, "blocky", 0.5)
    with pytest.raises(ValueError, match="blocky"):
        tickets.random_mask(tickets.omp(model, "unstructured", 0.5), "blocky", seed=0)


def test_bad_weights_and_current(model):
    with pytest.raises(ValueError, match="net.bn1.weight"):
        tickets.magnitude_mask({"net.bn1.weight": model.net.bn1.weight}, "unstructured", 0.5)
    mask = tickets.omp(model, "unstructured", 0.5)
    mask["net.layer1.0.conv1.weight"] = torch.ones(3, 3, dtype=torch.bool)
    with pytest.raises(ValueError, match="net.layer1.0.conv1.weight"):
        tickets.omp(model, "unstructured", 0.7, current=mask)


def test_current_mask_gives_nested_masks(model):
    a = tickets.omp(model, "unstructured", 0.5)
    b = tickets.omp(model, "unstructured", 0.7, current=a)
    assert _nested(b, a) and masks.sparsity(b) == pytest.approx(0.7, abs=1e-4)
    c = tickets.omp(model, "unstructured", 0.3, current=a)  # never un-prunes
    assert all(torch.equal(a[k], c[k]) for k in a)


def test_mask_report(model):
    mask = tickets.omp(model, "unstructured", 0.5)
    report = tickets.mask_report(model, mask, 0.5)
    assert report["requested"] == 0.5 and report["achieved"] == pytest.approx(0.5, abs=1e-4)
    assert report["achieved_all"] < report["achieved"]  # stem and classifier stay dense
    assert set(report["layers"]) == set(mask)
    assert report["layers"]["net.layer1.0.conv1.weight"]["sparsity"] > 0
    with pytest.raises(ValueError, match="net.nope.weight"):
        tickets.mask_report(model, {"net.nope.weight": torch.ones(2, 2, dtype=torch.bool)}, 0.5)
