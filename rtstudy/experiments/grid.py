"""The transfer grid: source, ticket and transfer specs, and the runner over their product.

A notebook names what it varies and hands it to :func:`run_grid`:

    sources   = [natural(P), robust(P)]                       # source descriptions (P.source_model)
    tickets   = [TicketSpec("omp", "unstructured", s) for s in P.sparsities]
    transfers = [TransferSpec(regime="finetune")]               # regime, adversarial eps, eval eps, fraction
    rows = run_grid(P, sources, tickets, targets, seeds, transfers)

``Grid.descriptions`` is the grid as data (every transfer it needs). Every cell is a
content-addressed artifact (``rtstudy.core.pipeline``), so a
second run, or another notebook asking for the same configuration, costs nothing.
Rows have the columns of ``rtstudy.results.ROW_KEYS`` plus the extras named in
:func:`run_grid`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

from rtstudy.core.descriptions import SourceDesc, TicketDesc, TransferDesc
from rtstudy.core.patterns import NM, Pattern, make_pattern
from rtstudy.core.pipeline import Source, Ticket, draw_ticket, pretrain, transfer
from rtstudy.core.schemes import get_scheme
from rtstudy.core.store import Store
from rtstudy.experiments.rows import pct
from rtstudy.profiles import Profile
from rtstudy.results import row as make_row
from rtstudy.vision.track import (
    NATURAL,
    ROBUST,
    VisionSource,
    attack_name,
    eps_label,
    evaluate_source,
)

__all__ = ["NATURAL", "ROBUST", "attack_name"]


# ----------------------------------------------------------------------------- specs
def natural(profile: Profile) -> VisionSource:
    """The natural (eps = 0) source."""
    return profile.source_model(0.0)


def robust(profile: Profile, eps: float | None = None, *, kind: str | None = None,
           norm: str | None = None, steps: int | None = None) -> VisionSource:
    """A robust source (default: the profile's ``eps_star``, kind and norm); ``eps = 0`` is natural."""
    eps = profile.eps_star if eps is None else float(eps)
    return profile.source_model(eps, kind=kind, norm=norm, steps=steps)


def standard_sources(profile: Profile) -> list[VisionSource]:
    """Natural and robust at ``eps_star``: the two sources almost every experiment shares."""
    return [natural(profile), robust(profile)]


@dataclass(frozen=True)
class TicketSpec:
    """How to draw a ticket from any source: scheme x pattern x sparsity (a grid axis)."""

    scheme: str = "omp"
    pattern: Pattern | str = "unstructured"
    sparsity: float = 0.0

    def __post_init__(self):
        object.__setattr__(self, "pattern", make_pattern(self.pattern))
        get_scheme(self.scheme)
        object.__setattr__(self, "sparsity", float(self.pattern.check_sparsity(self.sparsity)))

    @classmethod
    def at(cls, scheme: str, pattern: str | Pattern, sparsity: float, *, n: int = 2,
           m: int = 4) -> TicketSpec:
        """A ticket at ``sparsity``, or at the pattern's own where it fixes one (N:M)."""
        pattern = make_pattern(pattern, n=n, m=m)
        implied = pattern.implied_sparsity
        return cls(scheme, pattern, sparsity if implied is None else implied)

    @property
    def dense(self) -> bool:
        return self.pattern.is_dense(self.sparsity)

    @property
    def label(self) -> str:
        if self.dense:
            return "dense"
        return f"{self.scheme} {self.pattern.label.removeprefix('N:M ')} {pct(self.sparsity)}"

    @property
    def pattern_label(self) -> str:
        return self.pattern.label

    @property
    def short_label(self) -> str:
        """``channel 80%``, ``dense``, or ``2:4`` where the pattern fixes the sparsity."""
        if self.dense:
            return "dense"
        if self.pattern.implied_sparsity is not None:
            return self.pattern.label.removeprefix("N:M ")
        return f"{self.pattern.name} {pct(self.sparsity)}"

    def desc(self, profile: Profile, source: SourceDesc, target: str, seed: int) -> TicketDesc:
        """The ticket this spec draws from ``source`` for a cell (``target``, ``seed``)."""
        scheme = get_scheme(self.scheme)
        return profile.ticket(source, self.scheme, self.pattern, self.sparsity,
                              seed=seed if scheme.redrawn_per_seed else 0,
                              target=target if scheme.needs_target else None)


def nm_ticket(scheme: str = "omp", n: int = 2, m: int = 4) -> TicketSpec:
    """An N:M ticket (sparsity ``1 - n/m``)."""
    return TicketSpec.at(scheme, NM(n, m), 0.0)


@dataclass(frozen=True)
class TransferSpec:
    """How to transfer: finetune or linear probe, natural or adversarial, on how much of T."""

    regime: str = "finetune"  # "finetune" | "probe"
    adversarial_eps: float = 0.0  # > 0: adversarial finetuning at this eps (profile's kind/norm)
    eval_eps: float | None = None  # also measure robust accuracy on T at this eps
    fraction: float | None = None  # fraction of T's training set (None: profile.target_fraction)
    label: str = ""

    def name(self) -> str:
        if self.label:
            return self.label
        bits = [self.regime]
        if self.adversarial_eps:
            bits.append(f"adv ε={eps_label(self.adversarial_eps)}")
        if self.fraction is not None:
            bits.append(f"{pct(self.fraction)} of T")
        return " ".join(bits)

    def desc(self, profile: Profile, source: SourceDesc, ticket: TicketDesc, target: str,
             seed: int, init: str = "pretrained") -> TransferDesc:
        if init == "scratch" and ticket.dense:  # random weights: any robustness of the source is moot
            source = profile.source_model(0.0, seed=source.seed)
        return profile.transfer(source, None if ticket.dense else ticket, target,
                                regime=self.regime, adversarial_eps=self.adversarial_eps,
                                eval_eps=self.eval_eps, fraction=self.fraction, seed=seed, init=init)


@dataclass(frozen=True)
class Cell:
    """One transfer of a grid: what it varies, and the artifacts it needs. ``source`` is
    the source model of one source seed; ``init="scratch"`` is the from-scratch control."""

    source: SourceDesc
    ticket: TicketSpec
    target: str
    transfer: TransferSpec
    seed: int
    init: str = "pretrained"

    def ticket_desc(self, profile: Profile) -> TicketDesc:
        return self.ticket.desc(profile, self.source, self.target, self.seed)

    def transfer_desc(self, profile: Profile) -> TransferDesc:
        return self.transfer.desc(profile, self.source, self.ticket_desc(profile), self.target,
                                  self.seed, self.init)


@dataclass
class Grid:
    """The cells of a grid, in the order they run (sources outermost, seeds innermost).

    ``sources`` are given at source seed 0 and run under every seed of ``source_seeds``;
    ``seeds`` are the finetuning seeds within each. ``controls``: which finetuned cells also
    get their from-scratch control: ``"dense"`` (the dense ticket only), ``"all"``, ``"none"``.
    ``gate``: the grids of the transfer gate (dense models and their controls) that decide
    where this grid's tickets are ranked; their transfers are part of ``descriptions``.
    """

    sources: list[SourceDesc]
    tickets: list[TicketSpec]
    targets: list[str]
    seeds: list[int]
    transfers: list[TransferSpec] = field(default_factory=lambda: [TransferSpec()])
    source_seeds: list[int] = field(default_factory=lambda: [0])
    controls: str = "dense"
    gate: list[Grid] = field(default_factory=list)

    def __post_init__(self):
        from rtstudy.core.checks import check_choice

        check_choice("controls", self.controls, ("dense", "all", "none"))

    def _controlled(self, ticket: TicketSpec, transfer: TransferSpec) -> bool:
        if self.controls == "none" or transfer.regime != "finetune":
            return False
        return self.controls == "all" or ticket.dense

    def cells(self) -> list[Cell]:
        out = []
        for s in self.sources:
            for source_seed in self.source_seeds:
                src = replace(s, seed=source_seed)
                for t in self.tickets:
                    for task in self.targets:
                        for tr in self.transfers:
                            inits = ("pretrained", "scratch") if self._controlled(t, tr) else ("pretrained",)
                            out += [Cell(src, t, task, tr, seed, init) for init in inits
                                    for seed in self.seeds]
        return out

    def descriptions(self, profile: Profile) -> list[TransferDesc]:
        """The grid as data: every transfer it needs (each names its ticket and source),
        its gate's included."""
        own = [c.transfer_desc(profile) for c in self.cells()]
        return own + [d for g in self.gate for d in g.descriptions(profile)]

    def __len__(self) -> int:
        return len(self.cells())


# ----------------------------------------------------------------------------- parameters
def param(value, default, cast: Callable | None = None) -> list:
    """A notebook knob: ``None`` means the profile's ``default``; a scalar becomes a list."""
    value = default if value is None else value
    if isinstance(value, (str, int, float)):
        value = [value]
    return [cast(v) if cast else v for v in value]


def source_table(profile: Profile, sources: Sequence[VisionSource], *, store: Store | None = None,
                 eval_eps: float | None = None) -> tuple[str, list[dict]]:
    """Markdown table of the source models' clean accuracy on S and PGD accuracy at
    ``eval_eps`` (default: each source's own eps; natural at ``eps_star``), and its rows."""
    models = pretrain_sources(profile, sources, store=store)
    lines = [f"| source model | clean acc on {profile.source} | robust acc (PGD-{profile.eval_attack_steps}) |",
             "|---|---|---|"]
    rows = []
    for spec, src in models.items():
        attack = spec.attack
        eps = eval_eps if eval_eps is not None else (spec.eps or profile.eps_star)
        norm = attack.norm if attack.kind != "none" else profile.norm
        m = evaluate_source(src, profile.eval_attack(eps, norm), robust_n=profile.robust_n,
                            test_n=profile.test_n, store=store)
        lines.append(f"| {spec.label} | {m['test_acc']:.1%} | {m.get('robust_acc', float('nan')):.1%} "
                     f"at {'ℓ2' if norm == 'l2' else 'ℓ∞'} {eps_label(eps, norm)} |")
        for metric, key in (("source_clean_acc", "test_acc"), ("source_robust_acc", "robust_acc")):
            if key in m:
                rows.append(make_row(profile.source, spec.role, spec.eps, "dense", "dense", 0.0, 0,
                                     metric, m[key], source_label=spec.label, kind=attack.kind,
                                     norm=norm, eval_eps=float(eps)))
    return "\n".join(lines), rows


def ticket_diagnostics(profile: Profile, grid: Grid, *, store: Store | None = None) -> list[dict]:
    """What each sparse ticket of ``grid`` keeps of its source before finetuning (masked
    accuracy on S with recomputed BN, dead filters; ``rtstudy.vision.diagnostics``), one
    dict per (source, source seed, ticket) of the finetuning seed 0."""
    from rtstudy.vision.diagnostics import masked_source_accuracy

    out, seen = [], set()
    for cell in grid.cells():
        if cell.ticket.dense or cell.init != "pretrained":
            continue
        tdesc = cell.ticket_desc(profile)
        if tdesc.seed != 0 or tdesc in seen:
            continue
        seen.add(tdesc)
        src = pretrain(cell.source, store=store)
        ticket = draw_ticket(tdesc, store=store, source=src)
        m = masked_source_accuracy(src, ticket, store=store)
        out.append({"source": cell.source.role, "source_label": cell.source.label,
                    "source_seed": cell.source.seed, "scheme": cell.ticket.scheme,
                    "pattern": cell.ticket.pattern.name, "sparsity": cell.ticket.sparsity,
                    "ticket": cell.ticket.label, **m})
    return out


# ----------------------------------------------------------------------------- running
def _progress_enabled(progress: bool | None) -> bool:
    if progress is not None:
        return progress
    from rtstudy.vision.train import default_progress

    return default_progress()


def pretrain_sources(profile: Profile, specs: Sequence[SourceDesc], *, store: Store | None = None,
                     progress: bool | None = None) -> dict[SourceDesc, Source]:
    """Pretrain (or load from the store) every source once; ``{desc: Source}``."""
    return {d: pretrain(d, store=store, progress=progress) for d in dict.fromkeys(specs)}


def run_grid(profile: Profile, sources: Sequence[SourceDesc], tickets: Sequence[TicketSpec],
             targets: Sequence[str], seeds: Sequence[int],
             transfers: Sequence[TransferSpec] = (TransferSpec(),), *,
             store: Store | None = None, progress: bool | None = None,
             extra: Callable[[SourceDesc, TicketSpec, str, TransferSpec, int], dict] | None = None,
             ) -> list[dict]:
    """``run`` over the product of the axes given."""
    grid = Grid(list(sources), list(tickets), list(targets), list(seeds), list(transfers))
    return run(profile, grid, store=store, progress=progress, extra=extra)


def run_gate(profile: Profile, grid: Grid, *, store: Store | None = None,
             progress: bool | None = None) -> list[dict]:
    """The rows of ``grid``'s transfer gate (column ``gate`` True; ``[]`` without a gate),
    each transfer once."""
    rows, seen = [], set()
    for g in grid.gate:
        for r in run(profile, g, store=store, progress=progress, extra=lambda *cell: {"gate": True}):
            k = (r["task"], r["source_label"], r["transfer"], r["source_seed"], r["seed"], r["init"],
                 r["metric"])
            if k not in seen:
                seen.add(k)
                rows.append(r)
    return rows


def run(profile: Profile, grid: Grid, *, store: Store | None = None, progress: bool | None = None,
        extra: Callable[[SourceDesc, TicketSpec, str, TransferSpec, int], dict] | None = None,
        ) -> list[dict]:
    """Run every (source, ticket, target, transfer, seed) cell of ``grid``; return result rows.

    One row per metric (``test_acc``, and ``robust_acc`` when the transfer has
    ``eval_eps``). Extra columns: ``source_label`` (e.g. ``FGSM-RS ℓ∞ 2/255``),
    ``kind``/``norm`` of the source's attack, ``ticket``, ``achieved_sparsity``,
    ``regime``, ``adversarial_eps``, ``eval_eps``, ``fraction``, ``transfer``, ``n_train``,
    ``source_test_acc``, plus whatever ``extra(cell...)`` returns.
    """
    store = store or Store()
    show = _progress_enabled(progress)
    cells = grid.cells()
    models = pretrain_sources(profile, [c.source for c in cells], store=store, progress=progress)
    from tqdm.auto import tqdm

    drawn: dict[TicketDesc, Ticket] = {}
    rows: list[dict] = []
    bar = tqdm(total=len(cells), desc="transfer grid", disable=not show, mininterval=1.0)
    try:
        for cell in cells:
            s, t, task, tr, seed = cell.source, cell.ticket, cell.target, cell.transfer, cell.seed
            source = models[s]
            tdesc = cell.ticket_desc(profile)
            if tdesc not in drawn:
                drawn[tdesc] = draw_ticket(tdesc, store=store, progress=False, source=source)
            ticket = drawn[tdesc]
            desc = cell.transfer_desc(profile)
            art = transfer(desc, store=store, source=source if desc.source == s else None,
                           ticket=ticket)
            fraction = profile.target_fraction if tr.fraction is None else tr.fraction
            common = dict(
                source_label=s.label, kind=s.attack.kind, norm=s.attack.norm,
                ticket=t.label, achieved_sparsity=ticket.sparsity, regime=tr.regime,
                adversarial_eps=float(tr.adversarial_eps), eval_eps=tr.eval_eps,
                fraction=float(fraction), transfer=tr.name(), n_train=art.metrics.get("n_train"),
                source_test_acc=source.artifact.metrics.get("test_acc"),
                source_seed=s.seed, init=cell.init, moved=art.metrics.get("moved"),
                **(extra(s, t, task, tr, seed) if extra else {}))
            for metric in ("test_acc", "robust_acc"):
                if metric in art.metrics:
                    rows.append(make_row(task, s.role, s.eps, t.scheme, t.pattern.name, t.sparsity, seed,
                                         metric, art.metrics[metric], **common))
            bar.update(1)
    finally:
        bar.close()
    return rows

