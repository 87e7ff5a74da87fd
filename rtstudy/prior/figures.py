"""E12's figures and table: PSNR curves, the image strip, per-layer keep rates, mask transfer."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from rtstudy.plots import PALETTE


def psnr_curves_figure(curves: Mapping[tuple, tuple[list[int], list[float]]], labels: Mapping[str, str],
                       images: Sequence[str], title: str = "") -> go.Figure:
    """PSNR against the clean image over iterations: one panel per image, one line per
    method (the mean over seeds, each seed thin)."""
    methods = list(dict.fromkeys(k[0] for k in curves))
    fig = make_subplots(rows=1, cols=len(images), subplot_titles=list(images), shared_yaxes=True,
                        horizontal_spacing=0.05)
    for j, image in enumerate(images):
        for i, method in enumerate(methods):
            runs = [v for k, v in curves.items() if k[0] == method and k[1] == image]
            if not runs:
                continue
            x = runs[0][0]
            mean = np.mean([r[1] for r in runs], axis=0)
            color = PALETTE[i % len(PALETTE)]
            fig.add_trace(go.Scatter(x=x, y=mean, name=labels.get(method, method), mode="lines",
                                     line={"color": color, "dash": "dash" if method == "dense" else None},
                                     legendgroup=method, showlegend=j == 0), row=1, col=j + 1)
    fig.update_layout(title=title, template="plotly_white", height=420, legend={"orientation": "h", "y": -0.25})
    fig.update_xaxes(title_text="iteration")
    fig.update_yaxes(title_text="PSNR to the clean image (dB)", row=1, col=1)
    return fig


def image_strip_figure(rows_of_images: Sequence[tuple[str, Sequence[tuple[str, np.ndarray]]]],
                       title: str = "") -> go.Figure:
    """A grid of grayscale (or RGB) images: one row per ``(row title, [(column title, image
    [C, H, W] in [0, 1])])``."""
    n_rows = len(rows_of_images)
    n_cols = max(len(cols) for _, cols in rows_of_images)
    titles = [f"{name}: {col}" for name, cols in rows_of_images for col, _ in cols]
    fig = make_subplots(rows=n_rows, cols=n_cols, subplot_titles=titles, horizontal_spacing=0.02,
                        vertical_spacing=0.08)
    for r, (_, cols) in enumerate(rows_of_images):
        for c, (_, img) in enumerate(cols):
            img = np.clip(np.asarray(img), 0, 1)
            rgb = np.repeat(img[:1], 3, axis=0) if img.shape[0] == 1 else img[:3]
            fig.add_trace(go.Image(z=(rgb.transpose(1, 2, 0) * 255).round().astype(np.uint8)),
                          row=r + 1, col=c + 1)
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False)
    fig.update_layout(title=title, height=230 * n_rows + 80, width=230 * n_cols,
                      margin={"l": 10, "r": 10, "t": 80, "b": 10}, font={"size": 11})
    return fig


def keep_rate_figure(rates: Mapping[str, Mapping[str, float]], labels: Mapping[str, str],
                     title: str = "") -> go.Figure:
    """Each layer's kept fraction of weights, one bar series per method."""
    fig = go.Figure()
    for i, (method, layers) in enumerate(rates.items()):
        fig.add_trace(go.Bar(x=[k.removesuffix(".weight") for k in layers], y=list(layers.values()),
                             name=labels.get(method, method), marker_color=PALETTE[i % len(PALETTE)]))
    fig.update_layout(title=title, template="plotly_white", barmode="group", height=420,
                      yaxis={"title": "kept fraction", "tickformat": ".0%"},
                      xaxis={"title": "layer", "tickangle": -45}, legend={"orientation": "h", "y": 1.1})
    return fig


def transfer_table(rows: Sequence[dict], methods: Sequence[str], labels: Mapping[str, str],
                   metric: str = "psnr_final") -> str:
    """Markdown: per image, the mean ``metric`` (dB) of each method over seeds, with the
    image each mask was learned on."""
    images = list(dict.fromkeys(r["task"] for r in rows))
    head = "| image | " + " | ".join(labels[m] for m in methods) + " |"
    lines = [head, "|" + " --- |" * (len(methods) + 1)]
    for image in images:
        cells = []
        for m in methods:
            vs = [r for r in rows if r["task"] == image and r["scheme"] == m and r["metric"] == metric]
            if not vs:
                cells.append("—")
                continue
            src = vs[0]["mask_from"]
            where = f" (mask from {src})" if src != image else ""
            cells.append(f"{np.mean([r['value'] for r in vs]):.2f}{where}")
        lines.append(f"| {image} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
