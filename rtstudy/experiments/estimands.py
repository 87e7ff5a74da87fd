"""Each experiment's primary estimand, declared before any data, and its estimate from rows.

An :class:`Estimand` names what is contrasted (side ``a`` minus side ``b``, each a filter on
result rows), the cells it is averaged over, the unit of replication, the margin that
matters and how many units the profile's design gives. :func:`unit_values` turns a
notebook's rows into one value per unit (its mean over the cells and the finetuning seeds
within it); :func:`primary_estimate` makes them an estimate with a verdict
(``rtstudy.core.contrasts``) and the design power from the profile's pilot SD;
:func:`cell_estimates` gives the secondary estimates, one per cell, with the same units.

The declarations are functions of the profile (``PRIMARIES[id](P)``): they read its targets,
sparsities and robust source, never its results.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from rtstudy.core.contrasts import UnitEstimate, design_power, estimate, holm_family
from rtstudy.experiments.rows import select

ACCURACY_MARGIN = 2.0  # accuracy points: the difference that matters
PSNR_MARGIN = 0.5  # dB (E12)
SOURCE_SEED = ("source_seed",)
_DEFAULTS = {"source_seed": 0, "init": "pretrained", "noise_seed": 0}


class TooFewCells(ValueError):
    """The rows hold too few cells for a slope."""


def _source_seeds(P) -> int:
    return len(P.source_seeds)


@dataclass(frozen=True)
class Estimand:
    """``a − b`` over the rows of ``metric`` that match ``where``, averaged over ``cells``.

    ``id``: the estimand's name (the experiment's id, with a suffix where it has two);
    ``contrast``: what is contrasted, in words; ``a``/``b``: row filters of the two sides (a
    tuple of values averages the side over them: E2's interior and end ε); ``cells``: the
    columns averaged over within a unit; ``unit``: the columns of the unit of replication;
    ``within``: the columns averaged within a unit and cell (finetuning seeds); ``scale``:
    row values -> ``unit_name`` (100: accuracy points); ``margin``: in ``unit_name``;
    ``slope_on``: a column; the unit's value is then the least-squares slope of its per-cell
    contrast on that column times the column's range (the change across the measured range),
    needing ``min_cells`` cells; ``design_units``: the number of units the profile plans;
    ``why``: where the contrast differs from the obvious one, why; ``unit_label``: the
    units in words (plural).
    """

    id: str
    contrast: str
    a: Mapping
    b: Mapping
    cells: tuple[str, ...]
    where: Mapping = field(default_factory=dict)
    metric: str = "test_acc"
    unit: tuple[str, ...] = SOURCE_SEED
    within: tuple[str, ...] = ("seed",)
    scale: float = 100.0
    unit_name: str = "points"
    margin: float = ACCURACY_MARGIN
    slope_on: str | None = None
    min_cells: int = 5
    design_units: Callable = _source_seeds
    why: str = ""
    unit_label: str = "source seeds"

    def __post_init__(self):
        shared = set(self.a) & set(self.b)
        if not shared:
            raise ValueError(f"estimand {self.id!r}: sides a {dict(self.a)} and b {dict(self.b)} "
                             "must differ in a column they both name")
        if not self.margin > 0:
            raise ValueError(f"estimand {self.id!r}: margin must be > 0, got {self.margin!r}")

    @property
    def key(self) -> tuple:
        return (self.id,)


def _get(r: Mapping, column: str):
    return r.get(column, _DEFAULTS.get(column))


def _expected(side: Mapping) -> int:
    """How many rows one side holds per pairing key (the product of its tuples' lengths)."""
    return math.prod(len(v) for v in side.values() if isinstance(v, (tuple, list)))


def _matches(rows: list[dict], where: Mapping) -> list[dict]:
    defaulted = {k: v for k, v in where.items() if k in _DEFAULTS}
    plain = {k: v for k, v in where.items() if k not in _DEFAULTS}
    picked = select(rows, **plain)
    for k, v in defaulted.items():
        allowed = set(v) if isinstance(v, (tuple, list, set)) else {v}
        picked = [r for r in picked if _get(r, k) in allowed]
    return picked


def cell_differences(est: Estimand, rows: Iterable[dict]) -> dict[Hashable, dict[tuple, float]]:
    """``{unit: {cell: a − b}}`` (in ``unit_name``), the finetuning seeds averaged within each
    cell; only pairs with every row of both sides present count. Rows of a grid's transfer
    gate (``gate``) are left out unless ``where`` names ``gate``, from-scratch controls
    unless a side or ``where`` names ``init``."""
    names = set(est.where) | set(est.a) | set(est.b)
    where = {**({} if "init" in names else {"init": "pretrained"}), **est.where}
    base = select(list(rows), metric=est.metric)
    if "gate" not in est.where:
        base = [r for r in base if not r.get("gate")]
    base = _matches(base, where)
    sides = {}
    for name, side in (("a", est.a), ("b", est.b)):
        groups: dict[tuple, list[float]] = defaultdict(list)
        for r in _matches(base, side):
            k = (tuple(_get(r, c) for c in est.unit), tuple(_get(r, c) for c in est.cells),
                 tuple(_get(r, c) for c in est.within))
            groups[k].append(float(r["value"]))
        n = _expected(side)
        for k, vs in groups.items():
            if len(vs) > n:
                raise ValueError(
                    f"estimand {est.id!r}: {len(vs)} rows of side {name} ({dict(side)}) share unit "
                    f"{k[0]}, cell {k[1]} and {est.within} {k[2]}, expected {n}: the estimand's "
                    "`where` must name the column that tells them apart")
        sides[name] = {k: sum(vs) / n for k, vs in groups.items() if len(vs) == n}
    per: dict[Hashable, dict[tuple, list[float]]] = defaultdict(lambda: defaultdict(list))
    for k, va in sides["a"].items():
        if k in sides["b"]:
            unit = k[0] if len(k[0]) > 1 else k[0][0]
            per[unit][k[1]].append(est.scale * (va - sides["b"][k]))
    return {u: {c: sum(v) / len(v) for c, v in cells.items()} for u, cells in per.items()}


def unit_values(est: Estimand, rows: Iterable[dict]) -> dict[Hashable, float]:
    """``{unit: value}``: each unit's mean over the cells of the estimand (or, with
    ``slope_on``, its slope across them). Units that lack a cell some other unit has are
    left out: every unit averages the same cells."""
    rows = list(rows)
    diffs = cell_differences(est, rows)
    every = set().union(*(set(c) for c in diffs.values())) if diffs else set()
    complete = {u: c for u, c in diffs.items() if set(c) == every}
    if est.slope_on is None:
        return {u: float(np.mean(list(c.values()))) for u, c in complete.items()}
    x = _covariate(est, rows)
    if len(every) < est.min_cells:
        raise TooFewCells(f"estimand {est.id!r}: a slope needs at least {est.min_cells} cells, the "
                         f"rows have {len(every)}: {sorted(every, key=str)}")
    missing = [c for c in every if c not in x]
    if missing:
        raise ValueError(f"estimand {est.id!r}: no {est.slope_on!r} for cells {missing}")
    out = {}
    for u, cells in complete.items():
        xs = np.array([x[c] for c in cells])
        ys = np.array(list(cells.values()))
        slope = np.polyfit(xs, ys, 1)[0]
        out[u] = float(slope * (xs.max() - xs.min()))
    return out


def _covariate(est: Estimand, rows: Sequence[dict]) -> dict[tuple, float]:
    """``{cell: value of slope_on}`` from the rows that carry it."""
    out: dict[tuple, float] = {}
    for r in rows:
        v = r.get(est.slope_on)
        if v is not None:
            out.setdefault(tuple(_get(r, c) for c in est.cells), float(v))
    return out


def planned_power(est: Estimand, profile) -> float:
    """The design power at the margin: the profile's pilot SD of this estimand and the units
    the profile plans (nan where the profile records no pilot SD for it)."""
    sd = getattr(profile, "pilot_sd", {}).get(est.id)
    if sd is None:
        return math.nan
    return design_power(float(sd), int(est.design_units(profile)), est.margin)


def primary_estimate(est: Estimand, rows: Iterable[dict], profile=None) -> UnitEstimate:
    """The estimate of ``est`` from ``rows`` (not yet corrected for the report's family),
    with the design power of ``profile`` (nan without one)."""
    power = planned_power(est, profile) if profile is not None else math.nan
    return estimate(unit_values(est, rows), margin=est.margin, key=est.key, design_power=power)


def cell_estimates(est: Estimand, rows: Iterable[dict]) -> list[UnitEstimate]:
    """The secondary estimates of ``est``: ``a − b`` in each of its cells over the same units
    (a unit's value there: its mean over the finetuning seeds), t intervals Holm-corrected
    within this family (no permutation cross-check: they never decide the headline). Keys:
    ``(est.id, *cell)``; cells in the order first seen."""
    diffs = cell_differences(est, rows)
    cells = list(dict.fromkeys(c for per in diffs.values() for c in per))
    return holm_family([estimate({u: per[c] for u, per in diffs.items() if c in per},
                                 margin=est.margin, key=(est.id, *c), permutation=False)
                        for c in cells])


def primary_estimates(experiment: str, rows: Iterable[dict], profile) -> list[tuple]:
    """``[(Estimand, UnitEstimate)]`` of every primary estimand ``experiment`` declares in
    the registry, from its rows (uncorrected: the report corrects over all of them). An
    estimand whose rows cannot give it (a slope over too few cells) gets no units."""
    from rtstudy.experiments.registry import EXPERIMENTS

    exp = EXPERIMENTS.get(experiment)
    if exp.primaries is None:
        return []
    rows = list(rows)
    out = []
    for est in exp.primaries(profile):
        try:
            out.append((est, primary_estimate(est, rows, profile)))
        except TooFewCells:
            out.append((est, estimate({}, margin=est.margin, key=est.key,
                                      design_power=planned_power(est, profile))))
    return out
