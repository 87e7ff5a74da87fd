"""The power pilot: the between-unit SD of every primary estimand, and the units it needs.

    python -m rtstudy.experiments.pilot reports/summary.json reports/replicate/summary.json

From the result rows of one or more report summaries (disjoint units: a report and its
replicate), each primary estimand's unit values are pooled and their SD taken; the fewest
units that give 80% power at the estimand's margin follow (two-sided t test, alpha 0.05),
and the power of the units the profile plans. The SDs go into the profile's ``pilot_sd``
with this command (``rtstudy.profiles``); the report prints the design power they give.
"""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rtstudy.core.contrasts import POWER, UnitEstimate, design_power, units_for_power
from rtstudy.experiments.estimands import Estimand, primary_estimate, unit_values

COMMAND = ("python -m rtstudy.experiments.pilot reports/summary.json "
           "reports/replicate/summary.json")


@dataclass(frozen=True)
class PilotLine:
    """One estimand's pilot: ``units`` pooled over the summaries, their ``sd``, the units
    ``needed`` for ``power`` at the margin, and the ``planned`` units' power."""

    estimand: Estimand
    runs: tuple[UnitEstimate, ...]  # the estimate of each summary, uncorrected
    units: int
    sd: float
    needed: int | None
    planned: int
    planned_power: float
    power: float = POWER


def _rows(summary: Mapping, experiment: str) -> list[dict]:
    info = summary.get("experiments", {}).get(experiment)
    if info is None:
        raise ValueError(f"the summary (profile {summary.get('profile')!r}) has no experiment "
                         f"{experiment!r}; it has {sorted(summary.get('experiments', {}))}")
    return list(info.get("rows", []))


def pilot(summaries: Sequence[Mapping], profile, power: float = POWER) -> list[PilotLine]:
    """The pilot line of every primary estimand of the registry under ``profile``, from the
    rows of ``summaries`` (experiments a summary lacks are skipped; two summaries sharing a
    unit are an error: the pilot pools disjoint units)."""
    from rtstudy.experiments.registry import EXPERIMENTS

    if not summaries:
        raise ValueError("the pilot needs at least one report summary")
    out = []
    for exp, estimands in EXPERIMENTS.primaries(profile).items():
        have = [s for s in summaries if exp in s.get("experiments", {})]
        if not have:
            continue
        for est in estimands:
            pooled: dict = {}
            runs = []
            for s in have:
                rows = _rows(s, exp)
                values = unit_values(est, rows)
                shared = set(values) & set(pooled)
                if shared:
                    raise ValueError(f"{est.id}: the summaries share units {sorted(shared, key=str)}"
                                     "; the pilot pools disjoint units (a report and its replicate)")
                pooled.update(values)
                runs.append(primary_estimate(est, rows))
            sd = float(np.std(list(pooled.values()), ddof=1)) if len(pooled) >= 2 else math.nan
            planned = int(est.design_units(profile))
            ok = math.isfinite(sd)
            out.append(PilotLine(
                est, tuple(runs), len(pooled), sd,
                units_for_power(sd, est.margin, power) if ok else None, planned,
                design_power(sd, planned, est.margin) if ok and planned >= 2 else math.nan,
                power))
    return out


def _ci(e: UnitEstimate) -> str:
    if not e.has_interval:
        return f"{e.mean:+.2f} ({e.verdict}, {e.n} units)"
    return f"{e.mean:+.2f} [{e.low:+.2f}, {e.high:+.2f}] {e.verdict}"


def table(lines: Sequence[PilotLine]) -> str:
    """The pilot as plain text: one line per estimand, then the ``pilot_sd`` to record."""
    head = (f"{'estimand':<12}{'margin':>8}{'units':>6}{'SD':>7}{'needed':>7}{'planned':>8}"
            f"{'power':>7}   estimate per summary (uncorrected)")
    out = [head, "-" * len(head)]
    for ln in lines:
        e = ln.estimand
        out.append(f"{e.id:<12}{e.margin:>5.1f} {e.unit_name[:2]}{ln.units:>6}{ln.sd:>7.2f}"
                   f"{ln.needed if ln.needed is not None else '-':>7}{ln.planned:>8}"
                   f"{ln.planned_power:>7.2f}   " + "; ".join(_ci(r) for r in ln.runs))
    sds = ", ".join(f'"{ln.estimand.id}": {ln.sd:.2f}' for ln in lines if math.isfinite(ln.sd))
    out += ["", f"pilot_sd={{{sds}}}"]
    return "\n".join(out)


def main(argv: Sequence[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("summaries", nargs="+", type=Path, help="report summary.json files")
    ap.add_argument("--profile", default=None,
                    help="the profile whose planned units are powered (default: the summaries')")
    ap.add_argument("--power", type=float, default=POWER)
    args = ap.parse_args(argv)
    from rtstudy.profiles import get_profile

    summaries = [json.loads(p.read_text()) for p in args.summaries]
    names = {s.get("profile") for s in summaries}
    if args.profile is None and len(names) != 1:
        raise SystemExit(f"the summaries come from profiles {sorted(map(str, names))}: "
                         "name one with --profile")
    profile = get_profile(args.profile or names.pop())
    print(f"pilot of profile {profile.name!r} from {', '.join(map(str, args.summaries))}: "
          f"power {args.power:.0%} at each margin, two-sided alpha 0.05")
    print(table(pilot(summaries, profile, args.power)))


if __name__ == "__main__":
    main()
