"""The report's answer: every experiment cell's paired contrast in one figure and one paragraph.

Each experiment records its contrasts (``rtstudy.results.record(..., contrasts=...)``) as
dicts: ``experiment``, ``cell`` (where: task, sparsity, ...), ``kind`` (``"robust −
natural"`` or ``"transfer gain"``), ``diff``, ``low``, ``high`` (points), ``verdict``
(``better`` / ``worse`` / ``tie``, after the notebook's Holm correction) and ``mde``.
``answer_figure`` draws them as a forest plot coloured by verdict; ``answer_paragraph``
says, from the same numbers, where pretraining transfers at all, where robust tickets
help, where they hurt and where the design cannot tell.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

ROBUST_VS_NATURAL = "robust − natural"
TRANSFER_GAIN = "transfer gain"
VERDICT_COLORS = {"better": "#1a9850", "worse": "#d73027", "tie": "#878787"}


def contrasts_of(summary: Mapping) -> list[dict]:
    """Every recorded contrast of a report summary, each with its experiment id."""
    out = []
    for exp, info in summary.get("experiments", {}).items():
        for c in info.get("contrasts", []):
            out.append({"experiment": exp, **c})
    return out


def _cell(c: Mapping) -> str:
    return f"{c['experiment']} {c['cell']} {c['diff']:+.1f}"


def _fmt(x: float) -> str:
    return "∞" if math.isinf(x) else f"{x:.1f}"


def answer_paragraph(contrasts: Iterable[Mapping]) -> str:
    """Where pretraining transfers, where robust tickets help or hurt, where nothing can be told."""
    cs = list(contrasts)
    gains = [c for c in cs if c["kind"] == TRANSFER_GAIN]
    rn = [c for c in cs if c["kind"] == ROBUST_VS_NATURAL]
    if not cs:
        return "No experiment recorded a contrast."
    parts = []
    if gains:
        sep = [c for c in gains if c["verdict"] == "better"]
        none = [c for c in gains if c["verdict"] != "better"]
        text = (f"Pretraining transfers (dense pretrained beats training from scratch, paired, "
                f"Holm-corrected) in {len(sep)} of {len(gains)} cells")
        if sep:
            text += (f", by {min(c['diff'] for c in sep):+.1f} to {max(c['diff'] for c in sep):+.1f} "
                     f"points")
        if none:
            where = ", ".join(sorted({f"{c['experiment']} {c['cell']}" for c in none})[:6])
            text += f"; not separated in {len(none)} ({where}{'…' if len(none) > 6 else ''})"
        parts.append(text + ".")
    if rn:
        better = [c for c in rn if c["verdict"] == "better"]
        worse = [c for c in rn if c["verdict"] == "worse"]
        tie = [c for c in rn if c["verdict"] == "tie"]
        exps = sorted({c["experiment"] for c in rn}, key=lambda e: int(e[1:]))
        text = (f"Robust − natural, over {len(rn)} cells of {', '.join(exps)}: robust tickets are "
                f"better in {len(better)}")
        if better:
            text += f" ({', '.join(_cell(c) for c in better[:5])}"
            text += "…)" if len(better) > 5 else ")"
        text += f", worse in {len(worse)}"
        if worse:
            text += f" ({', '.join(_cell(c) for c in worse[:5])}"
            text += "…)" if len(worse) > 5 else ")"
        finite = [c["mde"] for c in tie if not math.isinf(c.get("mde", math.inf))]
        text += f", and not distinguishable in {len(tie)}"
        if finite:
            text += (f", where the design could have detected differences of {_fmt(min(finite))} to "
                     f"{_fmt(max(finite))} points (80% power)")
        parts.append(text + ".")
    return " ".join(parts)


def answer_figure(contrasts: Iterable[Mapping], *, title: str = ""):
    """A forest plot: one row per cell, the paired difference and its 95% CI, coloured by verdict."""
    import plotly.graph_objects as go

    cs = list(contrasts)
    fig = go.Figure()
    labels = [f"{c['experiment']} · {c['kind']} · {c['cell']}" for c in cs]
    for verdict, color in VERDICT_COLORS.items():
        idx = [i for i, c in enumerate(cs) if c["verdict"] == verdict]
        if not idx:
            continue
        fig.add_trace(go.Scatter(
            x=[cs[i]["diff"] for i in idx], y=[labels[i] for i in idx], mode="markers",
            name={"better": "separated, > 0", "worse": "separated, < 0", "tie": "not separated"}[verdict],
            marker={"color": color, "size": 8},
            error_x={"type": "data", "symmetric": False, "color": color,
                     "array": [cs[i]["high"] - cs[i]["diff"] for i in idx],
                     "arrayminus": [cs[i]["diff"] - cs[i]["low"] for i in idx]},
            hovertemplate="%{y}: %{x:+.1f} points<extra></extra>"))
    fig.add_vline(x=0, line_color="#444", line_width=1)
    fig.update_layout(
        title={"text": title or "Every cell's paired contrast (points, 95% CI; colour: verdict "
               "after Holm)", "y": 0.995, "yanchor": "top"},
        template="plotly_white", height=max(320, 18 * len(cs) + 140),
        xaxis={"title": "paired difference (accuracy points)", "side": "top"},
        yaxis={"autorange": "reversed", "categoryorder": "array", "categoryarray": labels},
        legend={"orientation": "h", "x": 0, "y": 0, "yanchor": "top"},
        margin={"l": 20, "t": 90, "b": 40})
    return fig


def compare_replicates(first: Iterable[Mapping], second: Iterable[Mapping]) -> dict:
    """How the verdicts of two replicates (disjoint seeds) agree, cell by cell.

    Cells are matched by (experiment, kind, cell). ``reversed`` counts cells separated in
    both replicates with opposite signs: a defect of the design, not a result.
    """
    def key(c):
        return (c["experiment"], c["kind"], c["cell"])

    a = {key(c): c for c in first}
    b = {key(c): c for c in second}
    common = [k for k in a if k in b]
    same = sum(a[k]["verdict"] == b[k]["verdict"] for k in common)
    flipped = sum((a[k]["diff"] > 0) != (b[k]["diff"] > 0) for k in common
                  if a[k]["diff"] != 0 and b[k]["diff"] != 0)
    moved = sum((a[k]["verdict"] == "tie") != (b[k]["verdict"] == "tie") for k in common)
    reversed_ = [k for k in common if {a[k]["verdict"], b[k]["verdict"]} == {"better", "worse"}]
    sep_a = sum(a[k]["verdict"] != "tie" for k in common)
    kept = sum(a[k]["verdict"] != "tie" and a[k]["verdict"] == b[k]["verdict"] for k in common)
    sentence = (f"{same} of {len(common)} cells have the same verdict in both replicates; "
                f"{flipped} change the sign of the mean difference; {moved} move between "
                f"separated and not; of the {sep_a} cells separated in the first, {kept} are "
                f"separated the same way in the second; "
                + (f"{len(reversed_)} are separated in opposite directions "
                   f"({', '.join(' '.join(k) for k in reversed_[:4])}) — a defect of the design."
                   if reversed_ else "no separated verdict reverses."))
    return {"cells": len(common), "same_verdict": same, "sign_flips": flipped,
            "moved_separated": moved, "separated_first": sep_a, "separated_kept": kept,
            "reversed": [list(k) for k in reversed_], "sentence": sentence}
