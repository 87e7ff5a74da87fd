"""SuperTickets: channel removal by BN scale (the slim network equals the masked supernet),
prune-and-regrow (pruned weights return, the sparsity target holds exactly), the schemes'
bad inputs, a stored SuperTicket from a smoke source, and E13's finding from its rows."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn as nn

from rtstudy.core.descriptions import TicketDesc
from rtstudy.core.pipeline import draw_ticket, pretrain
from rtstudy.core.prunable import prunable_names
from rtstudy.core.store import Store
from rtstudy.vision import supernet
from rtstudy.vision.models import build_model
from rtstudy.vision.supertickets import (
    TwoInOne,
    cubic_targets,
    event_steps,
    parse_schedule,
)
from rtstudy.vision.train import TrainConfig, train


def _model(seed: int = 0) -> nn.Module:
    model = build_model("resnet8", 10, in_channels=1, image_size=8, width=1.0, seed=seed)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for mod in model.modules():
            if isinstance(mod, nn.BatchNorm2d):
                c = mod.num_features
                mod.weight.copy_(0.5 + torch.rand(c, generator=gen))
                mod.bias.copy_(torch.rand(c, generator=gen) - 0.5)
                mod.running_mean.copy_(torch.rand(c, generator=gen) - 0.5)
                mod.running_var.copy_(0.5 + torch.rand(c, generator=gen))
    return model.eval()


def _pruned(mask, names) -> int:
    return sum(int((~mask[k]).sum()) for k in names)


def test_channels_below_the_threshold_go_and_the_slim_network_equals_the_masked_one():
    model = _model()
    bn = model.net.layer1[0].bn1  # 16 inner channels
    with torch.no_grad():
        bn.weight[:5] = 0.01  # five channels whose scale the penalty drove down
    two = TwoInOne(model, targets=[0.5], steps=[1], penalty=0.0, threshold=0.5,
                   widths="0.25,0.5,0.75,1")
    two.event(0.5)
    two.apply()
    kept = two.alive["net.layer1.0.conv1.weight"]
    # 11 channels pass the threshold: rounded up to the allowed 12 (75%), the largest |γ| kept
    assert int(kept.sum()) == 12
    assert not kept[1:5].any() and kept[5:].all()
    assert not two.mask["net.layer1.0.bn1.weight"][1:5].any()
    assert _pruned(two.mask, two.names) == round(0.5 * two.total)
    slim = supernet.slim_ticket(model, two.mask)
    assert slim.net.layer1[0].conv1.out_channels == 12
    assert slim.net.layer1[0].conv2.in_channels == 12
    x = torch.rand(8, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        torch.testing.assert_close(slim(x), model(x), atol=1e-5, rtol=1e-5)
    costs = supernet.ticket_costs(model, two.mask, x)
    dense = supernet.ticket_costs(model, None, x)
    assert costs["macs"] < dense["macs"] and costs["params"] < dense["params"]
    assert costs["macs_nonzero"] < costs["macs"]
    assert supernet.searched_widths(model, two.mask)["layer1"] == pytest.approx(12 / 16)


def test_the_search_never_prunes_past_the_target():
    model = _model()
    with torch.no_grad():
        for g in supernet.scales(model, supernet.elastic_groups(model)).values():
            g.fill_(0.01)  # every channel below the threshold
    two = TwoInOne(model, targets=[0.05], steps=[1], penalty=0.0, threshold=0.5, widths="0.25,1")
    two.event(0.05)
    assert _pruned(two.mask, two.names) == round(0.05 * two.total)  # the search waited
    assert all(bool(a.all()) for a in two.alive.values())


def test_pruned_weights_regrow_and_the_sparsity_holds_exactly_after_every_step():
    model = _model().train()
    gen = torch.Generator().manual_seed(0)
    x, y = torch.rand(256, 1, 8, 8, generator=gen), torch.randint(0, 10, (256,), generator=gen)
    targets = cubic_targets(0.7, 3)
    steps = event_steps(12, 3, 0.75)
    two = TwoInOne(model, targets=targets, steps=steps, penalty=0.05, threshold=0.3,
                   widths="0.5,1", regrow=0.5)
    masks, checks = [], []
    event = two.event

    def recording_event(target):
        event(target)
        masks.append({k: v.clone() for k, v in two.mask.items()})

    two.event = recording_event
    after = two.after_step

    def checked_after(opt):
        after(opt)
        params = dict(model.named_parameters())
        wanted = two.history[-1]["wanted"] if two.history else 0
        checks.append((_pruned(two.mask, two.names), wanted,
                       all(bool((params[k][~two.mask[k].to(params[k].device)] == 0).all())
                           for k in two.mask)))

    two.after_step = checked_after
    train(model, x, y, TrainConfig(epochs=6, batch_size=128, lr=0.05), seed=0, progress=False,
          on_optimizer=two.attach)
    assert len(checks) == 12 and len(masks) == 3
    assert all(pruned == wanted and zero for pruned, wanted, zero in checks)
    assert [h["pruned"] for h in two.history] == [round(t * two.total) for t in targets]
    assert all(h["regrown"] > 0 for h in two.history[1:])
    returned = sum(int((~a[k] & b[k]).sum()) for a, b in zip(masks, masks[1:], strict=False)
                   for k in two.names)
    assert returned > 0  # a weight pruned at one event is back at the next


def test_bad_inputs_are_named():
    model = _model()
    common = dict(targets=[0.5], steps=[1], penalty=0.0, widths="0.5,1")
    for bad in (0.0, 1.5):
        with pytest.raises(ValueError, match="threshold"):
            TwoInOne(model, threshold=bad, **common)
    with pytest.raises(ValueError, match=r"width choice 0\.01 leaves .*16 channels"):
        TwoInOne(model, targets=[0.5], steps=[1], penalty=0.0, threshold=0.5, widths="0.01,1")
    with pytest.raises(ValueError, match=r"width choice 1\.5 .* outside"):
        supernet.parse_widths("0.5,1.5")
    with pytest.raises(ValueError, match=r"schedule step 0\.9 .* prunes past the target sparsity 0\.8"):
        parse_schedule("0.5,0.9", 0.8)
    assert parse_schedule("0.3,0.6", 0.8) == [0.3, 0.6, 0.8]


@pytest.fixture(scope="module")
def smoke_source(tmp_path_factory):
    from rtstudy.experiments.grid import natural
    from rtstudy.profiles import get_profile

    store = Store(tmp_path_factory.mktemp("store"))
    desc = natural(get_profile("smoke"))
    return desc, pretrain(desc, store=store), store


def test_ticket_descriptions_reject_bad_options(smoke_source):
    desc, _, _ = smoke_source
    with pytest.raises(ValueError, match="threshold"):
        TicketDesc(source=desc, scheme="superticket", sparsity=0.8, epochs=0.5,
                   options={"threshold": 1.0})
    with pytest.raises(ValueError, match="sparsity"):
        TicketDesc(source=desc, scheme="superticket", sparsity=1.2, epochs=0.5)
    with pytest.raises(ValueError, match="prunes past the target"):
        TicketDesc(source=desc, scheme="superticket", sparsity=0.5, epochs=0.5,
                   options={"schedule": "0.3,0.6"})
    with pytest.raises(ValueError, match="rate must be None"):
        TicketDesc(source=desc, scheme="superticket", sparsity=0.5, epochs=0.5, rate=0.5)
    with pytest.raises(ValueError, match="width choice"):
        TicketDesc(source=desc, scheme="search_then_prune", sparsity=0.5, epochs=0.5, rate=0.5,
                   options={"widths": "0,1"})
    with pytest.raises(ValueError, match="no option"):
        TicketDesc(source=desc, scheme="superticket", sparsity=0.5, epochs=0.5,
                   options={"kernel": 5})


def test_a_plan_counts_the_supernet_training(smoke_source):
    from rtstudy.vision.track import VISION

    desc, _, _ = smoke_source
    short = TicketDesc(source=desc, scheme="superticket", sparsity=0.8, epochs=0.5)
    long = TicketDesc(source=desc, scheme="superticket", sparsity=0.8, epochs=1.0)
    stp = TicketDesc(source=desc, scheme="search_then_prune", sparsity=0.8, epochs=0.5, rate=0.6)
    assert 0 < VISION.work(short) < VISION.work(long) < VISION.work(stp)


@pytest.mark.parametrize("scheme", ["superticket", "search_then_prune"])
def test_a_drawn_ticket_is_stored_exact_and_slims(smoke_source, scheme):
    desc, source, store = smoke_source
    search = scheme == "search_then_prune"
    options = {"penalty": 0.9, "threshold": 0.9, **({"search_epochs": 1.0} if search else {})}
    tdesc = TicketDesc(source=desc, scheme=scheme, sparsity=0.8, epochs=1.0, options=options,
                       **({"rate": 0.6} if search else {}))
    ticket = draw_ticket(tdesc, store=store, source=source)
    again = draw_ticket(tdesc, store=store, source=source)
    assert all(torch.equal(ticket.mask[k], again.mask[k]) for k in ticket.mask)
    model = source.model
    names = prunable_names(model)
    total = sum(ticket.mask[k].numel() for k in names)
    assert _pruned(ticket.mask, names) == round(0.8 * total)
    widths = supernet.searched_widths(model, ticket.mask)
    assert min(widths.values()) < 1.0  # the search removed channels
    slim = supernet.slim_ticket(model, ticket.mask)
    masked = copy.deepcopy(model)
    from rtstudy.core.masks import apply_mask

    apply_mask(masked, ticket.mask)
    x = torch.rand(4, desc.channels, desc.image_size, desc.image_size)
    with torch.no_grad():
        torch.testing.assert_close(slim(x), masked(x), atol=1e-5, rtol=1e-5)


def test_e13_grid_and_finding_from_rows(smoke_source):
    from rtstudy.experiments import supertickets as E13
    from rtstudy.profiles import get_profile
    from rtstudy.results import row

    P = get_profile("smoke")
    [grid] = E13.grid_e13(P)
    schemes = [t.scheme for t in grid.tickets if not t.dense]
    assert schemes == ["superticket", "search_then_prune", "imp_source"]
    descs = grid.descriptions(P)
    assert {d.ticket.scheme for d in descs if not d.dense} == set(schemes)
    rows = []
    gen = torch.Generator().manual_seed(0)
    for src in ("natural", "robust"):
        for ss in (0, 1, 2):
            for seed in (0, 1):
                for scheme, sp, base in (("omp", 0.0, 0.9), ("superticket", 0.8, 0.8),
                                         ("search_then_prune", 0.8, 0.7), ("imp_source", 0.8, 0.75)):
                    bump = 0.05 if src == "robust" else 0.0
                    noise = float(torch.rand(1, generator=gen)) * 0.002
                    rows.append(row("mnist5k", src, 0.0 if src == "natural" else 2 / 255, scheme,
                                    "unstructured", sp, seed, "test_acc", base + bump + noise,
                                    source_seed=ss, init="pretrained"))
                    if sp == 0.0:
                        rows.append(row("mnist5k", src, 0.0 if src == "natural" else 2 / 255, scheme,
                                        "unstructured", sp, seed, "test_acc", 0.5 + noise,
                                        source_seed=ss, init="scratch"))
    costs = [{"method": m, "source": s, "n": 3, "params": 100, "params_nonzero": 50, "macs": mac,
              "macs_nonzero": mac / 2, "latency": 1e-3 * mac / 100, "speedup": 100 / mac,
              "train_epochs": ep, "widths": {"layer1": mac / 100}}
             for s in ("natural", "robust")
             for m, mac, ep in (("dense", 100, 0.0), ("superticket", 50, 0.25),
                                ("search_then_prune", 75, 1.0), ("imp_source", 100, 0.75))]
    finding = E13.superticket_finding(rows, costs, robust_name="FGSM-RS")
    text = str(finding)
    assert "SuperTicket beats search-then-prune" in text
    assert "SuperTicket trails IMP (dense model)" not in text  # 0.8 vs 0.75: it beats it
    assert "robust" in text and "better in 3" in text
    assert "runs at 50% of the dense model's MACs" in text
    assert any(c["kind"] == "robust − natural" for c in finding.contrasts)
