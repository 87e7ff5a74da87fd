"""Any stored ticket of any track, layer by layer: heatmaps of its masks and its keep-rates.

The side-by-side explorer (``widgets.MaskExplorer``) compares robust and natural image
classifiers; this view needs nothing of a track but its stored tickets, so it shows a text
ticket's Q/K/V/... masks or a deep image prior's learned mask as well:

    entries = stored_tickets(store, track="text")       # what the store holds, by track
    view = ticket_view(store, entries[0].key)           # masks, per-layer keep-rates
    keep_rate_figure(view); layer_figure(view, view.layers[0])
    TicketBrowser(store, track="prior").widget          # the same with two dropdowns
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import plotly.graph_objects as go

from rtstudy.core import masks as masks_mod
from rtstudy.core.store import Artifact, Store
from rtstudy.explorer.data import MAX_CELLS, _block_shape, _pool


@dataclass(frozen=True)
class TicketEntry:
    """A stored ticket: its key, the track and source it was drawn from, a readable label."""

    key: str
    track: str
    source: str  # the source artifact's key
    label: str
    artifact: Artifact


@dataclass(frozen=True)
class TicketView:
    """One ticket's masks: per layer its 2-D matrix (pooled to at most ``MAX_CELLS`` cells,
    the mean keep-rate of each block) and its keep-rate."""

    entry: TicketEntry
    layers: tuple[str, ...]
    shapes: dict[str, tuple[int, ...]]
    keep: dict[str, float]
    matrices: dict[str, np.ndarray]
    blocks: dict[str, tuple[int, int]]

    @property
    def overall_keep(self) -> float:
        total = sum(int(np.prod(s)) for s in self.shapes.values())
        return sum(self.keep[n] * int(np.prod(self.shapes[n])) for n in self.layers) / max(1, total)


def _track(source_config: dict) -> str:
    return source_config.get("track", "vision")  # image-classification sources predate the field


def _label(config: dict, source_label: str) -> str:
    pattern = config.get("pattern", "unstructured")
    nm = f" {config['n']}:{config['m']}" if pattern == "nm" else ""
    target = f" on {config['target']}" if config.get("target") else ""
    seed = f", seed {config['seed']}" if config.get("seed") else ""
    return (f"{config['scheme']} {pattern}{nm} {100 * config['sparsity']:.0f}%{target}{seed} "
            f"from {source_label}")


def stored_tickets(store: Store, track: str | None = None) -> list[TicketEntry]:
    """Every finished ticket in ``store`` (of ``track`` only, when given), sorted by label."""
    sources = {a.key: a for a in store.list("source")}
    out = []
    for art in store.list("ticket"):
        src = sources.get(art.config.get("source"))
        if src is None:
            continue
        t = _track(src.config)
        if track is not None and t != track:
            continue
        src_label = f"{t} source {src.key[:8]} ({src.config.get('task', '?')})"
        out.append(TicketEntry(art.key, t, src.key, _label(art.config, src_label), art))
    return sorted(out, key=lambda e: e.label)


def ticket_view(store: Store, key: str, *, max_cells: int = MAX_CELLS) -> TicketView:
    """The masks of the stored ticket ``key``, ready to draw."""
    found = [e for e in stored_tickets(store) if e.key == key]
    if not found:
        known = [e.key for e in stored_tickets(store)][:10]
        raise ValueError(f"no stored ticket {key!r} in {store.root}; stored: {known or 'none'}")
    entry = found[0]
    masks = {k: v.bool() for k, v in entry.artifact.tensors("mask").items()}
    layers = tuple(masks)
    matrices, blocks = {}, {}
    for name, m in masks.items():
        matrix = masks_mod.layer_matrix(m).numpy().astype(np.float32)
        block = _block_shape(matrix.shape, max_cells)
        blocks[name] = block
        matrices[name] = _pool(matrix, block) if block != (1, 1) else matrix
    return TicketView(entry, layers, {k: tuple(v.shape) for k, v in masks.items()},
                      {k: float(v.float().mean()) for k, v in masks.items()}, matrices, blocks)


def keep_rate_figure(view: TicketView, *, title: str | None = None) -> go.Figure:
    """Bars: the fraction of each layer's weights the ticket keeps."""
    fig = go.Figure(go.Bar(x=list(view.layers), y=[view.keep[n] for n in view.layers],
                           hovertext=[f"{n} {view.shapes[n]}" for n in view.layers]))
    fig.update_layout(title=title or f"Kept per layer: {view.entry.label} "
                      f"(overall {view.overall_keep:.1%})", yaxis_title="fraction kept",
                      yaxis_range=[0, 1], xaxis_tickangle=-45, height=380,
                      margin=dict(l=50, r=20, t=50, b=140))
    return fig


def layer_figure(view: TicketView, layer: str) -> go.Figure:
    """Heatmap of one layer's mask (kept = 1; pooled blocks show their keep-rate)."""
    if layer not in view.matrices:
        raise ValueError(f"ticket {view.entry.key} has no layer {layer!r}; allowed: "
                         f"{', '.join(view.layers)}")
    br, bc = view.blocks[layer]
    pooled = f" (mean of {br}×{bc} blocks)" if (br, bc) != (1, 1) else ""
    shape = view.shapes[layer]
    x_title = "inputs" if len(shape) == 2 else f"inputs × kernel ({'×'.join(map(str, shape[1:]))})"
    fig = go.Figure(go.Heatmap(z=view.matrices[layer], zmin=0, zmax=1, colorscale="Greys",
                               reversescale=True, colorbar=dict(title="kept")))
    fig.update_layout(title=f"{layer} {shape}: {view.keep[layer]:.1%} kept{pooled}",
                      xaxis_title=x_title, yaxis_title="outputs", yaxis_autorange="reversed",
                      height=420, margin=dict(l=50, r=20, t=50, b=50))
    return fig


def layer_grid_figure(view: TicketView, layers: Sequence[str], *, cols: int = 3) -> go.Figure:
    """Several layers' heatmaps side by side (e.g. one block's Q, K, V)."""
    from plotly.subplots import make_subplots

    layers = list(layers)
    for layer in layers:
        if layer not in view.matrices:
            raise ValueError(f"ticket {view.entry.key} has no layer {layer!r}; allowed: "
                             f"{', '.join(view.layers)}")
    rows = -(-len(layers) // cols)
    fig = make_subplots(rows=rows, cols=cols, subplot_titles=[
        f"{n} ({view.keep[n]:.0%} kept)" for n in layers])
    for i, n in enumerate(layers):
        fig.add_trace(go.Heatmap(z=view.matrices[n], zmin=0, zmax=1, colorscale="Greys",
                                 reversescale=True, showscale=i == 0), i // cols + 1, i % cols + 1)
        fig.update_yaxes(autorange="reversed", row=i // cols + 1, col=i % cols + 1)
    fig.update_layout(height=320 * rows, title=view.entry.label, margin=dict(l=40, r=20, t=80, b=30))
    return fig


class TicketBrowser:
    """Two dropdowns (a stored ticket of ``track``, one of its layers) over the keep-rate
    bars and the layer's heatmap. ``widget`` is what a notebook displays."""

    def __init__(self, store: Store | None = None, track: str | None = None):
        import ipywidgets as W

        self.store = store if store is not None else Store()
        self.entries = stored_tickets(self.store, track)
        self.ticket = W.Dropdown(options=[(e.label, e.key) for e in self.entries],
                                 description="ticket", layout=W.Layout(width="90%"))
        self.layer = W.Dropdown(description="layer", layout=W.Layout(width="60%"))
        self.out = W.Output()
        note = "" if self.entries else (
            f"No {track + ' ' if track else ''}tickets are stored in this store: run the report "
            "(or the experiment's notebook) first.")
        self.widget = W.VBox([W.HTML(note), self.ticket, self.layer, self.out])
        self.ticket.observe(lambda _: self._on_ticket(), names="value")
        self.layer.observe(lambda _: self.draw(), names="value")
        self.view: TicketView | None = None
        if self.entries:
            self._on_ticket()

    def _on_ticket(self) -> None:
        self.view = ticket_view(self.store, self.ticket.value)
        self.layer.options = list(self.view.layers)
        self.layer.value = self.view.layers[0]
        self.draw()

    def draw(self) -> list[go.Figure]:
        """Redraw for the current choice; the figures drawn."""
        if self.view is None or self.layer.value is None:
            return []
        figs = [keep_rate_figure(self.view), layer_figure(self.view, self.layer.value)]
        self.out.clear_output(wait=True)
        with self.out:
            for f in figs:
                f.show()
        return figs
