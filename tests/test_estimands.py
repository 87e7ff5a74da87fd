import itertools

import numpy as np
import pytest

from rtstudy.core.contrasts import design_power
from rtstudy.experiments.estimands import (
    Estimand,
    cell_differences,
    planned_power,
    primary_estimate,
    unit_values,
)
from rtstudy.experiments.registry import EXPERIMENTS
from rtstudy.profiles import get_profile

EPS = 2 / 255
SHIFT = {0: 0.02, 1: 0.05, 2: -0.01}  # robust − natural per source seed (accuracy)


def _rows(shift=SHIFT, tasks=("a", "b"), sparsities=(0.5, 0.8), seeds=(0, 1)):
    """Natural and robust rows; robust = natural + the source seed's shift + a cell term that
    averages to 0 over the finetuning seeds."""
    out = []
    for ss, task, sp, seed in itertools.product(shift, tasks, sparsities, seeds):
        base = 0.6 + 0.1 * sp + 0.01 * ss + (0.03 if task == "a" else 0.0)
        wobble = 0.01 if seed == 0 else -0.01
        common = dict(task=task, scheme="omp", pattern="unstructured", sparsity=sp, seed=seed,
                      metric="test_acc", source_seed=ss, init="pretrained", regime="finetune")
        out.append(dict(common, source="natural", eps=0.0, value=base))
        out.append(dict(common, source="robust", eps=EPS, value=base + shift[ss] + wobble))
    return out


def _e1_like(**kw) -> Estimand:
    return Estimand("E1", "robust − natural", {"source": "robust", "eps": EPS},
                    {"source": "natural", "eps": 0.0}, ("task", "sparsity"),
                    where={"scheme": "omp", **kw})


def test_a_units_value_is_its_mean_over_cells_and_finetuning_seeds_in_points():
    assert unit_values(_e1_like(), _rows()) == pytest.approx({s: 100 * d for s, d in SHIFT.items()})
    cells = cell_differences(_e1_like(), _rows())
    assert set(cells[0]) == {("a", 0.5), ("a", 0.8), ("b", 0.5), ("b", 0.8)}


def test_gate_rows_scratch_controls_and_rows_outside_the_cells_are_left_out():
    rows = _rows()
    noise = [dict(r, value=0.0, gate=True, source_seed=r["source_seed"] + 10) for r in rows]
    scratch = [dict(r, init="scratch", value=r["value"] - 0.3 * (r["source"] == "robust"))
               for r in rows]
    other = [dict(r, scheme="random", value=1.0) for r in rows]
    assert unit_values(_e1_like(), rows + noise + scratch + other) == pytest.approx(
        {s: 100 * d for s, d in SHIFT.items()})


def test_incomplete_units_are_dropped_and_duplicates_are_an_error():
    rows = [r for r in _rows() if not (r["source_seed"] == 2 and r["task"] == "b")]
    assert set(unit_values(_e1_like(), rows)) == {0, 1}, "seed 2 lacks task b: not averaged"
    dup = _rows() + [dict(_rows()[1], value=0.9)]
    with pytest.raises(ValueError, match="2 rows of side a .* expected 1"):
        unit_values(_e1_like(), dup)


def test_a_side_over_several_values_is_their_mean():
    rows = []
    for ss, eps, seed in itertools.product((0, 1, 2), (0.0, 1.0, 2.0, 3.0), (0, 1)):
        bump = {1.0: 0.04, 2.0: 0.02}.get(eps, 0.0) + 0.01 * ss  # interior above the ends
        rows.append(dict(task="a", sparsity=0.0, seed=seed, metric="test_acc", source_seed=ss,
                         eps=eps, value=0.5 + bump + (0.01 if eps == 3.0 else 0.0)))
    est = Estimand("E2", "interior − ends", {"eps": (1.0, 2.0)}, {"eps": (0.0, 3.0)},
                   ("task", "sparsity"))
    assert unit_values(est, rows) == pytest.approx({s: 100 * (0.03 - 0.005) for s in (0, 1, 2)})
    with pytest.raises(ValueError, match="must differ in a column"):
        Estimand("x", "", {"eps": 1.0}, {"source": "natural"}, ())


def test_a_slope_unit_is_the_slope_times_the_range():
    dist = {"t1": 0.0, "t2": 1.0, "t3": 2.0, "t4": 3.0, "t5": 5.0}
    rows = []
    for ss, slope in {0: 0.01, 1: 0.02, 2: 0.0}.items():
        for task, x in dist.items():
            common = dict(task=task, seed=0, metric="test_acc", source_seed=ss, distance=x)
            rows.append(dict(common, source="natural", value=0.5))
            rows.append(dict(common, source="robust", value=0.5 + slope * x + 0.01))
    est = Estimand("E8", "slope", {"source": "robust"}, {"source": "natural"}, ("task",),
                   slope_on="distance")
    assert unit_values(est, rows) == pytest.approx({0: 5.0, 1: 10.0, 2: 0.0}, abs=1e-9)
    with pytest.raises(ValueError, match="at least 5 cells, the rows have 4"):
        unit_values(est, [r for r in rows if r["task"] != "t5"])


def test_image_and_network_seed_units_for_the_prior():
    rows = []
    for img, net, noise in itertools.product(("camera", "moon"), (0, 1), (0, 1)):
        gain = 3.0 + net + (0.5 if img == "moon" else 0.0) + (0.2 if noise else -0.2)
        common = dict(task=img, seed=net, noise_seed=noise, metric="psnr_final")
        rows += [dict(common, scheme="dense", value=20.0), dict(common, scheme="oes",
                                                                 value=20.0 + gain)]
    (est,) = EXPERIMENTS.get("E12").primaries(get_profile("default"))
    assert unit_values(est, rows) == pytest.approx(
        {("camera", 0): 3.0, ("camera", 1): 4.0, ("moon", 0): 3.5, ("moon", 1): 4.5})


def test_every_question_is_declared_once_with_its_margin():
    for name in ("smoke", "default", "paper"):
        P = get_profile(name)
        declared = EXPERIMENTS.primaries(P)
        assert set(declared) == {f"E{i}" for i in range(1, 14)} - {"E10"}
        ids = [e.id for es in declared.values() for e in es]
        assert len(ids) == len(set(ids))
        assert all(e.margin == (0.5 if e.id == "E12" else 2.0) for es in declared.values()
                   for e in es)
    (e1,) = EXPERIMENTS.get("E1").primaries(get_profile("default"))
    assert e1.where["sparsity"] == (0.5, 0.8, 0.95) and e1.where["task"] == ("mnist5k", "digits")


def test_design_power_comes_from_the_pilot_sd_and_the_planned_units_not_the_data():
    est = _e1_like()
    P = get_profile("smoke")
    assert np.isnan(planned_power(est, get_profile("smoke", pilot_sd={})))
    P = get_profile("smoke", pilot_sd={"E1": 2.5})
    want = design_power(2.5, len(P.source_seeds), 2.0)
    assert planned_power(est, P) == pytest.approx(want)
    e = primary_estimate(est, _rows(), P)
    assert e.design_power == pytest.approx(want) and e.n == 3 and e.key == ("E1",)
