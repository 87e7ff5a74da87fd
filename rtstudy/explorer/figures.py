"""The explorer's plotly figures: colour scales, the five figures, how a ``View`` updates them."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from rtstudy.core.patterns import make_pattern
from rtstudy.core.stats import mean_ci
from rtstudy.explorer.analytics import short_name

if TYPE_CHECKING:
    from rtstudy.explorer.data import ExplorerData, View

NATURAL_COLOR, ROBUST_COLOR = "#1f77b4", "#d62728"
BOTH_KEPT_COLOR, BOTH_PRUNED_COLOR = "#c7c7c7", "#ffffff"
CODE_NAMES = ("both pruned", "both kept", "only natural kept", "only robust kept")  # View.code 0..3
FIGURES = ("masks", "sparsity", "iou", "channels", "transfer")

_CODE_SCALE = [[0.0, BOTH_PRUNED_COLOR], [0.25, BOTH_PRUNED_COLOR], [0.25, BOTH_KEPT_COLOR],
               [0.5, BOTH_KEPT_COLOR], [0.5, NATURAL_COLOR], [0.75, NATURAL_COLOR],
               [0.75, ROBUST_COLOR], [1.0, ROBUST_COLOR]]
_POOLED_SCALE = [[0.0, "#ffffff"], [1.0, "#6a3d9a"]]


def _z(matrix: np.ndarray) -> np.ndarray:
    """Heatmap data: plotly.js has no typed array for bools, so 0/1 as uint8."""
    return matrix.astype(np.uint8) if matrix.dtype == np.bool_ else matrix


class ExplorerFigures:
    """The explorer's five figures and how a view updates them; no ipywidgets involved.

    ``figures``: ``masks`` (the layer's natural | robust | disagreement heatmaps),
    ``sparsity`` (per-layer bars), ``iou`` (per-layer IoU and the random-mask IoU),
    ``channels`` (filter survival of the layer), ``transfer`` (downstream accuracy).
    ``figure_class``: wraps each figure (e.g. a ``go.FigureWidget`` class); ``None``: plain
    ``go.Figure``s.
    """

    def __init__(self, figure_class: type | None = None):
        self.figure_class = figure_class
        self.figures: dict[str, go.Figure] = {}
        self.sizes: dict[str, tuple[int, str]] = {}
        self._build()

    def _build(self) -> None:
        base = {"template": "plotly_white", "margin": {"l": 60, "r": 20, "t": 70, "b": 50},
                "font": {"size": 12}}
        # 1. the layer's masks side by side + disagreement
        fig = make_subplots(rows=1, cols=3, shared_yaxes=True, horizontal_spacing=0.03,
                            subplot_titles=("natural", "robust", "disagreement"))
        for i, color in enumerate((NATURAL_COLOR, ROBUST_COLOR)):
            fig.add_trace(go.Heatmap(
                z=[[0]], zmin=0, zmax=1, colorscale=[[0, BOTH_PRUNED_COLOR], [1, color]], showscale=False,
                hovertemplate="filter %{y}<br>column %{x}<br>kept %{z}<extra></extra>",
                name=("natural", "robust")[i]), row=1, col=i + 1)
        fig.add_trace(go.Heatmap(
            z=[[0]], zmin=-0.5, zmax=3.5, colorscale=_CODE_SCALE, name="disagreement",
            colorbar={"tickvals": [0, 1, 2, 3], "ticktext": list(CODE_NAMES), "len": 0.9, "thickness": 12},
            hovertemplate="filter %{y}<br>column %{x}<br>code %{z}<extra></extra>"), row=1, col=3)
        fig.update_yaxes(autorange="reversed", title_text="output filter", row=1, col=1)
        fig.update_layout(**base, height=380, title={"text": "", "x": 0.01, "font": {"size": 14}})
        self._add("masks", fig, 380)
        # 2. per-layer sparsity
        fig = go.Figure([go.Bar(name="natural", marker_color=NATURAL_COLOR),
                         go.Bar(name="robust", marker_color=ROBUST_COLOR)])
        fig.update_layout(**base, barmode="group", height=330, yaxis={"title": "sparsity", "range": [0, 1]},
                          legend={"orientation": "h", "y": 1.12, "x": 1, "xanchor": "right"},
                          title={"text": "per-layer sparsity", "x": 0.01, "font": {"size": 13}})
        self._add("sparsity", fig, 330, "50%")
        # 3. per-layer IoU vs random
        fig = go.Figure([go.Bar(name="IoU natural vs robust", marker_color="#9467bd"),
                         go.Scatter(name="two random masks", mode="markers",
                                    marker={"symbol": "line-ew-open", "size": 22, "color": "#444",
                                            "line": {"width": 3}})])
        fig.update_layout(**base, height=330, yaxis={"title": "IoU of kept weights", "range": [0, 1.05]},
                          legend={"orientation": "h", "y": 1.12, "x": 1, "xanchor": "right"},
                          title={"text": "overlap per layer", "x": 0.01, "font": {"size": 13}})
        self._add("iou", fig, 330, "50%")
        # 4. channel survival of the layer's filters
        fig = go.Figure([go.Heatmap(z=[[0]], zmin=0, zmax=1, colorscale="Greys",
                                    colorbar={"title": {"text": "kept"}, "thickness": 12},
                                    hovertemplate="%{y}<br>filter %{x}<br>kept fraction %{z:.2f}<extra></extra>")])
        fig.update_layout(**base, height=330, xaxis={"title": "output filter"}, yaxis={"autorange": "reversed"},
                          title={"text": "channel survival", "x": 0.01, "font": {"size": 13}})
        self._add("channels", fig, 330, "50%")
        # 5. downstream accuracy of both tickets
        fig = go.Figure([go.Bar(name="natural ticket", marker_color=NATURAL_COLOR),
                         go.Bar(name="robust ticket", marker_color=ROBUST_COLOR)])
        fig.update_layout(**base, barmode="group", height=330, yaxis={"title": "test accuracy", "range": [0, 1]},
                          legend={"orientation": "h", "y": 1.12, "x": 1, "xanchor": "right"},
                          title={"text": "downstream accuracy", "x": 0.01, "font": {"size": 13}})
        self._add("transfer", fig, 330, "50%")

    def _add(self, name: str, fig: go.Figure, height: int, width: str = "100%") -> None:
        if self.figure_class is not None:
            fig = self.figure_class(fig)
        self.figures[name] = fig
        self.sizes[name] = (height, width)

    def draw(self, v: View) -> None:
        """Update every figure in place (inside ``batch_update``) to show the view ``v``."""
        sides = (v.natural, v.robust)
        nat, rob = v.natural.short, v.robust.short
        layer = short_name(v.layer)
        sel = v.layer_index
        pooled = v.pooled
        fig = self.figures["masks"]
        with fig.batch_update():
            fig.data[0].z, fig.data[1].z = _z(v.natural.matrix), _z(v.robust.matrix)
            if pooled:
                fig.data[2].update(z=v.disagree_shown, zmin=0, zmax=1, colorscale=_POOLED_SCALE,
                                   colorbar={"tickvals": None, "ticktext": None, "title": {"text": "differ"}})
            else:
                fig.data[2].update(z=v.code, zmin=-0.5, zmax=3.5, colorscale=_CODE_SCALE,
                                   colorbar={"tickvals": [0, 1, 2, 3], "ticktext": list(CODE_NAMES),
                                             "title": {"text": ""}})
            ann = fig.layout.annotations
            ann[0].text = f"{nat}: {1 - v.natural.sparsity[sel]:.0%} kept"
            ann[1].text = f"{rob}: {1 - v.robust.sparsity[sel]:.0%} kept"
            ann[2].text = (f"disagreement (XOR): {v.layer_hamming:.1%} of weights"
                           + (f" — pooled {pooled[0]}×{pooled[1]} blocks" if pooled else ""))
            shape = "×".join(map(str, v.shape))
            st = v.state
            fig.layout.title.text = (f"<b>{layer}</b> [{shape}] — {st.scheme}, {st.pattern}, "
                                     f"{st.sparsity:.0%} sparsity — IoU {v.layer_iou:.2f} "
                                     f"(random {v.iou_random[sel]:.2f})")
            for ax in ("xaxis", "xaxis2", "xaxis3"):
                fig.layout[ax].title.text = v.xlabel if ax == "xaxis2" else None
        names = [short_name(k) for k in v.layers]
        outline = [3 if i == sel else 0 for i in range(len(names))]
        fig = self.figures["sparsity"]
        with fig.batch_update():
            for trace, side in zip(fig.data, sides, strict=True):
                trace.x, trace.y, trace.name = names, side.sparsity, side.short
                trace.marker.line.width, trace.marker.line.color = outline, "#000"
            fig.layout.title.text = (f"per-layer sparsity — overall {nat} "
                                     f"{v.natural.overall_sparsity:.1%}, {rob} "
                                     f"{v.robust.overall_sparsity:.1%}")
        fig = self.figures["iou"]
        with fig.batch_update():
            fig.data[0].x, fig.data[0].y = names, v.iou
            fig.data[0].marker.line.width, fig.data[0].marker.line.color = outline, "#000"
            fig.data[1].x, fig.data[1].y = names, v.iou_random
            fig.layout.title.text = (f"overlap per layer — overall IoU {v.overall_iou:.2f} "
                                     f"(two random masks: {v.overall_iou_random:.2f})")
        fig = self.figures["channels"]
        with fig.batch_update():
            fig.data[0].z = np.stack([v.natural.survival, v.robust.survival])
            fig.data[0].y = [nat, rob]
            filters = len(v.natural.survival)
            kind = ("whole filters (channel ticket)" if make_pattern(v.state.pattern).whole_filters
                    else "weights kept per filter")
            fig.layout.title.text = (f"channel survival, {layer}: {kind}<br>filters alive {nat} "
                                     f"{v.natural.filters_kept}/{filters}, {rob} "
                                     f"{v.robust.filters_kept}/{filters}, "
                                     f"shared {v.filters_shared}")
        fig = self.figures["transfer"]
        groups = sorted(set(v.natural.transfer) | set(v.robust.transfer))
        with fig.batch_update():
            for trace, side in zip(fig.data, sides, strict=True):
                est = [mean_ci(side.transfer[g]) if side.transfer.get(g) else None for g in groups]
                trace.x = groups
                trace.y = [e.mean if e else None for e in est]
                trace.error_y = {"type": "data", "array": [(e.high - e.mean) if e else 0 for e in est],
                                 "visible": True, "thickness": 1}
                trace.name = f"{side.short} ticket"
                trace.text = [f"n={e.n}" if e else "" for e in est]
            fig.layout.xaxis.visible = bool(groups)
            fig.layout.annotations = [] if groups else [{
                "text": "no transfer results stored for these tickets", "showarrow": False,
                "xref": "paper", "yref": "paper", "x": 0.5, "y": 0.5, "font": {"size": 13, "color": "#666"}}]
            fig.layout.title.text = (f"downstream accuracy at {v.state.sparsity:.0%} sparsity "
                                     f"(mean over seeds, 95% CI)")

    def static(self) -> list[go.Figure]:
        """Plain copies of the figures (for ``rtstudy.plots.show`` in a static report)."""
        return [go.Figure(self.figures[k]) for k in FIGURES]


def default_view_figures(data: ExplorerData) -> list[go.Figure]:
    """The explorer's default view as plain figures, without creating any widget (for a
    static report: a notebook run by papermill saves the state of every widget it created,
    and nbconvert then adds a CDN loader for it). Empty for an empty store."""
    state = data.default_state()
    if state is None:
        return []
    plots = ExplorerFigures()
    plots.draw(data.view_data(state))
    return plots.static()
