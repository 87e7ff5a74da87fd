"""Findings: the sentences each experiment states, computed from its rows.

The study's rules. The unit of replication is the source model: every source is pretrained
under several source seeds (rows' ``source_seed``, 0 where absent), and a contrast a − b
pairs the rows of the same source seed, finetuning seed (``seed``) and configuration.
:func:`paired_contrasts` turns rows into :class:`~rtstudy.core.stats.PairedContrast` (a t
interval over the per-source-seed mean differences); each ``*_finding`` function (E1 ... E9)
forms its family of contrasts, corrects it once with Holm (:func:`~rtstudy.core.stats.holm`)
and words "better"/"worse" only from the adjusted p; a null states the minimum detectable
effect ("no difference larger than X points"). Where the rows hold from-scratch controls
(``init == "scratch"``: the same architecture and mask on random weights) a finding leads with
the transfer gain (:func:`transfer_gains`) and does not rank tickets where pretraining gives
nothing separable over scratch.

:func:`contrasts` and :func:`contrast_finding` (interval overlap of unpaired means, one source
model) are kept for tables and old callers; E0's :func:`quickstart_finding` is one seed and
claims nothing.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace

from rtstudy.core.schemes import BASELINE
from rtstudy.core.stats import (
    FINETUNING_SEEDS,
    SOURCE_SEEDS,
    Estimate,
    PairedContrast,
    compare,
    holm,
    paired_contrast,
    spearman,
)
from rtstudy.experiments.grid import NATURAL, ROBUST
from rtstudy.experiments.rows import estimates, fmt_level, levels, pct, select
from rtstudy.vision.track import eps_label


class Finding(str):
    """A finding's text (what ``record`` stores), remembering its paragraphs for display and
    its contrasts (``contrasts``: dicts for ``record(..., contrasts=...)``, the report's answer)."""

    paragraphs: tuple[str, ...]
    contrasts: tuple[dict, ...]

    def __new__(cls, text: str, paragraphs: Sequence[str] | None = None,
                contrasts: Sequence[dict] = ()) -> Finding:
        self = super().__new__(cls, text)
        self.paragraphs = tuple(paragraphs) if paragraphs else (str(text),)
        self.contrasts = tuple(contrasts)
        return self

    def with_paragraph(self, text: str) -> Finding:
        """This finding with one more paragraph (nothing added for an empty ``text``)."""
        if not text.strip():
            return self
        return Finding(f"{self} {text.strip()}", [*self.paragraphs, text.strip()], self.contrasts)

    @property
    def markdown(self) -> str:
        """``**Finding.**`` and the paragraphs, as a notebook shows it."""
        return "**Finding.** " + "\n\n".join(self.paragraphs)


# ----------------------------------------------------------------------------- contrasts
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


# ----------------------------------------------------------------------------- paired contrasts
PRETRAINED, SCRATCH = "pretrained", "scratch"
#: columns that name the ticket: a ticket's transfer gain is gated by the dense model's
TICKET_COLUMNS = ("sparsity", "pattern", "pattern_label", "scheme", "ticket", "achieved_sparsity")
_DEFAULTS = {"source_seed": 0, "init": PRETRAINED}
_LABELS = {"eps": "ε", "pattern_label": "pattern", "fraction": "fraction of T",
           "transfer": "finetuning", "source_label": "source"}


def _get(r: dict, column: str):
    """A row's value, with the defaults of the new columns (source seed 0, init pretrained)."""
    return r.get(column, _DEFAULTS.get(column))


def _order(key: tuple) -> tuple:
    return tuple((0, v, "") if isinstance(v, (int, float)) and not isinstance(v, bool)
                 else (1, 0, str(v)) for v in key)


def _allowed(wanted) -> set:
    return set(wanted) if isinstance(wanted, (list, tuple, set, frozenset)) else {wanted}


def _paired_diffs(rows: Iterable[dict], factor: str, a, b, by: Sequence[str], metric: str,
                  where: Mapping) -> dict[tuple, dict[Hashable, dict[Hashable, float]]]:
    """``{key of by: {source seed: {finetuning seed: a − b}}}`` over the pairs found."""
    where = dict(where)
    if "init" not in where and factor != "init":
        where["init"] = PRETRAINED
    defaulted = {k: where.pop(k) for k in _DEFAULTS if k in where}
    base = [r for r in select(rows, metric=metric, **where)
            if all(_get(r, k) in _allowed(v) for k, v in defaulted.items())]

    def side(value) -> dict[tuple, float]:
        if factor in _DEFAULTS:
            picked = [r for r in base if _get(r, factor) in _allowed(value)]
        else:
            picked = select(base, **{factor: value})
        out: dict[tuple, float] = {}
        for r in picked:
            k = (tuple(_get(r, c) for c in by), _get(r, "source_seed"), r["seed"])
            if k in out:
                raise ValueError(
                    f"two {factor}={value!r} rows ({metric}) share {tuple(by)} = {k[0]}, source seed "
                    f"{k[1]} and seed {k[2]}: add the column that tells them apart to `by` or "
                    "filter on it")
            out[k] = float(r["value"])
        return out

    ra, rb = side(a), side(b)
    diffs: dict[tuple, dict] = defaultdict(lambda: defaultdict(dict))
    for k, v in ra.items():
        if k in rb:
            diffs[k[0]][k[1]][k[2]] = v - rb[k]
    return {key: {ss: dict(diffs[key][ss]) for ss in sorted(diffs[key], key=lambda x: _order((x,)))}
            for key in sorted(diffs, key=_order)}


def _contrast(per_seed: Mapping[Hashable, Mapping[Hashable, float]], key: tuple) -> PairedContrast:
    return paired_contrast({ss: list(d.values()) for ss, d in per_seed.items()}, key)


def paired_contrasts(rows: Iterable[dict], *, factor: str = "source", a=ROBUST, b=NATURAL,
                     by: Sequence[str] = ("task", "sparsity"), metric: str = "test_acc",
                     **where) -> list[PairedContrast]:
    """``a`` − ``b`` (two values of ``factor``), paired, at every configuration of ``by``.

    A row of ``a`` pairs with the row of ``b`` sharing every ``by`` column, ``source_seed``
    (0 where absent) and finetuning ``seed``; unpaired rows are dropped. The differences are
    grouped by source seed into :func:`~rtstudy.core.stats.paired_contrast` (units: accuracy
    fractions; ``.points`` is x100). ``where`` filters the rows (``select``'s values, lists or
    predicates). Rows of ``init == "scratch"`` are left out unless ``where`` names ``init`` or
    ``factor`` is ``"init"``. Two rows of one side at the same pairing key raise a
    ``ValueError`` (a column that tells them apart belongs in ``by`` or ``where``). No
    multiple-comparison correction here: the caller forms the family and calls ``holm``.
    """
    d = _paired_diffs(list(rows), factor, a, b, tuple(by), metric, where)
    return [_contrast(per_seed, key) for key, per_seed in d.items()]


def transfer_gains(rows: Iterable[dict], *, by: Sequence[str] = ("task", "sparsity"),
                   metric: str = "test_acc", **where) -> list[PairedContrast]:
    """Pretrained − scratch (the same architecture and mask on random weights, same recipe and
    data) at every configuration of ``by`` + ``source``: :func:`paired_contrasts` with
    ``factor="init"``. Pairs share ``source``, ``source_seed``, ``seed`` and the ``by``
    columns; put ``ticket``/``transfer`` in ``by`` or ``where`` where the rows vary in them."""
    by = tuple(by) + (() if "source" in by else ("source",))
    return paired_contrasts(rows, factor="init", a=PRETRAINED, b=SCRATCH, by=by, metric=metric,
                            **where)


# ----------------------------------------------------------------------------- wording
def _pts(x: float) -> str:
    """Signed points to one decimal, ``+0.0`` rather than ``-0.0``."""
    v = round(x, 1)
    return f"{v + 0.0:+.1f}"


def _p(c: PairedContrast) -> str:
    p = c.p_adjusted
    return "Holm-adjusted p < 0.001" if p < 0.001 else f"Holm-adjusted p = {p:.2g}"


def _ci(c: PairedContrast) -> str:
    lo, hi = c.ci_points
    return f"95% CI [{_pts(lo)}, {_pts(hi)}]"


def _mde(c: PairedContrast) -> str:
    return f"{c.mde_points:.1f}" if math.isfinite(c.mde) else "∞"


def _stats(c: PairedContrast) -> str:
    """``+5.0 points, 95% CI [+2.1, +7.9], Holm-adjusted p = 0.01``."""
    if not c.has_interval:
        return f"{_pts(c.points)} points from a single run, no interval"
    return f"{_pts(c.points)} points, {_ci(c)}, {_p(c)}"


def _corrected_away(c: PairedContrast) -> bool:
    """Separated before the correction, not after: "no difference larger than the MDE" would
    misread it (the observed difference may exceed the MDE, which is for alpha = 0.05)."""
    return c.has_interval and c.p < c.alpha <= c.p_adjusted


def _null(c: PairedContrast, between: str = "") -> str:
    """``no difference{between} larger than X points (the smallest the design detects ...)``."""
    if not c.has_interval:
        return f"nothing can be said ({_pts(c.points)} points from a single run, no interval)"
    if _corrected_away(c):
        return (f"the difference is not separated after the Holm correction (observed "
                f"{_pts(c.points)} points, {_ci(c)}, p = {c.p:.2g} before correction, {_p(c)}; "
                f"the design detects {_mde(c)} points at 80% power before correction)")
    return (f"no difference{between} larger than {_mde(c)} points (the smallest the design "
            f"detects at 80% power; observed {_pts(c.points)}, {_ci(c)}, {_p(c)})")


def _inline(c: PairedContrast, what: str = "points") -> str:
    """``+5.0 {what} (95% CI [...], Holm-adjusted p = ...[; what a tie means])``."""
    if not c.has_interval:
        return f"{_pts(c.points)} {what} (a single run, no interval)"
    tail = ""
    if c.verdict == "tie" and _corrected_away(c):
        tail = (f"; not separated after the Holm correction, p = {c.p:.2g} before it; the design "
                f"detects {_mde(c)} points at 80% power before correction")
    elif c.verdict == "tie":
        tail = (f"; no difference larger than {_mde(c)} points, the smallest the design detects "
                "at 80% power")
    return f"{_pts(c.points)} {what} ({_ci(c)}, {_p(c)}{tail})"


def _label(column: str, labels: Mapping[str, str] | None = None) -> str:
    return (labels or {}).get(column, _LABELS.get(column, column))


def _at(columns: Sequence[str], values: Sequence, labels: Mapping[str, str] | None = None) -> str:
    """``sparsity 80%, regime probe``."""
    return ", ".join(f"{_label(c, labels)} {fmt_level(c, v)}"
                     for c, v in zip(columns, values, strict=True))


def _count(ns: Sequence[int], what: str) -> str:
    lo, hi = min(ns), max(ns)
    return f"{lo} {what}{'' if lo == 1 else 's'}" if lo == hi else f"{lo}–{hi} {what}s"


def design_sentence(cs: Sequence[PairedContrast], gains: Sequence[PairedContrast] = ()) -> str:
    """How the contrasts were computed: seeds at each level, the interval, the correction
    (Holm, across the ``family`` contrasts of the notebook; with ``gains``, the transfer gains
    of the gate as a family of their own) and what a tie means."""
    gains = [c for c in gains if c.n_source]
    cs = [c for c in cs if c.n_source]
    if not cs and gains:
        cs, gains = gains, []
    if not cs:
        return "No paired results."
    seeds = (f"{_count([c.n_source for c in cs], 'source seed')} × "
             f"{_count([n for c in cs for n in c.n_finetune], 'finetuning seed')}")
    bits = [f"Paired differences over {seeds}"]
    if any(c.level == SOURCE_SEEDS for c in cs):
        bits.append("the CI is a t interval over the per-source-seed mean differences")
    if any(c.level == FINETUNING_SEEDS and c.n_units >= 2 for c in cs):
        bits.append("with a single source seed the CI is a t interval over the finetuning seeds, "
                    "so the variance between source models is not in the interval (another "
                    "pretraining seed may give another answer)")
    if any(not c.has_interval for c in cs):
        bits.append("a single run gives no interval, so nothing is claimed there")
    family = max(c.family for c in cs)
    if gains:
        g = max(c.family for c in gains)
        bits.append(f"the transfer gains ({_count([c.n_source for c in gains], 'source seed')}) "
                    f"are the gate: Holm-adjusted as a family of their own ({g}), so a gate's "
                    "verdict does not depend on how many other questions a notebook asks; only "
                    "the cells whose gate passed are tested")
        what = f"the {family} contrast{'' if family == 1 else 's'} of the cells it lets through"
    else:
        what = f"the {family} contrast{'' if family == 1 else 's'} of this notebook"
    bits.append(f"verdicts use p-values Holm-adjusted across {what} (α = 0.05); a tie reads \"no "
                "difference larger than X points\", X being the smallest true difference the "
                "design detects with 80% power (two-sided α = 0.05 before the correction)")
    return "; ".join(bits) + "."


def paired_finding(cs: Sequence[PairedContrast], a_name: str, b_name: str, by: Sequence[str], *,
                   group: int | None = 0, labels: Mapping[str, str] | None = None,
                   metric_name: str = "test accuracy", design: bool = True) -> str:
    """Sentences, one per ``by[group]`` value (e.g. per task), saying where ``a`` beats or
    trails ``b`` (Holm-adjusted p < 0.05) and where the design finds no difference larger than
    its minimum detectable effect.

    ``cs``: contrasts after :func:`~rtstudy.core.stats.holm`, keys the values of ``by``
    (the real column names; ``labels`` renames them for the reader); ``group``: the index of
    the column that opens a sentence (None: one sentence); ``design``: end with
    :func:`design_sentence`. ``"robust beats natural at sparsity 80% (+5.0 points, 95% CI
    [+2.1, +7.9], Holm-adjusted p = 0.01)"``; a tie: ``"at sparsity 95%, no difference larger
    than 3.1 points (the smallest the design detects at 80% power; observed +0.8, 95% CI
    [-1.2, +2.8], Holm-adjusted p = 0.6)"``.
    """
    if not cs:
        return f"No configuration has both {a_name} and {b_name} results."
    by = list(by)
    rest = [i for i in range(len(by)) if i != group]
    groups: dict = defaultdict(list)
    for c in cs:
        groups[c.key[group] if group is not None else None].append(c)

    def where(c: PairedContrast) -> str:
        return _at([by[i] for i in rest], [c.key[i] for i in rest], labels) or "the tested setting"

    parts = []
    for g, items in groups.items():
        bits = []
        for verdict, verb in (("better", "beats"), ("worse", "trails")):
            hits = [c for c in items if c.verdict == verdict]
            if hits:
                bits.append(f"{a_name} {verb} {b_name} at "
                            + _join([f"{where(c)} ({_stats(c)})" for c in hits]))
        ties = [c for c in items if c.verdict == "tie"]
        between = "" if bits else f" between {a_name} and {b_name}"
        bits += [f"at {where(c)}, {_null(c, between if i == 0 else '')}"
                 for i, c in enumerate(ties)]
        sentence = "; ".join(bits)
        if group is not None:
            sentence = f"On {fmt_level(by[group], g)}, {sentence}"
        parts.append(sentence[0].upper() + sentence[1:] + ".")
    text = f"{metric_name[0].upper()}{metric_name[1:]}. " + " ".join(parts)
    return text + (" " + design_sentence(cs) if design else "")


def _tally(cs: Sequence[PairedContrast], lead: str, cells: str, subject: str = "",
           not_ranked: int = 0) -> str:
    """`` {lead} (Holm-adjusted): {subject} better in B, tied in T (no difference larger than
    X points), worse in W of N {cells} cells``; X: the largest MDE among the ties."""
    t = tally(cs)
    who = f"{subject} " if subject else ""
    skipped = (f"; {not_ranked} cell{'' if not_ranked == 1 else 's'} not ranked (no separable "
               "transfer gain)") if not_ranked else ""
    ties = [c for c in cs if c.verdict == "tie" and c.has_interval and not _corrected_away(c)]
    bound = (f" (no difference larger than {_mde(max(ties, key=lambda c: c.mde))} points"
             f"{' in ' + str(len(ties)) if len(ties) < t['tie'] else ''})" if ties else "")
    return (f" {lead} (Holm-adjusted): {who}better in {t['better']}, tied in {t['tie']}{bound}, "
            f"worse in {t['worse']} of {len(cs)}{' ranked' if not_ranked else ''} {cells} "
            f"cells{skipped}.")


def _holm_groups(*groups: Sequence[PairedContrast]) -> list[list[PairedContrast]]:
    """Holm once over the union of ``groups`` (one notebook's family); split back."""
    flat = holm([c for g in groups for c in g])
    out, i = [], 0
    for g in groups:
        out.append(flat[i:i + len(g)])
        i += len(g)
    return out


# ----------------------------------------------------------------------------- transfer gate
@dataclass(frozen=True)
class _Gate:
    """The dense transfer gains (pretrained − scratch) per configuration of ``by``."""

    by: tuple[str, ...]
    ident: tuple[str, ...]  # the columns that name a source besides ``source``
    gains: tuple[PairedContrast, ...]
    controls: bool  # the rows hold from-scratch controls at all
    dense: bool = True  # the gains are the dense models' (else: as given, e.g. E8's)

    def of(self, key: tuple) -> list[PairedContrast]:
        return [c for c in self.gains if c.key[:len(self.by)] == tuple(key)]

    def status(self, key: tuple) -> str:
        """``passed`` (some source's dense gain separated, > 0), ``failed`` or ``unmeasured``."""
        gs = self.of(key)
        if not gs:
            return "unmeasured"
        return "passed" if any(c.verdict == "better" for c in gs) else "failed"

    def adjusted(self, gains: Sequence[PairedContrast]) -> _Gate:
        return _Gate(self.by, self.ident, tuple(gains), self.controls, self.dense)


def _dense_gate(rows: list[dict], cell_by: Sequence[str], metric: str = "test_acc",
                where: Mapping | None = None, gate_rows: Iterable[dict] = (),
                by: Sequence[str] | None = None) -> _Gate:
    """The dense (sparsity 0) transfer gains per configuration of ``cell_by`` without its
    ticket columns, per source (``eps`` and ``source_label`` name it), Holm-adjusted as their
    own family. ``gate_rows``: the rows of the grid's gate (``run_gate``), which hold the
    dense models under the gate's source seeds. One dense row per (configuration, source,
    init, source seed, seed) is used: a grid may hold the dense model under several ticket
    labels, and its gate the same transfers again. ``by``: the gate's columns (default: those
    of ``cell_by`` that do not name the ticket)."""
    gate_rows = list(gate_rows)
    by = tuple(by if by is not None else (c for c in cell_by if c not in TICKET_COLUMNS))
    cell_where = {k: v for k, v in (where or {}).items() if k != "init"}
    where = {k: v for k, v in cell_where.items() if k not in TICKET_COLUMNS}
    sub = select(rows + gate_rows, metric=metric, **where)
    controls = any(_get(r, "init") == SCRATCH for r in sub)
    dense = select(sub, sparsity=0.0) if controls else []
    if controls and not any(_get(r, "init") == SCRATCH for r in dense):
        # per-ticket controls only: each cell's own ticket gain (its mask on random weights) gates it
        cells = select(rows, metric=metric, **cell_where)
        ident = ("eps",) + (("source_label",) if all("source_label" in r for r in cells) else ())
        gains = transfer_gains(cells, by=(*cell_by, *ident), metric=metric)
        return _Gate(tuple(cell_by), ident, tuple(holm(gains)), controls, dense=False)
    ident = ("eps",) + (("source_label",) if dense and all("source_label" in r for r in dense)
                        else ())
    seen, keep = set(), []
    for r in dense:
        k = (tuple(_get(r, c) for c in (*by, *ident)), r["source"], _get(r, "init"),
             _get(r, "source_seed"), r["seed"])
        if k not in seen:
            seen.add(k)
            keep.append(r)
    gains = transfer_gains(keep, by=(*by, *ident), metric=metric) if keep else []
    return _Gate(by, ident, tuple(holm(gains)), controls)


def _source_name(gate: _Gate, c: PairedContrast) -> str:
    """``dense natural``, ``dense robust (ε = 2/255)``, ``dense PGD-3 ℓ∞ 2/255``."""
    rest = c.key[len(gate.by):]
    prefix = "dense " if gate.dense else ""
    if len(rest) != len(gate.ident) + 1:  # keys of another shape: name them as they come
        return prefix + str(rest[-1]) + (f" ({', '.join(map(str, rest[:-1]))})" if rest[:-1]
                                         else "")
    vals = dict(zip((*gate.ident, "source"), rest, strict=True))
    if "source_label" in vals:
        return f"{prefix}{vals['source_label']}"
    eps = vals.get("eps")
    if vals["source"] == NATURAL or not eps:
        return f"{prefix}{vals['source']}"
    return f"{prefix}{vals['source']} (ε = {fmt_level('eps', eps)})"


def _place(by: Sequence[str], key: tuple, labels: Mapping[str, str] | None = None) -> str:
    """``on mnist5k`` / ``on t (regime probe)``."""
    if not by:
        return "in the tested setting"
    if by[0] != "task":
        return f"at {_at(by, key, labels)}"
    rest = _at(by[1:], key[1:], labels)
    return f"on {key[0]}" + (f" ({rest})" if rest else "")


def _gate_lead(gate: _Gate, labels: Mapping[str, str] | None = None) -> str:
    """The transfer-gain paragraph a finding leads with ('' where the rows have no controls)."""
    if not gate.controls:
        return ""
    if not gate.gains:
        return ("The from-scratch controls hold no dense model, so the transfer gain is not "
                "measured and every cell is ranked without that check.")
    keys = list(dict.fromkeys(c.key[:len(gate.by)] for c in gate.gains))
    out = []
    for k in keys:
        items = "; ".join(f"{_source_name(gate, c)} {_inline(c, 'points over scratch')}"
                          for c in gate.of(k))
        place = _place(gate.by, k, labels)
        cap = place[0].upper() + place[1:]
        status = gate.status(k)
        if status == "passed":
            out.append(f"Pretraining transfers {place}: {items}.")
        elif any(c.verdict == "worse" for c in gate.of(k)):
            out.append(f"{cap} pretraining does worse than training from scratch, so tickets "
                       f"are not ranked there: {items}.")
        else:
            out.append(f"{cap} pretraining gives nothing separable over training from scratch, "
                       f"so tickets are not ranked there: {items}.")
    return " ".join(out)


def _ticket_gains(rows: Sequence[dict], by: Sequence[str], metric: str = "test_acc",
                  where: Mapping | None = None) -> str:
    """One sentence on the sparse tickets' own transfer gains (each against its mask on
    random weights, Holm over those cells); '' where the rows hold no such control."""
    where = {k: v for k, v in (where or {}).items() if k != "init"}
    sparse = [r for r in select(rows, metric=metric, **where)
              if (_get(r, "sparsity") or 0) > 0 and not r.get("gate")]
    if not any(_get(r, "init") == SCRATCH for r in sparse):
        return ""
    cs = [c for c in holm(transfer_gains(sparse, by=by, metric=metric)) if c.has_interval]
    if not cs:
        return ""
    t, low = tally(cs), min(cs, key=lambda c: c.diff)
    return (f" Each ticket against its own mask on random weights (its transfer gain; Holm over "
            f"the {len(cs)} ({', '.join(_label(c) for c in (*by, 'source'))}) cells): above "
            f"scratch in {t['better']}, not separated in {t['tie']}, below in {t['worse']}; the "
            f"smallest at {_at((*by, 'source'), low.key)}: {_inline(low, 'points')}.")


def _no_controls(gate: _Gate) -> str:
    return ("" if gate.controls else " The rows hold no from-scratch control, so whether "
            "pretraining helps at all is not measured here.")


def _ranked(cs: Sequence[PairedContrast], by: Sequence[str], gate: _Gate,
            ) -> tuple[list[PairedContrast], list[PairedContrast]]:
    """``cs`` split into the cells that may be ranked and those whose gate failed."""
    idx = [list(by).index(c) for c in gate.by]
    ok, not_ok = [], []
    for c in cs:
        (not_ok if gate.status(tuple(c.key[i] for i in idx)) == "failed" else ok).append(c)
    return ok, not_ok


def _finding(paragraphs: Sequence[str], contrasts: Sequence[dict] = ()) -> Finding:
    ps = [p for p in paragraphs if p]
    return Finding(" ".join(ps), ps, contrasts)


ROBUST_VS_NATURAL, TRANSFER_GAIN = "robust − natural", "transfer gain"


def contrast_records(cs: Sequence[PairedContrast], columns: Sequence[str], kind: str) -> list[dict]:
    """Contrasts with an interval as the dicts a notebook records (points; ``cell`` names the
    values of ``columns``, the contrast's key)."""
    out = []
    for c in cs:
        if not c.has_interval:
            continue
        low, high = c.ci_points
        cell = ", ".join(fmt_level(col, v) for col, v in zip(columns, c.key, strict=False))
        out.append({"cell": cell, "kind": kind, "diff": c.points, "low": low, "high": high,
                    "verdict": c.verdict, "mde": c.mde_points, "p_adjusted": c.p_adjusted})
    return out


def _gate_records(gate: _Gate) -> list[dict]:
    return contrast_records(gate.gains, (*gate.by, *gate.ident, "source"), TRANSFER_GAIN)


def _standard(rows: list[dict], a_name: str, b_name: str, by: Sequence[str], *,
              labels: Mapping[str, str] | None = None, metric: str = "test_acc", cells: str = "",
              subject: str = "robust", addons: Sequence = (), where: Mapping | None = None,
              gate_rows: Iterable[dict] = ()) -> Finding:
    """Robust vs natural per ``by`` behind the transfer gate (E1, E3, E4, E6, E7).

    ``addons``: ``(contrasts, words)`` pairs, e.g. a sanity check; their contrasts join the
    Holm family of the ranked cells and ``words(adjusted contrasts, gate, ranked cells)``
    returns the text they add. ``gate_rows``: the grid's gate rows (``run_gate``)."""
    where = dict(where or {})
    gate = _dense_gate(rows, by, metric, where, gate_rows)
    gains = list(gate.gains)
    ok, not_ok = _ranked(paired_contrasts(rows, by=by, metric=metric, **where), by, gate)
    ok, *extra = _holm_groups(ok, *(list(a[0]) for a in addons))
    cells = cells or f"({', '.join(by)})"
    text = (paired_finding(ok, a_name, b_name, by, labels=labels, design=False) if ok
            else f"No {cells} cell is ranked.")
    text += _tally(ok, "Overall", cells, subject=subject, not_ranked=len(not_ok))
    text += _ticket_gains(rows, by, metric, where)
    for (_, words), adjusted in zip(addons, extra, strict=True):
        text += words(adjusted, gate, ok)
    design = design_sentence([*ok, *(c for e in extra for c in e)], gains) + _no_controls(gate)
    records = _gate_records(gate) + contrast_records(ok, by, ROBUST_VS_NATURAL)  # ranked cells
    return _finding([_gate_lead(gate, labels), text, design], records)


# ----------------------------------------------------------------------------- per experiment
def quickstart_finding(rows: Iterable[dict], *, source_task: str, target: str, sparsity: float,
                       eps: float) -> Finding:
    """E0: one seed, dense and ``sparsity`` OMP tickets, robust vs natural; numbers, no claim."""
    acc = {(r["source"], r["sparsity"]): r["value"] for r in select(rows, metric="test_acc")}
    d_dense = 100 * (acc[(ROBUST, 0.0)] - acc[(NATURAL, 0.0)])
    d_ticket = 100 * (acc[(ROBUST, sparsity)] - acc[(NATURAL, sparsity)])
    return Finding(
        f"One seed, {source_task} → {target}: the robust ({eps_label(eps)}) {sparsity:.0%} OMP "
        f"ticket reached {acc[(ROBUST, sparsity)]:.1%} vs the natural ticket's "
        f"{acc[(NATURAL, sparsity)]:.1%} ({d_ticket:+.1f} points); dense models "
        f"{acc[(ROBUST, 0.0)]:.1%} vs {acc[(NATURAL, 0.0)]:.1%} ({d_dense:+.1f}). "
        f"Single-seed differences are anecdotes, not findings: see E1 for intervals.")


def main_finding(rows: Iterable[dict], robust_name: str, *, metric: str = "test_acc",
                 gate_rows: Iterable[dict] = ()) -> Finding:
    """E1: robust vs natural OMP tickets per (task, sparsity), paired over source and
    finetuning seeds, Holm-corrected, behind the dense transfer gain where the rows hold
    from-scratch controls; and the overall tally.

    ``rows``: E1's result rows (``source_seed``, ``init`` as in :func:`paired_contrasts`);
    ``robust_name``: the robust source's label for the text; ``metric``: the row metric;
    ``gate_rows``: the rows of the grid's transfer gate (``run_gate``).
    Paragraphs: the transfer gain (with controls), the contrasts and tally, the design.
    """
    return _standard(list(rows), f"the robust ({robust_name}) ticket", "the natural one",
                     ("task", "sparsity"), metric=metric, cells="(task, sparsity)",
                     gate_rows=gate_rows)


def _sweep_cell(task, s, xs, vs_lo: dict, vs_hi: dict) -> str:
    """E2's sentences for one (task, sparsity): each ε against the smallest, and the shape."""

    def fmt(e: float) -> str:
        return fmt_level("eps", e)

    lo = f"ε = {fmt(xs[0])}"
    items = []
    for e in xs[1:]:
        c = vs_lo.get(e)
        if c is None:
            continue
        if c.verdict in ("better", "worse"):
            verb = "beats" if c.verdict == "better" else "trails"
            items.append(f"ε = {fmt(e)} {verb} it ({_stats(c)})")
        else:
            items.append(f"ε = {fmt(e)}: {_null(c)}")
    means = {xs[0]: 0.0, **{e: c.diff for e, c in vs_lo.items()}}
    best = max(means, key=lambda e: means[e])
    hi = f"the largest ε = {fmt(xs[-1])}"
    if len(xs) < 3:
        shape = f"With {len(xs)} values of ε an inverted U is not shown (none can be judged)"
    elif best in (xs[0], xs[-1]):
        end = "smallest" if best == xs[0] else "largest"
        shape = (f"The best mean is at ε = {fmt(best)}, the {end} value tested, so an inverted U "
                 "is not shown")
    else:
        shown = [e for e in xs[1:-1] if e in vs_lo and e in vs_hi
                 and vs_lo[e].verdict == "better" and vs_hi[e].verdict == "better"]
        if shown:
            e = best if best in shown else shown[0]
            shape = (f"An inverted U: ε = {fmt(e)} beats both {lo} and {hi} after correction "
                     f"(over {hi}: {_stats(vs_hi[e])})")
        else:
            apart = [(lo, vs_lo.get(best)), (hi, vs_hi.get(best))]
            missing = [f"{n} ({_inline(c) if c is not None else 'no pairs'})"
                       for n, c in apart if c is None or c.verdict != "better"]
            shape = (f"The best mean is at the interior ε = {fmt(best)}, but after correction it "
                     f"is not separated from {' or from '.join(missing)}: an inverted U is "
                     "suggested, not shown")
    name = "natural (ε = 0)" if xs[0] == 0 else lo
    head = f"On {task} at {pct(s)} sparsity"
    return (f"{head}, against {name}: " + "; ".join(items) + ". " if items else f"{head}: ") \
        + shape + "."


def eps_sweep_finding(rows: Sequence[dict], *, metric: str = "test_acc",
                      gate_rows: Iterable[dict] = (), **where) -> Finding:
    """E2: per (task, sparsity), every source ε against the smallest (natural, ε = 0) and the
    shape in ε, paired and Holm-corrected across the notebook.

    The family: every ε > ε_min vs ε_min, and every interior ε vs the largest (so the shape is
    tested without picking the best mean first), in the tasks whose transfer gate passed
    (the dense transfer gains, a family of their own; ``gate_rows``). An inverted U
    is claimed only where an interior ε beats both ε_min and the largest ε after correction;
    an interior best mean without both separations reads "suggested, not shown"; a best mean
    at an end "not shown". ``rows``: E2's rows (columns ``eps``, ``source_seed``, ``seed``,
    ``init``); rows at one ε must differ only by finetuning/source seed within a (task,
    sparsity) cell (filter with ``where`` otherwise); ``metric``: the row metric; ``where``:
    filters (``select``'s values).
    """
    rows = list(rows)
    by = ("task", "sparsity")
    gate = _dense_gate(rows, by, metric, where, gate_rows)
    gains = list(gate.gains)
    pre = [r for r in select(rows, metric=metric, **where)
           if _get(r, "init") in _allowed(where.get("init", PRETRAINED))]
    cells, flat = [], []
    for task in levels(pre, "task"):
        if gate.status((task,)) == "failed":
            continue
        for s in levels(pre, "sparsity", task=task):
            xs = levels(pre, "eps", task=task, sparsity=s)
            kw = {**where, "task": task, "sparsity": s}
            vs_lo = {e: c for e in xs[1:] for c in paired_contrasts(
                rows, factor="eps", a=e, b=xs[0], by=by, metric=metric, **kw)}
            vs_hi = {e: c for e in xs[1:-1] for c in paired_contrasts(
                rows, factor="eps", a=e, b=xs[-1], by=by, metric=metric, **kw)} \
                if len(xs) >= 3 else {}
            cells.append((task, s, xs, list(vs_lo), list(vs_hi)))
            flat += list(vs_lo.values()) + list(vs_hi.values())
    if not cells and not gains:
        return Finding("No results.")
    flat = holm(flat)
    parts, i = [], 0
    records = _gate_records(gate)
    for task, s, xs, lo_keys, hi_keys in cells:
        vs_lo = dict(zip(lo_keys, flat[i:i + len(lo_keys)], strict=True))
        i += len(lo_keys)
        vs_hi = dict(zip(hi_keys, flat[i:i + len(hi_keys)], strict=True))
        i += len(hi_keys)
        for e, c in vs_lo.items():  # each ε against the smallest (natural at ε = 0), ranked cells
            for rec in contrast_records([c], ("task", "sparsity"), ROBUST_VS_NATURAL):
                records.append({**rec, "cell": f"{rec['cell']}, ε = {fmt_level('eps', e)}"})
        parts.append(_sweep_cell(task, s, xs, vs_lo, vs_hi))
    if not parts:
        parts = ["No (task, sparsity) cell is ranked."]
    design = design_sentence(flat, gains) + _no_controls(gate)
    return _finding([_gate_lead(gate), " ".join(parts), design], records)


def _sanity_words(lead: str, cells: str, subject: str):
    return lambda adjusted, gate, ranked: _tally(adjusted, lead, cells, subject=subject)


def _probe_words(adjusted, gate, ranked) -> str:
    cs = [c for c in adjusted if c.has_interval]
    if not cs:
        return ""
    mean = sum(c.points for c in cs) / len(cs)
    return (f" Where magnitude tickets keep their advantage: under a linear probe (the pruned "
            f"pretrained features frozen, only a new head trained on T) the OMP ticket is "
            f"{_pts(mean)} points from the random one on average."
            + _tally(cs, "OMP vs random under the probe", "(task, source, pattern)", subject="OMP"))


def pattern_finding(rows: Iterable[dict], robust_name: str,
                    probe_rows: Iterable[dict] = (), gate_rows: Iterable[dict] = ()) -> Finding:
    """E3: robust vs natural OMP tickets per (task, ``pattern_label``), and the sanity check
    OMP vs random tickets per (task, source, pattern) as paired contrasts (``scheme`` "omp" −
    the random baseline), finetuned and, with ``probe_rows``, under a linear probe; one Holm
    family with the dense transfer gains.

    ``rows``: E3's finetuned rows (``pattern_label``, ``scheme``, ``source_seed``, ``init``);
    ``probe_rows``: its probe rows (``regime`` "probe"); ``robust_name``: the robust
    source's label for the text.
    """
    rows = list(rows)
    by = ("task", "source", "pattern_label")
    sanity = paired_contrasts(rows, factor="scheme", a="omp", b=BASELINE, by=by)
    words = _sanity_words("Sanity check, OMP vs random tickets at the same per-layer sparsity",
                          "(task, source, pattern)", "OMP")
    addons = [(sanity, words)]
    probe_rows = list(probe_rows)
    if probe_rows:
        addons.append((paired_contrasts(probe_rows, factor="scheme", a="omp", b=BASELINE, by=by,
                                        regime="probe"), _probe_words))
    return _standard(rows, f"the robust ({robust_name}) OMP ticket", "the natural one",
                     ("task", "pattern_label"), cells="(task, pattern)",
                     where={"scheme": "omp"}, addons=addons, gate_rows=gate_rows)


def scheme_finding(rows: Iterable[dict], robust_name: str,
                   schemes: Sequence[str] | None = None, gate_rows: Iterable[dict] = ()) -> Finding:
    """E4: robust vs natural per (task, scheme), and every drawn scheme vs random tickets per
    (scheme, task, source) as paired contrasts, one Holm family with the transfer gains.

    ``rows``: E4's rows; ``robust_name``: the robust source's label; ``schemes``: the
    schemes drawn (default: those in the rows); the sanity check runs where the random
    baseline is among them.
    """
    rows = list(rows)
    schemes = list(schemes) if schemes is not None else levels(rows, "scheme")
    addons = []
    if BASELINE in schemes:
        drawn = [s for s in schemes if s != BASELINE]
        sanity = [replace(c, key=(s, *c.key)) for s in drawn
                  for c in paired_contrasts(rows, factor="scheme", a=s, b=BASELINE,
                                            by=("task", "source"))]
        addons.append((sanity, _sanity_words(
            f"Sanity check, drawn ({', '.join(drawn)}) vs random tickets",
            "(scheme, task, source)", "")))
    return _standard(rows, f"the robust ({robust_name}) ticket", "the natural one",
                     ("task", "scheme"), cells="(task, scheme)", addons=addons,
                     gate_rows=gate_rows)


def attack_finding(rows: Iterable[dict], names: Sequence[str],
                   gate_rows: Iterable[dict] = ()) -> Finding:
    """E5: each robust source vs natural per task, then attack kind and norm against E1's
    source, all paired (``factor="source_label"``) in one Holm family with the transfer
    gains.

    ``rows``: E5's rows (``source_label`` names each source); ``names``: ``source_label`` of
    natural, E1's robust source, the other attack kind, the other norm (in that order).
    Paragraphs: the transfer gain (with controls), one per comparison, the design.
    """
    rows = list(rows)
    by = ("task",)
    comps = [(n, NATURAL, f"{n} vs natural") for n in names[1:]]
    comps += [(names[2], names[1], f"attack kind: {names[2]} vs {names[1]}"),
              (names[3], names[1], f"norm: {names[3]} vs {names[1]}")]
    gate = _dense_gate(rows, by, gate_rows=gate_rows)
    gains = list(gate.gains)
    groups = _holm_groups(*(_ranked(paired_contrasts(rows, factor="source_label", a=a, b=b,
                                                     by=by), by, gate)[0] for a, b, _ in comps))
    paras = [_gate_lead(gate)]
    for (a, b, what), ok in zip(comps, groups, strict=True):
        paras.append(paired_finding(ok, a, b, by, group=None, metric_name=what, design=False)
                     if ok else f"{what[0].upper()}{what[1:]}: no task is ranked.")
    paras[-1] += _ticket_gains(rows, ("task", "source_label"))
    paras.append(design_sentence([c for g in groups for c in g], gains) + _no_controls(gate))
    records = _gate_records(gate)
    for (a, b, _), ok in zip(comps, groups, strict=True):
        if b == NATURAL:
            records += [{**r, "cell": f"{r['cell']}, {a}"}
                        for r in contrast_records(ok, by, ROBUST_VS_NATURAL)]
    return _finding(paras, records)


def data_finding(rows: Iterable[dict], robust_name: str,
                 targets: Sequence[str] | None = None, gate_rows: Iterable[dict] = ()) -> Finding:
    """E6: robust vs natural per (task, fraction of T), and whether the robust − natural
    difference grows as the data shrink: per target, the paired difference of the
    differences at the smallest and the largest fraction (same source and finetuning seed),
    in the same Holm family.

    ``rows``: E6's rows (``fraction``); ``robust_name``: the robust source's label;
    ``targets``: the targets for the trend (default: every task in the rows).
    """
    rows = list(rows)
    by = ("task", "fraction")
    d = _paired_diffs(rows, "source", ROBUST, NATURAL, by, "test_acc", {})
    inter = []
    for task in targets if targets is not None else levels(rows, "task"):
        fr = sorted(k[1] for k in d if k[0] == task)
        if len(fr) < 2:
            continue
        lo, hi = d[(task, fr[0])], d[(task, fr[-1])]
        diffs = {ss: [lo[ss][sd] - hi[ss][sd] for sd in lo[ss] if sd in hi[ss]]
                 for ss in lo if ss in hi}
        inter.append(paired_contrast(diffs, (task, fr[0], fr[-1])))

    def words(adjusted, gate, ranked) -> str:
        items = []
        for c in adjusted:
            task, lo, hi = c.key
            if "failed" in (gate.status((task, lo)), gate.status((task, hi))):
                items.append(f"on {task} not ranked (no separable transfer gain)")
            elif c.verdict == "better":
                items.append(f"on {task} it is larger with {pct(lo)} of the data than with "
                             f"{pct(hi)} ({_stats(c)})")
            elif c.verdict == "worse":
                items.append(f"on {task} it is smaller with {pct(lo)} of the data than with "
                             f"{pct(hi)} ({_stats(c)})")
            else:
                items.append(f"on {task}, between {pct(lo)} and {pct(hi)} of the data, "
                             f"{_null(c)}: growth as the data shrink is not shown")
        if not items:
            return ""
        text = "; ".join(items)
        return (" Does the robust − natural difference grow as the data shrink (the difference "
                "with the least data minus that with the most, paired)? " + text[0].upper()
                + text[1:] + ".")

    return _standard(rows, f"the robust ({robust_name}) ticket", "the natural one", by,
                     cells="(task, fraction)", addons=[(inter, words)], gate_rows=gate_rows)


def regime_finding(rows: Iterable[dict], robust_name: str,
                   regimes: Sequence[str] | None = None, gate_rows: Iterable[dict] = ()) -> Finding:
    """E7: robust vs natural per (task, regime, sparsity), gated per (task, regime) by the
    dense transfer gain, and the mean of the ranked cells' differences per regime
    (descriptive, no test).

    ``rows``: E7's rows (``regime``); ``robust_name``: the robust source's label;
    ``regimes``: the regimes (default: those in the rows); the means are given only where
    every regime has ranked cells.
    """
    rows = list(rows)
    regimes = list(regimes) if regimes is not None else levels(rows, "regime")

    def words(adjusted, gate, ranked) -> str:
        gain = {reg: [c.points for c in ranked if c.key[1] == reg] for reg in regimes}
        if not all(gain.values()):
            return ""
        return (" Mean of the ranked cells' robust − natural differences per regime "
                "(descriptive, not a test): " + ", ".join(
                    f"{reg} {_pts(sum(v) / len(v))} points" for reg, v in gain.items()) + ".")

    return _standard(rows, f"the robust ({robust_name}) source", "the natural one",
                     ("task", "regime", "sparsity"), cells="(task, regime, sparsity)",
                     addons=[([], words)], gate_rows=gate_rows)


def gap_finding(gains: Mapping[str, PairedContrast], dist: Mapping[str, float],
                transfer: Iterable[PairedContrast] = (), *, dense: bool = True) -> Finding:
    """E8: the robust − natural difference per target and its trend with the S→T distance.

    ``gains``: ``{target: robust − natural PairedContrast}`` (e.g. ``{c.key[0]: c for c in
    paired_contrasts(rows, by=("task",))}``); ``dist``: ``{target: measured distance}``;
    ``transfer``: the targets' transfer gains (``transfer_gains(rows, by=("task",), ...)``,
    key[0] the target) where the rows hold from-scratch controls: the dense models' (the
    grid's gate, ``dense``) or the tickets' own. The transfer gains are one Holm family, the
    per-target differences of the targets they let through another (adjusted from the raw p,
    so contrasts adjusted before are fine). Targets whose transfer gain is not separated are
    not ranked and not in the trend. A trend is claimed only with at least 5 ranked targets and a Spearman
    test (scipy; exact permutations up to 8 points) with p < 0.05; otherwise "not shown".
    """
    targets = list(gains)
    gains_t = holm(list(transfer))
    gate = _Gate(("task",), (), tuple(gains_t), bool(gains_t), dense=dense)
    ranked = [t for t in sorted(targets, key=lambda t: dist[t]) if gate.status((t,)) != "failed"]
    adjusted = holm([gains[t] for t in ranked])
    cs = dict(zip(ranked, adjusted, strict=True))
    lead = _gate_lead(gate)

    def one(t: str) -> str:
        c = cs[t]
        head = f"{t} (distance {dist[t]:.3g}): "
        if c.verdict == "better":
            return head + f"robust beats natural ({_stats(c)})"
        if c.verdict == "worse":
            return head + f"robust trails natural ({_stats(c)})"
        return head + _null(c)

    per_target = "Per target, robust − natural: " + "; ".join(one(t) for t in ranked) + "."
    n = len(ranked)
    x, y = [dist[t] for t in ranked], [cs[t].diff for t in ranked]
    if n < 3:
        trend = (f"A trend with the domain gap is not shown: only {n} ranked target"
                 f"{'' if n == 1 else 's'} (a trend needs at least 5 and a significant Spearman "
                 "test); no correlation is estimated.")
    else:
        rho = spearman(x, y)
        if n >= 5 and rho.p < 0.05:
            way = "grows" if rho.r > 0 else "shrinks"
            trend = (f"The robust − natural difference {way} with the measured domain distance "
                     f"across {n} targets: {rho} (Spearman test, exact permutations up to 8 "
                     "points).")
        else:
            why = (f"only {n} targets, and a trend needs at least 5" if n < 5
                   else "the Spearman test is not significant at the 5% level")
            trend = f"A trend with the domain gap is not shown: {rho}; {why}."
    if y:
        trend += f" Differences range from {_pts(100 * min(y))} to {_pts(100 * max(y))} points."
    design = design_sentence(adjusted, gains_t) + (
        "" if gains_t else " No transfer gains were given, so whether pretraining helps at all "
        "is not measured here.")
    records = (contrast_records(gains_t, ("task", "source"), TRANSFER_GAIN)
               + contrast_records([cs[t] for t in ranked], ("task",), ROBUST_VS_NATURAL))
    return _finding([lead, trend + " " + per_target, design], records)


def double_win_finding(rows: Iterable[dict], robust_name: str, eps: float,
                       gate_rows: Iterable[dict] = ()) -> Finding:
    """E9: robust vs natural tickets on clean and on robust accuracy at ``eps`` per (task,
    ``transfer``), paired and Holm-corrected, in the tasks whose dense clean transfer gain
    (``gate_rows``, natural finetuning) is separated, and the double wins: better on both
    after correction.

    ``rows``: E9's rows (metrics ``test_acc`` and ``robust_acc``, column ``transfer``);
    ``robust_name``: the robust source's label; ``eps``: the evaluation budget (for the text).
    Paragraphs: the transfer gain (with controls), clean, robust, the double wins, the design.
    """
    rows = list(rows)
    by = ("task", "transfer")
    # one gate per task: natural finetuning's (adversarial finetuning of a dense model from
    # scratch is no cheaper control of whether pretraining transfers)
    gate = _dense_gate(rows, by, "test_acc", gate_rows=gate_rows, by=("task",))
    gains = list(gate.gains)
    metrics = (("test_acc", "clean accuracy"), ("robust_acc", f"robust accuracy at {eps_label(eps)}"))
    groups = _holm_groups(*(_ranked(paired_contrasts(rows, by=by, metric=m), by, gate)[0]
                            for m, _ in metrics))
    paras, wins = [_gate_lead(gate)], []
    for (_, word), ok in zip(metrics, groups, strict=True):
        paras.append(paired_finding(ok, "the robust ticket", "the natural one", by,
                                    metric_name=word, design=False)
                     if ok else f"{word[0].upper()}{word[1:]}: no (task, finetuning) cell is ranked.")
        wins.append({c.key for c in ok if c.verdict == "better"})
    double = sorted(wins[0] & wins[1], key=_order)
    paras.append("Double wins (robust ticket better on both, Holm-adjusted): "
                 + (", ".join(f"{t} with {tr}" for t, tr in double) if double else "none") + "."
                 + _ticket_gains(rows, by))
    paras.append(design_sentence([c for g in groups for c in g], gains) + _no_controls(gate))
    ps = [p for p in paras if p]
    records = _gate_records(gate)
    for (m, _), ok in zip(metrics, groups, strict=True):
        records += [{**r, "cell": f"{r['cell']}, {m}"}
                    for r in contrast_records(ok, by, ROBUST_VS_NATURAL)]
    return Finding(f"Robust source {robust_name}. " + " ".join(ps), ps, records)


def omp_random_explanation(rows: Iterable[dict], diagnostics: Sequence[Mapping]) -> str:
    """Why OMP and random tickets end up alike (or apart) after finetuning, from what moves.

    ``rows``: result rows with OMP and random tickets (``moved``: how far finetuning moved
    the weights); ``diagnostics``: ``ticket_diagnostics`` (masked source accuracy before
    finetuning, dead filters). Means over sources, source seeds and patterns: descriptive.
    """
    rows = [r for r in rows if _get(r, "init") == PRETRAINED and r["metric"] == "test_acc"]

    def mean(values):
        values = [v for v in values if v is not None and not math.isnan(v)]
        return sum(values) / len(values) if values else math.nan

    by = {s: [d for d in diagnostics if d["scheme"] == s] for s in ("omp", BASELINE)}
    if not by["omp"] or not by[BASELINE]:
        return ""
    before = {s: 100 * mean(d["source_acc"] for d in ds) for s, ds in by.items()}
    dead = {s: 100 * mean(d["dead_filters"] for d in ds) for s, ds in by.items()}
    after = {s: 100 * mean(r["value"] for r in rows if r["scheme"] == s and r["sparsity"] > 0)
             for s in by}
    moved = {s: mean(r.get("moved") for r in rows if r["scheme"] == s and r["sparsity"] > 0)
             for s in by}
    kept = "keeps much more" if before["omp"] - before[BASELINE] > 10 else (
        "keeps more" if before["omp"] > before[BASELINE] else "does not keep more")
    text = (f" What moves (descriptive, means over sources, seeds and patterns): before any "
            f"finetuning, the masked source model scores {before['omp']:.1f}% on S with an OMP "
            f"ticket and {before[BASELINE]:.1f}% with a random ticket at the same per-layer "
            f"sparsity (batch-norm statistics recomputed), so magnitude pruning {kept} of the "
            f"pretrained function; OMP removes {dead['omp']:.1f}% of the filters whole, random "
            f"{dead[BASELINE]:.1f}%. After finetuning on T the OMP ticket averages "
            f"{after['omp']:.1f}% and the random one {after[BASELINE]:.1f}%")
    if not (math.isnan(moved["omp"]) or math.isnan(moved[BASELINE])):
        text += (f"; finetuning moves the kept weights by {moved['omp']:.2f} (OMP) and "
                 f"{moved[BASELINE]:.2f} (random) of their norm")
        if moved[BASELINE] > moved["omp"]:
            text += (", so it rebuilds in the random ticket much of what pruning removed and "
                     "the head start OMP had before finetuning shrinks")
    return text + "."
