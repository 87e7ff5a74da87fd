"""Plotly helpers for notebooks: figures that render in JupyterLab and in offline HTML."""

from __future__ import annotations

import plotly.graph_objects as go

from rtstudy.core.stats import mean_ci

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
