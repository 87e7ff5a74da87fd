"""Findings: the sentences each experiment states, computed from its rows.

:func:`contrasts` and :func:`contrast_finding` claim "beats" only where the 95%
intervals separate (``rtstudy.core.stats.compare``); the ``*_finding`` functions below
them hold each notebook's finding (E0 ... E9), so the wording is tested on hand-made rows.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from rtstudy.core.schemes import BASELINE
from rtstudy.core.stats import Estimate, compare, describe, pearson, spearman
from rtstudy.experiments.grid import NATURAL, ROBUST
from rtstudy.experiments.rows import estimates, fmt_level, levels, pct, select
from rtstudy.vision.track import eps_label


class Finding(str):
    """A finding's text (what ``record`` stores), remembering its paragraphs for display."""

    paragraphs: tuple[str, ...]

    def __new__(cls, text: str, paragraphs: Sequence[str] | None = None) -> Finding:
        self = super().__new__(cls, text)
        self.paragraphs = tuple(paragraphs) if paragraphs else (str(text),)
        return self

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


def main_finding(rows: Iterable[dict], robust_name: str) -> Finding:
    """E1: robust vs natural OMP tickets per (task, sparsity), and the overall tally."""
    cs = contrasts(rows, by=("task", "sparsity"))
    text = contrast_finding(cs, f"the robust ({robust_name}) ticket", "the natural one",
                            ("task", "sparsity"))
    return Finding(text + tally_sentence(cs, "Overall", "(task, sparsity)", subject="robust"))


def eps_sweep_finding(rows: Sequence[dict], *, metric: str = "test_acc", **where) -> Finding:
    """E2: per (task, sparsity), where the best source eps lies (:func:`sweep_finding`) and how
    the best robust source compares with the natural one (eps 0)."""
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
    return Finding(" ".join(parts) if parts else "No results.")


def pattern_finding(rows: Iterable[dict], robust_name: str) -> Finding:
    """E3: robust vs natural OMP tickets per (task, ``pattern_label``), and OMP vs random."""
    rows = list(rows)
    cs = contrasts(rows, by=("task", "pattern_label"), scheme="omp")
    text = contrast_finding(cs, f"the robust ({robust_name}) OMP ticket", "the natural one",
                            ("task", "pattern"))
    sanity = contrasts(rows, factor="scheme", a="omp", b=BASELINE,
                       by=("task", "source", "pattern_label"))
    return Finding(text + tally_sentence(
        sanity, "Sanity check, OMP vs random tickets at the same per-layer sparsity",
        "(task, source, pattern)", subject="OMP"))


def scheme_finding(rows: Iterable[dict], robust_name: str,
                   schemes: Sequence[str] | None = None) -> Finding:
    """E4: robust vs natural per (task, scheme), and every drawn scheme vs random tickets."""
    rows = list(rows)
    schemes = list(schemes) if schemes is not None else levels(rows, "scheme")
    cs = contrasts(rows, by=("task", "scheme"))
    text = contrast_finding(cs, f"the robust ({robust_name}) ticket", "the natural one",
                            ("task", "scheme"))
    if BASELINE in schemes:
        drawn = [s for s in schemes if s != BASELINE]
        sanity = [c for s in drawn for c in contrasts(rows, factor="scheme", a=s, b=BASELINE,
                                                      by=("task", "source"))]
        text += tally_sentence(sanity,
                               f"Sanity check, drawn ({', '.join(drawn)}) vs random tickets",
                               "(scheme, task, source)")
    return Finding(text)


def attack_finding(rows: Iterable[dict], names: Sequence[str]) -> Finding:
    """E5: each robust source vs natural, then attack kind and norm against E1's source.

    ``names``: ``source_label`` of natural, E1's robust source, the other attack kind, the
    other norm (in that order); one paragraph per comparison.
    """
    rows = list(rows)
    parts = []
    for name in names[1:]:
        cs = contrasts(rows, factor="source_label", a=name, b=NATURAL, by=("task",))
        parts.append(contrast_finding(cs, name, NATURAL, ("task",), group=None,
                                      metric_name=f"{name} vs natural"))
    for a, b, what in ((names[2], names[1], "attack kind"), (names[3], names[1], "norm")):
        cs = contrasts(rows, factor="source_label", a=a, b=b, by=("task",))
        parts.append(contrast_finding(cs, a, b, ("task",), group=None,
                                      metric_name=f"{what}: {a} vs {b}"))
    return Finding(" ".join(parts), parts)


def data_finding(rows: Iterable[dict], robust_name: str,
                 targets: Sequence[str] | None = None) -> Finding:
    """E6: robust vs natural per (task, fraction of T), and whether the mean gain grows as
    the data shrinks (smallest vs largest fraction, per target)."""
    rows = list(rows)
    cs = contrasts(rows, by=("task", "fraction"))
    text = contrast_finding(cs, f"the robust ({robust_name}) ticket", "the natural one",
                            ("task", "fraction of T"))
    trend = []
    for task in targets if targets is not None else levels(rows, "task"):
        d = {c.key[1]: c.diff for c in cs if c.key[0] == task}
        if len(d) >= 2:
            lo, hi = min(d), max(d)
            word = "larger" if d[lo] > d[hi] else ("smaller" if d[lo] < d[hi] else "the same")
            trend.append(f"on {task} the mean gain is {word} with {pct(lo)} of the data "
                         f"({d[lo]:+.1f} points) than with {pct(hi)} ({d[hi]:+.1f})")
    if trend:
        text += " Trend of the mean gain: " + "; ".join(trend) + "."
    return Finding(text)


def regime_finding(rows: Iterable[dict], robust_name: str,
                   regimes: Sequence[str] | None = None) -> Finding:
    """E7: robust vs natural per (task, regime, sparsity), and the mean gain per regime."""
    rows = list(rows)
    regimes = list(regimes) if regimes is not None else levels(rows, "regime")
    cs = contrasts(rows, by=("task", "regime", "sparsity"))
    text = contrast_finding(cs, f"the robust ({robust_name}) source", "the natural one",
                            ("task", "regime", "sparsity"))
    gain = {reg: [c.diff for c in cs if c.key[1] == reg] for reg in regimes}
    if all(gain.values()):
        text += " Mean gain over tasks and sparsities: " + ", ".join(
            f"{reg} {sum(v) / len(v):+.1f} points" for reg, v in gain.items()) + "."
    return Finding(text)


def gap_finding(cs: dict[str, Contrast], dist: dict[str, float]) -> Finding:
    """E8: rank and linear correlation of the robust − natural gain (``cs``: per target) with
    the measured S→T distance, and each target's comparison."""
    order = sorted(cs, key=lambda t: dist[t])
    x, y = [dist[t] for t in order], [cs[t].diff for t in order]
    per_task = "; ".join(f"{t} (distance {dist[t]:.3g}): "
                         + describe("robust", cs[t].a, "natural", cs[t].b) for t in order)
    if len(x) < 3:
        return Finding(f"Only {len(x)} targets: no correlation can be estimated. "
                       f"Per target: {per_task}.")
    rho, r = spearman(x, y), pearson(x, y)
    sign = "positive" if rho.r > 0 else ("negative" if rho.r < 0 else "zero")
    strength = ("not significant at the 5% level" if rho.p >= 0.05
                else "significant at the 5% level")
    return Finding(
        f"Across {len(x)} targets the robust − natural gain has a {sign} rank correlation with "
        f"the measured domain distance: {rho}; {r}; {strength}, and with only {len(x)} points "
        f"{'this is weak evidence either way' if len(x) < 8 else 'treat it with care'}. "
        f"Gains range from {min(y):+.1f} to {max(y):+.1f} points. Per target: {per_task}.")


def double_win_finding(rows: Iterable[dict], robust_name: str, eps: float) -> Finding:
    """E9: robust vs natural tickets on clean and on robust accuracy at ``eps`` per (task,
    ``transfer``), and the double wins: better on both, intervals separate."""
    rows = list(rows)
    parts, wins = [], []
    for metric, word in (("test_acc", "clean accuracy"),
                         ("robust_acc", f"robust accuracy at {eps_label(eps)}")):
        cs = contrasts(rows, by=("task", "transfer"), metric=metric)
        parts.append(contrast_finding(cs, "the robust ticket", "the natural one",
                                      ("task", "finetuning"), metric_name=word))
        wins.append({c.key for c in cs if c.verdict == "better"})
    double = sorted(wins[0] & wins[1])
    parts.append("Double wins (robust ticket better on both, intervals separate): "
                 + (", ".join(f"{t} with {tr}" for t, tr in double) if double else "none") + ".")
    return Finding(f"Robust source {robust_name}. " + " ".join(parts), parts)
