"""The training loop: schedules, step counts, config checks, adversarial and masked training."""

from __future__ import annotations

import json
import math

import pytest
import torch
from _tiny_models import digits

from rtstudy.core import masks
from rtstudy.vision import train as train_mod
from rtstudy.vision.attacks import AttackConfig
from rtstudy.vision.models import build_model
from rtstudy.vision.train import (
    NO_ATTACK,
    EvalSet,
    TrainConfig,
    evaluate,
    lr_at,
    make_optimizer,
    train,
)

CPU = torch.device("cpu")
ROW_KEYS = {"epoch", "step", "train_loss", "train_acc", "seconds", "img_per_s"}


def _data(n: int = 40, classes: int = 4, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return torch.rand(n, 1, 8, 8, generator=gen), torch.arange(n) % classes


def _model(seed: int = 0) -> torch.nn.Module:
    return build_model("resnet8", 4, in_channels=1, image_size=8, width=0.25, seed=seed)


def _cfg(**changes) -> TrainConfig:
    base = TrainConfig(epochs=1, batch_size=8, lr=0.05, schedule="constant", amp=False)
    return base.with_(**changes)


def _state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


# ------------------------------------------------------------------------- schedules


def test_constant_schedule_is_flat():
    cfg = TrainConfig(lr=0.3, schedule="constant")
    assert [lr_at(s, 100, cfg) for s in (0, 50, 99, 100)] == [0.3] * 4


def test_cosine_schedule_start_middle_end():
    cfg = TrainConfig(lr=0.2, schedule="cosine")
    assert lr_at(0, 100, cfg) == pytest.approx(0.2)
    assert lr_at(25, 100, cfg) == pytest.approx(0.1 * (1 + math.cos(math.pi / 4)))
    assert lr_at(50, 100, cfg) == pytest.approx(0.1)
    assert lr_at(100, 100, cfg) == pytest.approx(0.0, abs=1e-12)
    values = [lr_at(s, 100, cfg) for s in range(101)]
    assert all(a >= b for a, b in zip(values, values[1:], strict=False))


def test_onecycle_warms_up_then_decays_to_zero():
    cfg = TrainConfig(lr=0.1, schedule="onecycle", warmup=0.25)
    assert lr_at(0, 100, cfg) == 0.0
    assert lr_at(10, 100, cfg) == pytest.approx(0.04)
    assert lr_at(25, 100, cfg) == pytest.approx(0.1)  # the peak at the end of warm-up
    assert lr_at(50, 100, cfg) == pytest.approx(0.1 * 0.5 / 0.75)
    assert lr_at(100, 100, cfg) == 0.0
    assert max(lr_at(s, 100, cfg) for s in range(101)) == pytest.approx(0.1)


def test_schedule_with_no_steps_does_not_divide_by_zero():
    assert lr_at(0, 0, TrainConfig(lr=0.1, schedule="cosine")) == pytest.approx(0.1)


def test_the_last_step_uses_the_scheduled_rate():
    x, y = _data()
    cfg = _cfg(schedule="cosine", epochs=2)  # 5 steps per epoch, 10 in all
    seen = []
    train(_model(), x, y, cfg, device=CPU, on_optimizer=seen.append)
    assert seen[0].param_groups[0]["lr"] == pytest.approx(lr_at(9, 10, cfg))


# ---------------------------------------------------------------------- step counts


def test_epochs_fraction_and_min_steps_set_the_step_count():
    x, y = _data(42)  # batch 8: 5 full batches per epoch, the last 2 samples dropped
    one = train(_model(), x, y, _cfg(), device=CPU)
    assert [(r["epoch"], r["step"]) for r in one] == [(1, 5)]
    assert set(one[0]) == ROW_KEYS
    part = train(_model(), x, y, _cfg(epochs=0.4), device=CPU)
    assert [(r["epoch"], r["step"]) for r in part] == [(1, 2)]
    more = train(_model(), x, y, _cfg(min_steps=12), device=CPU)
    assert [(r["epoch"], r["step"]) for r in more] == [(1, 5), (2, 10), (3, 12)]
    fewer = train(_model(), x, y, _cfg(epochs=2, min_steps=3), device=CPU)
    assert [r["step"] for r in fewer] == [5, 10], "min_steps is a floor, not a cap"


def test_batch_larger_than_the_data_still_makes_one_step():
    x, y = _data(6)
    history = train(_model(), x, y, _cfg(batch_size=128), device=CPU)
    assert [(r["epoch"], r["step"]) for r in history] == [(1, 1)]


def test_no_training_data_is_an_error():
    x, y = _data()
    with pytest.raises(ValueError, match="at least one training sample"):
        train(_model(), x[:0], y[:0], _cfg(), device=CPU)


# ---------------------------------------------------------------------- the config


@pytest.mark.parametrize("field, bad", [
    ("epochs", 0),
    ("epochs", -1.0),
    ("min_steps", -1),
    ("min_steps", 1.5),
    ("batch_size", 0),
    ("batch_size", 2.5),
    ("batch_size", True),
    ("lr", 0.0),
    ("lr", "0.1"),
    ("momentum", 1.0),
    ("momentum", -0.1),
    ("weight_decay", -1e-4),
    ("weight_decay", 1.5),
    ("optimizer", "rmsprop"),
    ("schedule", "step"),
    ("warmup", 1.0),
    ("warmup", -0.5),
    ("label_smoothing", 1.0),
    ("augment", "yes"),
    ("amp", 1),
    ("channels_last", None),
    ("attack", None),
    ("attack", "pgd"),
])
def test_every_bad_field_is_named(field, bad):
    with pytest.raises(ValueError) as err:
        TrainConfig(**{field: bad})
    assert field in str(err.value) and repr(bad) in str(err.value)


def test_bad_attack_dict_is_named():
    with pytest.raises(ValueError, match="epsilon"):
        TrainConfig(attack={"epsilon": 0.1})
    with pytest.raises(ValueError, match="steps=0"):
        TrainConfig(attack={"kind": "pgd", "eps": 0.1, "steps": 0})


def test_config_round_trips_through_json():
    cfg = TrainConfig(epochs=2.5, min_steps=7, batch_size=16, lr=0.02, optimizer="adam",
                      schedule="cosine", augment=True,
                      attack=AttackConfig(kind="pgd", norm="l2", eps=0.5, steps=3))
    d = cfg.to_dict()
    assert d["attack"] == {"kind": "pgd", "norm": "l2", "eps": 0.5, "steps": 3, "alpha": None,
                           "random_start": True}
    assert d["epochs"] == 2.5 and d["min_steps"] == 7 and d["optimizer"] == "adam"
    again = TrainConfig.from_dict(json.loads(json.dumps(d)))
    assert again == cfg and isinstance(again.attack, AttackConfig)
    assert again.to_dict() == d
    assert TrainConfig().to_dict()["attack"] == NO_ATTACK.to_dict()


def test_with_changes_a_copy_and_validates():
    cfg = TrainConfig(lr=0.1)
    other = cfg.with_(lr=0.5, schedule="constant")
    assert (other.lr, other.schedule) == (0.5, "constant")
    assert (cfg.lr, cfg.schedule) == (0.1, "onecycle")
    assert other.with_(lr=0.1, schedule="onecycle") == cfg
    with pytest.raises(ValueError, match="lr"):
        cfg.with_(lr=0)
    with pytest.raises(ValueError, match="steps"):
        cfg.with_(attack={"kind": "pgd", "eps": 0.1, "steps": -2})


def test_make_optimizer():
    params = list(_model().parameters())
    sgd = make_optimizer(params, TrainConfig(lr=0.3, momentum=0.8, weight_decay=1e-3))
    assert type(sgd) is torch.optim.SGD
    group = sgd.param_groups[0]
    assert (group["lr"], group["momentum"], group["weight_decay"], group["nesterov"]) == (0.3, 0.8, 1e-3, True)
    plain = make_optimizer(params, TrainConfig(momentum=0.0))
    assert plain.param_groups[0]["nesterov"] is False
    adam = make_optimizer(params, TrainConfig(optimizer="adam", lr=1e-3, weight_decay=0.01))
    assert type(adam) is torch.optim.AdamW
    assert (adam.param_groups[0]["lr"], adam.param_groups[0]["weight_decay"]) == (1e-3, 0.01)


# ------------------------------------------------------------------------ training


def test_same_seed_same_weights_other_seed_other_weights():
    x, y = _data()
    runs = []
    for seed in (0, 0, 1):
        model = _model()
        train(model, x, y, _cfg(), seed=seed, device=CPU)
        runs.append(_state(model))
    assert _same(runs[0], runs[1])
    assert not _same(runs[0], runs[2])


def test_it_learns():
    x, y, _, _ = digits()
    x, y = x[:256], y[:256]
    model = build_model("resnet8", 10, in_channels=1, image_size=8, width=0.5, seed=0)
    cfg = TrainConfig(epochs=8, batch_size=32, lr=0.01, optimizer="adam", weight_decay=0.0,
                      schedule="constant", amp=False)
    history = train(model, x, y, cfg, device=CPU)
    assert len(history) == 8
    assert history[-1]["train_loss"] < 0.5 * history[0]["train_loss"]
    assert history[-1]["train_acc"] > 0.8
    assert not model.training, "train leaves the model in eval mode"


def test_params_restricts_what_is_trained():
    x, y = _data()
    model = _model()
    before = _state(model)
    train(model, x, y, _cfg(), device=CPU, params=model.head.parameters())
    after = _state(model)
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert {"net.fc.weight", "net.fc.bias"} <= changed
    assert all(k.startswith("net.fc.") or "running" in k or "num_batches" in k for k in changed)


class _PerturbSpy:
    """Wraps ``perturb``: counts calls and records whether the model was in eval mode."""

    def __init__(self):
        self.real = train_mod.perturb
        self.modes: list[bool] = []

    def __call__(self, model, x, y, cfg):
        self.modes.append(model.training)
        return self.real(model, x, y, cfg)


@pytest.mark.parametrize("attack", [
    AttackConfig(kind="fgsm_rs", eps=0.1),
    AttackConfig(kind="pgd", eps=0.1, steps=2),
    AttackConfig(kind="pgd", norm="l2", eps=0.5, steps=2),
])
def test_adversarial_training_perturbs_every_step(monkeypatch, attack):
    x, y = _data()
    natural = _model()
    train(natural, x, y, _cfg(), device=CPU)
    spy = _PerturbSpy()
    monkeypatch.setattr(train_mod, "perturb", spy)
    model = _model()
    before = _state(model)
    history = train(model, x, y, _cfg(attack=attack), device=CPU)
    assert len(spy.modes) == history[-1]["step"] == 5
    assert not any(spy.modes), "adversarial examples are crafted in eval mode"
    after = _state(model)
    assert not _same(before, after), "adversarial training changes the weights"
    assert not _same(after, _state(natural)), "and not the way natural training does"


@pytest.mark.parametrize("attack", [
    NO_ATTACK,
    AttackConfig(kind="none", eps=0.0),
    AttackConfig(kind="pgd", eps=0.0),  # a zero budget is no attack
])
def test_no_attack_is_natural_training(monkeypatch, attack):
    x, y = _data()
    natural = _model()
    train(natural, x, y, _cfg(), device=CPU)
    spy = _PerturbSpy()
    monkeypatch.setattr(train_mod, "perturb", spy)
    model = _model()
    train(model, x, y, _cfg(attack=attack), device=CPU)
    assert spy.modes == []
    assert _same(_state(model), _state(natural))


def _random_mask(model: torch.nn.Module, seed: int = 0) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return {k: torch.rand(p.shape, generator=gen) > 0.5
            for k, p in model.named_parameters() if p.dim() >= 2}


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_mask_hook_keeps_pruned_weights_exactly_zero(optimizer):
    x, y = _data()
    model = _model()
    mask = _random_mask(model)
    before = _state(model)
    cfg = _cfg(epochs=2, optimizer=optimizer, weight_decay=0.01)
    train(model, x, y, cfg, device=CPU, on_optimizer=lambda opt: masks.apply_mask(model, mask, opt))
    params = dict(model.named_parameters())
    for k, keep in mask.items():
        assert bool((params[k][~keep] == 0).all()), f"{k}: a pruned weight came back"
        assert not torch.equal(params[k][keep], before[k][keep]), f"{k}: kept weights did not train"


def test_without_the_hook_pruned_weights_come_back():
    x, y = _data()
    model = _model()
    mask = _random_mask(model)
    masks.apply_mask(model, mask)  # zeroed once, no optimiser attached
    train(model, x, y, _cfg(weight_decay=0.01), device=CPU)
    k = "net.conv1.weight"
    assert bool((model.state_dict()[k][~mask[k]] != 0).any())


# ------------------------------------------------------------------------ evaluation


def test_evaluate_metrics():
    x, y = _data(24)
    model = _model().eval()
    clean = evaluate(model, EvalSet(x, y), CPU)
    assert set(clean) == {"test_acc"}
    expected = (model(x).argmax(1) == y).float().mean().item()
    assert clean["test_acc"] == pytest.approx(expected)
    none = evaluate(model, EvalSet(x, y, attack=AttackConfig(kind="none", eps=0.0)), CPU)
    assert set(none) == {"test_acc"}
    robust = evaluate(model, EvalSet(x, y, attack=AttackConfig(kind="pgd", eps=0.3, steps=3),
                                     robust_n=5), CPU, batch_size=4)
    assert set(robust) == {"test_acc", "robust_acc"}
    assert robust["test_acc"] == pytest.approx(expected)
    assert 0.0 <= robust["robust_acc"] <= 1.0
    assert robust["robust_acc"] * 5 == pytest.approx(round(robust["robust_acc"] * 5)), "n = robust_n"


def test_history_carries_eval_metrics():
    x, y = _data()
    ev = EvalSet(x[:16], y[:16], attack=AttackConfig(kind="fgsm_rs", eps=0.1), robust_n=8)
    every = train(_model(), x, y, _cfg(min_steps=10), device=CPU, eval_set=ev)
    assert [set(r) for r in every] == [ROW_KEYS | {"test_acc", "robust_acc"}] * 2
    last = train(_model(), x, y, _cfg(min_steps=10), device=CPU, eval_set=ev, eval_every_epoch=False)
    assert [set(r) for r in last] == [ROW_KEYS, ROW_KEYS | {"test_acc", "robust_acc"}]
