"""The row query language and its formatting: select rows, group seeds, write tables.

Rows are the dicts of ``rtstudy.results.row``. :func:`select` filters them,
:func:`seed_groups` and :func:`estimates` turn them into per-configuration seed groups and
95% intervals, :func:`levels` lists a column's values, and :func:`markdown_table` lays
estimates out for a reader.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Sequence

from rtstudy.core.stats import Estimate, mean_ci
from rtstudy.vision.track import eps_label

_FLOAT_TOL = 1e-9


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
        return "0" if value == 0 else eps_label(value)
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

