"""What an experiment notebook hands to the report: result rows, a finding, its parameters.

A notebook calls ``record(...)`` once at the end; when the report runner executes it, the
``results_dir`` parameter points into the report's staging folder and the record lands
there as ``<id>.json`` (atomically). Interactively (``results_dir=None``) nothing is
written. Rows have the columns of ``ROW_KEYS``; extra keys are kept. The experiment ids
and titles are those of ``rtstudy.experiments.registry.EXPERIMENTS``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

from rtstudy.core.store import atomic_write_text

ROW_KEYS = ("task", "source", "eps", "scheme", "pattern", "sparsity", "seed", "metric", "value")


def row(task: str, source: str, eps: float, scheme: str, pattern: str, sparsity: float, seed: int,
        metric: str, value: float, **extra) -> dict:
    """One result row (the columns of ``summary.json``)."""
    return {"task": task, "source": source, "eps": float(eps), "scheme": scheme, "pattern": pattern,
            "sparsity": float(sparsity), "seed": int(seed), "metric": metric, "value": float(value), **extra}


CONTRAST_KEYS = ("cell", "kind", "diff", "low", "high", "verdict", "mde")


def record(experiment: str, rows: Iterable[dict], finding: str, parameters: dict,
           results_dir: str | Path | None, contrasts: Iterable[dict] = ()) -> dict:
    """Validate and (when ``results_dir`` is set) write one experiment's results.

    ``contrasts``: the experiment's paired contrasts as dicts with ``CONTRAST_KEYS``
    (``rtstudy.experiments.answer`` draws the report's answer from them)."""
    from rtstudy.experiments.registry import EXPERIMENTS  # not at the top: experiments imports row

    title = EXPERIMENTS.get(experiment).title  # a ValueError naming the allowed ids
    rows = list(rows)
    for r in rows:
        missing = [k for k in ROW_KEYS if k not in r]
        if missing:
            raise ValueError(f"result row {r} lacks {missing}")
    if not finding or not finding.strip():
        raise ValueError("an experiment must state a finding computed from its numbers")
    contrasts = [dict(c) for c in contrasts]
    for c in contrasts:
        missing = [k for k in CONTRAST_KEYS if k not in c]
        if missing:
            raise ValueError(f"contrast {c} lacks {missing}")
    out = {"experiment": experiment, "title": title, "finding": str(finding),
           "parameters": parameters, "rows": rows, "contrasts": contrasts}
    if results_dir is not None:
        atomic_write_text(Path(results_dir) / f"{experiment}.json", json.dumps(out, indent=1, default=str))
    return out
