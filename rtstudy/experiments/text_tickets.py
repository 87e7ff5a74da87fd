"""E11: lottery tickets in a pre-trained BERT, natural and robust, transferred between text tasks.

The grid (``grid_e11``) as data: for every direction (source task -> target task), natural
and robust sources (embedding-space PGD, ``rtstudy.text.attacks``) under each source seed;
from each, the dense model, OMP and random tickets at the profile's sparsities and an
IMP-source ticket (rewinding to the pre-trained weights) over the encoder's linear layers;
each finetuned on the target with the mask fixed, plus the dense from-scratch control.
``run_e11`` reads (or builds) them and returns result rows; ``text_finding`` states the
robust − natural contrasts behind the transfer gate (``findings._standard``), drawn vs
random tickets, and the matching subnetworks in Chen et al.'s sense (mean accuracy within
one standard deviation of the dense model's).
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from rtstudy.core.descriptions import TicketDesc, TransferDesc
from rtstudy.core.pipeline import draw_ticket, pretrain, transfer
from rtstudy.core.schemes import BASELINE
from rtstudy.core.store import Store
from rtstudy.experiments.findings import (
    PRETRAINED,
    SCRATCH,
    Finding,
    _sanity_words,
    _standard,
    paired_contrasts,
)
from rtstudy.experiments.rows import pct, select
from rtstudy.results import row as make_row
from rtstudy.text.data import check_task
from rtstudy.text.models import PRUNABLE
from rtstudy.text.sizes import TextSizes, text_sizes
from rtstudy.text.track import TextEvaluation, TextSource, source_data, test_split
from rtstudy.text.train import evaluate

DENSE = "dense"
IMP = "imp_source"
KINDS = ("Q", "K", "V", "attn out", "intermediate", "output")  # the names of PRUNABLE


@dataclass(frozen=True)
class E11Grid:
    """Every source, ticket and transfer E11 reads (see the module doc)."""

    sizes: TextSizes
    directions: tuple[tuple[str, str], ...]
    source_seeds: tuple[int, ...]
    seeds: tuple[int, ...] = (0,)  # finetuning seeds within each source seed

    def source(self, task: str, robust: bool, seed: int) -> TextSource:
        s = self.sizes
        return TextSource(task=task, model=s.model, recipe=s.recipe(robust), max_length=s.max_length,
                          test_n=s.test_n, seed=seed)

    def sources(self) -> list[TextSource]:
        return [self.source(src, robust, seed) for src, _ in self.directions
                for robust in (False, True) for seed in self.source_seeds]

    def tickets(self, source: TextSource) -> list[TicketDesc]:
        s = self.sizes
        out = [TicketDesc(source=source)]  # dense
        out += [TicketDesc(source=source, scheme=scheme, sparsity=sp)
                for sp in s.sparsities for scheme in ("omp", BASELINE)]
        out += [TicketDesc(source=source, scheme=IMP, sparsity=sp, rate=s.imp_rate, epochs=s.imp_epochs)
                for sp in s.imp_sparsities]
        return out

    def cells(self) -> list[TransferDesc]:
        """The transfers: every ticket of every source on its target, every finetuning seed,
        and the dense model from scratch (the control)."""
        s = self.sizes
        ev = TextEvaluation(test_n=s.test_n)
        out = []
        for src, target in self.directions:
            for robust in (False, True):
                for ss in self.source_seeds:
                    source = self.source(src, robust, ss)
                    for seed in self.seeds:
                        for t in self.tickets(source):
                            out.append(TransferDesc(source, t, target, s.finetune, ev, seed=seed))
                        out.append(TransferDesc(source, None, target, s.finetune, ev, seed=seed,
                                                init=SCRATCH))
        return out

    def descriptions(self, profile=None) -> list[TransferDesc]:
        return self.cells()


def grid_e11(P, *, directions=None, source_seeds=None, seeds=None) -> list[E11Grid]:
    """E11's grid under profile ``P`` (its name picks ``rtstudy.text.sizes``)."""
    sizes = text_sizes(P.name if hasattr(P, "name") else str(P))
    dirs = tuple(tuple(d) for d in (directions or sizes.directions))
    for d in dirs:
        if len(d) != 2 or d[0] == d[1]:
            raise ValueError(f"a direction is (source task, another target task), got {d!r}")
        for task in d:
            check_task(task)
    source_seeds = tuple(int(s) for s in (source_seeds if source_seeds is not None
                                          else sizes.source_seeds))
    seeds = tuple(int(s) for s in (seeds if seeds is not None else sizes.seeds))
    return [E11Grid(sizes, dirs, source_seeds, seeds)]


# ----------------------------------------------------------------------------- running
def _scheme(desc: TransferDesc) -> str:
    return DENSE if desc.dense else desc.ticket.scheme


def run_e11(grid: E11Grid, *, store: Store | None = None) -> list[dict]:
    """Every transfer of ``grid`` (read from the store, or built); one ``test_acc`` row each,
    plus the source models' own test accuracy (``source_test_acc``)."""
    store = store or Store()
    sources, tickets, rows = {}, {}, []
    for desc in grid.cells():
        src = sources.get(desc.source) or sources.setdefault(desc.source, pretrain(desc.source, store=store))
        ticket = None
        if not desc.dense:
            ticket = tickets.get(desc.ticket) or tickets.setdefault(
                desc.ticket, draw_ticket(desc.ticket, store=store, source=src))
        art = transfer(desc, store=store, source=src, ticket=ticket)
        sparsity = 0.0 if desc.dense else desc.ticket.sparsity
        rows.append(make_row(
            desc.target, desc.source.role, desc.source.eps, _scheme(desc), "unstructured", sparsity,
            desc.seed, "test_acc", art.metrics["test_acc"], source_seed=desc.source.seed,
            init=desc.init, source_label=desc.source.label, source_task=desc.source.task,
            direction=f"{desc.source.task} → {desc.target}",
            achieved_sparsity=ticket.sparsity if ticket is not None else 0.0,
            source_test_acc=src.artifact.metrics["test_acc"]))
    return rows


def attack_check(grid: E11Grid, *, store: Store | None = None) -> list[dict]:
    """The embedding attack's sanity check on the source models of the first source seed:
    accuracy on ``attack_n`` test examples at each of ``sizes.eval_eps`` (ε = 0 must give
    the clean accuracy; accuracy must fall as ε grows)."""
    s, out = grid.sizes, []
    for source in grid.sources():
        if source.seed != grid.source_seeds[0]:
            continue
        src = pretrain(source, store=store)
        ids, mask, y = test_split(source_data(source), s.attack_n)
        model = src.model
        clean = evaluate(model, ids, mask, y, device=src.device)["test_acc"]
        for eps in s.eval_eps:
            acc = evaluate(model, ids, mask, y, device=src.device, eval_eps=eps, steps=5)["robust_acc"]
            out.append({"task": source.task, "source": source.role, "source_label": source.label,
                        "eval_eps": eps, "clean_acc": clean, "attacked_acc": acc})
    return out


# ----------------------------------------------------------------------------- masks
def layer_sparsity(grid: E11Grid, scheme: str, sparsity: float, *, store: Store | None = None
                   ) -> dict[str, list[list[float]]]:
    """Per-layer sparsity (rows: encoder layers; columns: ``KINDS``) of the ``scheme`` ticket
    at ``sparsity``, per ``"<source task> <role>"``, from the first source seed's masks."""
    out = {}
    for source in grid.sources():
        if source.seed != grid.source_seeds[0]:
            continue
        desc = next((t for t in grid.tickets(source) if t.scheme == scheme and t.sparsity == sparsity),
                    None)
        if desc is None:
            raise ValueError(f"E11 draws no {scheme!r} ticket at {sparsity}; it draws "
                             f"{sorted({(t.scheme, t.sparsity) for t in grid.tickets(source)})}")
        mask = draw_ticket(desc, store=store).mask
        layers = sorted({int(k.split(".")[3]) for k in mask})
        out[f"{source.task} {source.role}"] = [
            [1.0 - float(mask[f"encoder.encoder.layer.{i}.{p}.weight"].float().mean()) for p in PRUNABLE]
            for i in layers]
    return out


def layer_figure(per_source: dict[str, list[list[float]]], title: str = "") -> go.Figure:
    """Heatmaps of per-layer sparsity, one panel per source."""
    names = list(per_source)
    fig = make_subplots(rows=1, cols=len(names), subplot_titles=names, shared_yaxes=True)
    for j, name in enumerate(names):
        z = per_source[name]
        fig.add_trace(go.Heatmap(z=z, x=list(KINDS), y=[f"layer {i}" for i in range(len(z))],
                                 zmin=0, zmax=1, colorscale="Viridis", showscale=j == 0,
                                 colorbar={"title": "sparsity", "tickformat": ".0%"},
                                 hovertemplate="%{y} %{x}: %{z:.1%}<extra></extra>"),
                      row=1, col=j + 1)
    fig.update_layout(title=title, height=320, margin={"t": 70})
    return fig


def with_dense_start(rows: Iterable[dict]) -> list[dict]:
    """The pretrained rows with each dense row repeated as every drawn scheme's sparsity-0
    point (so each scheme's curve starts at the dense model)."""
    rows = select(list(rows), init=PRETRAINED)
    schemes = sorted({r["scheme"] for r in rows} - {DENSE})
    out = [r for r in rows if r["scheme"] != DENSE]
    out += [{**r, "scheme": s} for r in rows if r["scheme"] == DENSE for s in schemes]
    return out


# ----------------------------------------------------------------------------- finding
def matching_sparsities(rows: Iterable[dict], metric: str = "test_acc") -> dict[tuple, float | None]:
    """``{(target task, scheme, source): highest matching sparsity}`` (``None``: none
    matches). Matching (Chen et al.): the mean accuracy over seeds is at least the dense
    model's mean minus one standard deviation of the dense model over seeds."""
    rows = select(list(rows), metric=metric, init=PRETRAINED)
    out: dict[tuple, float | None] = {}
    for task in sorted({r["task"] for r in rows}):
        for source in sorted({r["source"] for r in rows}):
            dense = [r["value"] for r in select(rows, task=task, source=source, scheme=DENSE)]
            if len(dense) < 2:
                continue
            bar = statistics.mean(dense) - statistics.stdev(dense)
            for scheme in sorted({r["scheme"] for r in rows} - {DENSE}):
                ok = [sp for sp in sorted({r["sparsity"] for r in select(rows, task=task, scheme=scheme)})
                      if statistics.mean(r["value"] for r in select(
                          rows, task=task, source=source, scheme=scheme, sparsity=sp)) >= bar]
                out[(task, scheme, source)] = max(ok) if ok else None
    return out


def matching_sentence(match: dict[tuple, float | None]) -> str:
    """The matching subnetworks in words."""
    if not match:
        return "Matching subnetworks are not measured (fewer than two dense runs per cell)."
    parts = []
    for task in sorted({k[0] for k in match}):
        items = [f"{scheme} {source} {pct(v) if v is not None else 'none'}"
                 for (t, scheme, source), v in match.items() if t == task]
        parts.append(f"on {task}: {', '.join(items)}")
    return ("Matching subnetworks (mean accuracy within one standard deviation of the dense "
            "model's), highest matching sparsity " + "; ".join(parts) + ".")


def text_finding(rows: Iterable[dict], robust_name: str) -> Finding:
    """E11's finding: robust vs natural per (target, scheme, sparsity) behind the transfer
    gate, drawn (OMP, IMP) vs random tickets per (target, source, sparsity), one Holm family;
    then the matching subnetworks."""
    rows = list(rows)
    drawn = sorted({r["scheme"] for r in rows} - {DENSE, BASELINE})
    sanity = [replace(c, key=(s, *c.key)) for s in drawn
              for c in paired_contrasts(rows, factor="scheme", a=s, b=BASELINE,
                                        by=("task", "source", "sparsity"))]
    addons = [(sanity, _sanity_words(f"Sanity check, drawn ({', '.join(drawn)}) vs random tickets",
                                     "(scheme, target, source, sparsity)", ""))] if sanity else []
    finding = _standard(rows, f"the robust ({robust_name}) ticket", "the natural one",
                        ("task", "scheme", "sparsity"), cells="(target, scheme, sparsity)",
                        addons=addons)
    return finding.with_paragraph(matching_sentence(matching_sparsities(rows)))


def source_summary(rows: Sequence[dict]) -> list[dict]:
    """One row per (source task, source, source seed): the source model's own test accuracy."""
    seen, out = set(), []
    for r in select(list(rows), init=PRETRAINED, scheme=DENSE):
        k = (r["source_task"], r["source"], r["source_seed"])
        if k not in seen:
            seen.add(k)
            out.append(make_row(r["source_task"], r["source"], r["eps"], DENSE, "dense", 0.0, 0,
                                "source_clean_acc", r["source_test_acc"], source_seed=r["source_seed"],
                                source_label=r["source_label"]))
    return out
