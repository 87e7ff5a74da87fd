"""E13, SuperTickets: its sizes per profile, its grid, its cost table and its finding.

Three ways to a sparse ticket at one sparsity, each drawn from the natural and the robust
source of every source seed: ``superticket`` (search and prune in one supernet training),
``search_then_prune`` (search, slim, then IMP) and the core's ``imp_source`` (IMP on the
dense model; E4 draws the same tickets). Every ticket is finetuned on every target like any
other (``rtstudy.experiments.grid``), with the dense model and its from-scratch control as
the transfer gate. :func:`cost_table` says what each ticket costs to run (counted MACs,
parameters, measured latency of the physically slimmed network) and to draw.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import torch

from rtstudy.core.descriptions import TicketDesc
from rtstudy.core.pipeline import draw_ticket, pretrain
from rtstudy.core.prunable import prunable_names
from rtstudy.core.stats import PairedContrast
from rtstudy.core.store import Store
from rtstudy.experiments.findings import (
    Finding,
    _null,
    _standard,
    _stats,
    paired_contrasts,
)
from rtstudy.experiments.grid import Grid, TicketSpec, TransferSpec, param, standard_sources
from rtstudy.experiments.rows import pct, select
from rtstudy.profiles import Profile, side_track_scale
from rtstudy.vision import supernet
from rtstudy.vision.supertickets import SEARCH_THEN_PRUNE, SUPERTICKET

IMP = "imp_source"
METHODS = (SUPERTICKET, SEARCH_THEN_PRUNE, IMP)
METHOD_NAMES = {SUPERTICKET: "SuperTicket", SEARCH_THEN_PRUNE: "search-then-prune",
                IMP: "IMP (dense model)", "dense": "dense"}


# ----------------------------------------------------------------------------- sizes
@dataclass(frozen=True)
class SuperTicketSizes:
    """E13's sizes in one profile (the source, targets and seeds are the profile's)."""

    sparsity: float  # every method's weight sparsity
    epochs: float  # superticket: the supernet training, in epochs of the source's subset
    search_epochs: float  # search-then-prune: its search's supernet training
    penalty: float  # L1 strength on the BN scales (proximal step lr·penalty)
    threshold: float  # a channel goes below this fraction of the blocks' initial mean |γ|
    widths: str  # the elastic width choices of every block
    events: int  # superticket: pruning events
    prune_end: float  # superticket: the last event at this fraction of its training
    regrow: float  # superticket: prune-and-regrow fraction (0: off)
    latency_batch: int  # images per timed forward pass
    latency_repeats: int  # timed passes per network (median)

    def options(self, scheme: str) -> dict[str, Any]:
        common = {"penalty": self.penalty, "threshold": self.threshold, "widths": self.widths}
        if scheme == SUPERTICKET:
            return {**common, "events": self.events, "prune_end": self.prune_end,
                    "regrow": self.regrow}
        return {**common, "search_epochs": self.search_epochs}


SMOKE = SuperTicketSizes(sparsity=0.8, epochs=1.0, search_epochs=1.0, penalty=0.9, threshold=0.9,
                         widths=supernet.WIDTHS, events=2, prune_end=0.8, regrow=0.3,
                         latency_batch=16, latency_repeats=3)
"""Seconds: the smoke profile's half of Digits (about 900 images), 14 steps of 64; a strong
penalty and a high threshold so that the search removes channels even in so few steps."""

DEFAULT = SuperTicketSizes(sparsity=0.8, epochs=0.25, search_epochs=0.25, penalty=0.1,
                           threshold=0.35, widths=supernet.WIDTHS, events=4, prune_end=0.8,
                           regrow=0.3, latency_batch=256, latency_repeats=15)
"""The default profile's E13, sized by measurement on the 2-core CPU.

Sparsity 80%: E4's fixed sparsity, so the IMP baseline and its transfers are E4's own
artifacts, and the dense model and its from-scratch control are E1's (no extra cost in the
whole report). The supernet is the pretrained source network (ResNet-8, one block per
stage, inner widths 16/32/64) trained on for 0.25 epochs of its half of Fashion-MNIST (58
steps of 128), natural or FGSM-RS as the source was. Search strength, from a pilot on the
natural source: penalty 0.02 removed no channel in 58 steps; penalty 0.1 with threshold
0.5 collapsed every block to a quarter of its width; threshold 0.35 keeps about 67% / 50% /
25% of the stages' inner widths (natural; 58% / 50% / 25% robust), 49% of the dense MACs.

Cost. The pilot (machine load about 3): a SuperTicket 9 s natural, 11 s adversarial;
search-then-prune about 30 s (its 0.25-epoch search, then the IMP rounds above the
searched sparsity at E4's rate 0.5 and 0.25 epochs per round: three times the training).
What E13 adds to the report: 6 SuperTickets (about 60 worker-seconds), 6 search-then-prune
tickets (about 200) and their 48 transfers (about 34, at 0.7 s each), plus its notebook
(about 15; it times the slim networks): about 310 worker-seconds, some 2.6 minutes of wall
time on 2 workers here, 2.2 at the reference machine's throughput. Measured in a cold
default report on an otherwise idle 2-core machine (bench clean training 2,897 img/s, 0.85
of the reference machine), what E13 adds beyond E1's and E4's artifacts: 170
worker-seconds of tickets, 58 of transfers and 39 to render the notebook, 267 in all: 2.2
minutes on the 2 workers here, 1.9 on the reference machine (E13 may add 5).
"""

PAPER = SuperTicketSizes(sparsity=0.8, epochs=5.0, search_epochs=5.0, penalty=0.01,
                         threshold=0.35, widths="0.25,0.375,0.5,0.625,0.75,0.875,1", events=10,
                         prune_end=0.8, regrow=0.3, latency_batch=256, latency_repeats=30)
"""A GPU: ResNet-18 supernets trained for 5 epochs, finer widths, ten events."""

SIZES = {"smoke": SMOKE, "default": DEFAULT, "paper": PAPER}


def sizes(profile: Profile) -> SuperTicketSizes:
    """E13's sizes for ``profile`` (by its name)."""
    name = side_track_scale(profile.name)
    if name not in SIZES:
        raise ValueError(f"E13 has no sizes for profile {profile.name!r}; allowed: {sorted(SIZES)}")
    return SIZES[name]


# ----------------------------------------------------------------------------- the grid
@dataclass(frozen=True)
class SupernetTicketSpec(TicketSpec):
    """A ticket drawn during a supernet training: its ``epochs``, IMP ``rate`` (search-then-
    prune) and scheme ``options``, the same for every source."""

    epochs: float = 0.25
    rate: float | None = None
    options: tuple = ()

    def desc(self, profile: Profile, source, target: str, seed: int) -> TicketDesc:
        return TicketDesc(source=source, scheme=self.scheme, pattern=self.pattern,
                          sparsity=self.sparsity, rate=self.rate, epochs=self.epochs,
                          options=dict(self.options))

    @property
    def label(self) -> str:
        return f"{METHOD_NAMES[self.scheme]} {pct(self.sparsity)}"


def tickets(P: Profile, sparsity: float | None = None, regrow: float | None = None) -> list[TicketSpec]:
    """The three methods' tickets at ``sparsity`` (default: E13's), and the dense model."""
    S = sizes(P)
    s = float(S.sparsity if sparsity is None else sparsity)
    st = S.options(SUPERTICKET)
    if regrow is not None:
        st["regrow"] = float(regrow)
    return [TicketSpec(),
            SupernetTicketSpec(SUPERTICKET, "unstructured", s, epochs=S.epochs,
                               options=tuple(sorted(st.items()))),
            SupernetTicketSpec(SEARCH_THEN_PRUNE, "unstructured", s, epochs=P.imp_epochs,
                               rate=P.imp_rate, options=tuple(sorted(S.options(SEARCH_THEN_PRUNE).items()))),
            TicketSpec(IMP, "unstructured", s)]


def grid_e13(P: Profile, *, source_seeds=None, gate_source_seeds=None, targets=None, seeds=None,
             sparsity=None, regrow=None) -> list[Grid]:
    """Natural and robust sources; dense, SuperTicket, search-then-prune and IMP tickets;
    the dense model's from-scratch control, and the transfer gate."""
    from rtstudy.experiments.grids import gate_grids

    targets, seeds = param(targets, P.targets, str), param(seeds, P.seeds, int)
    if gate_source_seeds is None and source_seeds is not None:
        gate_source_seeds = source_seeds  # other source seeds than the profile's: the gate's too
    source_seeds = param(source_seeds, P.source_seeds, int)
    return [Grid(standard_sources(P), tickets(P, sparsity, regrow), targets, seeds,
                 source_seeds=source_seeds, controls="dense",
                 gate=gate_grids(P, targets, seeds, [TransferSpec()], source_seeds,
                                 gate_source_seeds))]


# ----------------------------------------------------------------------------- costs
def _training_epochs(desc: TicketDesc, model, mask) -> float:
    """Epochs of the source subset a ticket's drawing trained for."""
    if desc.scheme == SUPERTICKET:
        return desc.epochs
    names = prunable_names(model)
    total = sum(mask[k].numel() for k in names)
    if desc.scheme == SEARCH_THEN_PRUNE:
        searched = supernet.structural_mask(model, mask)
        s = sum(int((~searched[k]).sum()) for k in names) / total
        rounds = [x for x in desc.pattern.imp_schedule(desc.sparsity, desc.rate) if x > s]
        return desc.option("search_epochs") + len(rounds) * desc.epochs
    return len(desc.pattern.imp_schedule(desc.sparsity, desc.rate)) * desc.epochs


def cost_table(P: Profile, grid: Grid, *, store: Store | None = None) -> list[dict]:
    """One dict per (source, source seed, ticket) of ``grid``: ``method``, the searched
    ``widths`` per stage, ``params``, ``params_nonzero``, ``macs``, ``macs_nonzero`` (per
    image, counted), ``latency`` (median seconds per batch, measured now, round-robin with
    the dense model of the same source), ``speedup`` (dense / slim), ``train_epochs``
    (drawing cost, in epochs of the source subset; adversarial sources cost more per epoch)."""
    S = sizes(P)
    out = []
    for src_desc in grid.sources:
        for ss in grid.source_seeds:
            sdesc = src_desc.with_(seed=ss)
            src = pretrain(sdesc, store=store)
            model = src.model.cpu().eval()
            x = torch.rand(S.latency_batch, sdesc.channels, sdesc.image_size, sdesc.image_size,
                           generator=torch.Generator().manual_seed(0))
            drawn = {}
            for t in grid.tickets:
                if t.dense:
                    continue
                tdesc = t.desc(P, sdesc, grid.targets[0], 0)
                drawn[t.scheme] = (tdesc, draw_ticket(tdesc, store=store, source=src).mask)
            lat = supernet.latencies(model, {"dense": None, **{k: m for k, (_, m) in drawn.items()}},
                                     x, repeats=S.latency_repeats)
            base = {"source": sdesc.role, "source_label": sdesc.label, "source_seed": ss}
            out.append({**base, "method": "dense", **supernet.ticket_costs(model, None, x),
                        "widths": {s: 1.0 for s in supernet.searched_widths(model, {})},
                        "latency": lat["dense"], "speedup": 1.0, "train_epochs": 0.0})
            for scheme, (tdesc, mask) in drawn.items():
                out.append({**base, "method": scheme, **supernet.ticket_costs(model, mask, x),
                            "widths": supernet.searched_widths(model, mask),
                            "latency": lat[scheme], "speedup": lat["dense"] / lat[scheme],
                            "train_epochs": _training_epochs(tdesc, model, mask)})
    return out


def cost_summary(costs: Iterable[dict]) -> list[dict]:
    """Per (method, source): the means over source seeds of the cost table's numbers."""
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for c in costs:
        groups[(c["method"], c["source"])].append(c)
    out = []
    for (method, source), cs in groups.items():
        row = {"method": method, "source": source, "n": len(cs)}
        for k in ("params", "params_nonzero", "macs", "macs_nonzero", "latency", "speedup",
                  "train_epochs"):
            row[k] = statistics.fmean(c[k] for c in cs)
        row["widths"] = {s: statistics.fmean(c["widths"][s] for c in cs) for s in cs[0]["widths"]}
        out.append(row)
    return out


def cost_markdown(summary: Sequence[dict]) -> str:
    """The cost summary as a markdown table."""
    dense = {r["source"]: r for r in summary if r["method"] == "dense"}
    lines = ["| method | source | widths per stage | params (non-zero) | MACs / image (non-zero) "
             "| latency (ms / batch) | speedup | training (epochs) |", "|---|---|---|---|---|---|---|---|"]
    for r in summary:
        d = dense.get(r["source"], r)
        widths = " / ".join(f"{w:.0%}" for w in r["widths"].values())
        lines.append(f"| {METHOD_NAMES.get(r['method'], r['method'])} | {r['source']} | {widths} | "
                     f"{r['params'] / 1e3:.1f}k ({r['params_nonzero'] / d['params']:.0%}) | "
                     f"{r['macs'] / 1e6:.2f}M ({r['macs_nonzero'] / d['macs']:.0%} of dense) | "
                     f"{1e3 * r['latency']:.2f} | {r['speedup']:.2f}× | {r['train_epochs']:.2f} |")
    return "\n".join(lines)


def tradeoff_rows(rows: Iterable[dict], summary: Sequence[dict]) -> list[dict]:
    """Per (task, method, source): mean test accuracy on T (pretrained, over every seed)
    with the method's mean MACs and latency: the points of the trade-off figure."""
    cost = {(r["method"], r["source"]): r for r in summary}
    acc: dict[tuple, list[float]] = defaultdict(list)
    for r in select(rows, metric="test_acc", init="pretrained"):
        method = "dense" if r["sparsity"] == 0 else r["scheme"]
        acc[(r["task"], method, r["source"])].append(r["value"])
    out = []
    for (task, method, source), values in sorted(acc.items()):
        c = cost.get((method, source))
        if c is None:
            continue
        out.append({"task": task, "method": method, "source": source,
                    "test_acc": statistics.fmean(values), "macs": c["macs"],
                    "macs_nonzero": c["macs_nonzero"], "latency": c["latency"]})
    return out


def tradeoff_figure(points: Sequence[dict], *, x: str = "macs", x_title: str = "", title: str = ""):
    """Accuracy on T against a cost (``macs``, ``macs_nonzero`` or ``latency``), one marker
    per (method, source), one panel per task."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    tasks = list(dict.fromkeys(p["task"] for p in points))
    fig = make_subplots(rows=1, cols=len(tasks), subplot_titles=tasks, shared_yaxes=True)
    symbols = {"natural": "circle", "robust": "diamond"}
    colors = {"dense": "#444", SUPERTICKET: "#d62728", SEARCH_THEN_PRUNE: "#1f77b4", IMP: "#2ca02c"}
    for i, task in enumerate(tasks, start=1):
        for p in (q for q in points if q["task"] == task):
            name = f"{METHOD_NAMES[p['method']]}, {p['source']}"
            scale = 1e3 if x == "latency" else 1e-6
            fig.add_trace(go.Scatter(
                x=[p[x] * scale], y=[p["test_acc"]], mode="markers", name=name, legendgroup=name,
                showlegend=i == 1, marker={"symbol": symbols.get(p["source"], "circle"), "size": 11,
                                           "color": colors.get(p["method"], "#888")}), row=1, col=i)
        fig.update_xaxes(title_text=x_title or x, row=1, col=i)
    fig.update_yaxes(title_text="test accuracy on T", row=1, col=1)
    fig.update_layout(title=title, height=380)
    return fig


# ----------------------------------------------------------------------------- the finding
def _method_words(adjusted: Sequence[PairedContrast], gate, ranked) -> str:
    parts = []
    for c in adjusted:
        other, task, source = c.key
        who = f"on {task} from the {source} source, the SuperTicket"
        if c.verdict == "tie":
            parts.append(f"{who} vs {METHOD_NAMES[other]}: {_null(c)}")
        else:
            verb = "beats" if c.verdict == "better" else "trails"
            parts.append(f"{who} {verb} {METHOD_NAMES[other]} ({_stats(c)})")
    if not parts:
        return ""
    return " Method against method at equal weight sparsity: " + "; ".join(parts) + "."


def _cost_words(summary: Sequence[dict]) -> str:
    dense = {r["source"]: r for r in summary if r["method"] == "dense"}
    bits = []
    for method in METHODS:
        rs = [r for r in summary if r["method"] == method and r["source"] in dense]
        if not rs:
            continue
        macs = statistics.fmean(r["macs"] / dense[r["source"]]["macs"] for r in rs)
        speed = statistics.fmean(r["speedup"] for r in rs)
        epochs = statistics.fmean(r["train_epochs"] for r in rs)
        widths = " / ".join(f"{w:.0%}" for w in rs[0]["widths"].values())
        w_robust = [r for r in rs if r["source"] == "robust"]
        w_nat = [r for r in rs if r["source"] == "natural"]
        if w_robust and w_nat and method != IMP:
            widths = (f"natural {' / '.join(f'{w:.0%}' for w in w_nat[0]['widths'].values())}, "
                      f"robust {' / '.join(f'{w:.0%}' for w in w_robust[0]['widths'].values())}")
        bits.append(f"{METHOD_NAMES[method]} keeps widths {widths} per stage, runs at {macs:.0%} "
                    f"of the dense model's MACs as a slim network (measured {speed:.2f}× faster than "
                    f"the dense model) and took {epochs:.2f} epochs of training to draw")
    if not bits:
        return ""
    return "Costs (means over sources and source seeds): " + "; ".join(bits) + "."


def superticket_finding(rows: Iterable[dict], costs: Iterable[dict] = (), *,
                        robust_name: str = "robust", gate_rows: Iterable[dict] = ()) -> Finding:
    """E13: tickets of the adversarially trained supernet vs the natural one per (task,
    method), behind the dense transfer gate; the SuperTicket against search-then-prune and
    IMP per (task, source), in the same Holm family; and what each method costs.

    ``rows``: E13's result rows; ``costs``: :func:`cost_table`'s rows (or its summary);
    ``gate_rows``: the rows of the grid's transfer gate (``run_gate``)."""
    rows = list(rows)
    method_cs = [replace(c, key=(other, *c.key))
                 for other in (SEARCH_THEN_PRUNE, IMP)
                 for c in paired_contrasts(rows, factor="scheme", a=SUPERTICKET, b=other,
                                           by=("task", "source"))]
    finding = _standard(rows, f"the ticket drawn from the robust ({robust_name}) source",
                        "the natural one", ("task", "scheme"), cells="(task, method)",
                        addons=[(method_cs, _method_words)], labels={"scheme": "method"},
                        where={"scheme": list(METHODS)}, gate_rows=gate_rows)
    costs = list(costs)
    summary = costs if costs and "n" in costs[0] else cost_summary(costs)
    return finding.with_paragraph(_cost_words(summary))


def searched_width_rows(costs: Iterable[dict]) -> list[dict]:
    """The searched widths as rows for ``rtstudy.plots.bar_figure`` (``metric`` ``"width"``,
    ``method`` by its name, ``stage``, ``source``; ``seed``: the source seed)."""
    return [{"method": METHOD_NAMES[c["method"]], "source": c["source"], "seed": c["source_seed"],
             "stage": s, "metric": "width", "value": w}
            for c in costs if c["method"] != "dense" for s, w in c["widths"].items()]


def cost_rows(costs: Iterable[dict], task: str, eps: Mapping[str, float]) -> list[dict]:
    """The cost table as result rows (``record``'s columns; ``task``: the source task)."""
    from rtstudy.results import row

    out = []
    for c in costs:
        for metric in ("params_nonzero", "macs", "macs_nonzero", "latency", "speedup", "train_epochs"):
            out.append(row(task, c["source"], eps.get(c["source"], 0.0), c["method"], "unstructured",
                           0.0, 0, f"cost_{metric}", c[metric], source_seed=c["source_seed"]))
    return out
