"""Each experiment's grid as data: what it varies, from its notebook's parameters.

``grid_e1(P, targets=None, ...)`` takes the parameters of notebook 01 (``None``: the
profile's default) and returns the ``Grid``s it runs; ``Grid.descriptions(P)`` lists
every transfer (with its ticket and source) the experiment needs, so the report can plan
all experiments at once. Every grid runs under the profile's source seeds (the unit of
replication) and carries from-scratch controls (the transfer gain that gates its findings):
of every finetuned ticket, except in E2 and E7, which control their dense ticket. The
notebooks call these through ``EXPERIMENTS.get(id).grids``.
"""

from __future__ import annotations

from dataclasses import replace

from rtstudy.experiments.grid import (
    Grid,
    TicketSpec,
    TransferSpec,
    natural,
    param,
    robust,
    standard_sources,
)
from rtstudy.profiles import Profile
from rtstudy.vision.track import train_n

PATTERNS_E3 = ("unstructured", "channel", "nm")
SCHEMES_E4 = ("omp", "imp_source", "imp_target", "random")
REGIMES_E7 = ("finetune", "probe")
DENSE = TicketSpec()


def _grid(P: Profile, sources, tickets, *, targets, seeds, source_seeds, gate_source_seeds=None,
          controls: str = "all", transfers=None) -> Grid:
    """A grid with the notebook's ``targets``, ``seeds`` and ``source_seeds`` (``None``: the
    profile's) and ``transfers`` (``None``: one plain finetuning), and its transfer gate."""
    targets, seeds = param(targets, P.targets, str), param(seeds, P.seeds, int)
    transfers = transfers or [TransferSpec()]
    if gate_source_seeds is None and source_seeds is not None:
        gate_source_seeds = source_seeds  # other source seeds than the profile's: the gate's too
    source_seeds = param(source_seeds, P.source_seeds, int)
    gate = gate_grids(P, targets, seeds, transfers, source_seeds, gate_source_seeds) \
        if controls != "none" else []
    return Grid(sources, tickets, targets, seeds, transfers, source_seeds=source_seeds,
                controls=controls, gate=gate)


def gate_grids(P: Profile, targets, seeds, transfers, source_seeds, gate_source_seeds=None
               ) -> list[Grid]:
    """The transfer gate of a grid: the dense natural and robust (eps_star) models and their
    from-scratch controls on the grid's targets, finetuning seeds and natural finetuning
    recipes (clean accuracy: robust accuracy is not measured). The profile's own targets at
    its own recipe run under the gate's source seeds (``None``: the profile's, a superset of
    the source seeds; the gate every experiment shares), the other targets and recipes under
    the grid's ``source_seeds``."""
    natural_ft = list(dict.fromkeys(replace(t, eval_eps=None) for t in transfers
                                    if t.regime == "finetune" and not t.adversarial_eps))
    if not natural_ft:
        return []
    default = [t for t in natural_ft if t.fraction in (None, P.target_fraction)]
    home = [t for t in targets if t in P.targets]
    sources, dense = standard_sources(P), [DENSE]
    out = []
    if default and home:
        out.append(Grid(sources, dense, home, list(seeds), default, controls="dense",
                        source_seeds=param(gate_source_seeds, P.gate_seeds, int)))
    rest_targets = [t for t in targets if t not in home]
    if rest_targets:
        out.append(Grid(sources, dense, rest_targets, list(seeds), natural_ft, controls="dense",
                        source_seeds=list(source_seeds)))
    rest = [t for t in natural_ft if t not in default]
    if rest and home:
        out.append(Grid(sources, dense, home, list(seeds), rest, controls="dense",
                        source_seeds=list(source_seeds)))
    return out


def _omp(P: Profile, sparsity: float | None) -> list[TicketSpec]:
    """The one OMP ticket of E5, E6, E8, E9 (default: the profile's first fixed sparsity)."""
    return [TicketSpec("omp", "unstructured", _sparsity(P, sparsity))]


def _sparsity(profile: Profile, sparsity: float | None) -> float:
    return float(profile.fixed_sparsities[0] if sparsity is None else sparsity)


def grid_e0(P: Profile, *, target=None, sparsity=None, seed=0) -> list[Grid]:
    """The quickstart's four transfers: natural and robust (eps_star), dense and one OMP
    ticket, on one target, finetuning seed ``seed``, source seed 0."""
    tickets = [DENSE, TicketSpec("omp", "unstructured", _sparsity(P, sparsity))]
    return [Grid(standard_sources(P), tickets, [target or P.targets[0]], [int(seed)],
                 source_seeds=[0], controls="none")]


def grid_e1(P: Profile, *, source_seeds=None, gate_source_seeds=None,
            targets=None, sparsities=None, seeds=None,
            eps=None) -> list[Grid]:
    """Natural vs robust OMP tickets over the sparsity axis."""
    tickets = [TicketSpec("omp", "unstructured", s) for s in param(sparsities, P.sparsities, float)]
    return [_grid(P, [natural(P), robust(P, eps)], tickets, targets=targets, seeds=seeds,
                  source_seeds=source_seeds,
                  gate_source_seeds=gate_source_seeds)]


def grid_e2(P: Profile, *, source_seeds=None, gate_source_seeds=None,
            targets=None, eps_sweep=None, sparsities=None,
            seeds=None) -> list[Grid]:
    """The dense model and OMP tickets from sources along the eps sweep (eps 0: natural)."""
    sources = [robust(P, e) for e in sorted(param(eps_sweep, P.eps_sweep, float))]
    tickets = [DENSE] + [TicketSpec("omp", "unstructured", s)
                         for s in param(sparsities, P.fixed_sparsities, float)]
    return [_grid(P, sources, tickets, targets=targets, seeds=seeds, source_seeds=source_seeds,
                  gate_source_seeds=gate_source_seeds, controls="dense")]


def grid_e3(P: Profile, *, source_seeds=None, gate_source_seeds=None,
            targets=None, sparsity=None, patterns=None,
            nm=(2, 4), seeds=None) -> list[Grid]:
    """OMP and random tickets of each sparsity pattern (N:M at its own sparsity), finetuned;
    and the same tickets under a linear probe (no control: the regime where the pruned
    pretrained features are all the target gets)."""
    n, m = nm
    tickets = [TicketSpec.at(scheme, pat, _sparsity(P, sparsity), n=n, m=m)
               for pat in param(patterns, list(PATTERNS_E3), str) for scheme in ("omp", "random")]
    common = dict(targets=targets, seeds=seeds, source_seeds=source_seeds,
                  gate_source_seeds=gate_source_seeds)
    return [_grid(P, standard_sources(P), tickets, **common),
            _grid(P, standard_sources(P), tickets, controls="none",
                  transfers=[TransferSpec(regime="probe")], **common)]


def grid_e4(P: Profile, *, source_seeds=None, gate_source_seeds=None,
            targets=None, sparsity=None, schemes=None,
            seeds=None) -> list[Grid]:
    """Tickets drawn by each scheme at one sparsity."""
    tickets = [TicketSpec(s, "unstructured", _sparsity(P, sparsity))
               for s in param(schemes, list(SCHEMES_E4), str)]
    return [_grid(P, standard_sources(P), tickets, targets=targets, seeds=seeds,
                  source_seeds=source_seeds,
                  gate_source_seeds=gate_source_seeds)]


def grid_e5(P: Profile, *, source_seeds=None, gate_source_seeds=None,
            targets=None, sparsity=None, seeds=None,
            eps_linf=None, eps_l2=None) -> list[Grid]:
    """Natural, the profile's robust source, the other attack kind, the other norm."""
    eps_linf = float(P.eps_star if eps_linf is None else eps_linf)
    eps_l2 = float(P.eps_l2 if eps_l2 is None else eps_l2)
    other = "fgsm_rs" if P.robust_kind == "pgd" else "pgd"
    sources = [natural(P), robust(P, eps_linf, kind=P.robust_kind, norm="linf"),
               robust(P, eps_linf, kind=other, norm="linf"),
               robust(P, eps_l2, kind=P.robust_kind, norm="l2")]
    return [_grid(P, sources, _omp(P, sparsity), targets=targets, seeds=seeds,
                  source_seeds=source_seeds,
                  gate_source_seeds=gate_source_seeds)]


def grid_e6(P: Profile, *, source_seeds=None, gate_source_seeds=None,
            targets=None, fractions=None, sparsity=None,
            seeds=None) -> list[Grid]:
    """One OMP ticket finetuned on growing fractions of T's training set."""
    transfers = [TransferSpec(fraction=f) for f in sorted(param(fractions, P.data_fractions, float))]
    return [_grid(P, standard_sources(P), _omp(P, sparsity), targets=targets, seeds=seeds,
                  source_seeds=source_seeds,
                  gate_source_seeds=gate_source_seeds, transfers=transfers)]


def grid_e7(P: Profile, *, source_seeds=None, gate_source_seeds=None,
            targets=None, sparsities=None, regimes=REGIMES_E7,
            seeds=None) -> list[Grid]:
    """Dense and sparse, finetuned and linearly probed."""
    tickets = [TicketSpec("omp", "unstructured", s)
               for s in param(sparsities, [0.0, P.fixed_sparsities[0]], float)]
    transfers = [TransferSpec(regime=r) for r in param(regimes, list(REGIMES_E7), str)]
    return [_grid(P, standard_sources(P), tickets, targets=targets, seeds=seeds,
                  source_seeds=source_seeds,
                  gate_source_seeds=gate_source_seeds, controls="dense", transfers=transfers)]


def e8_tasks(P: Profile, targets=None, shifts=("invert", "rot90")) -> list[str]:
    """The targets of E8: the profile's, and domain shifts of the first one."""
    base = param(targets, P.targets, str)
    return base + [f"{base[0]}:{s}" for s in param(shifts, [], str)]


def grid_e8(P: Profile, *, source_seeds=None, gate_source_seeds=None,
            targets=None, shifts=("invert", "rot90"),
            include_source=True, sparsity=None, seeds=None) -> list[Grid]:
    """One OMP ticket on every target and shift; with ``include_source``, also on S itself
    with as many training images as the first target gets (S is not favoured by its size)."""
    tasks = e8_tasks(P, targets, shifts)
    common = dict(seeds=seeds, source_seeds=source_seeds,
                  gate_source_seeds=gate_source_seeds)
    grids = [_grid(P, standard_sources(P), _omp(P, sparsity), targets=tasks, **common)]
    if include_source:
        nat = natural(P)
        n_ref = train_n(nat, tasks[0]) * P.target_fraction  # nominal sizes: plannable before a download
        frac = min(1.0, n_ref / train_n(nat))
        grids.append(_grid(P, standard_sources(P), _omp(P, sparsity), targets=[P.source],
                           transfers=[TransferSpec(fraction=frac)], **common))
    return grids


def grid_e9(P: Profile, *, source_seeds=None, gate_source_seeds=None,
            targets=None, sparsity=None, eps=None,
            seeds=None) -> list[Grid]:
    """Clean and robust accuracy on T after natural and adversarial finetuning."""
    eps = float(P.eps_star if eps is None else eps)
    transfers = [TransferSpec(eval_eps=eps, label="natural finetuning"),
                 TransferSpec(adversarial_eps=eps, eval_eps=eps, label="adversarial finetuning")]
    return [_grid(P, standard_sources(P), _omp(P, sparsity), targets=targets, seeds=seeds,
                  source_seeds=source_seeds,
                  gate_source_seeds=gate_source_seeds, transfers=transfers)]
