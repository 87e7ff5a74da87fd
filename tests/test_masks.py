"""Applying masks (pruned weights stay exactly zero), storing them, and their analytics."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from rtstudy.core import masks, tickets
from rtstudy.vision.models import build_model


def _model(seed: int = 0):
    return build_model("resnet8", 10, in_channels=1, image_size=28, width=1, seed=seed)


def _steps(model, opt, n: int = 5, seed: int = 0) -> None:
    gen = torch.Generator().manual_seed(seed)
    model.train()
    for _ in range(n):
        x = torch.rand(8, 1, 28, 28, generator=gen)
        y = torch.randint(0, 10, (8,), generator=gen)
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()


def _pruned_values(model, mask) -> torch.Tensor:
    params = dict(model.named_parameters())
    return torch.cat([params[k].detach()[~v].flatten() for k, v in mask.items()])


@pytest.mark.parametrize(
    "make_opt",
    [
        lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9, weight_decay=5e-4),
        lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9, weight_decay=5e-4, nesterov=True),
        lambda p: torch.optim.Adam(p, lr=1e-2),
        lambda p: torch.optim.AdamW(p, lr=1e-2, weight_decay=0.05),
    ],
    ids=["sgd", "nesterov", "adam", "adamw"],
)
@pytest.mark.parametrize("pattern", ["unstructured", "channel"])
def test_pruned_weights_stay_exactly_zero(make_opt, pattern):
    model = _model()
    mask = tickets.omp(model, pattern, 0.6)
    opt = make_opt(model.parameters())
    handle = masks.apply_mask(model, mask, opt)
    assert bool((_pruned_values(model, mask) == 0).all())
    before = {k: v.detach().clone() for k, v in model.named_parameters()}
    _steps(model, opt)
    assert bool((_pruned_values(model, mask) == 0).all())
    params = dict(model.named_parameters())
    k = "net.layer2.0.conv1.weight"
    assert not torch.equal(params[k][mask[k]], before[k][mask[k]]), "kept weights still train"
    handle.remove()
    assert not handle.attached
    if pattern == "unstructured":  # a pruned channel gets no gradient at all: it stays dead
        _steps(model, opt, n=2, seed=1)
        assert bool((_pruned_values(model, mask) != 0).any()), "remove() stops the re-zeroing"


def test_attach_and_refresh_after_dtype_change():
    model = _model()
    mask = tickets.omp(model, "unstructured", 0.5)
    handle = masks.apply_mask(model, mask)
    model.double()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    handle.attach(opt)
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(4, 1, 28, 28, generator=gen, dtype=torch.float64)
    loss = model(x).sum()
    loss.backward()
    opt.step()
    assert bool((_pruned_values(model, mask) == 0).all())


def test_apply_mask_errors_name_the_bad_key_and_shape():
    model = _model()
    mask = tickets.omp(model, "unstructured", 0.5)
    wrong = dict(mask)
    wrong["net.layer1.0.conv1.weight"] = torch.ones(16, 16, 1, 1, dtype=torch.bool)
    with pytest.raises(ValueError, match=r"net.layer1.0.conv1.weight.*\(16, 16, 1, 1\).*\(16, 16, 3, 3\)"):
        masks.apply_mask(model, wrong)
    with pytest.raises(ValueError, match="net.layer9.weight"):
        masks.apply_mask(model, {"net.layer9.weight": torch.ones(2, dtype=torch.bool)})
    with pytest.raises(ValueError, match="float32"):
        masks.apply_mask(model, {k: v.float() for k, v in mask.items()})


def test_save_load_round_trip(tmp_path):
    model = _model()
    mask = tickets.omp(model, "channel", 0.5)
    path = tmp_path / "mask.safetensors"
    masks.save_mask(path, mask, {"pattern": "channel", "sparsity": 0.5})
    loaded = masks.load_mask(path, model)
    assert loaded.meta == {"pattern": "channel", "sparsity": 0.5}
    assert loaded.keys() == mask.keys()
    assert all(loaded[k].dtype == torch.bool and torch.equal(loaded[k], mask[k]) for k in mask)


def test_load_corrupt_truncated_and_misfit(tmp_path):
    model = _model()
    mask = tickets.omp(model, "unstructured", 0.5)
    path = tmp_path / "mask.safetensors"
    masks.save_mask(path, mask, {})
    data = path.read_bytes()
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="truncated.safetensors"):
        masks.load_mask(truncated)
    corrupt = tmp_path / "corrupt.safetensors"
    corrupt.write_bytes(b"\x00garbage" * 10)
    with pytest.raises(ValueError, match="corrupt"):
        masks.load_mask(corrupt)
    with pytest.raises(FileNotFoundError, match="missing.safetensors"):
        masks.load_mask(tmp_path / "missing.safetensors")
    other = build_model("resnet8", 10, in_channels=1, image_size=28, width=2)
    with pytest.raises(ValueError, match=r"net.layer1.0.conv1.weight: mask \(16, 16, 3, 3\) vs model \(32, 32, 3, 3\)"):
        masks.load_mask(path, other)
    from rtstudy.core.store import save_tensors

    floaty = tmp_path / "float.safetensors"
    save_tensors(floaty, {k: v.float() for k, v in mask.items()})
    with pytest.raises(ValueError, match="torch.float32"):
        masks.load_mask(floaty)


def test_iou_hamming_and_sparsity():
    model = _model()
    a = tickets.omp(model, "unstructured", 0.5)
    comp = masks.complement(a)
    assert masks.iou(a, a) == 1.0
    assert masks.iou(a, comp) == 0.0
    assert all(v == 1.0 for v in masks.layer_iou(a, a).values())
    total = sum(v.numel() for v in a.values())
    assert masks.hamming(a, a) == 0 and masks.hamming(a, comp) == total
    assert masks.hamming(a, comp, normalized=True) == 1.0
    assert masks.sparsity(a) + masks.sparsity(comp) == pytest.approx(1.0)
    b = tickets.omp(model, "unstructured", 0.7)
    assert 0 < masks.iou(a, b) < 1
    assert masks.iou(a, b) == pytest.approx(0.3 / 0.5, abs=1e-3)  # b is nested in a
    with pytest.raises(ValueError, match="net.layer1.0.conv1.weight"):
        masks.iou(a, {k: v for k, v in a.items() if k != "net.layer1.0.conv1.weight"})
    bad = dict(a)
    bad["net.layer1.0.conv1.weight"] = torch.ones(2, 2, dtype=torch.bool)
    with pytest.raises(ValueError, match=r"\(2, 2\)"):
        masks.hamming(a, bad)


def test_channel_views():
    model = _model()
    mask = tickets.omp(model, "channel", 0.5)
    k = "net.layer1.0.conv1.weight"
    survival = masks.channel_survival(mask)
    assert survival[k].shape == (16,) and set(survival[k].tolist()) <= {0.0, 1.0}
    assert "net.layer1.0.bn1.weight" not in survival  # companion entries are skipped
    alive = masks.surviving_channels(mask)[k]
    assert torch.equal(alive, torch.nonzero(survival[k] > 0).flatten())
    assert masks.layer_matrix(mask[k]).shape == (16, 16 * 9)
    assert masks.layer_matrix(mask["net.layer1.0.bn1.weight"]).shape == (16, 1)
    assert set(masks.layer_sparsity(mask)) == {x for x in mask if mask[x].dim() >= 2}
    nm = tickets.omp(model, "nm", 0.0, n=2, m=4)
    groups = masks.nm_groups(nm[k], 4)
    assert groups.shape == (16, 9 * 4, 4) and bool((groups.sum(-1) == 2).all())
    with pytest.raises(ValueError, match="m=3"):
        masks.nm_groups(nm[k], 3)


def test_masks_are_strict_a_mask_of_another_architecture_is_refused():
    small, big = _model(), build_model("resnet20", 10, in_channels=1, image_size=28, width=1, seed=0)
    mask = tickets.omp(small, "unstructured", 0.5)
    assert set(mask) < set(tickets.prunable_names(big))  # resnet8's layers exist in resnet20 too
    with pytest.raises(ValueError, match=r"covers 8 of the model's 20 prunable weights.*partial=True"):
        masks.apply_mask(big, mask)
    handle = masks.apply_mask(big, mask, partial=True)  # the explicit opt-in
    assert handle.names and all(k in mask for k in handle.names)


def test_saved_mask_records_its_architecture(tmp_path):
    small, big = _model(), build_model("resnet20", 10, in_channels=1, image_size=28, width=1, seed=0)
    mask = tickets.omp(small, "unstructured", 0.5)
    path = tmp_path / "m.safetensors"
    masks.save_mask(path, mask, {"note": "x"}, model=small)
    loaded = masks.load_mask(path, small)
    assert loaded.meta["architecture"]["spec"]["name"] == "resnet8"
    assert len(loaded.meta["architecture"]["prunable"]) == 8 and loaded.meta["note"] == "x"
    with pytest.raises(ValueError, match=r"drawn from a Classifier \(resnet8, 8 prunable.*resnet20, 20"):
        masks.load_mask(path, big)
    assert set(masks.load_mask(path, big, partial=True)) == set(mask)
