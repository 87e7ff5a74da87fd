"""The track-agnostic ticket view: any stored ticket (here the toy tabular track's), its
per-layer keep-rates and mask heatmaps, and the two-dropdown browser."""

import numpy as np
import pytest
from _toy_track import TabularSource

from rtstudy.core.descriptions import TicketDesc
from rtstudy.core.pipeline import draw_ticket, pretrain
from rtstudy.core.store import Store
from rtstudy.explorer.tickets import (
    TicketBrowser,
    keep_rate_figure,
    layer_figure,
    layer_grid_figure,
    stored_tickets,
    ticket_view,
)


@pytest.fixture(scope="module")
def stored(tmp_path_factory):
    store = Store(tmp_path_factory.mktemp("tickets-store"))
    src = pretrain(TabularSource(noise=0.0), store=store, device="cpu")
    ticket = draw_ticket(TicketDesc(src.desc, "omp", "unstructured", 0.75), store=store)
    return store, ticket


def test_stored_tickets_are_found_by_track(stored):
    store, ticket = stored
    [entry] = stored_tickets(store, track="tabular")
    assert entry.key == ticket.key and entry.track == "tabular"
    assert entry.label.startswith("omp unstructured 75% from tabular source")
    assert stored_tickets(store, track="text") == []


def test_the_view_shows_the_stored_masks_exactly(stored):
    store, ticket = stored
    view = ticket_view(store, ticket.key)
    assert set(view.layers) == set(ticket.mask)
    for name, m in ticket.mask.items():
        assert view.keep[name] == pytest.approx(m.float().mean().item())
        np.testing.assert_array_equal(view.matrices[name], m.float().numpy())  # small: not pooled
    assert view.overall_keep == pytest.approx(0.25, abs=1e-3)  # global 75% sparsity
    heat = layer_figure(view, view.layers[0])
    assert np.array_equal(np.asarray(heat.data[0].z), view.matrices[view.layers[0]])
    bars = keep_rate_figure(view)
    assert list(bars.data[0].y) == [view.keep[n] for n in view.layers]
    assert len(layer_grid_figure(view, view.layers).data) == len(view.layers)
    with pytest.raises(ValueError, match="has no layer 'nope'; allowed: "):
        layer_figure(view, "nope")
    with pytest.raises(ValueError, match="no stored ticket 'feedbeef'"):
        ticket_view(store, "feedbeef")


def test_large_masks_are_pooled_into_blocks_of_their_keep_rate(stored):
    store, ticket = stored
    view = ticket_view(store, ticket.key, max_cells=16)
    name = max(view.layers, key=lambda n: np.prod(view.shapes[n]))
    assert view.matrices[name].size <= 16 * 4 and view.blocks[name] != (1, 1)
    assert 0 <= view.matrices[name].min() <= view.matrices[name].max() <= 1


def test_the_browser_switches_layers(stored):
    store, ticket = stored
    browser = TicketBrowser(store, track="tabular")
    assert browser.ticket.value == ticket.key
    browser.layer.value = browser.view.layers[-1]
    figs = browser.draw()
    assert figs[1].layout.title.text.startswith(browser.view.layers[-1])
    empty = TicketBrowser(store, track="text")
    assert empty.view is None and "No text tickets are stored" in empty.widget.children[0].value
