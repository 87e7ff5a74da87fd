"""Power pilot: how many source seeds would separate each dense transfer gain of a report?

    python tools/power.py [reports/summary.json] [--experiment E1] [--seeds 3,4,5,6,8] [--sparsity 0]

From the experiment's stored rows, computes the paired transfer gains of its tickets at
``--sparsity`` (default 0: the dense model)
(pretrained − scratch, per target and source; ``rtstudy.experiments.findings``), takes the
spread of their per-source-seed means as the source-level standard deviation, and projects
for each number of source seeds the two-sided p of the observed gain and the MDE (80%
power). Holm's first step over a notebook of m contrasts needs p < 0.05 / m: the
smallest gain's projected p against 0.05 / m says whether the gate would open. The
projection keeps the observed gain and spread (an estimate from 3 seeds is itself rough).
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

from scipy import stats

from rtstudy.core.stats import mde
from rtstudy.experiments.findings import transfer_gains


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("summary", nargs="?", default="reports/summary.json")
    ap.add_argument("--experiment", default="E1")
    ap.add_argument("--seeds", default="3,4,5,6,8")
    ap.add_argument("--sparsity", type=float, default=0.0, help="the tickets whose gains to project")
    args = ap.parse_args()
    info = json.loads(Path(args.summary).read_text())["experiments"][args.experiment]
    family = len(info.get("contrasts", [])) or 1
    rows = [r for r in info["rows"] if r.get("regime", "finetune") == "finetune"
            and not r.get("adversarial_eps")]  # plain finetuning: where the gate is measured
    by = ["task", "sparsity"] + [c for c in ("fraction", "source_label", "ticket")
                                 if len({r.get(c) for r in rows}) > 1]
    gains = transfer_gains(rows, by=by, sparsity=args.sparsity)
    ns = [int(s) for s in args.seeds.split(",")]
    print(f"{args.experiment}: transfer gains at sparsity {args.sparsity:g}; Holm's first step over its {family} recorded "
          f"contrasts needs p < {0.05 / family:.4f}")
    print(f"{'cell':<28}{'gain':>7}{'sd':>7}  " + "  ".join(f"n={n}: p / MDE".rjust(18) for n in ns))
    for c in gains:
        if not c.has_interval:
            continue
        n0 = c.n_source
        sd = (c.high - c.diff) / stats.t.ppf(0.975, n0 - 1) * math.sqrt(n0)
        cells = []
        for n in ns:
            t = abs(c.diff) / (sd / math.sqrt(n)) if sd > 0 else math.inf
            p = 2 * stats.t.sf(t, n - 1)
            cells.append(f"{p:.4f} / {100 * mde(n, sd):4.1f}".rjust(18))
        name = ", ".join(str(k) for k in c.key)
        print(f"{name:<28}{c.points:>+7.1f}{100 * sd:>7.1f}  " + "  ".join(cells))


if __name__ == "__main__":
    main()
