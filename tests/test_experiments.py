"""Tests of the notebooks' shared logic: specs, grouping, the domain distance, shifted tasks.

The findings are tested in ``test_findings.py``.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from rtstudy import experiments as X
from rtstudy.core.stats import pearson, spearman
from rtstudy.profiles import get_profile
from rtstudy.results import ROW_KEYS, row
from rtstudy.vision import gap
from rtstudy.vision.data import SHIFTS, available_tasks, load_task


def _rows(values: dict[tuple[str, str, float], list[float]], metric: str = "test_acc") -> list[dict]:
    """Rows from ``{(task, source, sparsity): [value per seed]}``."""
    out = []
    for (task, source, sparsity), vals in values.items():
        for seed, v in enumerate(vals):
            out.append(row(task, source, 0.0 if source == "natural" else 2 / 255, "omp", "unstructured",
                           sparsity, seed, metric, v))
    return out


# ----------------------------------------------------------------------------- grouping
def test_seed_groups_and_estimates_group_by_configuration_and_sort_keys():
    rows = _rows({("b", "robust", 0.8): [0.7, 0.72, 0.71], ("a", "natural", 0.5): [0.5, 0.52],
                  ("a", "natural", 0.0): [0.9]})
    rows.append(row("a", "natural", 0.0, "omp", "unstructured", 0.0, 0, "robust_acc", 0.1))
    g = X.seed_groups(rows, ["task", "sparsity"])
    assert list(g) == [("a", 0.0), ("a", 0.5), ("b", 0.8)]
    assert g[("a", 0.5)] == [0.5, 0.52]
    assert X.seed_groups(rows, ["task"], "robust_acc") == {("a",): [0.1]}
    est = X.estimates(rows, ["task", "source"], task="b")
    assert list(est) == [("b", "robust")]
    assert est[("b", "robust")].n == 3 and math.isclose(est[("b", "robust")].mean, 0.71)


def test_select_matches_floats_with_tolerance_lists_and_predicates():
    rows = _rows({("a", "natural", 0.8): [0.5], ("a", "natural", 0.5): [0.6], ("b", "robust", 0.8): [0.7]})
    assert len(X.select(rows, sparsity=0.8000000000001)) == 2
    assert len(X.select(rows, task=["a", "b"], source="natural")) == 2
    assert len(X.select(rows, value=lambda v: v > 0.55)) == 2
    assert X.select(rows, no_such_column=1) == []
    assert X.levels(rows, "sparsity") == [0.5, 0.8]
    assert X.levels(rows, "task") == ["a", "b"]


def test_param_defaults_and_scalars():
    assert X.param(None, (0, 1, 2), int) == [0, 1, 2]
    assert X.param(0.5, (0.8,), float) == [0.5]
    assert X.param("digits", ("mnist5k",), str) == ["digits"]
    assert X.param([1, 2], None) == [1, 2]


def test_markdown_table_has_one_line_per_configuration_and_ci_cells():
    rows = _rows({("a", "natural", 0.5): [0.5, 0.52], ("a", "robust", 0.5): [0.6, 0.62],
                  ("a", "natural", 0.8): [0.4, 0.41]})
    table = X.markdown_table(rows, ["task", "sparsity"], "source")
    lines = table.splitlines()
    assert lines[0] == "| task | sparsity | natural | robust |"
    assert len(lines) == 4
    assert "| a | 50% | 51.0 ± " in lines[2]
    assert lines[3].endswith("| –  |") or lines[3].rstrip().endswith("– |")


# ----------------------------------------------------------------------------- specs
def test_source_and_ticket_specs():
    P = get_profile("smoke")
    assert X.robust(P) == X.robust(P, P.eps_star, kind=P.robust_kind, norm=P.norm)
    assert X.robust(P, 0.0) == X.natural(P)
    assert X.natural(P).label == "natural"
    assert X.robust(P).label == "FGSM-RS ℓ∞ 2/255"
    assert X.robust(P, kind="pgd").label == f"PGD-{P.robust_steps} ℓ∞ 2/255"
    assert X.robust(P, 0.25, norm="l2").label == "FGSM-RS ℓ2 0.25"
    nm = X.nm_ticket("random", 2, 4)
    assert nm.sparsity == 0.5 and nm.label == "random 2:4 50%" and not nm.dense
    assert X.TicketSpec(sparsity=0.0).dense and X.TicketSpec(sparsity=0.0).label == "dense"
    src = X.natural(P)
    assert X.TicketSpec("random", sparsity=0.8).desc(P, src, "digits", 3).seed == 3
    assert X.TicketSpec("omp", sparsity=0.8).desc(P, src, "digits", 3).seed == 0
    grid = X.Grid([X.natural(P)], [X.TicketSpec()], ["a", "b"], [0, 1, 2], controls="none")
    assert len(grid) == len(grid.cells()) == 6
    descs = grid.descriptions(P)  # the grid as data: one transfer description per cell
    assert len({d.key for d in descs}) == 6 and {d.target for d in descs} == {"a", "b"}
    assert all(d.source == X.natural(P) and d.dense for d in descs)


def test_grids_replicate_source_models_and_carry_scratch_controls():
    P = get_profile("smoke")
    sparse = X.TicketSpec("omp", "unstructured", 0.5)
    grid = X.Grid(X.standard_sources(P), [X.TicketSpec(), sparse], ["a"], [0, 1],
                  source_seeds=[0, 1, 2])
    cells = grid.cells()
    # 2 sources x 3 source seeds x (dense with its control + sparse) x 2 finetuning seeds
    assert len(cells) == 2 * 3 * (2 + 1) * 2
    assert {c.source.seed for c in cells} == {0, 1, 2}
    scratch = [c.transfer_desc(P) for c in cells if c.init == "scratch"]
    assert scratch and all(d.scratch and d.dense for d in scratch)
    # the dense control does not depend on the source's robustness: one per source seed and seed
    assert len({d.key for d in scratch}) == 3 * 2
    assert all(d.source.eps == 0 for d in scratch)
    full = X.Grid(X.standard_sources(P), [sparse], ["a"], [0], controls="all")
    ctrl = [c.transfer_desc(P) for c in full.cells() if c.init == "scratch"]
    assert len(ctrl) == 2 and {d.ticket.source.eps for d in ctrl} == {0.0, P.eps_star}
    probe = X.Grid([X.natural(P)], [X.TicketSpec()], ["a"], [0], [X.TransferSpec(regime="probe")])
    assert [c.init for c in probe.cells()] == ["pretrained"]  # a probe of random features is no control
    with pytest.raises(ValueError, match="controls"):
        X.Grid([X.natural(P)], [sparse], ["a"], [0], controls="some")


def test_formatting():
    assert X.pct(0.8) == "80%" and X.pct(0.005) == "0.5%" and X.pct(1.0) == "100%"
    assert X.fmt_level("eps", 8 / 255) == "8/255" and X.fmt_level("eps", 0.0) == "0"
    assert X.fmt_level("task", "mnist5k") == "mnist5k"


# ----------------------------------------------------------------------------- stats additions
def test_spearman_and_pearson():
    x = [1, 2, 3, 4, 5, 6]
    rho = spearman(x, [10, 20, 30, 40, 50, 60])
    assert rho.r == pytest.approx(1.0) and rho.p == pytest.approx(2 / 720)
    assert spearman(x, [6, 5, 4, 3, 2, 1]).r == pytest.approx(-1.0)
    assert spearman([1, 2, 2, 3], [1, 2, 3, 4]).r == pytest.approx(0.9486833, abs=1e-6)
    r = pearson([0, 1, 2, 3], [0, 1, 4, 9])
    assert r.r == pytest.approx(np.corrcoef([0, 1, 2, 3], [0, 1, 4, 9])[0, 1])
    assert "n = 6" in str(rho)
    with pytest.raises(ValueError, match="at least 3"):
        spearman([1, 2], [1, 2])
    with pytest.raises(ValueError, match="same length"):
        pearson([1, 2, 3], [1, 2])
    assert spearman([1, 2, 3], [5, 5, 5]).p == 1.0  # a constant has no correlation


# ----------------------------------------------------------------------------- gap
def test_frechet_distance_self_zero_shift_positive_and_monotone():
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(400, 16, generator=gen, dtype=torch.float64)
    assert gap.frechet_distance(a, a) == pytest.approx(0.0, abs=1e-8)
    near = gap.frechet_distance(a, a + 0.5)
    far = gap.frechet_distance(a, a + 2.0)
    assert near == pytest.approx(16 * 0.25, rel=1e-6)  # a mean shift only: |delta mu|^2
    assert far > near > 0
    assert gap.frechet_distance(a, 3 * a) > 0  # a scale change counts through the covariances
    with pytest.raises(ValueError, match="same D"):
        gap.frechet_distance(a, a[:, :8])
    with pytest.raises(ValueError, match="at least 2"):
        gap.frechet_distance(a[:1], a)


def test_penultimate_features_batched_equals_unbatched_and_keeps_mode():
    from rtstudy.vision.models import build_model

    model = build_model("resnet8", 10, in_channels=1, image_size=12, width=0.5, mean=[0.3], std=[0.4])
    model.train()
    x = torch.rand(37, 1, 12, 12, generator=torch.Generator().manual_seed(1))
    f1 = gap.penultimate_features(model, x, batch_size=8)
    f2 = gap.penultimate_features(model, x, batch_size=64)
    assert f1.shape[0] == 37 and torch.allclose(f1, f2, atol=1e-5)
    assert model.training  # restored


# ----------------------------------------------------------------------------- shifted tasks
def test_shifted_task_variants(tmp_path):
    base = load_task("digits", root=tmp_path)
    inv = load_task("digits:invert", root=tmp_path)
    rot = load_task("digits:rot90", root=tmp_path, image_size=12)
    assert inv.name == "digits:invert"
    assert torch.allclose(inv.train_x, 1 - base.train_x) and torch.equal(inv.test_y, base.test_y)
    assert torch.allclose(rot.test_x, torch.rot90(load_task("digits", root=tmp_path, image_size=12).test_x,
                                                  1, (2, 3)), atol=1e-6)
    assert "digits:invert" not in available_tasks()  # variants are a syntax, not registry entries
    assert set(SHIFTS) >= {"invert", "rot90", "hflip", "vflip"}
    with pytest.raises(ValueError, match="'blur'.*invert, rot90"):
        load_task("digits:blur", root=tmp_path)
    with pytest.raises(ValueError, match="'nope:invert'.*<task>:<shift>"):
        load_task("nope:invert", root=tmp_path)


# ----------------------------------------------------------------------------- run_grid
def test_run_grid_rows_on_the_smoke_profile_and_reuse(tmp_path):
    from rtstudy.core.store import Store

    P = get_profile("smoke", seeds=(0,))
    store = Store(tmp_path / "store")
    sources = [X.natural(P)]
    tickets = [X.TicketSpec("omp", "unstructured", 0.5), X.TicketSpec("random", "unstructured", 0.5)]
    transfers = [X.TransferSpec(eval_eps=P.eps_star)]
    rows = X.run_grid(P, sources, tickets, ["digits"], [0, 1], transfers, store=store, progress=False,
                      extra=lambda s, t, task, tr, seed: {"tag": "x"})
    assert len(rows) == 2 * 2 * 2  # 2 tickets x 2 seeds x (test_acc, robust_acc)
    for r in rows:
        assert all(k in r for k in ROW_KEYS)
        assert 0.0 <= r["value"] <= 1.0 and r["tag"] == "x" and r["source_label"] == "natural"
        assert r["achieved_sparsity"] == pytest.approx(0.5, abs=0.01)
    assert {r["metric"] for r in rows} == {"test_acc", "robust_acc"}
    n_before = len(store.list("transfer"))
    again = X.run_grid(P, sources, tickets, ["digits"], [0, 1], transfers, store=store, progress=False)
    assert [r["value"] for r in again] == [r["value"] for r in rows]
    assert len(store.list("transfer")) == n_before == 4
    # OMP once (seed 0); random per seed, each with its OMP reference at that seed
    assert len(store.list("ticket")) == 4
    d_self = gap.domain_distance(X.pretrain_sources(P, sources, store=store)[sources[0]], P.source,
                                 n=100, store=store)
    d_inv = gap.domain_distance(X.pretrain_sources(P, sources, store=store)[sources[0]],
                                f"{P.source}:invert", n=100, store=store)
    assert 0 <= d_self < d_inv


def test_every_grid_carries_its_transfer_gate_under_the_gate_seeds():
    P = get_profile("default")
    assert set(P.source_seeds) <= set(P.gate_seeds)
    for exp in ("E1", "E2", "E3", "E4", "E5", "E6", "E7", "E8", "E9"):
        grid = X.EXPERIMENTS.get(exp).grids(P)[0]
        assert grid.gate, exp
        home = grid.gate[0]  # the profile's targets at its own recipe: the shared gate
        assert [t.label for t in home.tickets] == ["dense"] and home.controls == "dense"
        assert home.source_seeds == list(P.gate_seeds) and set(home.targets) <= set(P.targets)
        assert [s.label for s in home.sources] == [s.label for s in X.standard_sources(P)]
        for g in grid.gate:
            assert all(t.regime == "finetune" and not t.adversarial_eps and t.eval_eps is None
                       for t in g.transfers), exp
    # other recipes (E6's fractions) and other targets (E8's shifts) under the source seeds
    e6 = X.EXPERIMENTS.get("E6").grids(P)[0].gate
    assert [sorted(t.fraction or P.target_fraction for t in g.transfers) for g in e6] == \
        [[P.target_fraction], [f for f in P.data_fractions if f != P.target_fraction]]
    assert e6[1].source_seeds == list(P.source_seeds)
    e8 = X.EXPERIMENTS.get("E8").grids(P)[0].gate
    assert e8[1].targets == ["mnist5k:invert", "mnist5k:rot90"]
    assert not X.EXPERIMENTS.get("E3").grids(P)[1].gate  # a probe has no from-scratch control
    with pytest.raises(ValueError, match=r"gate_source_seeds \(0,\) must include every source seed"):
        get_profile("default", gate_source_seeds=(0,))
