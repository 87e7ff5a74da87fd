"""Training precision: what the processor is asked, how a user forces it, what it changes."""

from __future__ import annotations

import pytest
import torch
from _tiny_models import digits

from rtstudy.core import precision as prec
from rtstudy.vision.models import build_model
from rtstudy.vision.train import EvalSet, TrainConfig, evaluate, train

CPU = torch.device("cpu")


@pytest.mark.parametrize("flags, native", [
    ({"avx2", "fma"}, False),                       # an AVX2-only CPU emulates bf16
    ({"avx512f", "avx512_bf16"}, True),
    ({"avx512f", "amx_bf16", "amx_tile"}, True),
    (set(), False),                                 # no /proc/cpuinfo: assume nothing
])
def test_native_bf16_reads_the_cpu_flags(monkeypatch, flags, native):
    monkeypatch.setattr(prec, "_cpu_flags", lambda: frozenset(flags))
    assert prec.native_bf16("cpu") is native
    monkeypatch.setenv(prec.ENV, "auto")
    assert prec.choose_precision(device="cpu") == ("bf16" if native else "fp32")


def test_requested_precision_wins_over_the_environment_and_the_hardware(monkeypatch):
    monkeypatch.setattr(prec, "_cpu_flags", lambda: frozenset({"amx_bf16"}))
    monkeypatch.delenv(prec.ENV, raising=False)
    assert prec.choose_precision(device="cpu") == "bf16"  # auto is the default
    monkeypatch.setenv(prec.ENV, "fp32")
    assert prec.choose_precision(device="cpu") == "fp32"  # the environment forces it for workers
    assert prec.choose_precision("bf16", device="cpu") == "bf16"  # an explicit choice wins


def test_bad_precision_names_the_value_and_the_choices(monkeypatch):
    monkeypatch.delenv(prec.ENV, raising=False)
    with pytest.raises(ValueError, match=r"unknown precision 'fp16'; allowed: 'fp32', 'bf16', 'auto'"):
        prec.choose_precision("fp16")
    monkeypatch.setenv(prec.ENV, "half")
    with pytest.raises(ValueError, match=r"unknown \$RTSTUDY_PRECISION 'half'"):
        prec.choose_precision()
    with pytest.raises(ValueError, match=r"unknown precision 'auto'; allowed: 'fp32', 'bf16'"):
        TrainConfig(precision="auto")  # a recipe records what it computed in, never "auto"


def test_what_a_recipe_computes_in():
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert TrainConfig(precision="fp32").compute_precision(cpu) == "fp32"
    assert TrainConfig(precision="bf16").compute_precision(cpu) == "bf16"
    assert TrainConfig(precision="fp32", amp=True).compute_precision(cuda) == "bf16"
    assert TrainConfig(precision="fp32", amp=False).compute_precision(cuda) == "fp32"
    assert not TrainConfig(precision="fp32").uses_channels_last(cpu)  # fp32 on a CPU: as before
    assert TrainConfig(precision="bf16").uses_channels_last(cpu)
    assert not TrainConfig(precision="bf16", channels_last=False).uses_channels_last(cpu)


def _digits_run(precision: str, seed: int = 0):
    x, y, tx, ty = digits(seed=0)
    model = build_model("resnet8", 10, in_channels=1, image_size=8, width=0.5, seed=0)
    cfg = TrainConfig(epochs=3, batch_size=64, lr=0.1, schedule="onecycle", precision=precision)
    history = train(model, x, y, cfg, seed=seed, device=CPU, progress=False)
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    return state, evaluate(model, EvalSet(tx, ty), CPU, precision=precision)["test_acc"], history


@pytest.fixture(scope="module")
def runs():
    return {p: _digits_run(p) for p in ("fp32", "bf16")}


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_same_seed_same_precision_same_bits(runs, precision):
    state, acc, _ = _digits_run(precision)
    first, first_acc, _ = runs[precision]
    assert state.keys() == first.keys() and all(torch.equal(state[k], first[k]) for k in state)
    assert acc == first_acc


def test_bf16_learns_what_fp32_learns(runs):
    # a ResNet-8 on 1,437 digits, 3 epochs: both reach the same test accuracy on 360 held-out
    # digits within 3 points (one test digit is 0.28 points); the weights stay fp32 in both
    (s32, acc32, _), (s16, acc16, _) = runs["fp32"], runs["bf16"]
    assert acc32 > 0.9 and acc16 > 0.9
    assert abs(acc32 - acc16) <= 0.03, (acc32, acc16)
    assert all(v.dtype == s32[k].dtype for k, v in s16.items())
    assert not all(torch.equal(s16[k], s32[k]) for k in s16)  # bf16 did compute differently


def test_bf16_training_keeps_channels_last_weights_and_the_mask_exact():
    from rtstudy.core.masks import apply_mask
    from rtstudy.core.tickets import omp

    x, y, _, _ = digits(seed=0)
    model = build_model("resnet8", 10, in_channels=1, image_size=8, width=0.5, seed=0)
    mask = omp(model, "unstructured", 0.8)
    train(model, x[:256], y[:256], TrainConfig(epochs=1, batch_size=64, precision="bf16"), device=CPU,
          progress=False, on_optimizer=lambda opt: apply_mask(model, mask, opt))
    params = dict(model.named_parameters())
    for name, keep in mask.items():
        assert torch.count_nonzero(params[name].detach()[~keep.to(params[name].device)]) == 0, name
    conv = next(p for p in model.parameters() if p.dim() == 4 and p.shape[1] > 1)
    assert conv.is_contiguous(memory_format=torch.channels_last)
