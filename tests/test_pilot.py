import json
import math

import numpy as np
import pytest

from rtstudy.core.contrasts import design_power, units_for_power
from rtstudy.experiments.pilot import main, pilot
from rtstudy.profiles import get_profile

P = get_profile("smoke")


def _summary(shift: dict[int, float]) -> dict:
    """A report summary whose E1 rows hold robust − natural = ``shift`` per source seed."""
    rows = []
    for ss, d in shift.items():
        for sp in (0.5, 0.9):
            for seed in (0, 1):
                common = dict(task="mnist5k", scheme="omp", pattern="unstructured", sparsity=sp,
                              seed=seed, metric="test_acc", source_seed=ss, init="pretrained",
                              regime="finetune")
                rows += [dict(common, source="natural", eps=0.0, value=0.6),
                         dict(common, source="robust", eps=P.eps_star, value=0.6 + d)]
    return {"profile": "smoke", "experiments": {"E1": {"rows": rows}}}


MAIN = {0: 0.01, 1: 0.04, 2: 0.02}
REPLICATE = {100: -0.01, 101: 0.03, 102: 0.05}


def test_the_pilot_pools_disjoint_units_and_sizes_the_design_from_their_sd():
    (line,) = pilot([_summary(MAIN), _summary(REPLICATE)], P)
    values = [100 * v for v in (*MAIN.values(), *REPLICATE.values())]
    sd = np.std(values, ddof=1)
    assert line.estimand.id == "E1" and line.units == 6 and line.sd == pytest.approx(sd)
    assert line.needed == units_for_power(sd, 2.0)
    assert line.planned == len(P.source_seeds)
    assert line.planned_power == pytest.approx(design_power(sd, len(P.source_seeds), 2.0))
    assert [r.mean for r in line.runs] == pytest.approx([np.mean([100 * v for v in s.values()])
                                                         for s in (MAIN, REPLICATE)])
    with pytest.raises(ValueError, match="share units"):
        pilot([_summary(MAIN), _summary(MAIN)], P)
    with pytest.raises(ValueError, match="at least one report summary"):
        pilot([], P)


def test_the_pilot_command_prints_the_sds_to_record(tmp_path, capsys):
    paths = []
    for name, shift in (("a", MAIN), ("b", REPLICATE)):
        paths.append(tmp_path / f"{name}.json")
        paths[-1].write_text(json.dumps(_summary(shift)))
    main([str(p) for p in paths])
    out = capsys.readouterr().out
    sd = np.std([100 * v for v in (*MAIN.values(), *REPLICATE.values())], ddof=1)
    assert f'pilot_sd={{"E1": {sd:.2f}}}' in out and "profile 'smoke'" in out
    assert not math.isnan(sd)
