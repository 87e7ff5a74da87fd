"""Speed ratios of DESIGN.md §5, measured side by side in one run: ``nox -s bench``.

    python -m rtstudy.bench [--out reports/bench.json] [--profile default] [--repeats 15]
    python -m rtstudy.bench --scaleout        # the plan on 1 vs 2 Dask workers (minutes)
    python -m rtstudy.bench --stage-costs     # seconds per task of each stage, fp32 vs bf16 (minutes)
    python -m rtstudy.bench --cold-report     # a whole cold report into reports/cold (tens of minutes)

The last two add their entries to the existing file. Each measurement is ``{"value", "unit", "target", "ok", "note"}``. Ratios compare two
things timed alternately (A, B, A, B, ...) on the same model and batch, so machine
load affects both alike; the median over repeats is reported.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F

from rtstudy.core.masks import apply_mask
from rtstudy.core.precision import native_bf16
from rtstudy.core.store import atomic_write_text
from rtstudy.core.tickets import omp
from rtstudy.prior.bench import bench_prior
from rtstudy.profiles import get_profile
from rtstudy.text.bench import bench_text
from rtstudy.vision.attacks import AttackConfig, perturb
from rtstudy.vision.models import build_model
from rtstudy.vision.superticket_bench import bench_supertickets
from rtstudy.vision.train import TrainConfig, make_optimizer, train_step

ROOT = Path(__file__).resolve().parents[1]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def paired_medians(fns: dict[str, Callable[[], object]], repeats: int, device: torch.device,
                   warmup: int = 2) -> dict[str, float]:
    """Median seconds of each function, timed round-robin so load hits all alike."""
    times: dict[str, list[float]] = {k: [] for k in fns}
    for i in range(repeats + warmup):
        for name, fn in fns.items():
            _sync(device)
            t0 = time.perf_counter()
            fn()
            _sync(device)
            if i >= warmup:
                times[name].append(time.perf_counter() - t0)
    return {k: statistics.median(v) for k, v in times.items()}


def _entry(value: float, unit: str, target: str, ok: bool | None, note: str = "") -> dict:
    return {"value": round(value, 4), "unit": unit, "target": target, "ok": ok, "note": note}


def _train_step(model, opt, x, y, cfg: TrainConfig, device):
    """One step of the training loop's own ``train_step`` in ``cfg``'s precision and layout."""
    precision, channels_last = cfg.compute_precision(device), cfg.uses_channels_last(device)
    model.to(memory_format=torch.channels_last if channels_last else torch.contiguous_format)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)

    def step():
        train_step(model, opt, x, y, cfg, precision, cfg.lr)
    return step


def _model(profile, device, seed: int = 0):
    return build_model(profile.model, 10, in_channels=profile.channels, image_size=profile.image_size,
                       width=profile.width, seed=seed).to(device)


def _batch(profile, batch: int, device):
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(batch, profile.channels, profile.image_size, profile.image_size, generator=gen)
    return x.to(device), torch.randint(0, 10, (batch,), generator=gen).to(device)


def bench_attacks_and_training(profile, device, repeats: int, batch: int) -> dict:
    """PGD vs torchattacks; PGD-3 adversarial step vs clean step; images per second; all in
    the precision the profile trains in (``rtstudy.core.precision``)."""
    out = {}
    model = _model(profile, device)
    x, y = _batch(profile, batch, device)
    cfg = profile.pretrain
    precision = cfg.compute_precision(device)
    eps = profile.eps_star
    cfg10 = AttackConfig(kind="pgd", norm="linf", eps=eps, steps=10)
    try:
        import torchattacks

        model.eval()
        ta = torchattacks.PGD(model, eps=eps, alpha=cfg10.step_size, steps=10, random_start=True)
        t = paired_medians({"ours": lambda: perturb(model, x, y, cfg10), "ta": lambda: ta(x, y)},
                           repeats, device)
        ratio = t["ours"] / t["ta"]
        out["pgd_vs_torchattacks"] = _entry(ratio, "ratio", "<= 1.0", ratio <= 1.0,
                                            f"PGD-10 linf, {profile.model}, batch {batch}, fp32: ours "
                                            f"{1e3 * t['ours']:.1f} ms, torchattacks {1e3 * t['ta']:.1f} ms")
    except ImportError:
        out["pgd_vs_torchattacks"] = _entry(float("nan"), "ratio", "<= 1.0", None,
                                            "torchattacks not installed (pip install -e '.[test]')")

    opt = make_optimizer(model.parameters(), cfg)
    pgd3 = AttackConfig(kind="pgd", norm="linf", eps=eps, steps=3)
    fgsm = AttackConfig(kind="fgsm_rs", norm="linf", eps=eps)
    t = paired_medians({
        "clean": _train_step(model, opt, x, y, cfg, device),
        "pgd3": _train_step(model, opt, x, y, cfg.with_(attack=pgd3), device),
        "fgsm": _train_step(model, opt, x, y, cfg.with_(attack=fgsm), device),
    }, repeats, device)
    ratio = t["pgd3"] / t["clean"]
    where = f"{profile.model} w{profile.width} at {profile.image_size}px, {precision}"
    out["adv_step_vs_clean_step_pgd3"] = _entry(ratio, "ratio", "<= 3.25 (1 + 0.75 * 3)", ratio <= 3.25,
                                                f"one training step, batch {batch}, {precision}")
    out["adv_step_vs_clean_step_fgsm_rs"] = _entry(t["fgsm"] / t["clean"], "ratio", "<= 1.75 (1 + 0.75)",
                                                   t["fgsm"] / t["clean"] <= 1.75, f"batch {batch}, {precision}")
    out["train_img_per_s_clean"] = _entry(batch / t["clean"], "img/s", "report", None, where)
    out["train_img_per_s_pgd3"] = _entry(batch / t["pgd3"], "img/s", "report", None, where)
    out["train_img_per_s_fgsm_rs"] = _entry(batch / t["fgsm"], "img/s", "report", None, where)

    # masked vs dense step: the same model, an 80% unstructured OMP mask kept by an optimiser hook
    dense, masked = _model(profile, device), _model(profile, device)
    opt_d, opt_m = make_optimizer(dense.parameters(), cfg), make_optimizer(masked.parameters(), cfg)
    apply_mask(masked, omp(masked, "unstructured", 0.8), opt_m)
    t = paired_medians({"dense": _train_step(dense, opt_d, x, y, cfg, device),
                        "masked": _train_step(masked, opt_m, x, y, cfg, device)}, repeats, device)
    ratio = t["masked"] / t["dense"]
    out["masked_step_vs_dense_step"] = _entry(ratio, "ratio", "<= 1.05", ratio <= 1.05,
                                              f"80% unstructured mask, batch {batch}, {precision}")
    return out


def _train_step_flops(model, x, y) -> float:
    """Floating-point operations of one training step (forward and backward), per torch."""
    from torch.utils.flop_counter import FlopCounterMode

    model.train()
    with FlopCounterMode(display=False) as counter:
        F.cross_entropy(model(x), y).backward()
    model.zero_grad(set_to_none=True)
    return float(counter.get_total_flops())


def peak_gflops(precision: str, device: torch.device, n: int = 2048, repeats: int = 5) -> float:
    """What this core (or GPU) reaches on a large matrix product in ``precision``: GFLOP/s."""
    dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    gen = torch.Generator().manual_seed(0)
    a, b = (torch.randn(n, n, generator=gen).to(device, dtype) for _ in range(2))
    t = paired_medians({"mm": lambda: a @ b}, repeats, device)["mm"]
    return 2 * n ** 3 / t / 1e9


def bench_precision(profile, device, repeats: int, batch: int) -> dict:
    """The chosen precision and layout over plain fp32 (contiguous), at the pretraining batch
    and at the finetuning batch; achieved GFLOP/s against the core's measured peak."""
    chosen = profile.pretrain
    plain = chosen.with_(precision="fp32", amp=False)
    precision = chosen.compute_precision(device)
    out = {}
    for b, what in ((batch, "pretraining"), (profile.finetune.batch_size, "finetuning")):
        x, y = _batch(profile, b, device)
        m_fast, m_plain = _model(profile, device), _model(profile, device)
        t = paired_medians({
            "chosen": _train_step(m_fast, make_optimizer(m_fast.parameters(), chosen), x, y, chosen, device),
            "fp32": _train_step(m_plain, make_optimizer(m_plain.parameters(), plain), x, y, plain, device),
        }, repeats, device)
        speedup = t["fp32"] / t["chosen"]
        target = 1.8 if b == batch else 1.5
        out[f"train_speedup_vs_fp32_batch{b}"] = _entry(
            speedup, "ratio", f">= {target} where bf16 is native" if precision == "bf16" else ">= 1.0",
            speedup >= (target if precision == "bf16" else 0.95),
            f"{what} batch {b}: {precision}{', channels-last' if chosen.uses_channels_last(device) else ''} "
            f"{b / t['chosen']:.0f} img/s vs plain fp32 {b / t['fp32']:.0f} img/s")
        if b == batch:
            flops = _train_step_flops(_model(profile, device), x, y) / b
            achieved = flops * b / t["chosen"] / 1e9
    peak = peak_gflops(precision, device)
    out["achieved_gflops"] = _entry(achieved, "GFLOP/s", "report", None,
                                    f"a clean {precision} training step at batch {batch}: "
                                    f"{flops / 1e6:.1f} MFLOP per image (forward + backward)")
    out["peak_gflops"] = _entry(peak, "GFLOP/s", "report", None,
                                f"a 2048x2048 {precision} matrix product on {torch.get_num_threads()} "
                                f"thread(s), the ceiling of this {device.type}")
    out["achieved_vs_peak"] = _entry(achieved / peak, "ratio", "report", None,
                                     "small convolutions (8-32 channels at 20 px) reach a fraction of "
                                     "what one large matrix product does")
    return out


def bench_compile(profile, device, batch: int, repeats: int = 10) -> dict:
    """torch.compile (inductor) of the training step against eager, compile time included, for
    a task of the profile's size: one transfer (its finetuning steps) and one source model."""
    import torch._dynamo

    cfg = profile.finetune
    precision = cfg.compute_precision(device)
    out = {}
    for name, recipe, b, n_steps in (
            ("transfer", cfg, cfg.batch_size, cfg.min_steps),
            ("source", profile.pretrain, batch, round(profile.pretrain.epochs * 30_000 / batch))):
        x, y = _batch(profile, b, device)
        eager_model, comp_model = _model(profile, device), _model(profile, device)
        eager = _train_step(eager_model, make_optimizer(eager_model.parameters(), recipe), x, y, recipe, device)
        torch._dynamo.reset()
        compiled_fwd = torch.compile(comp_model)
        opt = make_optimizer(comp_model.parameters(), recipe)
        step = _train_step(compiled_fwd, opt, x, y, recipe, device)
        t0 = time.perf_counter()
        step()
        first = time.perf_counter() - t0
        t = paired_medians({"eager": eager, "compiled": step}, repeats, device)
        end_to_end = (first + (n_steps - 1) * t["compiled"]) / (n_steps * t["eager"])
        out[f"compiled_vs_eager_{name}"] = _entry(
            end_to_end, "ratio", "< 1.0 to use it", end_to_end < 1.0,
            f"{n_steps} steps at batch {b}, {precision}: compile {first:.1f} s, then "
            f"{1e3 * t['compiled']:.1f} ms/step vs eager {1e3 * t['eager']:.1f} ms/step "
            f"(steady state {t['compiled'] / t['eager']:.2f}); the training loop compiles nothing "
            "while this is >= 1")
    return out


def bench_slim(device, repeats: int) -> dict:
    """Inference latency of a 50% channel ticket exported as a smaller network vs dense."""
    from rtstudy.vision.slim import count_macs, latency, slim_channel_ticket

    model = build_model("resnet20", 10, in_channels=3, image_size=32, width=2.0, seed=0).to(device).eval()
    mask = omp(model, "channel", 0.5)
    apply_mask(model, mask)
    slim = slim_channel_ticket(model, mask).to(device).eval()
    x = torch.rand(64, 3, 32, 32, device=device)
    with torch.inference_mode():
        same = torch.allclose(model(x), slim(x), atol=1e-4)
    t = {"dense": [], "slim": []}
    for _ in range(max(3, repeats // 3)):  # alternate, a few repeats each
        t["dense"].append(latency(model, x, repeats=3))
        t["slim"].append(latency(slim, x, repeats=3))
    dense_s, slim_s = statistics.median(t["dense"]), statistics.median(t["slim"])
    speedup = dense_s / slim_s
    macs = count_macs(model, x[:1]), count_macs(slim, x[:1])
    return {"slim_channel50_speedup": _entry(
        speedup, "ratio", ">= 1.5", speedup >= 1.5,
        f"resnet20 w2 32px batch 64: dense {1e3 * dense_s:.0f} ms, slim {1e3 * slim_s:.0f} ms; "
        f"MACs {macs[0] / 1e6:.0f}M -> {macs[1] / 1e6:.0f}M; outputs equal: {same}")}


def bench_scaleout(profile_name: str = "default", log=print) -> dict:
    """One plan (E1 of the profile, one source and one finetuning seed) from an empty store,
    on a LocalCluster of 1 and of 2 worker processes: time(1) / time(2)."""
    import tempfile

    from rtstudy.core.store import Store
    from rtstudy.engine.execute import execute, open_client
    from rtstudy.engine.plan import experiment_descriptions, plan_transfers

    profile = get_profile(profile_name, source_seeds=(0,), seeds=(0,))
    descs = experiment_descriptions(profile, "E1")
    seconds, tasks = {}, 0
    for workers in (1, 2):
        with tempfile.TemporaryDirectory() as root, open_client(workers=workers, log=lambda *a: None) as client:
            store = Store(root)
            plan = plan_transfers(descs, store)
            tasks = len(plan.tasks)
            t0 = time.perf_counter()
            execute(client, plan, store, progress=False)
            seconds[workers] = time.perf_counter() - t0
            log(f"[bench] {tasks} tasks on {workers} worker(s): {seconds[workers]:.0f} s")
    ratio = seconds[1] / seconds[2]
    return {"scaleout_2_workers_vs_1": _entry(
        ratio, "ratio", ">= 1.7", ratio >= 1.7,
        f"E1 of {profile_name} at one source and finetuning seed ({tasks} tasks: 2 sources, their tickets, "
        f"transfers and controls) from an empty store on a LocalCluster: 1 worker {seconds[1]:.0f} s, "
        f"2 workers {seconds[2]:.0f} s (cluster start excluded)")}


def bench_stage_costs(profile_name: str = "default", log=print) -> dict:
    """Worker-seconds per task of each stage, plain fp32 against the profile's precision, on
    the same machine in one run: E1's plan at one source and one finetuning seed from an
    empty store each time, on a LocalCluster of one worker per core (as the report runs)."""
    import tempfile

    from rtstudy.core.store import Store
    from rtstudy.engine.execute import execute, open_client
    from rtstudy.engine.plan import experiment_descriptions, plan_transfers

    chosen = get_profile(profile_name).precision
    per_task: dict[str, dict[str, float]] = {}
    counts = {}
    for precision in ("fp32", chosen):
        profile = get_profile(profile_name, precision=precision, source_seeds=(0,), seeds=(0,),
                              gate_source_seeds=())
        descs = experiment_descriptions(profile, "E1")
        with tempfile.TemporaryDirectory() as root, open_client(log=lambda *a: None) as client:
            store = Store(root)
            plan = plan_transfers(descs, store)
            stages = execute(client, plan, store, progress=False)
        per_task[precision] = {s: v["worker_seconds"] / max(1, v["tasks"]) for s, v in stages.items()}
        counts = {s: v["tasks"] for s, v in stages.items()}
        log(f"[bench] E1 stages in {precision}: " + ", ".join(
            f"{s} {v:.2f} s/task" for s, v in per_task[precision].items()))
    out = {}
    for stage, n in counts.items():
        before, after = per_task["fp32"][stage], per_task[chosen][stage]
        out[f"stage_seconds_per_task_{stage}"] = _entry(
            before / after, "ratio", ">= 1.6 (sources, transfers) where bf16 is native"
            if stage != "ticket" else "report", (before / after >= 1.6) if stage != "ticket" and
            chosen == "bf16" else None,
            f"E1 of {profile_name} at one source and finetuning seed ({n} {stage} tasks): plain fp32 "
            f"{before:.2f} s/task, {chosen} {after:.2f} s/task (worker-seconds, 2 workers)")
    return out


def bench_cold_report(profile_name: str, out: Path = ROOT / "reports" / "cold", log=print) -> dict:
    """The whole report from an empty store and empty data and token caches, into ``out``
    (its summary, with the per-stage times, stays there): its bench entries, per-stage
    costs against the cold summary it replaces."""
    import os
    import tempfile

    previous = _read_summary(out / "summary.json")
    from rtstudy.report import build_report

    saved = {k: os.environ.get(k) for k in ("RTSTUDY_DATA", "RTSTUDY_TEXT_CACHE")}
    with tempfile.TemporaryDirectory() as root:
        os.environ.update(RTSTUDY_DATA=str(Path(root) / "data"), RTSTUDY_TEXT_CACHE=str(Path(root) / "text"))
        try:  # the LocalCluster's workers inherit the empty caches
            summary = build_report(profile_name, out, store=str(Path(root) / "store"), log=log, rerender=True)
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
    return cold_report_entries(summary, previous)


def _read_summary(path: Path) -> dict | None:
    return json.loads(path.read_text()) if path.is_file() else None


def cold_report_entries(summary: dict, previous: dict | None = None) -> dict:
    """Bench entries of a cold report's ``summary``: wall time and CPU utilisation, and with
    ``previous`` (an earlier cold summary) each stage's worker-seconds per task against it."""
    import os

    name, wall, util = summary["profile"], summary["wall_seconds"], summary["cpu_utilisation"]
    per_task = {}
    for stage in ("source", "ticket", "transfer"):
        now, before = (s.get("stages", {}).get(stage) for s in (summary, previous or {}))
        if now and before and now.get("tasks") and before.get("tasks"):
            a = before["worker_seconds"] / before["tasks"]
            b = now["worker_seconds"] / now["tasks"]
            per_task[f"report_seconds_per_task_{stage}"] = _entry(
                a / b, "ratio", "report", None,
                f"{stage}: {a:.2f} worker-s/task ({before['tasks']} tasks, {previous.get('created')}, "
                f"{previous.get('precision', 'fp32')}, {previous.get('device')}) -> {b:.2f} "
                f"({now['tasks']} tasks, {summary.get('precision', 'fp32')}, {summary.get('device')})")
    return {**per_task,
        "report_cpu_utilisation": _entry(
            util, "ratio", ">= 0.85", util >= 0.85,
            f"busy CPU seconds of the whole machine / (wall x {os.cpu_count()} cores) over the cold "
            f"{name} report ({wall:.0f} s)"),
        "report_cold_seconds": _entry(
            wall, "s", "report", None,
            f"{name} profile from an empty store, {summary['created']}; stages: "
            + json.dumps(summary.get("stages", {}))),
    }


def run(profile_name: str = "default", repeats: int = 15, batch: int = 128, out: Path | None = None,
        compile_check: bool = True) -> dict:
    profile = get_profile(profile_name)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    results = {
        "_machine": {"device": torch.cuda.get_device_name(0) if device.type == "cuda" else
                     f"CPU ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)",
                     "torch": torch.__version__, "profile": profile_name,
                     "precision": profile.precision, "native_bf16": native_bf16(device),
                     "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")},
    }
    results.update(bench_attacks_and_training(profile, device, repeats, batch))
    results.update(bench_precision(profile, device, repeats, batch))
    if compile_check:
        results.update(bench_compile(profile, device, batch))
    results.update(bench_slim(device, repeats))
    results.update(bench_supertickets(profile_name, device, repeats, batch))
    results.update(bench_text(profile_name, device, repeats))
    results.update(bench_prior(profile_name, device, repeats))
    if out is not None and out.exists():  # the engine's measurements take minutes: kept until remeasured
        old = json.loads(out.read_text())
        results.update({k: v for k, v in old.items() if k.startswith(("report_", "scaleout_", "stage_"))})
    if out is not None:
        atomic_write_text(out, json.dumps(results, indent=1))
    return results


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=str(ROOT / "reports" / "bench.json"))
    ap.add_argument("--profile", default="default")
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--scaleout", action="store_true", help="measure the plan on 1 vs 2 Dask workers")
    ap.add_argument("--cold-report", action="store_true",
                    help="measure a whole report from an empty store (wall time, CPU utilisation) "
                         "into reports/cold")
    ap.add_argument("--stage-costs", action="store_true",
                    help="worker-seconds per task of each stage, plain fp32 vs the chosen precision "
                         "(E1 at one seed, a few minutes)")
    ap.add_argument("--cold-summary", default=None, metavar="SUMMARY",
                    help="record the summary.json of a cold report run by other means (e.g. "
                         "`python -m rtstudy.report --store EMPTY_DIR --out reports/cold`)")
    ap.add_argument("--previous-summary", default=None, metavar="SUMMARY",
                    help="with --cold-summary: an earlier cold summary to compare each stage's "
                         "worker-seconds per task with")
    args = ap.parse_args(argv)
    if args.scaleout or args.cold_report or args.cold_summary or args.stage_costs:
        out = Path(args.out)
        results = json.loads(out.read_text()) if out.exists() else {}
        if args.scaleout:
            results.update(bench_scaleout(args.profile))
        if args.stage_costs:
            results.update(bench_stage_costs(args.profile))
        if args.cold_report:
            results.update(bench_cold_report(args.profile))
        if args.cold_summary:
            previous = _read_summary(Path(args.previous_summary)) if args.previous_summary else None
            results.update(cold_report_entries(json.loads(Path(args.cold_summary).read_text()), previous))
        if args.cold_report or args.cold_summary:  # that comparison held the profile's work fixed
            results.pop("report_cold_vs_reference", None)
        atomic_write_text(out, json.dumps(results, indent=1))
    else:
        results = run(args.profile, args.repeats, args.batch, Path(args.out))
    width = max(len(k) for k in results)
    for key, r in results.items():
        if key.startswith("_"):
            continue
        flag = {True: "ok", False: "MISSED", None: ""}[r["ok"]]
        print(f"{key:<{width}}  {r['value']:>10.3f} {r['unit']:<6} target {r['target']:<22} {flag:<6} {r['note']}")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
