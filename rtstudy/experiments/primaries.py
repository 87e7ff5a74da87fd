"""The primary estimand of every experiment, as a function of the profile (never of results).

``primary_e1(P)`` returns E1's estimands (a tuple: E5 and E13 ask two questions). Each is
``rtstudy.experiments.estimands.Estimand``: robust − natural pairs the two sources of one
source seed; the margin is 2 accuracy points (0.5 dB for E12). E0 (one seed, a
demonstration) and E10 (mask anatomy, a description) have none.
"""

from __future__ import annotations

from rtstudy.experiments.estimands import PSNR_MARGIN, Estimand
from rtstudy.experiments.grids import PATTERNS_E3, SCHEMES_E4

ROBUST_SIDE, NATURAL_SIDE = {"source": "robust"}, {"source": "natural"}


def _robust(P) -> dict:
    return {"source": "robust", "eps": P.eps_star}


def _natural() -> dict:
    return {"source": "natural", "eps": 0.0}


def _ticket(P) -> dict:
    """The one OMP ticket of E5, E6, E8, E9 (the profile's first fixed sparsity)."""
    return {"scheme": "omp", "pattern": "unstructured", "sparsity": P.fixed_sparsities[0]}


def primary_e1(P) -> tuple[Estimand, ...]:
    sparse = tuple(s for s in P.sparsities if s > 0)
    return (Estimand(
        "E1", f"robust (ε* = {P.eps_star:.4g}) − natural OMP ticket, mean over sparsities "
        f"{', '.join(f'{s:.0%}' for s in sparse)} and targets {', '.join(P.targets)}",
        _robust(P), _natural(), ("task", "sparsity"),
        where={"scheme": "omp", "pattern": "unstructured", "sparsity": sparse,
               "task": tuple(P.targets), "regime": "finetune"}),)


def primary_e2(P) -> tuple[Estimand, ...]:
    eps = sorted(P.eps_sweep)
    if len(eps) < 3:
        raise ValueError(f"E2's inverted U needs at least 3 values of ε, the profile has {eps}")
    sparsities = (0.0, *P.fixed_sparsities)
    return (Estimand(
        "E2", "mean over the interior ε of the sweep − mean over its ends (ε 0 and the "
        "largest), dense and fixed-sparsity OMP tickets, every target",
        {"eps": tuple(eps[1:-1])}, {"eps": (eps[0], eps[-1])}, ("task", "sparsity"),
        where={"sparsity": sparsities, "task": tuple(P.targets), "regime": "finetune"},
        why="an inverted U is one contrast: positive when the interior beats the ends"),)


def primary_e3(P) -> tuple[Estimand, ...]:
    return (Estimand(
        "E3", "robust − natural OMP ticket, mean over the sparsity patterns and targets",
        _robust(P), _natural(), ("task", "pattern"),
        where={"scheme": "omp", "pattern": PATTERNS_E3, "task": tuple(P.targets),
               "regime": "finetune"}),)


def primary_e4(P) -> tuple[Estimand, ...]:
    return (Estimand(
        "E4", "robust − natural ticket, mean over the drawing schemes and targets",
        _robust(P), _natural(), ("task", "scheme"),
        where={"scheme": SCHEMES_E4, "pattern": "unstructured",
               "sparsity": P.fixed_sparsities[0], "task": tuple(P.targets)}),)


def primary_e5(P) -> tuple[Estimand, ...]:
    other = "fgsm_rs" if P.robust_kind == "pgd" else "pgd"
    default = {"kind": P.robust_kind, "norm": "linf", "eps": P.eps_star}
    where = {**_ticket(P), "task": tuple(P.targets)}
    return (
        Estimand("E5 attack", f"{other} − {P.robust_kind} robust source (ℓ∞, ε*), OMP ticket, "
                 "mean over targets", {**default, "kind": other}, default, ("task",),
                 where=where),
        Estimand("E5 norm", f"ℓ2 (ε {P.eps_l2:g}) − ℓ∞ (ε*) robust source, OMP ticket, mean "
                 "over targets", {**default, "norm": "l2", "eps": P.eps_l2}, default, ("task",),
                 where=where))


def primary_e6(P) -> tuple[Estimand, ...]:
    least = min(P.data_fractions)
    return (Estimand(
        "E6", f"robust − natural OMP ticket finetuned on {least:.0%} of T, mean over targets",
        _robust(P), _natural(), ("task",),
        where={**_ticket(P), "fraction": least, "task": tuple(P.targets)}),)


def primary_e7(P) -> tuple[Estimand, ...]:
    return (Estimand(
        "E7", "robust − natural under the linear probe, mean over dense and the fixed-sparsity "
        "OMP ticket and targets", _robust(P), _natural(), ("task", "sparsity"),
        where={"regime": "probe", "scheme": "omp", "sparsity": (0.0, P.fixed_sparsities[0]),
               "task": tuple(P.targets)}),)


def primary_e8(P) -> tuple[Estimand, ...]:
    return (Estimand(
        "E8", "change of the per-target robust − natural difference across the measured "
        "domain-gap range (least-squares slope × range), OMP ticket, at least 5 targets",
        _robust(P), _natural(), ("task",), where={**_ticket(P), "regime": "finetune"},
        slope_on="distance", min_cells=5,
        why="a slope per unit has the same verdict rules; times the range, it is in points"),)


def primary_e9(P) -> tuple[Estimand, ...]:
    return (Estimand(
        "E9", "robust − natural OMP ticket, robust accuracy on T after adversarial finetuning, "
        "mean over targets", _robust(P), _natural(), ("task",), metric="robust_acc",
        where={**_ticket(P), "adversarial_eps": P.eps_star, "task": tuple(P.targets)}),)


def _text_sizes(P):
    from rtstudy.text.sizes import text_sizes

    return text_sizes(P.name)


def primary_e11(P) -> tuple[Estimand, ...]:
    sizes = _text_sizes(P)
    target = sizes.directions[0][1]
    return (Estimand(
        "E11", f"robust − natural OMP text ticket on {target}, mean over sparsities "
        f"{', '.join(f'{s:.0%}' for s in sizes.sparsities)}", ROBUST_SIDE, NATURAL_SIDE,
        ("sparsity",), where={"scheme": "omp", "task": target,
                              "sparsity": tuple(sizes.sparsities)},
        design_units=lambda P: len(_text_sizes(P).source_seeds),
        why=f"{target} (the first direction's target) is where the pilot's dense pretraining "
            "transfers; on the other target it gave nothing separable over scratch"),)


def _prior_units(P) -> int:
    from rtstudy.prior.sizes import prior_sizes

    s = prior_sizes(P)
    return len(s.images) * len(s.seeds)


def primary_e12(P) -> tuple[Estimand, ...]:
    return (Estimand(
        "E12", "OES − dense final PSNR, mean over images", {"scheme": "oes"},
        {"scheme": "dense"}, (), metric="psnr_final", unit=("task", "seed"),
        within=("noise_seed",), scale=1.0, unit_name="dB", margin=PSNR_MARGIN,
        design_units=_prior_units, unit_label="(image, network seed) units"),)


def primary_e13(P) -> tuple[Estimand, ...]:
    from rtstudy.vision.supertickets import SEARCH_THEN_PRUNE, SUPERTICKET

    targets = tuple(P.targets)
    return (
        Estimand("E13 robust", "robust − natural SuperTicket, mean over targets", _robust(P),
                 _natural(), ("task",), where={"scheme": SUPERTICKET, "task": targets}),
        Estimand("E13 method", "SuperTicket − search-then-prune, mean over targets and sources",
                 {"scheme": SUPERTICKET}, {"scheme": SEARCH_THEN_PRUNE}, ("task", "source"),
                 where={"task": targets}))


def transfer_gain(P) -> Estimand:
    """The transfer gain of the dense models (pretrained − the same network from scratch) per
    target, source and fraction of T, from a grid's transfer gate: a description, never a
    filter."""
    return Estimand(
        "transfer gain", "dense pretrained − from scratch, per target, source and fraction",
        {"init": "pretrained"}, {"init": "scratch"}, ("task", "source", "fraction"),
        where={"gate": True, "sparsity": 0.0, "regime": "finetune"})
