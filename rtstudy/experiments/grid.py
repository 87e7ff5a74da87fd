"""The transfer grid: source, ticket and transfer specs, and the runner over their product.

A notebook names what it varies and hands it to :func:`run_grid`:

    sources   = [natural(P), robust(P)]                       # SourceSpec: eps, attack kind/norm
    tickets   = [TicketSpec("omp", "unstructured", s) for s in P.sparsities]
    transfers = [TransferSpec(regime="finetune")]               # regime, adversarial eps, eval eps, fraction
    rows = run_grid(P, sources, tickets, targets, seeds, transfers)

Every cell of the grid is a content-addressed artifact (``rtstudy.pipeline``), so a
second run, or another notebook asking for the same configuration, costs nothing.
Rows have the columns of ``rtstudy.results.ROW_KEYS`` plus the extras named in
:func:`run_grid`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from rtstudy import pipeline
from rtstudy.core.store import Store
from rtstudy.experiments.rows import pct
from rtstudy.profiles import Profile
from rtstudy.results import row as make_row

NATURAL, ROBUST = "natural", "robust"


# ----------------------------------------------------------------------------- specs
@dataclass(frozen=True)
class SourceSpec:
    """A source model to pretrain: ``eps = 0`` is natural; otherwise adversarial.

    ``role`` is the row's ``source`` column ("natural" / "robust"); ``label`` tells
    apart several robust sources of one experiment (E2's eps sweep, E5's attacks).
    """

    role: str
    eps: float
    kind: str | None = None  # "pgd" | "fgsm_rs" (None: the profile's robust_kind)
    norm: str | None = None  # "linf" | "l2" (None: the profile's norm)
    steps: int | None = None  # PGD steps (None: the profile's robust_steps)
    label: str = ""

    def attack(self, profile: Profile):
        return profile.source_attack(self.eps, kind=self.kind, norm=self.norm, steps=self.steps)

    def name(self, profile: Profile) -> str:
        """A short display name: ``natural``, ``FGSM-RS ℓ∞ 2/255``, ``PGD-3 ℓ2 0.25``."""
        if self.label:
            return self.label
        return attack_name(self.attack(profile))


def attack_name(attack) -> str:
    """``natural`` for no attack, else e.g. ``PGD-3 ℓ∞ 2/255`` or ``FGSM-RS ℓ2 0.25``."""
    if attack.kind == "none" or attack.eps == 0:
        return NATURAL
    kind = f"PGD-{attack.steps}" if attack.kind == "pgd" else attack.kind.upper().replace("_", "-")
    norm = {"linf": "ℓ∞", "l2": "ℓ2"}.get(attack.norm, attack.norm)
    return f"{kind} {norm} {pipeline.eps_label(attack.eps, attack.norm)}"


def natural(profile: Profile | None = None) -> SourceSpec:
    """The natural (eps = 0) source."""
    return SourceSpec(NATURAL, 0.0)


def robust(profile: Profile, eps: float | None = None, *, kind: str | None = None,
           norm: str | None = None, steps: int | None = None, label: str = "") -> SourceSpec:
    """A robust source (default: the profile's ``eps_star``, kind and norm); ``eps = 0`` is natural."""
    eps = profile.eps_star if eps is None else float(eps)
    if eps == 0:
        return natural(profile)
    kind = kind or profile.robust_kind  # resolved, so equal sources are equal specs
    norm = norm or profile.norm
    steps = (steps or profile.robust_steps) if kind == "pgd" else None
    return SourceSpec(ROBUST, eps, kind=kind, norm=norm, steps=steps, label=label)


def standard_sources(profile: Profile) -> list[SourceSpec]:
    """Natural and robust at ``eps_star``: the two sources almost every experiment shares."""
    return [natural(profile), robust(profile)]


@dataclass(frozen=True)
class TicketSpec:
    """How to draw a ticket: scheme x pattern x sparsity (``nm``: n of every m kept)."""

    scheme: str = "omp"
    pattern: str = "unstructured"
    sparsity: float = 0.0
    n: int = 2
    m: int = 4

    @property
    def dense(self) -> bool:
        return self.sparsity == 0 and self.pattern != "nm"

    @property
    def label(self) -> str:
        if self.dense:
            return "dense"
        pat = f"{self.n}:{self.m}" if self.pattern == "nm" else self.pattern
        return f"{self.scheme} {pat} {pct(self.sparsity)}"

    @property
    def pattern_label(self) -> str:
        return f"N:M {self.n}:{self.m}" if self.pattern == "nm" else self.pattern


def nm_ticket(scheme: str = "omp", n: int = 2, m: int = 4) -> TicketSpec:
    """An N:M ticket (sparsity ``1 - n/m``)."""
    return TicketSpec(scheme, "nm", 1 - n / m, n=n, m=m)


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
            bits.append(f"adv ε={pipeline.eps_label(self.adversarial_eps)}")
        if self.fraction is not None:
            bits.append(f"{pct(self.fraction)} of T")
        return " ".join(bits)


@dataclass
class Grid:
    """The cells of a grid, in the order they run (sources outermost, seeds innermost)."""

    sources: list[SourceSpec]
    tickets: list[TicketSpec]
    targets: list[str]
    seeds: list[int]
    transfers: list[TransferSpec] = field(default_factory=lambda: [TransferSpec()])

    def cells(self) -> list[tuple[SourceSpec, TicketSpec, str, TransferSpec, int]]:
        return [(s, t, task, tr, seed) for s in self.sources for t in self.tickets
                for task in self.targets for tr in self.transfers for seed in self.seeds]

    def __len__(self) -> int:
        return (len(self.sources) * len(self.tickets) * len(self.targets) * len(self.transfers)
                * len(self.seeds))


# ----------------------------------------------------------------------------- parameters
def param(value, default, cast: Callable | None = None) -> list:
    """A notebook knob: ``None`` means the profile's ``default``; a scalar becomes a list."""
    value = default if value is None else value
    if isinstance(value, (str, int, float)):
        value = [value]
    return [cast(v) if cast else v for v in value]


def source_table(profile: Profile, sources: Sequence[SourceSpec], *, store: Store | None = None,
                 eval_eps: float | None = None) -> tuple[str, list[dict]]:
    """Markdown table of the source models' clean accuracy on S and PGD accuracy at
    ``eval_eps`` (default: each source's own eps; natural at ``eps_star``), and its rows."""
    models = pretrain_sources(profile, sources, store=store)
    lines = [f"| source model | clean acc on {profile.source} | robust acc (PGD-{profile.eval_attack_steps}) |",
             "|---|---|---|"]
    rows = []
    for spec, src in models.items():
        attack = spec.attack(profile)
        eps = eval_eps if eval_eps is not None else (spec.eps or profile.eps_star)
        norm = attack.norm if attack.kind != "none" else profile.norm
        m = pipeline.robust_eval_of_source(src, profile, eps, norm, store=store)
        lines.append(f"| {spec.name(profile)} | {m['test_acc']:.1%} | {m.get('robust_acc', float('nan')):.1%} "
                     f"at {'ℓ2' if norm == 'l2' else 'ℓ∞'} {pipeline.eps_label(eps, norm)} |")
        for metric, key in (("source_clean_acc", "test_acc"), ("source_robust_acc", "robust_acc")):
            if key in m:
                rows.append(make_row(profile.source, spec.role, spec.eps, "dense", "dense", 0.0, 0,
                                     metric, m[key], source_label=spec.name(profile), kind=attack.kind,
                                     norm=norm, eval_eps=float(eps)))
    return "\n".join(lines), rows


# ----------------------------------------------------------------------------- running
def _progress_enabled(progress: bool | None) -> bool:
    if progress is not None:
        return progress
    from rtstudy.vision.train import default_progress

    return default_progress()


def pretrain_sources(profile: Profile, specs: Sequence[SourceSpec], *, store: Store | None = None,
                     progress: bool | None = None) -> dict[SourceSpec, pipeline.Source]:
    """Pretrain (or load from the store) every source once; ``{spec: Source}``."""
    out = {}
    for spec in dict.fromkeys(specs):
        out[spec] = pipeline.pretrain(profile, spec.eps, kind=spec.kind, norm=spec.norm,
                                      steps=spec.steps, store=store, progress=progress)
    return out


def ticket_seed(spec: TicketSpec, seed: int) -> int:
    """Random tickets are redrawn per seed (mask variance is part of the interval);
    OMP and IMP tickets are drawn once (seed 0) and only finetuning varies."""
    return seed if spec.scheme == "random" else 0


def run_grid(profile: Profile, sources: Sequence[SourceSpec], tickets: Sequence[TicketSpec],
             targets: Sequence[str], seeds: Sequence[int],
             transfers: Sequence[TransferSpec] = (TransferSpec(),), *,
             store: Store | None = None, progress: bool | None = None,
             extra: Callable[[SourceSpec, TicketSpec, str, TransferSpec, int], dict] | None = None,
             ) -> list[dict]:
    """Run every (source, ticket, target, transfer, seed) cell; return result rows.

    One row per metric (``test_acc``, and ``robust_acc`` when the transfer has
    ``eval_eps``). Extra columns: ``source_label`` (e.g. ``FGSM-RS ℓ∞ 2/255``),
    ``kind``/``norm`` of the source's attack, ``ticket``, ``achieved_sparsity``,
    ``regime``, ``adversarial_eps``, ``eval_eps``, ``fraction``, ``transfer``, ``n_train``,
    ``source_test_acc``, plus whatever ``extra(cell...)`` returns.
    """
    store = store or Store()
    grid = Grid(list(sources), list(tickets), list(targets), list(seeds), list(transfers))
    show = _progress_enabled(progress)
    models = pretrain_sources(profile, grid.sources, store=store, progress=progress)
    from tqdm.auto import tqdm

    drawn: dict[tuple, pipeline.Ticket] = {}
    rows: list[dict] = []
    bar = tqdm(total=len(grid), desc="transfer grid", disable=not show, mininterval=1.0)
    try:
        for s, t, task, tr, seed in grid.cells():
            source = models[s]
            tseed = ticket_seed(t, seed)
            tkey = (s, t, task if t.scheme == "imp_target" else None, tseed)
            if tkey not in drawn:
                drawn[tkey] = pipeline.draw_ticket(
                    profile, source, t.scheme, t.pattern, t.sparsity,
                    target=task if t.scheme == "imp_target" else None, seed=tseed, n=t.n, m=t.m,
                    store=store, progress=False)
            ticket = drawn[tkey]
            art = pipeline.transfer(profile, source, ticket, task, regime=tr.regime,
                                    adversarial_eps=tr.adversarial_eps, eval_eps=tr.eval_eps,
                                    fraction=tr.fraction, seed=seed, store=store)
            attack = s.attack(profile)
            fraction = profile.target_fraction if tr.fraction is None else tr.fraction
            common = dict(
                source_label=s.name(profile), kind=attack.kind, norm=attack.norm,
                ticket=t.label, achieved_sparsity=ticket.sparsity, regime=tr.regime,
                adversarial_eps=float(tr.adversarial_eps), eval_eps=tr.eval_eps,
                fraction=float(fraction), transfer=tr.name(), n_train=art.metrics.get("n_train"),
                source_test_acc=source.artifact.metrics.get("test_acc"),
                **(extra(s, t, task, tr, seed) if extra else {}))
            for metric in ("test_acc", "robust_acc"):
                if metric in art.metrics:
                    rows.append(make_row(task, s.role, s.eps, t.scheme, t.pattern, t.sparsity, seed,
                                         metric, art.metrics[metric], **common))
            bar.update(1)
    finally:
        bar.close()
    return rows

