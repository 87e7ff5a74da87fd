"""The track interface, proved by a toy second track (tests/_toy_track.py: an MLP on
tabular data) that goes through the core pipeline with no change to a core module."""

import pytest
import torch
from _toy_track import Accuracy, Recipe, TabularSource

from rtstudy.core.descriptions import TicketDesc, TransferDesc
from rtstudy.core.pipeline import draw_ticket, pretrain, transfer
from rtstudy.core.store import Store
from rtstudy.core.track import TRACKS, track_of


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return Store(tmp_path_factory.mktemp("toy-store"))


def test_toy_track_is_registered_beside_vision():
    import rtstudy.vision.track  # noqa: F401

    assert {"vision", "tabular"} <= set(TRACKS)
    assert track_of(TabularSource()).name == "tabular"


def test_omp_ticket_transfers_on_a_second_track(store):
    src = pretrain(TabularSource(noise=0.0), store=store, device="cpu")
    assert src.artifact.metrics["test_acc"] > 0.5  # 4 classes: chance is 0.25
    ticket = draw_ticket(TicketDesc(src.desc, "omp", "unstructured", 0.7), store=store)
    assert set(ticket.mask) == {"body.0.weight", "body.2.weight"}  # head and nothing else kept dense
    assert ticket.sparsity == pytest.approx(0.7, abs=1e-3)
    desc = TransferDesc(src.desc, ticket.desc, "blobs_b", Recipe(), Accuracy(), seed=1)
    art = transfer(desc, store=store)
    assert art.metrics["sparsity"] >= 0.7 - 1e-3  # the mask stayed exact through Adam
    assert art.metrics["test_acc"] > 0.4  # 3 classes: chance is 0.33
    assert art.config["ticket"] == ticket.key and art.key == desc.key
    assert transfer(desc, store=store).meta == art.meta  # stored: asked again, nothing recomputed


def test_random_and_imp_schemes_work_on_the_second_track(store):
    src = pretrain(TabularSource(noise=0.3), store=store, device="cpu")
    assert src.desc.role == "robust"
    omp = draw_ticket(TicketDesc(src.desc, "omp", "unstructured", 0.5), store=store)
    rnd = draw_ticket(TicketDesc(src.desc, "random", "unstructured", 0.5, seed=3), store=store)
    for k in omp.mask:  # same per-layer sparsity as the magnitude twin, other weights
        assert int(rnd.mask[k].sum()) == int(omp.mask[k].sum())
    assert any(not torch.equal(rnd.mask[k], omp.mask[k]) for k in omp.mask)
    imp = draw_ticket(TicketDesc(src.desc, "imp_target", "nm", 0.5, rate=0.5, epochs=5,
                                 target="blobs_b", finetune=Recipe(epochs=5), target_fraction=1.0),
                      store=store)
    for keep in imp.mask.values():  # 2:4 along the inputs
        assert torch.all(keep.reshape(-1, 4).sum(1) == 2)
    assert len(store.list("imp_round")) == 1


def test_source_descriptions_read_back_from_their_config():
    desc = TabularSource(hidden=8, noise=0.1, seed=2)
    assert TRACKS.get("tabular").source_from_config(desc.config()) == desc
