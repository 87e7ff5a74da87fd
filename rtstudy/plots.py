"""Figures of the notebooks: Plotly traces and whole figures from result rows.

The figures render in JupyterLab and in offline HTML. ``curve_figure``, ``bar_figure``,
``source_figure`` and ``gain_distance_figure`` draw rows (``rtstudy.experiments.rows``
groups them); ``show``, ``curve`` and ``bars`` are the building blocks.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from rtstudy.core.stats import mean_ci

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence


COLORS = {"natural": "#1f77b4", "robust": "#d62728", "random": "#7f7f7f"}
PALETTE = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf"]


def show(fig: go.Figure) -> None:
    """Display ``fig`` with the Plotly mimetype (JupyterLab) and an HTML fallback.

    The HTML does not embed plotly.js: the report's pages load it from a file beside
    them, so every page renders without a network and stays small.
    """
    from IPython.display import display

    html = fig.to_html(include_plotlyjs=False, full_html=False, config={"displaylogo": False})
    display({"application/vnd.plotly.v1+json": fig.to_plotly_json(), "text/html": html}, raw=True)


def curve(fig: go.Figure, x: list[float], groups: list[list[float]], name: str, color: str,
          dash: str | None = None, row: int | None = None, col: int | None = None,
          showlegend: bool = True) -> None:
    """Add a mean curve with a shaded 95% CI band; ``groups[i]`` are the seeds at ``x[i]``."""
    est = [mean_ci(g) for g in groups]
    kw = {"row": row, "col": col} if row is not None else {}
    fig.add_trace(go.Scatter(
        x=list(x) + list(x)[::-1], y=[e.high for e in est] + [e.low for e in est][::-1],
        fill="toself", fillcolor=color, opacity=0.15, line={"width": 0}, hoverinfo="skip",
        showlegend=False, legendgroup=name), **kw)
    fig.add_trace(go.Scatter(
        x=list(x), y=[e.mean for e in est], mode="lines+markers", name=name, legendgroup=name,
        line={"color": color, "dash": dash}, showlegend=showlegend,
        error_y={"type": "data", "array": [e.high - e.mean for e in est], "visible": True, "thickness": 1},
    ), **kw)


def color_for(name: str, i: int) -> str:
    """The study's colour for ``natural`` / ``robust`` / ``random``, else the palette's i-th."""
    return COLORS.get(name, PALETTE[i % len(PALETTE)])


def bars(fig: go.Figure, x: list[str], groups: list[list[float]], name: str, color: str,
         row: int | None = None, col: int | None = None, showlegend: bool = True,
         pattern: str | None = None) -> None:
    """Add bars of the mean with 95% CI error bars; ``groups[i]`` are the seeds at ``x[i]``."""
    est = [mean_ci(g) for g in groups]
    kw = {"row": row, "col": col} if row is not None else {}
    fig.add_trace(go.Bar(
        x=list(x), y=[e.mean for e in est], name=name, legendgroup=name, showlegend=showlegend,
        marker={"color": color, **({"pattern": {"shape": pattern}} if pattern else {})},
        error_y={"type": "data", "array": [e.high - e.mean for e in est], "visible": True},
        customdata=[[e.n] for e in est], hovertemplate="%{x}: %{y:.3f} (n=%{customdata[0]})",
    ), **kw)


# ----------------------------------------------------------------------------- figures of rows
def _facet_figure(n: int, titles: list[str], title: str, x_title: str, y_title: str):
    fig = make_subplots(rows=1, cols=max(1, n), subplot_titles=titles, shared_yaxes=True,
                        horizontal_spacing=0.06)
    fig.update_layout(title=title, template="plotly_white", height=420,
                      legend={"orientation": "h", "y": -0.2})
    fig.update_xaxes(title_text=x_title)
    fig.update_yaxes(title_text=y_title, row=1, col=1)
    return fig


def _series_label(column: str, value) -> str:
    """Legend text: text values as they are, numbers with their column (``sparsity 80%``)."""
    from rtstudy.experiments.rows import fmt_level

    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return f"{'ε' if column == 'eps' else column} {fmt_level(column, value)}"
    return str(value)


def curve_figure(rows: Iterable[dict], *, x: str, series: str = "source", facet: str = "task",
                 metric: str = "test_acc", title: str = "", x_title: str | None = None,
                 y_title: str | None = None, log_x: bool = False, dash_by: str | None = None,
                 **where):
    """Mean curves with 95% CI bands: ``metric`` vs ``x``, one line per ``series`` value
    (and per ``dash_by`` value, dashed), one panel per ``facet`` value."""
    from rtstudy.experiments.rows import fmt_level, levels, seed_groups, select

    rows = select(rows, metric=metric, **where)
    facets = levels(rows, facet)
    names = levels(rows, series)
    dashes = levels(rows, dash_by) if dash_by else [None]
    fig = _facet_figure(len(facets), [fmt_level(facet, f) for f in facets], title, x_title or x,
                        y_title or metric.replace("_", " "))
    for j, f in enumerate(facets):
        for i, s in enumerate(names):
            for d_i, d in enumerate(dashes):
                w = {facet: f, series: s, **({dash_by: d} if dash_by else {})}
                g = seed_groups(rows, [x], metric, **w)
                if not g:
                    continue
                label = _series_label(series, s)
                if d is not None:
                    label += f" · {_series_label(dash_by, d)}"
                curve(fig, [k[0] for k in g], list(g.values()), label, color_for(str(s), i),
                      dash=[None, "dash", "dot", "dashdot"][d_i % 4], row=1, col=j + 1,
                      showlegend=j == 0)
    if log_x:
        fig.update_xaxes(type="log")
    if x in ("sparsity", "fraction"):
        fig.update_xaxes(tickformat=".0%")
    return fig


def bar_figure(rows: Iterable[dict], *, x: str, series: str = "source", facet: str = "task",
               metric: str = "test_acc", title: str = "", x_title: str | None = None,
               y_title: str | None = None, **where):
    """Grouped bars (mean, 95% CI error bars): one group per ``x`` value, one bar per ``series``
    value, one panel per ``facet`` value."""
    from rtstudy.experiments.rows import fmt_level, levels, seed_groups, select

    rows = select(rows, metric=metric, **where)
    facets = levels(rows, facet)
    xs = levels(rows, x)
    names = levels(rows, series)
    fig = _facet_figure(len(facets), [fmt_level(facet, f) for f in facets], title, x_title or x,
                        y_title or metric.replace("_", " "))
    for j, f in enumerate(facets):
        for i, s in enumerate(names):
            g = seed_groups(rows, [x], metric, **{facet: f, series: s})
            keys = [k for k in xs if (k,) in g]
            if not keys:
                continue
            bars(fig, [fmt_level(x, k) for k in keys], [g[(k,)] for k in keys],
                 _series_label(series, s), color_for(str(s), i), row=1, col=j + 1,
                 showlegend=j == 0)
    fig.update_layout(barmode="group")
    lo = min((r["value"] for r in rows), default=0.0)
    fig.update_yaxes(range=[max(0.0, lo - 0.1), 1.0])
    return fig


def source_figure(source_rows: Sequence[dict], *, x: str = "eps", title: str = "",
                  x_title: str = "pretraining ε (0 = natural)"):
    """Clean and robust accuracy of the source models on S vs ``x`` (the rows of
    ``experiments.source_table``)."""
    from rtstudy.experiments.rows import fmt_level, levels, seed_groups, select

    fig = go.Figure()
    for i, (metric, name) in enumerate((("source_clean_acc", "clean accuracy"),
                                        ("source_robust_acc", "PGD accuracy"))):
        g = seed_groups(source_rows, [x], metric)
        if not g:
            continue
        eps = {r["eval_eps"] for r in select(source_rows, metric=metric)}
        if metric == "source_robust_acc" and len(eps) == 1:
            name += f" at {fmt_level('eps', eps.pop())}"
        fig.add_trace(go.Scatter(x=[k[0] for k in g], y=[sum(v) / len(v) for v in g.values()],
                                 name=name, mode="lines+markers", line_color=PALETTE[2 + i]))
    fig.update_layout(title=title, template="plotly_white", xaxis_title=x_title,
                      yaxis_title="accuracy on S", height=380)
    if x == "eps":
        xs = levels(source_rows, "eps")
        fig.update_xaxes(tickvals=xs, ticktext=[fmt_level("eps", e) for e in xs])
    return fig


def gain_distance_figure(cs: dict, dist: dict[str, float], *, title: str = "",
                         x_title: str = "S→T distance"):
    """The paired robust − natural difference per target (points, 95% CI) vs a per-target
    distance, with a least-squares trend line (``cs``: ``{target: PairedContrast}``)."""
    order = sorted((t for t in cs if cs[t].has_interval), key=lambda t: dist[t])
    x = [dist[t] for t in order]
    y = [cs[t].points for t in order]
    hi = [cs[t].ci_points[1] - cs[t].points for t in order]
    lo = [cs[t].points - cs[t].ci_points[0] for t in order]
    fig = go.Figure(go.Scatter(x=x, y=y, mode="markers+text", text=order, textposition="top center",
                               error_y={"type": "data", "array": hi, "arrayminus": lo,
                                        "visible": True},
                               marker={"size": 10, "color": COLORS["robust"]}, name="targets"))
    if len(set(x)) >= 2:
        slope, icpt = np.polyfit(x, y, 1)
        xs = np.linspace(min(x), max(x), 20)
        fig.add_trace(go.Scatter(x=xs, y=slope * xs + icpt, mode="lines", name="least-squares trend",
                                 line={"dash": "dash", "color": "#555"}))
    fig.add_hline(y=0, line_width=1, line_color="#999")
    fig.update_layout(title=title, xaxis_title=x_title, template="plotly_white", height=450,
                      yaxis_title="robust − natural (points, paired, 95% CI)")
    return fig
