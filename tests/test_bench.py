"""The benchmark runs and writes every measurement the design asks for (values are not judged here)."""

import json

from rtstudy.bench import run

KEYS = {"pgd_vs_torchattacks", "adv_step_vs_clean_step_pgd3", "train_img_per_s_clean",
        "train_img_per_s_pgd3", "masked_step_vs_dense_step", "slim_channel50_speedup",
        "superticket_train_step_vs_dense_step", "superticket_slim_speedup",
        "dip_iter_per_s_dense", "dip_iter_per_s_masked", "oes_mask_step_vs_dense_step",
        "text_train_tokens_per_s", "text_masked_step_vs_dense_step",
        "train_speedup_vs_fp32_batch8", "train_speedup_vs_fp32_batch32", "achieved_gflops", "peak_gflops",
        "achieved_vs_peak"}


def test_bench_writes_all_measurements(tmp_path, monkeypatch):
    monkeypatch.setenv("RTSTUDY_STORE", str(tmp_path / "store"))  # the SuperTicket it times
    out = tmp_path / "bench.json"
    run("smoke", repeats=1, batch=8, out=out, compile_check=False)  # compiling takes a minute
    saved = json.loads(out.read_text())
    assert saved["_machine"]["precision"] in ("fp32", "bf16")
    assert KEYS <= set(saved)
    for key in KEYS:
        entry = saved[key]
        assert set(entry) >= {"value", "unit", "target"}
        assert entry["value"] > 0, f"{key} must be a positive measurement"
    assert "outputs equal: True" in saved["slim_channel50_speedup"]["note"]


def test_a_cold_report_summary_is_recorded_in_the_bench_file(tmp_path):
    from rtstudy.bench import main

    out, summary = tmp_path / "bench.json", tmp_path / "summary.json"
    out.write_text(json.dumps({"report_cold_vs_reference": {"value": 1.1}, "pgd_vs_torchattacks": {
        "value": 0.98, "unit": "ratio", "target": "<= 1.0", "ok": True, "note": ""}}))
    summary.write_text(json.dumps({"profile": "default", "created": "2026-01-01", "wall_seconds": 2672.2,
                                   "cpu_utilisation": 0.98, "stages": {"source": {"tasks": 38}}}))
    assert main(["--out", str(out), "--cold-summary", str(summary)]) == 0
    saved = json.loads(out.read_text())
    assert saved["report_cold_seconds"]["value"] == 2672.2 and '"tasks": 38' in saved["report_cold_seconds"]["note"]
    assert saved["report_cpu_utilisation"]["ok"] is True
    assert "report_cold_vs_reference" not in saved and saved["pgd_vs_torchattacks"]["value"] == 0.98


def test_a_cold_report_is_compared_stage_by_stage_with_the_previous_one(tmp_path):
    from rtstudy.bench import main

    out, now, before = tmp_path / "bench.json", tmp_path / "now.json", tmp_path / "before.json"
    before.write_text(json.dumps({"profile": "default", "created": "2026-01-01", "device": "CPU (2 cores)",
                                  "wall_seconds": 1766.0, "cpu_utilisation": 0.99, "stages": {
                                      "source": {"tasks": 38, "worker_seconds": 1481.0},
                                      "transfer": {"tasks": 1380, "worker_seconds": 1411.0}}}))
    now.write_text(json.dumps({"profile": "default", "created": "2026-02-01", "device": "CPU (2 cores)",
                               "precision": "bf16", "wall_seconds": 900.0, "cpu_utilisation": 0.98,
                               "stages": {"source": {"tasks": 38, "worker_seconds": 740.5},
                                          "transfer": {"tasks": 1380, "worker_seconds": 690.0}}}))
    assert main(["--out", str(out), "--cold-summary", str(now), "--previous-summary", str(before)]) == 0
    saved = json.loads(out.read_text())
    assert saved["report_seconds_per_task_source"]["value"] == 2.0
    assert round(saved["report_seconds_per_task_transfer"]["value"], 3) == round(1411 / 690, 3)
    assert "fp32" in saved["report_seconds_per_task_source"]["note"]
    assert "bf16" in saved["report_seconds_per_task_source"]["note"]
    assert "report_seconds_per_task_ticket" not in saved  # neither summary has tickets
