"""The benchmark runs and writes every measurement the design asks for (values are not judged here)."""

import json

from rtstudy.bench import run

KEYS = {"pgd_vs_torchattacks", "adv_step_vs_clean_step_pgd3", "train_img_per_s_clean",
        "train_img_per_s_pgd3", "masked_step_vs_dense_step", "slim_channel50_speedup",
        "superticket_train_step_vs_dense_step", "superticket_slim_speedup",
        "dip_iter_per_s_dense", "dip_iter_per_s_masked", "oes_mask_step_vs_dense_step",
        "text_train_tokens_per_s", "text_masked_step_vs_dense_step"}


def test_bench_writes_all_measurements(tmp_path, monkeypatch):
    monkeypatch.setenv("RTSTUDY_STORE", str(tmp_path / "store"))  # the SuperTicket it times
    out = tmp_path / "bench.json"
    run("smoke", repeats=1, batch=8, out=out)
    saved = json.loads(out.read_text())
    assert KEYS <= set(saved)
    for key in KEYS:
        entry = saved[key]
        assert set(entry) >= {"value", "unit", "target"}
        assert entry["value"] > 0, f"{key} must be a positive measurement"
    assert "outputs equal: True" in saved["slim_channel50_speedup"]["note"]
