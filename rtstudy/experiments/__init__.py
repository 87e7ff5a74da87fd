"""The experiment notebooks' shared logic, one concern per module, re-exported as ``X.<name>``.

- ``grid``: source / ticket / transfer specs and :func:`run_grid`, which runs their product;
- ``rows``: the row query language (:func:`select`, :func:`estimates`, ...) and formatting;
- ``findings``: paired contrasts over source seeds (:func:`paired_contrasts`,
  :func:`transfer_gains`, Holm via :func:`holm`) and each experiment's finding (E0 ... E9);
- ``registry``: every experiment's id, title, notebook, finding and primary estimands
  (:data:`EXPERIMENTS`);
- ``headlines``: each notebook's headline (:func:`lead_with_headline`) and its secondary
  per-cell estimates (:func:`secondary_markdown`, :func:`secondary_figure`), the dense
  transfer gain as a description (:func:`transfer_gain_markdown`);
- figures of rows live in ``rtstudy.plots`` and are re-exported here.

Notebooks import ``from rtstudy import experiments as X``.
"""

from rtstudy.core.stats import PairedContrast, holm, paired_contrast
from rtstudy.experiments.findings import (
    PRETRAINED,
    SCRATCH,
    Contrast,
    Finding,
    attack_finding,
    best_level,
    contrast_finding,
    contrasts,
    data_finding,
    design_sentence,
    double_win_finding,
    eps_sweep_finding,
    gap_finding,
    main_finding,
    omp_random_explanation,
    paired_contrasts,
    paired_finding,
    pattern_finding,
    quickstart_finding,
    regime_finding,
    scheme_finding,
    sweep_finding,
    tally,
    tally_sentence,
    transfer_gains,
)
from rtstudy.experiments.grid import (
    NATURAL,
    ROBUST,
    Cell,
    Grid,
    TicketSpec,
    TransferSpec,
    attack_name,
    natural,
    nm_ticket,
    param,
    pretrain_sources,
    robust,
    run,
    run_gate,
    run_grid,
    source_table,
    standard_sources,
    ticket_diagnostics,
)
from rtstudy.experiments.headlines import (
    lead_with_headline,
    secondary_figure,
    secondary_markdown,
    transfer_gain_markdown,
)
from rtstudy.experiments.registry import EXPERIMENTS, Experiment
from rtstudy.experiments.rows import (
    estimates,
    fmt_key,
    fmt_level,
    levels,
    markdown_table,
    pct,
    seed_groups,
    select,
)
from rtstudy.plots import bar_figure, curve_figure, gain_distance_figure, source_figure

__all__ = [
    "EXPERIMENTS", "NATURAL", "ROBUST", "Contrast", "Experiment", "Finding", "Grid", "TicketSpec", "TransferSpec", "attack_finding", "attack_name", "bar_figure", "best_level",
    "contrast_finding", "contrasts", "curve_figure", "data_finding", "double_win_finding",
    "eps_sweep_finding", "estimates", "fmt_key", "fmt_level", "gain_distance_figure",
    "gap_finding", "levels", "main_finding", "markdown_table", "natural", "nm_ticket", "param",
    "pattern_finding", "pct", "pretrain_sources", "quickstart_finding", "regime_finding",
    "robust", "run", "run_gate", "run_grid", "ticket_diagnostics", "omp_random_explanation", "scheme_finding", "seed_groups", "select", "source_figure",
    "source_table", "standard_sources", "sweep_finding", "tally", "tally_sentence",
    "Cell", "PRETRAINED", "PairedContrast", "SCRATCH", "design_sentence", "holm", "paired_contrast",
    "paired_contrasts", "paired_finding", "transfer_gains", "lead_with_headline",
    "secondary_figure", "secondary_markdown", "transfer_gain_markdown",
]
