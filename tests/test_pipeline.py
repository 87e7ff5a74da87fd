"""The three stages on the smoke profile: reuse, masks through finetuning, probes, fractions, IMP resume."""

import pytest
import torch

from rtstudy.core import pipeline
from rtstudy.core.pipeline import draw_ticket, pretrain, transfer
from rtstudy.core.store import Store
from rtstudy.profiles import get_profile
from rtstudy.vision import track as vision_track


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    store = Store(tmp_path_factory.mktemp("store"))
    profile = get_profile("smoke")
    natural = pretrain(profile.source_model(0.0), store=store, device="cpu")
    robust = pretrain(profile.source_model(profile.eps_star), store=store, device="cpu")
    return profile, store, natural, robust


def test_pretrain_is_stored_and_reused(setup, monkeypatch):
    profile, store, natural, robust = setup
    assert natural.artifact.key != robust.artifact.key
    assert natural.label == "natural" and "2/255" in robust.label
    assert 0 <= natural.artifact.metrics["test_acc"] <= 1
    assert "robust_acc" in robust.artifact.metrics
    monkeypatch.setattr(vision_track, "train", lambda *a, **k: pytest.fail("must not train again"))
    again = pretrain(profile.source_model(0.0), store=store, device="cpu")
    assert again.artifact.key == natural.artifact.key
    for k, v in natural.model.state_dict().items():
        assert torch.equal(v, again.model.state_dict()[k])


def test_finetuned_ticket_stays_masked(setup, monkeypatch):
    profile, store, natural, robust = setup
    ticket = draw_ticket(profile.ticket(robust.desc, "omp", "unstructured", 0.8), store=store)
    captured = {}
    real_train = vision_track.train

    def spy(model, *a, **k):
        out = real_train(model, *a, **k)
        captured["model"] = model
        return out

    monkeypatch.setattr(vision_track, "train", spy)
    art = transfer(profile.transfer(robust.desc, ticket.desc, "mnist5k", seed=0), store=store)
    params = dict(captured["model"].named_parameters())
    for name, keep in ticket.mask.items():
        if keep.dim() > 1:
            assert torch.all(params[name][~keep] == 0), f"{name} has non-zero pruned weights"
    assert art.metrics["sparsity"] >= 0.8 - 1e-3
    assert ticket.sparsity == pytest.approx(0.8, abs=1e-3)


def test_linear_probe_changes_only_the_head(setup, monkeypatch):
    profile, store, natural, robust = setup
    before = {k: v.clone() for k, v in natural.model.state_dict().items()}
    captured = {}
    real_probe = vision_track.linear_probe

    def spy(model, *a, **k):
        captured["model"] = model
        captured["head_before"] = model.head.weight.detach().clone()
        return real_probe(model, *a, **k)

    monkeypatch.setattr(vision_track, "linear_probe", spy)
    transfer(profile.transfer(natural.desc, None, "mnist5k", regime="probe", seed=3), store=store)
    after = captured["model"].state_dict()
    changed = {k for k in before if not k.startswith("net.fc") and not torch.equal(before[k], after[k])}
    assert changed == set(), f"a probe must not touch the backbone (changed: {sorted(changed)[:3]})"
    assert not torch.equal(after["net.fc.weight"], captured["head_before"]), "the probe must train the head"
    assert captured["model"].head.out_features == 10


def test_data_fraction_is_honoured(setup):
    profile, store, natural, _ = setup
    n_full = len(vision_track.source_task(natural.desc, "mnist5k").train_y)
    small = transfer(profile.transfer(natural.desc, None, "mnist5k", fraction=0.05), store=store)
    tiny = transfer(profile.transfer(natural.desc, None, "mnist5k", fraction=0.01), store=store)
    assert small.metrics["n_train"] == pytest.approx(0.05 * n_full, rel=0.05)
    assert tiny.metrics["n_train"] == pytest.approx(0.01 * n_full, rel=0.1)
    assert small.key != tiny.key


def test_imp_resumes_from_last_round(setup, monkeypatch):
    profile, store, natural, _ = setup
    imp = profile.ticket(natural.desc, "imp_source", "unstructured", 0.9)
    full = draw_ticket(imp, store=store)
    rounds = store.list("imp_round")
    assert len(rounds) >= 2
    # delete the final ticket and the last round: drawing again redoes only that round
    import shutil

    shutil.rmtree(full.artifact.path)
    last = max(rounds, key=lambda a: a.config["round"])
    shutil.rmtree(last.path)
    calls = []
    real = pipeline.tickets.imp

    def spy(*a, **k):
        calls.append(k.get("start"))
        return real(*a, **k)

    monkeypatch.setattr(pipeline.tickets, "imp", spy)
    again = draw_ticket(imp, store=store)
    assert calls and calls[0] is not None and calls[0][0] == last.config["round"] - 1
    for k in full.mask:
        assert torch.equal(full.mask[k], again.mask[k]), "resumed IMP must give the same mask"


@pytest.mark.parametrize("kwargs, match", [
    (dict(scheme="magic"), "magic"),
    (dict(pattern="diagonal"), "diagonal"),
    (dict(sparsity=1.0), "1.0"),
    (dict(sparsity=-0.1), "-0.1"),
    (dict(scheme="imp_target"), "target"),
    (dict(scheme="magic", sparsity=0.0), "magic"),
    (dict(pattern="diagonal", sparsity=0.0), "diagonal"),
])
def test_bad_ticket_requests(setup, kwargs, match):
    profile, store, natural, _ = setup
    args = dict(scheme="omp", pattern="unstructured", sparsity=0.5) | kwargs
    with pytest.raises(ValueError, match=match):
        draw_ticket(profile.ticket(natural.desc, args["scheme"], args["pattern"], args["sparsity"]),
                    store=store)


def test_bad_transfer_and_pretrain_requests(setup):
    profile, store, natural, _ = setup
    with pytest.raises(ValueError, match="nowhere"):
        transfer(profile.transfer(natural.desc, None, "nowhere"), store=store)
    with pytest.raises(ValueError, match="1.5"):
        transfer(profile.transfer(natural.desc, None, "mnist5k", fraction=1.5), store=store)
    with pytest.raises(ValueError, match="regime"):
        transfer(profile.transfer(natural.desc, None, "mnist5k", regime="distill"), store=store)
    with pytest.raises(ValueError, match="-0.1"):
        pretrain(profile.source_model(-0.1), store=store)
    with pytest.raises(ValueError, match="profile"):
        get_profile("huge")


def test_scratch_control_trains_the_same_mask_on_random_weights(setup, monkeypatch):
    profile, store, natural, robust = setup
    ticket = draw_ticket(profile.ticket(robust.desc, "omp", "unstructured", 0.8), store=store)
    seen = {}
    real_train = vision_track.train

    def spy(model, *a, **k):
        seen["before"] = {n: p.detach().clone() for n, p in model.named_parameters()}
        out = real_train(model, *a, **k)
        seen["after"] = dict(model.named_parameters())
        return out

    monkeypatch.setattr(vision_track, "train", spy)
    desc = profile.transfer(robust.desc, ticket.desc, "mnist5k", seed=0, init="scratch")
    art = transfer(desc, store=store)
    pretrained = dict(robust.model.named_parameters())
    conv = next(k for k in ticket.mask if k.endswith("conv1.weight") and "layer" in k)
    keep = ticket.mask[conv]
    assert not torch.allclose(seen["before"][conv][keep], pretrained[conv].detach()[keep])
    for name, k in ticket.mask.items():  # the mask holds on the random weights too
        if k.dim() > 1:
            assert torch.all(seen["after"][name][~k] == 0)
    assert art.config["init"] == "scratch" and art.key != profile.transfer(
        robust.desc, ticket.desc, "mnist5k", seed=0).key
    assert "init" not in profile.transfer(robust.desc, ticket.desc, "mnist5k").config()  # old keys kept
    with pytest.raises(ValueError, match="probe"):
        profile.transfer(robust.desc, None, "mnist5k", regime="probe", init="scratch")


def test_masked_source_accuracy_omp_keeps_more_of_the_source_than_random(setup):
    from rtstudy.vision.diagnostics import dead_filters, masked_source_accuracy, recompute_batchnorm

    profile, store, natural, _ = setup
    omp = draw_ticket(profile.ticket(natural.desc, "omp", "unstructured", 0.8), store=store)
    rnd = draw_ticket(profile.ticket(natural.desc, "random", "unstructured", 0.8), store=store)
    m_omp = masked_source_accuracy(natural, omp, n_bn=200, test_n=200, store=store)
    m_rnd = masked_source_accuracy(natural, rnd, n_bn=200, test_n=200, store=store)
    assert set(m_omp) == {"source_acc", "source_acc_raw", "dead_filters"}
    assert m_omp["source_acc"] > m_rnd["source_acc"]  # magnitude pruning keeps the function
    assert m_rnd["dead_filters"] == 0.0 <= m_omp["dead_filters"] < 1
    assert dead_filters({"w": torch.tensor([[True, False], [False, False]])}) == 0.5
    # recomputed BN statistics are the batch statistics of the data given
    bn = torch.nn.BatchNorm1d(3)
    x = torch.randn(64, 3) * 2 + 1
    recompute_batchnorm(bn, x, batch_size=16)
    assert torch.allclose(bn.running_mean, x.mean(0), atol=1e-5) and bn.momentum == 0.1


def test_transfer_records_how_far_training_moved_the_weights(setup):
    profile, store, natural, _ = setup
    art = transfer(profile.transfer(natural.desc, None, "mnist5k", seed=5), store=store)
    assert 0 < art.metrics["moved"] < 10
