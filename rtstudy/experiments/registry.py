"""The experiments by id: each one's title, notebook, finding function, grid and primary
estimands, in one registry.

``EXPERIMENTS.get("E1")`` is the ``Experiment``; iterating the registry gives the ids in
order (E0 ... E13); ``TITLES`` maps id -> title (what the report prints).
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from rtstudy.core.registry import Registry
from rtstudy.experiments import findings, grids, supertickets
from rtstudy.experiments import primaries as pe
from rtstudy.experiments.prior import grid_e12


@dataclass(frozen=True)
class LazyFunction:
    """``module.name``, imported on first call (E10's finding lives in the explorer)."""

    module: str
    name: str

    def resolve(self) -> Callable[..., str]:
        return getattr(importlib.import_module(self.module), self.name)

    def __call__(self, *args, **kwargs) -> str:
        return self.resolve()(*args, **kwargs)

    @property
    def __signature__(self) -> inspect.Signature:  # the plan passes a grid only what it accepts
        return inspect.signature(self.resolve())


@dataclass(frozen=True)
class Experiment:
    """One experiment: ``id`` (``E<n>``), its title, its notebook's stem (``<nn>_<name>``),
    the function that turns its results into its finding, its grid as data (``grids``:
    the notebook's parameters -> the ``Grid``s of transfers it runs; ``None``: no grid), and
    its primary estimands, declared before any data (``primaries``: profile -> the
    ``Estimand``s of ``rtstudy.experiments.primaries``; ``None``: a demonstration or a
    description, no question to answer)."""

    id: str
    title: str
    notebook: str
    finding: Callable[..., str]
    grids: Callable[..., list] | None = None  # (profile, **notebook parameters) -> [Grid]
    primaries: Callable[..., tuple] | None = None  # profile -> (Estimand, ...)

    def __post_init__(self) -> None:
        prefix = self.notebook.split("_")[0]
        if not (self.id[:1] == "E" and self.id[1:].isdigit() and prefix.isdigit()
                and int(prefix) == int(self.id[1:])):
            raise ValueError(f"experiment {self.id!r}: the notebook {self.notebook!r} must be "
                             f"named <nn>_<name> with nn = the id's number")


class ExperimentRegistry(Registry):
    """Experiments by id, in the order they were registered."""

    def __init__(self, experiments: Iterable[Experiment] = ()) -> None:
        super().__init__("experiment", show=str)
        for exp in experiments:
            self.register(exp)

    def register(self, exp: Experiment) -> Experiment:  # by its own id
        if exp.id in self:
            raise ValueError(f"experiment {exp.id!r} is registered twice")
        return super().register(exp.id, exp)

    __getitem__ = Registry.get

    def titles(self) -> dict[str, str]:
        """``{id: title}`` in order."""
        return {i: self.get(i).title for i in self}

    def primaries(self, profile) -> dict[str, tuple]:
        """``{id: (Estimand, ...)}`` of every experiment that has primary estimands, in order."""
        return {i: self.get(i).primaries(profile) for i in self if self.get(i).primaries}


EXPERIMENTS = ExperimentRegistry([
    Experiment("E0", "quickstart", "00_quickstart", findings.quickstart_finding, grids.grid_e0),
    Experiment("E1", "main: robust vs natural tickets", "01_main", findings.main_finding,
               grids.grid_e1, pe.primary_e1),
    Experiment("E2", "how much robustness (eps sweep)", "02_eps", findings.eps_sweep_finding,
               grids.grid_e2, pe.primary_e2),
    Experiment("E3", "sparsity patterns", "03_patterns", findings.pattern_finding, grids.grid_e3,
               pe.primary_e3),
    Experiment("E4", "pruning schemes", "04_schemes", findings.scheme_finding, grids.grid_e4,
               pe.primary_e4),
    Experiment("E5", "which robustification", "05_attack", findings.attack_finding,
               grids.grid_e5, pe.primary_e5),
    Experiment("E6", "data-limited transfer", "06_data", findings.data_finding, grids.grid_e6,
               pe.primary_e6),
    Experiment("E7", "finetune vs linear probe", "07_regime", findings.regime_finding,
               grids.grid_e7, pe.primary_e7),
    Experiment("E8", "domain gap", "08_gap", findings.gap_finding, grids.grid_e8, pe.primary_e8),
    Experiment("E9", "double-win: robust accuracy on T", "09_double_win",
               findings.double_win_finding, grids.grid_e9, pe.primary_e9),
    Experiment("E10", "mask anatomy", "10_anatomy",
               LazyFunction("rtstudy.explorer", "anatomy_finding")),
    # the text track imports transformers: only when E11 is asked for
    Experiment("E11", "text tickets: BERT, natural and robust", "11_text",
               LazyFunction("rtstudy.experiments.text_tickets", "text_finding"),
               LazyFunction("rtstudy.experiments.text_tickets", "grid_e11"), pe.primary_e11),
    Experiment("E12", "image prior: sparse DIP by Optimal Eye Surgeon", "12_prior",
               LazyFunction("rtstudy.experiments.prior", "prior_finding"), grid_e12,
               pe.primary_e12),
    Experiment("E13", "SuperTickets: search and prune in one training", "13_supertickets",
               supertickets.superticket_finding, supertickets.grid_e13, pe.primary_e13),
])
TITLES = EXPERIMENTS.titles()
