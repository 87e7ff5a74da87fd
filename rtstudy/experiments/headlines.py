"""The headlines: each question's primary estimate in words, and the report that leads with them.

- :func:`headline_sentence`: one estimate, its CI, verdict and design power, in one sentence;
- :func:`lead_with_headline`, :func:`secondary_markdown`, :func:`secondary_figure`,
  :func:`transfer_gain_markdown`: what an experiment's notebook shows (its headline first;
  the per-cell estimates as a table and a forest plot, never as the headline; the dense
  transfer gain as a description);
- :func:`report_headlines`: every experiment's primary estimates from a report summary's
  rows, Holm-corrected as one family (each distinct estimand once);
- :func:`headline_table_html`, :func:`headline_figure`, :func:`answer_sentences`,
  :func:`compare_headlines`: the report's index and its replication, from those numbers.
"""

from __future__ import annotations

import html
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace

from rtstudy.core.contrasts import (
    BETTER,
    EQUIVALENT,
    NOT_SETTLED,
    WORSE,
    ZERO_SPREAD,
    UnitEstimate,
    holm_family,
)
from rtstudy.experiments.estimands import Estimand, cell_estimates, primary_estimates
from rtstudy.experiments.findings import Finding
from rtstudy.experiments.rows import fmt_level

VERDICT_COLORS = {BETTER: "#1a9850", WORSE: "#d73027", EQUIVALENT: "#4575b4",
                  NOT_SETTLED: "#878787", ZERO_SPREAD: "#000000"}


@dataclass(frozen=True)
class Headline:
    """One primary estimand of ``experiment`` and its estimate."""

    experiment: str
    estimand: Estimand
    estimate: UnitEstimate


# ----------------------------------------------------------------------------- wording
def _v(x: float, decimals: int = 1) -> str:
    return f"{round(x, decimals) + 0.0:+.{decimals}f}"


def _decimals(est: Estimand) -> int:
    return 2 if est.unit_name == "dB" else 1


def interval_text(est: Estimand, e: UnitEstimate) -> str:
    """``+4.6 points, 95% CI [-0.1, +9.3]`` (or the value of a degenerate contrast)."""
    d = _decimals(est)
    if not e.n:
        return "no units"
    if not e.has_interval:
        return f"{_v(e.mean, d)} {est.unit_name}, no interval"
    return f"{_v(e.mean, d)} {est.unit_name}, 95% CI [{_v(e.low, d)}, {_v(e.high, d)}]"


def verdict_text(est: Estimand, e: UnitEstimate, family: str = "headline estimands") -> str:
    """The verdict in words, with what it rests on (``family``: what Holm corrected over)."""
    m = f"±{est.margin:g} {est.unit_name}"
    if e.verdict == ZERO_SPREAD:
        return (f"zero spread: all {e.n} units give {_v(e.mean, _decimals(est))} "
                f"{est.unit_name}, so no interval and no verdict")
    if not e.has_interval:
        return f"not settled: {e.n} {est.unit_label}, no interval"
    perm = ""
    if e.permutation_agrees is not None:
        perm = f", exact sign-flip p = {e.p_permutation:.2g}"
    holm = f" after Holm over {e.family} {family}" if e.family > 1 else ""
    p = f"p = {e.p_adjusted:.2g}{holm}{perm}"
    if e.verdict in (BETTER, WORSE):
        small = f", by less than {m}" if e.within_margin else ""
        return f"{e.verdict}{small} ({p})"
    if e.verdict == EQUIVALENT:
        return f"equivalent within {m} ({p})"
    if not (e.low > 0 or e.high < 0):
        return f"not settled: the CI includes 0 and reaches past {m} ({p})"
    if e.p >= e.alpha:
        return (f"not settled: the t interval excludes 0 but the exact sign-flip test does not "
                f"separate it (t test p = {e.p_t:.2g}, sign-flip p = {e.p_permutation:.2g})")
    return (f"not settled: the 95% CI excludes 0 (p = {e.p:.2g}) but not after Holm over "
            f"{e.family} {family} (p = {e.p_adjusted:.2g}{perm})")


def power_text(est: Estimand, e: UnitEstimate, profile=None) -> str:
    if math.isnan(e.design_power):
        return "no pilot SD recorded for this profile, so no design power"
    planned = est.design_units(profile) if profile is not None else None
    units = (f" with the {planned} {est.unit_label} the profile plans" if planned is not None
             else "")
    return f"design power {e.design_power:.2f} at ±{est.margin:g} {est.unit_name}{units}"


def headline_sentence(h: Headline, profile=None, family: str = "headline estimands") -> str:
    """``E1 (what is contrasted): +4.6 points, 95% CI [...] over 3 source seeds; verdict;
    design power.``"""
    est, e = h.estimand, h.estimate
    return (f"{est.id} ({est.contrast}): {interval_text(est, e)} over {e.n} {est.unit_label}; "
            f"{verdict_text(est, e, family)}; {power_text(est, e, profile)}.")


# ----------------------------------------------------------------------------- a notebook
def notebook_headline(experiment: str, rows: Iterable[dict], profile) -> str:
    """The notebook's headline: each primary estimate in one sentence (verdicts for this
    experiment alone; the report corrects over all headline estimands)."""
    pairs = primary_estimates(experiment, rows, profile)
    if not pairs:
        return ""
    hs = [Headline(experiment, est, e) for est, e in _corrected(pairs)]
    text = " ".join(headline_sentence(h, profile, "estimands of this experiment") for h in hs)
    return (f"{text} The report's index corrects these verdicts over every headline estimand "
            "of the report.")


def lead_with_headline(finding: str, experiment: str, rows: Iterable[dict], profile) -> Finding:
    """``finding`` with the experiment's headline as its first paragraph (what the summary
    stores starts with it)."""
    head = notebook_headline(experiment, rows, profile)
    paragraphs = getattr(finding, "paragraphs", (str(finding),))
    contrasts = getattr(finding, "contrasts", ())
    if not head:
        return Finding(str(finding), paragraphs, contrasts)
    return Finding(f"{head} {finding}", [head, *paragraphs], contrasts)


def transfer_gain_markdown(rows: Iterable[dict], profile) -> str:
    """The dense transfer gain (pretrained − scratch) per target and source from a grid's
    gate rows, as a Markdown table: a description of where pretraining carries over; it
    selects nothing."""
    from rtstudy.experiments.primaries import transfer_gain

    est = transfer_gain(profile)
    es = cell_estimates(est, rows)
    if not es:
        return ""
    lines = ["| target | source | fraction of T | dense pretrained − scratch, 95% CI | units |",
             "|---|---|---|---|---|"]
    lines += [f"| {e.key[1]} | {e.key[2]} | {fmt_level('fraction', e.key[3])} | "
              f"{interval_text(est, e)} | {e.n} |" for e in es]
    return ("Transfer gain of the dense models (a description of where pretraining carries "
            "over; it selects nothing):\n\n" + "\n".join(lines))


def _corrected(pairs: Sequence[tuple]) -> list[tuple]:
    es = holm_family([e for _, e in pairs])
    return [(est, e) for (est, _), e in zip(pairs, es, strict=True)]


def _cell_text(est: Estimand, e: UnitEstimate) -> str:
    return ", ".join(fmt_level(c, v) for c, v in zip(est.cells, e.key[1:], strict=True)) or "all"


def secondary_markdown(experiment: str, rows: Iterable[dict], profile) -> str:
    """The per-cell (secondary) estimates of the experiment's primary estimands, as a
    Markdown table: a − b per cell over the same units, Holm within each estimand's cells."""
    from rtstudy.experiments.registry import EXPERIMENTS

    rows = list(rows)
    exp = EXPERIMENTS.get(experiment)
    lines = ["| estimand | cell | estimate, 95% CI | units | Holm p | verdict |",
             "|---|---|---|---|---|---|"]
    for est in (exp.primaries(profile) if exp.primaries else ()):
        for e in cell_estimates(est, rows):
            p = f"{e.p_adjusted:.2g}" if math.isfinite(e.p_adjusted) else "–"
            lines.append(f"| {est.id} | {_cell_text(est, e)} | {interval_text(est, e)} | {e.n} "
                         f"| {p} | {e.verdict} |")
    return "\n".join(lines) if len(lines) > 2 else ""


def forest_figure(items: Sequence[tuple[str, UnitEstimate]], *, x_title: str, title: str = ""):
    """A forest plot: one row per ``(label, estimate)``, its mean and 95% CI, coloured by
    verdict."""
    import plotly.graph_objects as go

    fig = go.Figure()
    labels = [label for label, _ in items]
    for verdict, color in VERDICT_COLORS.items():
        idx = [i for i, (_, e) in enumerate(items) if e.verdict == verdict and e.n]
        if not idx:
            continue
        es = [items[i][1] for i in idx]
        fig.add_trace(go.Scatter(
            x=[e.mean for e in es], y=[labels[i] for i in idx], mode="markers", name=verdict,
            marker={"color": color, "size": 9},
            error_x={"type": "data", "symmetric": False, "color": color,
                     "array": [e.high - e.mean if e.has_interval else 0 for e in es],
                     "arrayminus": [e.mean - e.low if e.has_interval else 0 for e in es]},
            hovertemplate="%{y}: %{x:+.2f}<extra></extra>"))
    fig.add_vline(x=0, line_color="#444", line_width=1)
    fig.update_layout(title=title, template="plotly_white", height=max(260, 26 * len(items) + 140),
                      xaxis={"title": x_title, "side": "top"},
                      yaxis={"autorange": "reversed", "categoryorder": "array",
                             "categoryarray": labels},
                      legend={"orientation": "h", "x": 0, "y": 0, "yanchor": "top"},
                      margin={"l": 20, "t": 80, "b": 40})
    return fig


def secondary_figure(experiment: str, rows: Iterable[dict], profile):
    """The per-cell estimates of the experiment's primary estimands as one forest plot
    (``None`` where it has none)."""
    from rtstudy.experiments.registry import EXPERIMENTS

    rows = list(rows)
    exp = EXPERIMENTS.get(experiment)
    items, unit = [], "points"
    for est in (exp.primaries(profile) if exp.primaries else ()):
        items += [(f"{est.id} · {_cell_text(est, e)}", e) for e in cell_estimates(est, rows)]
        unit = est.unit_name
    if not items:
        return None
    return forest_figure(items, x_title=f"a − b per cell ({unit}, 95% CI)",
                         title="Secondary: the primary contrast in each cell (Holm within cells)")


# ----------------------------------------------------------------------------- the report
def report_headlines(summary: Mapping, profile=None) -> list[Headline]:
    """Every primary estimate of a report summary (its experiments' rows under its profile),
    Holm-corrected as one family with each distinct estimand counted once."""
    from rtstudy.profiles import get_profile

    profile = profile or get_profile(summary["profile"])
    out = []
    for exp, info in summary.get("experiments", {}).items():
        for est, e in primary_estimates(exp, info.get("rows", []), profile):
            out.append(Headline(exp, est, e))
    es = holm_family([h.estimate for h in out])
    return [replace(h, estimate=e) for h, e in zip(out, es, strict=True)]


def _overlap(a: UnitEstimate, b: UnitEstimate) -> bool:
    return a.has_interval and b.has_interval and a.low <= b.high and b.low <= a.high


def compare_headlines(main: Sequence[Headline], rep: Sequence[Headline]) -> dict:
    """How the headline estimands of a replicate (disjoint seeds) agree with the main
    report's: per distinct estimand, the same verdict, the same sign, overlapping CIs;
    ``reversed``: separated in opposite directions."""
    a = {h.estimand.id: h.estimate for h in main}
    b = {h.estimand.id: h.estimate for h in rep}
    common = [k for k in a if k in b]
    same = [k for k in common if a[k].verdict == b[k].verdict]
    sign = [k for k in common if (a[k].mean > 0) == (b[k].mean > 0)]
    overlap = [k for k in common if _overlap(a[k], b[k])]
    rev = [k for k in common if {a[k].verdict, b[k].verdict} == {BETTER, WORSE}]
    sentence = (f"Headline estimands: {len(same)} of {len(common)} have the same verdict in the "
                f"replicate, {len(sign)} the same sign, {len(overlap)} overlapping 95% CIs; "
                + (f"{len(rev)} reverse a separated verdict ({', '.join(rev)})." if rev
                   else "no headline verdict reverses."))
    return {"estimands": len(common), "same_verdict": len(same), "same_sign": len(sign),
            "ci_overlap": len(overlap), "reversed": rev, "sentence": sentence,
            "per_estimand": {k: {"main": a[k].verdict, "replicate": b[k].verdict,
                                 "main_mean": a[k].mean, "replicate_mean": b[k].mean}
                             for k in common}}


def answer_sentences(headlines: Sequence[Headline], agreement: Mapping | None = None) -> str:
    """Three sentences from the numbers: what the headline verdicts are, what the main
    question's estimate is, and how far the design and the replicate support them."""
    hs = [h for h in headlines if h.estimate.n]
    if not hs:
        return "No experiment's primary estimand could be estimated from this report's rows."
    by = {v: [h.estimand.id for h in hs if h.estimate.verdict == v] for v in VERDICT_COLORS}
    parts = [f"{len(v)} {k} ({', '.join(v)})" for k, v in by.items() if v]
    first = (f"Of {len(hs)} headline estimands (Holm over all of them), " + "; ".join(parts)
             + ".")
    main = next((h for h in hs if h.estimand.id == "E1"), hs[0])
    second = (f"The main question, {main.estimand.contrast}, is "
              f"{interval_text(main.estimand, main.estimate)}: {main.estimate.verdict}.")
    powers = [h.estimate.design_power for h in hs if not math.isnan(h.estimate.design_power)]
    if agreement:
        third = agreement["sentence"]
    elif powers:
        third = (f"The design powers at the margins run from {min(powers):.2f} to "
                 f"{max(powers):.2f}; no replicate is stored to check the verdicts.")
    else:
        third = "No pilot SD is recorded for this profile, so no design power is claimed."
    return " ".join([first, second, third])


def estimate_record(h: Headline) -> dict:
    """A headline as JSON-ready numbers and words (what a summary stores of it)."""
    e = h.estimate
    return {"experiment": h.experiment, "estimand": h.estimand.id, "mean": e.mean, "low": e.low,
            "high": e.high, "n": e.n, "p_adjusted": e.p_adjusted, "verdict": e.verdict,
            "design_power": e.design_power, "text": interval_text(h.estimand, e)}


def headline_table_html(headlines: Sequence[Headline], replicate: Mapping[str, Mapping] | None = None,
                        titles: Mapping[str, str] | None = None) -> str:
    """The index's first table: question, primary estimate with CI, verdict, units, design
    power, and the replicate's estimate and verdict (``replicate``: ``{estimand id:
    estimate_record}``)."""
    rep = dict(replicate or {})
    head = ("<tr><th>question</th><th>primary estimate (95% CI)</th><th>verdict</th>"
            "<th>units</th><th>design power</th><th>replicate</th></tr>")
    body = []
    for h in headlines:
        est, e = h.estimand, h.estimate
        title = (titles or {}).get(h.experiment, "")
        r = rep.get(est.id)
        rep_text = f"{r['text']}; {r['verdict']}" if r else "–"
        power = "–" if math.isnan(e.design_power) else f"{e.design_power:.2f}"
        body.append(
            f"<tr><td><b>{html.escape(est.id)}</b> {html.escape(title)}<br>"
            f"<small>{html.escape(est.contrast)}</small></td>"
            f"<td>{html.escape(interval_text(est, e))}</td>"
            f"<td style=\"color:{VERDICT_COLORS[e.verdict]}\">{html.escape(e.verdict)}</td>"
            f"<td>{e.n}</td><td>{power}</td><td>{html.escape(rep_text)}</td></tr>")
    return f"<table class=\"headlines\">{head}{''.join(body)}</table>"


def headline_figure(headlines: Sequence[Headline]):
    """The forest plot of the primary estimates, one row each (points; E12 in dB)."""
    items = [(f"{h.estimand.id} ({h.estimand.unit_name})", h.estimate) for h in headlines]
    return forest_figure(items, x_title="primary estimate, a − b (95% CI)",
                         title="Every question's primary estimate (colour: verdict after Holm)")
