"""Shared logic of the experiment notebooks: run a grid, group seeds, compute findings.

A notebook names what it varies and hands it to :func:`run_grid`:

    sources   = [natural(P), robust(P)]                       # SourceSpec: eps, attack kind/norm
    tickets   = [TicketSpec("omp", "unstructured", s) for s in P.sparsities]
    transfers = [TransferSpec(regime="finetune")]               # regime, adversarial eps, eval eps, fraction
    rows = run_grid(P, sources, tickets, targets, seeds, transfers)

Every cell of the grid is a content-addressed artifact (``rtstudy.pipeline``), so a
second run, or another notebook asking for the same configuration, costs nothing.
Rows have the columns of ``rtstudy.results.ROW_KEYS`` plus the extras named in
:func:`run_grid`. :func:`seed_groups` and :func:`estimates` turn rows into
per-configuration seed groups and 95% intervals; :func:`contrasts` and
:func:`contrast_finding` turn those into sentences that claim "beats" only where the
intervals separate (``rtstudy.core.stats.compare``).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from rtstudy import pipeline
from rtstudy.core.stats import Estimate, compare, mean_ci
from rtstudy.core.store import Store
from rtstudy.profiles import Profile
from rtstudy.results import row as make_row

NATURAL, ROBUST = "natural", "robust"
_FLOAT_TOL = 1e-9


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


# ----------------------------------------------------------------------------- grouping
def _match(value, wanted) -> bool:
    if callable(wanted):
        return bool(wanted(value))
    if isinstance(wanted, (list, tuple, set, frozenset)):
        return any(_match(value, w) for w in wanted)
    if isinstance(value, float) and isinstance(wanted, (int, float)) and not isinstance(wanted, bool):
        return math.isclose(value, wanted, rel_tol=0, abs_tol=_FLOAT_TOL)
    return value == wanted


def select(rows: Iterable[dict], **where) -> list[dict]:
    """Rows whose columns match: a value, a list/tuple of allowed values, or a predicate."""
    return [r for r in rows if all(k in r and _match(r[k], v) for k, v in where.items())]


def _sort_key(value):
    return (0, value, "") if isinstance(value, (int, float)) and value is not None else (1, 0, str(value))


def seed_groups(rows: Iterable[dict], by: Sequence[str], metric: str = "test_acc",
                **where) -> dict[tuple, list[float]]:
    """``{(values of by...): [value per seed]}`` for one metric, keys sorted."""
    groups: dict[tuple, list[float]] = defaultdict(list)
    for r in select(rows, metric=metric, **where):
        groups[tuple(r[k] for k in by)].append(r["value"])
    return {k: groups[k] for k in sorted(groups, key=lambda key: tuple(_sort_key(v) for v in key))}


def estimates(rows: Iterable[dict], by: Sequence[str], metric: str = "test_acc",
              **where) -> dict[tuple, Estimate]:
    """Mean and 95% CI over seeds per configuration."""
    return {k: mean_ci(v) for k, v in seed_groups(rows, by, metric, **where).items()}


def levels(rows: Iterable[dict], column: str, **where) -> list:
    """The distinct values of ``column`` (numbers ascending, then text in first-seen order)."""
    seen = dict.fromkeys(r[column] for r in select(rows, **where))
    nums = sorted(v for v in seen if isinstance(v, (int, float)) and not isinstance(v, bool))
    return nums + [v for v in seen if not (isinstance(v, (int, float)) and not isinstance(v, bool))]


# ----------------------------------------------------------------------------- formatting
def pct(x: float) -> str:
    """``0.8 -> '80%'``, ``0.005 -> '0.5%'``."""
    v = 100 * x
    return f"{v:.0f}%" if abs(v - round(v)) < 1e-6 else f"{v:.3g}%"


def fmt_level(column: str, value) -> str:
    """A value as a reader wants to see it: sparsities and fractions in %, eps as 2/255."""
    if isinstance(value, float) and column in ("sparsity", "fraction", "achieved_sparsity"):
        return pct(value)
    if isinstance(value, float) and column in ("eps", "adversarial_eps", "eval_eps"):
        return "0" if value == 0 else pipeline.eps_label(value)
    return str(value)


def fmt_key(by: Sequence[str], key: tuple) -> str:
    return ", ".join(f"{'ε' if c == 'eps' else c} {fmt_level(c, v)}" for c, v in zip(by, key, strict=True))


def markdown_table(rows: Iterable[dict], index: Sequence[str], column: str, metric: str = "test_acc",
                   **where) -> str:
    """A Markdown table: one line per ``index`` configuration, one column per value of ``column``;
    cells ``mean ± 95% half-width`` (in %) over seeds."""
    rows = list(rows)
    cols = levels(rows, column, metric=metric, **where)
    est = estimates(rows, [*index, column], metric, **where)
    keys = list(dict.fromkeys(k[:-1] for k in est))
    head = [*index, *(fmt_level(column, c) for c in cols)]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for k in keys:
        cells = [fmt_level(c, v) for c, v in zip(index, k, strict=True)]
        for c in cols:
            e = est.get((*k, c))
            cells.append("–" if e is None else (f"{100 * e.mean:.1f} ± {100 * e.half_width:.1f}"
                                                if e.n > 1 else f"{100 * e.mean:.1f}"))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


# ----------------------------------------------------------------------------- findings
@dataclass(frozen=True)
class Contrast:
    """``a`` vs ``b`` at one configuration ``key`` (the values of ``by``)."""

    key: tuple
    a: Estimate
    b: Estimate

    @property
    def verdict(self) -> str:
        return compare(self.a, self.b)

    @property
    def diff(self) -> float:
        """Mean difference a - b, in accuracy points (x100)."""
        return 100 * (self.a.mean - self.b.mean)


def contrasts(rows: Iterable[dict], *, factor: str = "source", a=ROBUST, b=NATURAL,
              by: Sequence[str] = ("task", "sparsity"), metric: str = "test_acc",
              **where) -> list[Contrast]:
    """``a`` vs ``b`` (two values of ``factor``) at every configuration of ``by`` having both."""
    rows = list(rows)
    ea = estimates(rows, by, metric, **{factor: a}, **where)
    eb = estimates(rows, by, metric, **{factor: b}, **where)
    return [Contrast(k, ea[k], eb[k]) for k in ea if k in eb]


def _join(items: list[str]) -> str:
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]


def contrast_finding(cs: Sequence[Contrast], a_name: str, b_name: str, by: Sequence[str],
                     *, group: int | None = 0, metric_name: str = "test accuracy") -> str:
    """Sentences, one per ``by[group]`` value (e.g. per task), saying where ``a`` beats,
    trails or ties ``b``, with the differences; "beats" only where the CIs separate."""
    if not cs:
        return f"No configuration has both {a_name} and {b_name} results."
    n_seeds = sorted({c.a.n for c in cs} | {c.b.n for c in cs})
    seeds = (f"{n_seeds[0]} seeds" if len(n_seeds) == 1 else f"{n_seeds[0]}–{n_seeds[-1]} seeds")
    if n_seeds[0] < 2:
        seeds += "; with a single seed there are no intervals, so nothing is claimed"
    parts = []
    by = list(by)
    groups: dict = defaultdict(list)
    for c in cs:
        groups[c.key[group] if group is not None else None].append(c)
    rest = [i for i in range(len(by)) if i != group]

    def where(c: Contrast) -> str:
        return ", ".join(fmt_level(by[i], c.key[i]) for i in rest) or "the tested setting"

    level_names = " / ".join(by[i] for i in rest) or "setting"
    for g, items in groups.items():
        better = [c for c in items if c.verdict == "better"]
        worse = [c for c in items if c.verdict == "worse"]
        tie = [c for c in items if c.verdict == "tie"]
        prefix = f"On {g}, " if group is not None else ""
        bits = []
        if better:
            bits.append(f"{a_name} beats {b_name} at {level_names} "
                        + _join([f"{where(c)} ({c.diff:+.1f} points)" for c in better]))
        if worse:
            bits.append(f"{a_name} trails {b_name} at {level_names} "
                        + _join([f"{where(c)} ({c.diff:+.1f} points)" for c in worse]))
        if tie:
            lo, hi = min(c.diff for c in tie), max(c.diff for c in tie)
            span = f"{lo:+.1f}" if len(tie) == 1 else f"{lo:+.1f} to {hi:+.1f}"
            if not better and not worse:
                bits.append(f"{a_name} and {b_name} are not distinguishable at any {level_names} "
                            f"tested ({span} points, 95% CIs overlap)")
            else:
                bits.append(f"the intervals overlap at {_join([where(c) for c in tie])} ({span} points)")
        parts.append(prefix + "; ".join(bits) + ".")
    return (f"{metric_name[0].upper()}{metric_name[1:]}, mean over {seeds} of finetuning "
            f"(one pretrained source model each), 95% CIs: " + " ".join(parts))


def tally_sentence(cs: Sequence, lead: str, cells: str, subject: str = "") -> str:
    """`` {lead}: {subject} better in B, indistinguishable in T, worse in W of N {cells} cells.``"""
    t = tally(cs)
    who = f"{subject} " if subject else ""
    return (f" {lead}: {who}better in {t['better']}, indistinguishable in {t['tie']}, worse in "
            f"{t['worse']} of {len(cs)} {cells} cells.")


def tally(cs: Sequence[Contrast]) -> dict[str, int]:
    """How many configurations are better / tie / worse."""
    out = {"better": 0, "tie": 0, "worse": 0}
    for c in cs:
        out[c.verdict] += 1
    return out


def best_level(est: dict, *, higher: bool = True):
    """The key with the best mean (``est``: ``{level: Estimate}``)."""
    return (max if higher else min)(est, key=lambda k: est[k].mean)


def sweep_finding(est: dict[float, Estimate], *, name: str = "ε", fmt=None, where: str = "") -> str:
    """Where the best value of a swept knob lies, and whether it is an interior optimum that
    separates from both ends (an inverted U), said honestly."""
    fmt = fmt or (lambda v: fmt_level("eps", v))
    xs = sorted(est)
    best = best_level(est)
    e = est[best]
    lead = f"{where}: " if where else ""
    s = f"{lead}the best {name} is {fmt(best)} ({e})"
    if len(xs) < 3:
        return s + f"; with {len(xs)} values of {name} no inverted U can be judged."
    lo, hi = est[xs[0]], est[xs[-1]]
    if best in (xs[0], xs[-1]):
        end = "smallest" if best == xs[0] else "largest"
        other = lo if best == xs[-1] else hi
        if compare(e, other) == "better":
            return s + (f", the {end} value tested, and it separates from the other end ({other}): "
                        f"no interior optimum (no inverted U) here.")
        return s + (f", the {end} value tested, but its interval overlaps the other end ({other}): "
                    f"the means show no inverted U, and the intervals do not rule one out.")
    v_lo, v_hi = compare(e, lo), compare(e, hi)
    if v_lo == "better" and v_hi == "better":
        return s + (f", interior, and its interval separates from both ends ({name} {fmt(xs[0])}: "
                    f"{lo}; {fmt(xs[-1])}: {hi}): an inverted U.")
    sep = [f"{fmt(x)} ({est[x]})" for x, v in ((xs[0], v_lo), (xs[-1], v_hi)) if v == "better"]
    ovl = [f"{fmt(x)} ({est[x]})" for x, v in ((xs[0], v_lo), (xs[-1], v_hi)) if v != "better"]
    tail = f"; it separates from {_join(sep)}" if sep else ""
    return s + (f", interior, but its interval overlaps {_join(ovl)}{tail}: the inverted U is "
                "suggested by the means, not established.")


# ----------------------------------------------------------------------------- figures
def _facet_figure(n: int, titles: list[str], title: str, x_title: str, y_title: str):
    from plotly.subplots import make_subplots

    fig = make_subplots(rows=1, cols=max(1, n), subplot_titles=titles, shared_yaxes=True,
                        horizontal_spacing=0.06)
    fig.update_layout(title=title, template="plotly_white", height=420,
                      legend={"orientation": "h", "y": -0.2})
    fig.update_xaxes(title_text=x_title)
    fig.update_yaxes(title_text=y_title, row=1, col=1)
    return fig


def _series_label(column: str, value) -> str:
    """Legend text: text values as they are, numbers with their column (``sparsity 80%``)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return f"{'ε' if column == 'eps' else column} {fmt_level(column, value)}"
    return str(value)


def curve_figure(rows: Iterable[dict], *, x: str, series: str = "source", facet: str = "task",
                 metric: str = "test_acc", title: str = "", x_title: str | None = None,
                 y_title: str | None = None, log_x: bool = False, dash_by: str | None = None,
                 **where):
    """Mean curves with 95% CI bands: ``metric`` vs ``x``, one line per ``series`` value
    (and per ``dash_by`` value, dashed), one panel per ``facet`` value."""
    from rtstudy import plots

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
                plots.curve(fig, [k[0] for k in g], list(g.values()), label,
                            plots.color_for(str(s), i), dash=[None, "dash", "dot", "dashdot"][d_i % 4],
                            row=1, col=j + 1, showlegend=j == 0)
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
    from rtstudy import plots

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
            plots.bars(fig, [fmt_level(x, k) for k in keys], [g[(k,)] for k in keys], _series_label(series, s),
                       plots.color_for(str(s), i), row=1, col=j + 1, showlegend=j == 0)
    fig.update_layout(barmode="group")
    lo = min((r["value"] for r in rows), default=0.0)
    fig.update_yaxes(range=[max(0.0, lo - 0.1), 1.0])
    return fig


def source_figure(source_rows: Sequence[dict], *, x: str = "eps", title: str = "",
                  x_title: str = "pretraining ε (0 = natural)"):
    """Clean and robust accuracy of the source models on S (rows of :func:`source_table`) vs ``x``."""
    import plotly.graph_objects as go

    from rtstudy import plots

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
                                 name=name, mode="lines+markers", line_color=plots.PALETTE[2 + i]))
    fig.update_layout(title=title, template="plotly_white", xaxis_title=x_title,
                      yaxis_title="accuracy on S", height=380)
    if x == "eps":
        xs = levels(source_rows, "eps")
        fig.update_xaxes(tickvals=xs, ticktext=[fmt_level("eps", e) for e in xs])
    return fig


def gain_distance_figure(cs: dict[str, Contrast], dist: dict[str, float], *, title: str = "",
                         x_title: str = "S→T distance"):
    """Robust − natural gain (points; error bars: the two 95% half-widths combined in
    quadrature) vs a per-target distance, with a least-squares trend line."""
    import numpy as np
    import plotly.graph_objects as go

    from rtstudy import plots

    order = sorted(cs, key=lambda t: dist[t])
    x = [dist[t] for t in order]
    y = [cs[t].diff for t in order]
    err = [100 * math.hypot(cs[t].a.half_width, cs[t].b.half_width) for t in order]
    fig = go.Figure(go.Scatter(x=x, y=y, mode="markers+text", text=order, textposition="top center",
                               error_y={"type": "data", "array": err, "visible": True},
                               marker={"size": 10, "color": plots.COLORS["robust"]}, name="targets"))
    if len(set(x)) >= 2:
        slope, icpt = np.polyfit(x, y, 1)
        xs = np.linspace(min(x), max(x), 20)
        fig.add_trace(go.Scatter(x=xs, y=slope * xs + icpt, mode="lines", name="least-squares trend",
                                 line={"dash": "dash", "color": "#555"}))
    fig.add_hline(y=0, line_width=1, line_color="#999")
    fig.update_layout(title=title, xaxis_title=x_title, template="plotly_white", height=450,
                      yaxis_title="robust − natural (points, ± combined 95% half-widths)")
    return fig


def eps_sweep_finding(rows: Sequence[dict], *, metric: str = "test_acc", **where) -> str:
    """E2: per (task, sparsity), where the best source eps lies (:func:`sweep_finding`) and how
    the best robust source compares with the natural one (eps 0)."""
    from rtstudy.core.stats import describe

    parts = []
    for task in levels(rows, "task", metric=metric, **where):
        for s in levels(rows, "sparsity", metric=metric, task=task, **where):
            est = {k[0]: v for k, v in estimates(rows, ["eps"], metric, task=task, sparsity=s,
                                                  **where).items()}
            text = sweep_finding(est, where=f"on {task} at {pct(s)} sparsity")
            best = best_level(est)
            if best != 0 and 0.0 in est:
                text += " " + describe(f"ε = {fmt_level('eps', best)}", est[best], "natural (ε = 0)",
                                       est[0.0]) + "."
            parts.append(text[0].upper() + text[1:])
    return " ".join(parts) if parts else "No results."
