"""Attacks: agreement with torchattacks, gradient-masking checks, side effects, bad inputs."""

from __future__ import annotations

import copy
import math

import pytest
import torch
import torchattacks
from _tiny_models import digits, train_tiny_cnn

from rtstudy.vision.attacks import (
    AttackConfig,
    L2Threat,
    LinfThreat,
    accuracy,
    fgsm_rs,
    make_threat,
    perturb,
    pgd,
    robust_accuracy,
)

LINF_EPS, L2_EPS = 0.1, 0.5  # budgets where the tiny CNN keeps ~50% robust accuracy


@pytest.fixture(scope="module", params=["fp32", "bf16"])
def setup(request):
    """(model, x, y, x_test, y_test): a tiny CNN trained on 8x8 digits in fp32 or bf16 (every
    check holds for a model trained in either precision); x, y: 1,000 digits."""
    x_tr, y_tr, x_te, y_te = digits(seed=0)
    model = train_tiny_cnn(x_tr, y_tr, seed=0, precision=request.param)
    x, y = torch.cat([x_te, x_tr])[:1000], torch.cat([y_te, y_tr])[:1000]
    return model, x, y, x_te, y_te


def _acc(model, x_adv, y) -> float:
    with torch.no_grad():
        return (model(x_adv).argmax(1) == y).float().mean().item()


def _eps(norm: str) -> float:
    return LINF_EPS if norm == "linf" else L2_EPS


def test_tiny_cnn_is_accurate(setup):
    model, _, _, x_te, y_te = setup
    assert accuracy(model, x_te, y_te) > 0.90


# ---------------------------------------------------------- agreement with references


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_pgd_agrees_with_torchattacks(setup, norm):
    model, x, y, _, _ = setup
    eps, steps = _eps(norm), 10
    alpha = 2.5 * eps / steps
    ref_cls = torchattacks.PGD if norm == "linf" else torchattacks.PGDL2
    ours, ref = [], []
    for seed in range(2):
        torch.manual_seed(seed)
        ours.append(_acc(model, pgd(model, x, y, eps=eps, alpha=alpha, steps=steps, norm=norm), y))
        torch.manual_seed(seed)
        ref.append(_acc(model, ref_cls(model, eps=eps, alpha=alpha, steps=steps)(x, y), y))
    mean_ours, mean_ref = sum(ours) / 2, sum(ref) / 2
    assert 0.2 < mean_ref < 0.8  # a budget where the comparison means something
    assert abs(mean_ours - mean_ref) <= 0.015, (ours, ref)


def test_pgd20_agrees_with_apgd(setup):
    model, x, y, _, _ = setup
    x, y = x[:400], y[:400]
    torch.manual_seed(0)
    ours = _acc(model, pgd(model, x, y, eps=LINF_EPS, alpha=2.5 * LINF_EPS / 20, steps=20), y)
    apgd = torchattacks.APGD(model, norm="Linf", eps=LINF_EPS, steps=20, n_restarts=1,
                             loss="ce", seed=0)
    ref = _acc(model, apgd(x, y), y)
    assert abs(ours - ref) <= 0.03, (ours, ref)


# ------------------------------------------------------------ gradient-masking checks


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_tiny_eps_gives_clean_accuracy(setup, norm):
    model, x, y, _, _ = setup
    clean = accuracy(model, x, y)
    torch.manual_seed(0)
    assert robust_accuracy(model, x, y, AttackConfig(norm=norm, eps=1e-6)) == pytest.approx(
        clean, abs=0.002)


@pytest.mark.parametrize("norm, epsilons", [
    ("linf", [0.0, 0.05, 0.1, 0.2, 0.3]),
    ("l2", [0.0, 0.25, 0.5, 1.0, 2.0]),
])
def test_accuracy_falls_as_eps_grows(setup, norm, epsilons):
    model, x, y, _, _ = setup
    x, y = x[:600], y[:600]
    torch.manual_seed(0)
    accs = [robust_accuracy(model, x, y, AttackConfig(norm=norm, eps=e)) for e in epsilons]
    assert all(b <= a + 0.005 for a, b in zip(accs, accs[1:], strict=False)), accs
    assert accs[0] > 0.9 and accs[-1] < 0.02, accs


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_pgd_is_stronger_than_fgsm_rs(setup, norm):
    model, x, y, _, _ = setup
    torch.manual_seed(0)
    acc_pgd = robust_accuracy(model, x, y, AttackConfig(kind="pgd", norm=norm, eps=_eps(norm)))
    acc_fgsm = robust_accuracy(model, x, y, AttackConfig(kind="fgsm_rs", norm=norm, eps=_eps(norm)))
    assert acc_pgd <= acc_fgsm + 0.005, (acc_pgd, acc_fgsm)
    assert acc_fgsm < accuracy(model, x, y)


@pytest.mark.parametrize("kind", ["pgd", "fgsm_rs"])
@pytest.mark.parametrize("norm", ["linf", "l2"])
@pytest.mark.parametrize("alpha", [None, 10.0])  # a huge step stresses the projection
def test_perturbation_stays_in_ball_and_box(setup, kind, norm, alpha):
    model, x, y, _, _ = setup
    eps = _eps(norm)
    x_adv = perturb(model, x, y, AttackConfig(kind=kind, norm=norm, eps=eps, alpha=alpha))
    assert x_adv.shape == x.shape and x_adv.dtype == x.dtype
    assert x_adv.min() >= 0 and x_adv.max() <= 1
    delta = x_adv - x
    if norm == "linf":
        assert delta.abs().max() <= eps + 1e-6
    else:
        assert delta.flatten(1).norm(dim=1).max() <= eps + 1e-5
    assert delta.abs().max() > 0


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_threat_verbs(norm):
    torch.manual_seed(0)
    x = torch.rand(64, 3, 4, 4)
    threat = make_threat(norm, 0.3)
    start = threat.random_perturb(x)
    assert start.shape == x.shape
    big = threat.project(threat.step(start, torch.randn_like(x), alpha=5.0))
    if norm == "linf":
        assert start.abs().max() <= 0.3 and big.abs().max() <= 0.3 + 1e-7
    else:
        assert start.flatten(1).norm(dim=1).max() <= 0.3 + 1e-6
        assert big.flatten(1).norm(dim=1) == pytest.approx(torch.full((64,), 0.3), abs=1e-5)
    zero = torch.zeros_like(x)  # zero gradients and zero deltas must not produce nan
    assert torch.equal(threat.project(threat.step(zero, zero, alpha=1.0)), zero)


def test_l2_ball_start_is_inside_the_ball():
    torch.manual_seed(0)
    start = L2Threat(0.5, init="ball").random_perturb(torch.rand(256, 1, 8, 8))
    norms = start.flatten(1).norm(dim=1)
    assert norms.max() <= 0.5 + 1e-6 and norms.min() > 0.3  # by volume: near the surface


def test_targeted_pgd_reaches_the_target(setup):
    model, x, y, _, _ = setup
    target = (y + 1) % 10
    torch.manual_seed(0)
    x_adv = pgd(model, x, target, eps=0.2, alpha=0.05, steps=10, targeted=True)
    with torch.no_grad():
        hit = (model(x_adv).argmax(1) == target).float().mean().item()
    assert hit > 0.5  # chance is 0.1


def test_custom_per_sample_loss_is_summed(setup):
    model, x, y, _, _ = setup
    x, y = x[:200], y[:200]
    per_sample = lambda logits, y: torch.nn.functional.cross_entropy(logits, y, reduction="none")  # noqa: E731
    torch.manual_seed(0)
    want = pgd(model, x, y, eps=0.1, alpha=0.025, steps=3)
    torch.manual_seed(0)
    got = pgd(model, x, y, eps=0.1, alpha=0.025, steps=3, loss_fn=per_sample)
    assert torch.allclose(got, want, atol=1e-6)


# --------------------------------------------------------------------- side effects


def test_attacks_create_no_param_grads_and_restore_mode(setup):
    model = copy.deepcopy(setup[0])
    x, y = setup[1][:256], setup[2][:256]
    model.fc.bias.requires_grad_(False)
    flags = [p.requires_grad for p in model.parameters()]
    cfg = AttackConfig(eps=LINF_EPS, steps=3)
    for training in (False, True):
        model.train(training)
        pgd(model, x, y, eps=0.1, alpha=0.03, steps=2)
        fgsm_rs(model, x, y, eps=0.1, norm="l2")
        perturb(model, x, y, cfg)
        assert model.training is training
        robust_accuracy(model, x, y, cfg, batch_size=100)
        accuracy(model, x, y, batch_size=100)
        assert model.training is training
    assert all(p.grad is None for p in model.parameters())
    assert [p.requires_grad for p in model.parameters()] == flags


def test_accuracy_runs_in_eval_mode(setup):
    model = copy.deepcopy(setup[0])
    x, y = setup[1][:300], setup[2][:300]
    want_clean = accuracy(model, x, y)
    torch.manual_seed(0)
    want_robust = robust_accuracy(model, x, y, AttackConfig(eps=LINF_EPS))
    model.train()
    stats = model.bn1.running_mean.clone()
    assert accuracy(model, x, y, batch_size=100) == want_clean
    torch.manual_seed(0)
    assert robust_accuracy(model, x, y, AttackConfig(eps=LINF_EPS), progress=True) == pytest.approx(
        want_robust, abs=0.005)
    assert torch.equal(model.bn1.running_mean, stats)  # batch-norm statistics untouched


def test_attack_runs_in_the_callers_mode(setup):
    model = copy.deepcopy(setup[0]).train()
    stats = model.bn1.running_mean.clone()
    pgd(model, setup[1][:64], setup[2][:64], eps=0.1, alpha=0.03, steps=2)
    assert model.training and not torch.equal(model.bn1.running_mean, stats)


def test_works_under_no_grad_autocast_and_frozen_weights(setup):
    model, x, y, _, _ = setup
    x, y = x[:512], y[:512]
    clean = _acc(model, x, y)
    with torch.no_grad():
        assert _acc(model, pgd(model, x, y, eps=0.2, alpha=0.05, steps=5), y) < clean - 0.3
    with torch.autocast("cpu", dtype=torch.bfloat16):
        x_adv = pgd(model, x, y, eps=0.2, alpha=0.05, steps=5)
    assert x_adv.dtype == torch.float32 and (x_adv - x).abs().max() <= 0.2 + 1e-6
    assert _acc(model, x_adv, y) < clean - 0.3
    frozen = copy.deepcopy(model).requires_grad_(False)
    assert _acc(frozen, pgd(frozen, x, y, eps=0.2, alpha=0.05, steps=5), y) < clean - 0.3


def test_no_attack_returns_x_unchanged(setup):
    model, x, y, _, _ = setup
    for cfg in (AttackConfig(kind="none", eps=0.0), AttackConfig(eps=0.0)):
        assert torch.equal(perturb(model, x, y, cfg), x)
        assert robust_accuracy(model, x, y, cfg) == accuracy(model, x, y)
    assert torch.equal(pgd(model, x, y, eps=0, alpha=0.1, steps=3), x)
    assert torch.equal(fgsm_rs(model, x, y, eps=0), x)


# --------------------------------------------------------------------------- config


def test_attack_config_defaults_and_round_trip():
    cfg = AttackConfig(eps=8 / 255)
    assert (cfg.kind, cfg.norm, cfg.steps, cfg.random_start) == ("pgd", "linf", 10, True)
    assert cfg.step_size == pytest.approx(2.5 * (8 / 255) / 10)
    assert AttackConfig(kind="fgsm_rs", eps=0.1).step_size == pytest.approx(0.125)
    assert AttackConfig(eps=0.1, alpha=0.02).step_size == 0.02
    assert AttackConfig(kind="none", eps=0).step_size == 0.0
    assert AttackConfig.from_dict(cfg.to_dict()) == cfg
    assert AttackConfig(eps=1).to_dict()["eps"] == 1.0 and isinstance(AttackConfig(eps=1).eps, float)
    assert hash(cfg) == hash(AttackConfig(eps=8 / 255))
    with pytest.raises(AttributeError):
        cfg.eps = 0.5


# ----------------------------------------------------------------------- bad inputs


@pytest.mark.parametrize("kwargs, bad", [
    (dict(kind="cw", eps=0.1), "cw"),
    (dict(norm="l1", eps=0.1), "l1"),
    (dict(eps=-0.1), "-0.1"),
    (dict(eps=math.nan), "nan"),
    (dict(eps=0.1, steps=0), "0"),
    (dict(eps=0.1, steps=2.5), "2.5"),
    (dict(eps=0.1, alpha=0.0), "0.0"),
    (dict(eps=0.1, alpha=-0.01), "-0.01"),
    (dict(kind="none", eps=0.3), "0.3"),
    (dict(eps=0.1, random_start="yes"), "yes"),
])
def test_bad_attack_config_raises(kwargs, bad):
    with pytest.raises(ValueError) as err:
        AttackConfig(**kwargs)
    assert bad in str(err.value)


def test_bad_from_dict_raises():
    with pytest.raises(ValueError, match="epsilon"):
        AttackConfig.from_dict({"epsilon": 0.1})


@pytest.mark.parametrize("make, bad", [
    (lambda: LinfThreat(-1.0), "-1.0"),
    (lambda: L2Threat(0.5, init="sphere"), "sphere"),
    (lambda: make_threat("L3", 0.1), "L3"),
])
def test_bad_threat_raises(make, bad):
    with pytest.raises(ValueError) as err:
        make()
    assert bad in str(err.value)


@pytest.mark.parametrize("call, bad", [
    (lambda m, x, y: pgd(m, x, y, eps=-0.5, alpha=0.1, steps=3), "-0.5"),
    (lambda m, x, y: pgd(m, x, y, eps=0.1, alpha=0.1, steps=0), "0"),
    (lambda m, x, y: pgd(m, x, y, eps=0.1, alpha=-2.0, steps=3), "-2.0"),
    (lambda m, x, y: pgd(m, x, y, eps=0.1, alpha=0.1, steps=3, norm="l0"), "l0"),
    (lambda m, x, y: fgsm_rs(m, x, y, eps=-3.0), "-3.0"),
    (lambda m, x, y: pgd(m, x, y[:5], eps=0.1, alpha=0.1, steps=3), "5"),
    (lambda m, x, y: pgd(m, (x * 16).long(), y, eps=0.1, alpha=0.1, steps=3), "torch.int64"),
    (lambda m, x, y: accuracy(m, x, y, batch_size=0), "0"),
    (lambda m, x, y: robust_accuracy(m, x, y, AttackConfig(eps=0.1), batch_size=-3), "-3"),
    (lambda m, x, y: accuracy(m, x[:0], y[:0]), "empty"),
])
def test_bad_attack_arguments_raise(setup, call, bad):
    model, x, y, _, _ = setup
    with pytest.raises(ValueError) as err:
        call(model, x[:20], y[:20])
    assert bad in str(err.value)
