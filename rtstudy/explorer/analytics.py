"""Mask analytics and the E10 numbers: chance-level overlap, filter overlap, ``anatomy``."""

from __future__ import annotations

import html
import math
import statistics
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import torch

from rtstudy.core import masks as masks_mod
from rtstudy.core import tickets
from rtstudy.vision.track import eps_label

if TYPE_CHECKING:
    from rtstudy.explorer.data import ExplorerData


def short_name(entry: str) -> str:
    """``net.layer1.0.conv1.weight`` -> ``layer1.0.conv1``."""
    name = entry[4:] if entry.startswith("net.") else entry
    return name[: -len(".weight")] if name.endswith(".weight") else name


def sparsity_key(sparsity: float) -> float:
    """A sparsity as a lookup key (rounded to 6 decimals)."""
    return round(float(sparsity), 6)


def random_iou(keep_a: float, keep_b: float) -> float:
    """Expected IoU of two independent uniform random masks keeping fractions ``keep_a``, ``keep_b``.

    Per weight P(both kept) = ka*kb and P(either kept) = ka + kb - ka*kb; for many weights
    the IoU concentrates at their ratio (s = sparsity, k = 1 - s: k / (2 - k) when equal).
    """
    union = keep_a + keep_b - keep_a * keep_b
    return keep_a * keep_b / union if union > 0 else 1.0


def expected_random_iou(a: Mapping[str, torch.Tensor], b: Mapping[str, torch.Tensor]) -> float:
    """``random_iou`` over a whole mask: masks with the same per-layer kept fractions, drawn at random."""
    inter = union = 0.0
    for k, va in masks_mod.weight_entries(a).items():
        n = va.numel()
        ka, kb = float(va.float().mean()), float(b[k].float().mean())
        inter += ka * kb * n
        union += (ka + kb - ka * kb) * n
    return inter / union if union > 0 else 1.0


def filter_iou(a: Mapping[str, torch.Tensor], b: Mapping[str, torch.Tensor]) -> tuple[float, float]:
    """IoU of the surviving output filters (any weight kept) over the layers where either
    ticket removed whole filters, and the expectation for random filter choices of the same
    per-layer counts. ``(nan, nan)`` when neither removed a filter."""
    sa, sb = masks_mod.surviving_channels(a), masks_mod.surviving_channels(b)
    wa = masks_mod.weight_entries(a)
    inter = union = exp_inter = exp_union = 0.0
    for k, va in wa.items():
        filters = va.shape[0]
        na, nb = len(sa[k]), len(sb[k])
        if na == filters and nb == filters:
            continue
        both = len(set(sa[k].tolist()) & set(sb[k].tolist()))
        inter += both
        union += na + nb - both
        ka, kb = na / filters, nb / filters
        exp_inter += ka * kb * filters
        exp_union += (ka + kb - ka * kb) * filters
    if union == 0 and exp_union == 0:
        return float("nan"), float("nan")
    return (inter / union if union else 1.0), (exp_inter / exp_union if exp_union else 1.0)


def _filters_alive(a: Mapping[str, torch.Tensor], b: Mapping[str, torch.Tensor]) -> dict[str, tuple]:
    """Per layer where either ticket removed whole filters: the fractions of filters alive in
    the natural ticket, in the robust one, and in both."""
    sa, sb = masks_mod.surviving_channels(a), masks_mod.surviving_channels(b)
    out = {}
    for k, va in masks_mod.weight_entries(a).items():
        filters = va.shape[0]
        na, nb = set(sa[k].tolist()), set(sb[k].tolist())
        if len(na) < filters or len(nb) < filters:
            out[k] = (len(na) / filters, len(nb) / filters, len(na & nb) / filters)
    return out


# ----------------------------------------------------------------------------- E10 numbers
def anatomy(data: ExplorerData, *, scheme: str = "omp", patterns: Sequence[str] = ("unstructured", "channel", "nm"),
            sparsities: Sequence[float] | None = None, random_draws: int = 5) -> tuple[list[dict], list[dict]]:
    """The E10 numbers for every stored robust source vs the natural one.

    Returns ``(rows, summary)``: ``rows`` in ``rtstudy.results.row`` format (metrics
    ``iou``, ``iou_random`` (expected, ``expected_random_iou``), ``iou_random_drawn``
    (mean of ``random_draws`` pairs of the pipeline's random tickets), ``hamming``,
    ``filter_iou`` / ``filter_iou_random`` (channel), and per layer ``layer_iou`` and
    ``layer_sparsity_diff`` (robust - natural) and, for channel tickets,
    ``filters_alive_natural`` / ``_robust`` / ``_shared`` (fractions of the layer's filters)
    with a ``layer`` column); ``summary`` one
    dict per (source, pattern, sparsity) with the same numbers for ``anatomy_finding``.
    """
    from rtstudy.results import row

    rows: list[dict] = []
    summary: list[dict] = []
    if not data.sources:
        return rows, summary
    nat = data.natural
    task = nat.artifact.config["task"]
    # the report's numbers come from the profile's own source models, not whatever else is stored
    profile_keys = {desc.key for desc in data.profile.source_models()}
    if profile_keys & set(data.by_key):
        sources = [s for s in data.sources if s.key in profile_keys]
    else:
        sources = data.sources
    for src in sources:
        if src.key == nat.key:
            continue
        for pattern in patterns:
            pat = data.pattern(pattern)
            spars = (data.sparsities(pattern) if sparsities is None or pat.implied_sparsity is not None
                     else sorted({sparsity_key(s) for s in sparsities if s > 0}))
            for s in spars:
                a = data.mask(nat.key, scheme, pattern, s)
                b = data.mask(src.key, scheme, pattern, s)
                if a is None or b is None:
                    continue
                drawn = []
                for i in range(random_draws):
                    ra = pat.random(a.mask, seed=1000 + 2 * i)
                    rb = pat.random(b.mask, seed=1001 + 2 * i)
                    drawn.append(masks_mod.iou(ra, rb))
                sp_a, sp_b = masks_mod.layer_sparsity(a.weights), masks_mod.layer_sparsity(b.weights)
                liou = masks_mod.layer_iou(a.weights, b.weights)
                item = {
                    "source": src.label, "eps": src.eps, "eps_label": eps_label(src.eps, src.norm),
                    "kind": src.kind, "norm": src.norm, "pattern": pattern, "sparsity": s,
                    "iou": masks_mod.iou(a.weights, b.weights),
                    "iou_random": expected_random_iou(a.weights, b.weights),
                    "iou_random_drawn": statistics.mean(drawn) if drawn else float("nan"),
                    "iou_random_max": max(drawn) if drawn else float("nan"),
                    "hamming": masks_mod.hamming(a.weights, b.weights, normalized=True),
                    "layer_iou": liou,
                    "layer_sparsity_diff": {k: sp_b[k] - sp_a[k] for k in sp_a},
                }
                if pat.whole_filters:
                    item["filter_iou"], item["filter_iou_random"] = filter_iou(a.weights, b.weights)
                    item["filters_alive"] = _filters_alive(a.weights, b.weights)
                summary.append(item)
                base = {"task": task, "source": src.label, "eps": src.eps, "scheme": scheme,
                        "pattern": pattern, "sparsity": s, "seed": 0}
                for metric in ("iou", "iou_random", "iou_random_drawn", "hamming", "filter_iou",
                               "filter_iou_random"):
                    if metric in item and not math.isnan(item[metric]):
                        rows.append(row(**base, metric=metric, value=item[metric]))
                for k, (fa, fb, shared) in item.get("filters_alive", {}).items():
                    for metric, value in (("filters_alive_natural", fa), ("filters_alive_robust", fb),
                                          ("filters_alive_shared", shared)):
                        rows.append(row(**base, metric=metric, value=value, layer=short_name(k)))
                for k in liou:
                    rows.append(row(**base, metric="layer_iou", value=liou[k], layer=short_name(k)))
                    rows.append(row(**base, metric="layer_sparsity_diff", value=item["layer_sparsity_diff"][k],
                                    layer=short_name(k)))
    return rows, summary


def _pct(values: Sequence[float]) -> str:
    return ", ".join(f"{v:.0%}" for v in values)


def anatomy_finding(summary: list[dict], data: ExplorerData) -> str:
    """The E10 finding in words, computed from ``anatomy``'s summary."""
    if not data.sources:
        return f"Nothing to compare: {data.message}"
    if not summary:
        return ("Nothing to compare: the store holds only the natural source model "
                f"({data.natural.label}); E10 needs a robust one too.")
    star = data.default_source()
    main_src = star.label if star is not None and not star.natural else summary[0]["source"]
    parts = []
    of = {p: [s for s in summary if s["source"] == main_src and s["pattern"] == p] for p in tickets.PATTERNS}
    main = of.get("unstructured", [])
    if main:
        ious = [s["iou"] for s in main]
        rnd = [s["iou_random"] for s in main]
        above = all(s["iou"] > s["iou_random_max"] for s in main)
        ratios = [i / r for i, r in zip(ious, rnd, strict=True) if r > 0]
        text = (f"OMP tickets (unstructured) from the {main_src} model and from the natural model "
                f"overlap with IoU {', '.join(f'{i:.2f}' for i in ious)} (kept weights) at "
                f"{_pct([s['sparsity'] for s in main])} sparsity, vs {', '.join(f'{r:.2f}' for r in rnd)} "
                f"expected for two random masks of the same per-layer sparsities")
        if above and ratios:
            how = "far more than" if min(ratios) >= 1.5 else "more than"
            differ = max(s["hamming"] for s in main)
            same = (f"yet they are not the same subnetwork ({differ:.1%} of the weights differ at the "
                    f"highest sparsity)" if differ > 0 else "and they are the same subnetwork")
            text += (f" ({min(ratios):.1f}–{max(ratios):.1f}× chance, and above every drawn pair of "
                     f"random tickets): robust and natural tickets share {how} chance, {same}.")
        else:
            text += (" — not above every drawn pair of random tickets, so the overlap is not clearly "
                     "more than chance.")
        parts.append(text)
        focus = (data.profile.fixed_sparsities or (0.8,))[0]
        mid = min(main, key=lambda s: abs(s["sparsity"] - focus))
        layer, diff = max(mid["layer_sparsity_diff"].items(), key=lambda kv: abs(kv[1]))
        parts.append(
            f"At {mid['sparsity']:.0%} sparsity the per-layer sparsities differ most in {short_name(layer)}: "
            f"the robust ticket prunes {abs(diff) * 100:.1f} points {'more' if diff > 0 else 'less'} there.")
        by_eps = sorted((s for s in summary if s["pattern"] == main[0]["pattern"]
                         and abs(s["sparsity"] - mid["sparsity"]) < 1e-6
                         and s["kind"] == main[0]["kind"] and s["norm"] == main[0]["norm"]),
                        key=lambda s: s["eps"])
        if len(by_eps) >= 2:
            vals = [s["iou"] for s in by_eps]
            trend = ("falls steadily" if all(x > y for x, y in zip(vals, vals[1:], strict=False)) else
                     "rises steadily" if all(x < y for x, y in zip(vals, vals[1:], strict=False)) else
                     "does not change monotonically")
            parts.append(f"As ε grows the overlap with the natural ticket {trend}: IoU "
                         + ", ".join(f"{s['iou']:.2f} (ε={s['eps_label']})" for s in by_eps)
                         + f" at {mid['sparsity']:.0%}.")
    chan = [s for s in of.get("channel", []) if not math.isnan(s.get("filter_iou", float("nan")))]
    if chan:
        parts.append("Channel tickets keep the same filters with filter-IoU "
                     + ", ".join(f"{s['filter_iou']:.2f}" for s in chan)
                     + f" at {_pct([s['sparsity'] for s in chan])} (random choice of the same counts: "
                     + ", ".join(f"{s['filter_iou_random']:.2f}" for s in chan) + ").")
    nm = of.get("nm", [])
    if nm:
        parts.append(f"{data.n}:{data.m} tickets: IoU {nm[0]['iou']:.2f} (random {nm[0]['iou_random']:.2f}).")
    return " ".join(parts) if parts else "No comparable tickets were found."


def summary_table(summary: list[dict]) -> str:
    """An HTML table of the E10 numbers (one row per source x pattern x sparsity)."""
    head = ("<tr><th>source</th><th>pattern</th><th>sparsity</th><th>IoU</th><th>random IoU (expected)</th>"
            "<th>random IoU (drawn)</th><th>weights differing</th><th>filter IoU (random)</th></tr>")
    body = []
    for s in summary:
        fi = s.get("filter_iou")
        filt = "" if fi is None or math.isnan(fi) else f"{fi:.3f} ({s['filter_iou_random']:.3f})"
        body.append(f"<tr><td>{html.escape(s['source'])}</td><td>{s['pattern']}</td><td>{s['sparsity']:.0%}</td>"
                    f"<td>{s['iou']:.3f}</td><td>{s['iou_random']:.3f}</td><td>{s['iou_random_drawn']:.3f}</td>"
                    f"<td>{s['hamming']:.1%}</td><td>{filt}</td></tr>")
    return f'<table class="rt-e10">{head}{"".join(body)}</table>'
