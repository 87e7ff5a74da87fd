"""Regenerate the report: plan, execute on Dask, render the notebooks, write HTML and a summary.

    python -m rtstudy.report [--profile smoke|default|paper|...] [--only E1,E2] [--out reports]
                             [--plan] [--scheduler ADDRESS | --workers N] [--replicate]

The plan (``rtstudy.engine``) is every artifact the experiments' grids need, minus what
the store holds; it runs as one Dask task graph (a ``LocalCluster`` of one-thread worker
processes by default, or an existing cluster). Each notebook renders with papermill on
the same workers as soon as the tasks it reads are done, and may not train anything
itself. Notebooks render into a staging folder. Only when all succeed does it replace
the report (the old one is kept until then), so a failing notebook
leaves the previous report in place; the error names the notebook and the cell.
Outputs: executed notebooks, one offline HTML page each (plotly.js is a file beside
them), ``index.html`` with a one-line finding each, and ``summary.json``.
"""

from __future__ import annotations

import argparse
import html
import json
import os
import shutil
import sys
import time
from pathlib import Path

from rtstudy.core.checks import check_choice
from rtstudy.core.store import atomic_write_text
from rtstudy.experiments.registry import TITLES as EXPERIMENTS  # {id: title}, E0 ... E13
from rtstudy.paper_profiles import profile_experiments
from rtstudy.profiles import PROFILES, env_overrides
from rtstudy.render import NotebookFailed, notebook_fingerprint, package_digest, render_notebook
from rtstudy.requirements import check_requirements, plan_requirements

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"


def notebook_order(notebooks_dir: Path = NOTEBOOKS) -> list[tuple[str, Path]]:
    """``[(experiment id, path)]`` in E0, E1, ..., E10 order, from the file names."""
    found = {}
    for path in notebooks_dir.glob("*.ipynb"):
        prefix = path.stem.split("_")[0]  # "00_quickstart" -> E0, "10_anatomy" -> E10
        exp = f"E{int(prefix)}" if prefix.isdigit() else prefix.upper()
        if exp in EXPERIMENTS:
            found[exp] = path
    return [(e, found[e]) for e in EXPERIMENTS if e in found]


def copy_plotly_js(dst_dir: Path) -> None:
    import plotly

    src = Path(plotly.__file__).parent / "package_data" / "plotly.min.js"
    shutil.copyfile(src, dst_dir / "plotly.min.js")


METHOD = ("How an answer is made: each question has one primary estimand declared in the "
          "experiment registry before any data (what is contrasted, the cells averaged, the "
          "unit, the margin: 2 accuracy points, 0.5 dB for the image prior). A unit's value "
          "is its mean over those cells and its finetuning seeds; the estimate is their mean "
          "with a 95% t interval, cross-checked by an exact sign-flip permutation test from 8 "
          "units on, Holm-corrected over every headline estimand of the report. Verdicts: "
          "better / worse where it is separated from 0, equivalent where the CI lies inside "
          "±margin, not settled otherwise; zero spread gets no verdict. The design power is "
          "computed before the data, from the profile's pilot SD and its planned units. "
          "Per-cell estimates are secondary: tables and a forest plot in each notebook.")


def _headlines_html(summary: dict) -> str:
    """The answers first: one table and one forest plot of the primary estimates, and three
    sentences computed from them."""
    from rtstudy.experiments.headlines import (
        answer_sentences,
        headline_figure,
        headline_table_html,
        report_headlines,
    )

    hs = report_headlines(summary)
    if not hs:
        return ""
    rep = summary.get("replication") or {}
    agreement = rep.get("headlines")
    table = headline_table_html(hs, rep.get("headline_estimates"), EXPERIMENTS)
    div = headline_figure(hs).to_html(full_html=False, include_plotlyjs=False,
                                      config={"displaylogo": False})
    return (f"<h2>The answers</h2><p>{html.escape(answer_sentences(hs, agreement))}</p>"
            f"{table}{div}<p><small>{html.escape(METHOD)}</small></p>")


def _answer_html(summary: dict) -> str:
    """Secondary: the paragraph and the forest plot of every cell a notebook recorded."""
    from rtstudy.experiments.answer import answer_figure, answer_paragraph, contrasts_of

    cs = contrasts_of(summary)
    if not cs:
        return ""
    fig = answer_figure(cs)
    div = fig.to_html(full_html=False, include_plotlyjs=False, config={"displaylogo": False})
    text = html.escape(answer_paragraph(cs))
    rep = summary.get("replication")
    rep_html = ""
    if rep:
        rep_html = (f"<p><b>Replication</b> (disjoint source and finetuning seeds, "
                    f"<a href=\"replicate/index.html\">its report</a>): "
                    f"{html.escape(rep['sentence'])}</p>")
    return f"<h2>Secondary: every recorded cell</h2><p>{text}</p>{rep_html}{div}"


def write_index(out: Path, summary: dict) -> None:
    items = []
    for exp, info in summary["experiments"].items():
        finding = html.escape(info.get("finding") or "")
        items.append(
            f'<li><a href="{html.escape(info["html"])}"><b>{exp}</b> — {html.escape(info["title"])}</a>'
            f' <small>({info["wall_seconds"]:.0f} s)</small><br><span>{finding}</span></li>')
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>rtstudy report</title>
<script src="plotly.min.js" charset="utf-8"></script>
<style>body{{font-family:system-ui,sans-serif;max-width:60rem;margin:2rem auto;line-height:1.4}}
li{{margin:0.8rem 0}} span{{color:#333}}
table.headlines{{border-collapse:collapse;font-size:0.9rem}}
table.headlines td,table.headlines th{{border-bottom:1px solid #ddd;padding:0.3rem;text-align:left}}
</style></head><body>
<h1>Robust tickets transfer better? — rtstudy report</h1>
<p>Profile <b>{html.escape(summary["profile"])}</b>, generated {html.escape(summary["created"])},
total wall time {summary["wall_seconds"]:.0f} s on {html.escape(summary["device"])}.
Machine-readable results: <a href="summary.json">summary.json</a>.</p>
{_headlines_html(summary)}
{_answer_html(summary)}
<h2>The experiments</h2>
<ol>{"".join(items)}</ol></body></html>"""
    atomic_write_text(out / "index.html", page)


def _device() -> str:
    import torch

    if torch.cuda.is_available():
        return torch.cuda.get_device_name(0)
    from rtstudy.core.precision import cpu_model

    return f"CPU ({os.cpu_count()} cores, {cpu_model()})"


RENDER_PRIORITY = 1_500_000_000  # a notebook whose tasks are done renders before more transfers run
READ_ONLY_AT_RENDER = "source,ticket,imp_round,transfer"  # the plan trained them all


def bench_throughput(path: Path = ROOT / "reports" / "bench.json") -> float | None:
    """The clean training throughput the bench measured on this machine (examples/s), if any."""
    try:
        return float(json.loads(path.read_text())["train_img_per_s_clean"]["value"])
    except (OSError, KeyError, ValueError, TypeError):
        return None


def _busy_cpu_seconds() -> float:
    """CPU seconds the whole machine has spent busy since boot (all processes)."""
    import psutil

    t = psutil.cpu_times()
    return sum(t) - t.idle - getattr(t, "iowait", 0.0)


def build_report(profile: str = "default", out: Path | str = ROOT / "reports",
                 only: list[str] | None = None, notebooks_dir: Path = NOTEBOOKS,
                 store: str | None = None, scheduler: str | None = None, workers: int | None = None,
                 gpu: bool | None = None, log=print, parameters: dict | None = None,
                 build: bool = True, interval: float = 30.0, rerender: bool = False) -> dict:
    """Plan every artifact the notebooks read, build the plan on Dask, render the notebooks
    into ``out`` and return the summary (see module doc).

    A notebook whose fingerprint (``render.notebook_fingerprint``: its source, parameters,
    the package's code and the stored artifacts it reads) equals the one recorded for it in
    ``out``'s summary is not rendered again: its previous notebook, page and results are
    kept (``rerender=True`` renders every notebook).

    ``scheduler``: the address of an existing Dask scheduler (default: a ``LocalCluster``
    of ``workers`` processes, one per core). A notebook renders as soon as the tasks it
    reads are done, on the same workers. ``parameters`` go to every notebook (e.g.
    ``source_seeds`` and ``seeds`` of a replicate). ``build=False`` renders only, against
    what the store holds.
    """
    import torch

    from rtstudy.core.precision import ENV as PRECISION_ENV
    from rtstudy.core.store import READ_ONLY_ENV, Store
    from rtstudy.engine.execute import open_client, stage_times, submit_plan, wait
    from rtstudy.engine.plan import plan_report
    from rtstudy.profiles import get_profile

    check_choice("profile", profile, PROFILES)
    out = Path(out)
    only = only or profile_experiments(profile)
    order = notebook_order(notebooks_dir)
    if only:
        for e in only:
            check_choice("experiment", e, [e for e, _ in order])
        order = [(e, p) for e, p in order if e in only]
    if not order:
        raise ValueError(f"no notebooks found in {notebooks_dir}")
    gpu = torch.cuda.is_available() if gpu is None else gpu
    the_store = Store(store)
    start, busy0 = time.perf_counter(), _busy_cpu_seconds()
    plan = plan_report(get_profile(profile), [e for e, _ in order] if build else [], parameters, the_store)
    if build:
        log(plan.describe(bench_throughput()))
        check_requirements(plan_requirements(plan))  # every missing file at once, before anything runs
    staging = out.parent / f".{out.name}.staging"
    shutil.rmtree(staging, ignore_errors=True)
    (staging / "results").mkdir(parents=True)
    summary = {"profile": profile, **({"profile_overrides": env_overrides()} if env_overrides() else {}),
               "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "device": _device(),
               "precision": get_profile(profile).precision, "experiments": {}}
    env = {"RTSTUDY_STORE": str(the_store.root), "RTSTUDY_PROGRESS": "0", READ_ONLY_ENV: READ_ONLY_AT_RENDER,
           "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
           PRECISION_ENV: summary["precision"]}  # the notebooks ask for what the plan built
    params = {"profile": profile, "results_dir": "results", **(parameters or {})}
    package = package_digest()

    def fingerprint(exp: str, src: Path) -> str:
        folders = [the_store.folder(plan.tasks[k].desc.kind, plan.tasks[k].desc.key) for k in plan.groups[exp]]
        return notebook_fingerprint(src, params, folders, package)

    reused = {}
    if build and not rerender:
        previous = _previous_entries(out, profile)
        for exp, src in order:
            if exp in previous and set(plan.groups[exp]) <= plan.done \
                    and previous[exp].get("fingerprint") == fingerprint(exp, src):
                _copy_entry(out, staging, exp, previous[exp])
                reused[exp] = {**previous[exp], "reused": True}
    try:
        done = {}
        if plan.todo or len(reused) < len(order):  # else no cluster to start
            with open_client(scheduler, workers=workers, gpu=gpu, log=log) as client:
                futures = submit_plan(client, plan, the_store, gpu=gpu)
                stages = {k: plan.tasks[k].stage for k in futures}
                for exp, src in order:
                    if exp in reused:
                        continue
                    deps = [futures[k] for k in plan.groups.get(exp, ()) if k in futures]
                    futures[f"render-{exp}"] = client.submit(
                        render_notebook, exp, EXPERIMENTS[exp], str(src), str(staging.resolve()), params, env,
                        *deps,
                        key=f"render-{exp}-{os.getpid()}-{time.time_ns()}", retries=0,
                        priority=RENDER_PRIORITY)
                    stages[f"render-{exp}"] = "render"
                done = wait(futures, stages, describe=_task_label(plan), interval=interval)
        results = {k.removeprefix("render-"): v for k, v in done.items() if k.startswith("render-")}
        if build:
            for exp, src in order:
                if exp in results:
                    results[exp]["fingerprint"] = fingerprint(exp, src)
        summary["experiments"] = {exp: results.get(exp) or reused[exp] for exp, _ in order}
        summary["stages"] = stage_times({k: v for k, v in done.items() if not k.startswith("render-")})
        summary["stages"]["render"] = {"notebooks": len(results), "reused": len(reused), "worker_seconds": round(
            sum(r["wall_seconds"] for r in results.values()), 1)}
        for exp, r in results.items():
            log(f"[report] {exp}: {r['wall_seconds']:.0f} s — {r['finding'][:160]}")
        if reused:
            log(f"[report] kept, inputs unchanged: {', '.join(reused)} (--rerender renders them again)")
        if only:
            _carry_over(out, staging, summary, keep_out=set(only))
    except BaseException as exc:
        log(f"[report] FAILED; the previous report in {out} is left as it was. "
            f"Partial outputs: {staging}")
        cause = exc.__cause__
        if isinstance(cause, NotebookFailed):
            raise cause from None
        raise
    wall = time.perf_counter() - start
    summary["wall_seconds"] = round(wall, 1)  # of this run only
    if scheduler is None:
        summary["cpu_utilisation"] = round((_busy_cpu_seconds() - busy0) / (wall * (os.cpu_count() or 1)), 3)
    rep = _stored_replicate(out, profile) if parameters is None else None
    if rep is not None:  # a new main report: its verdicts against the stored replicate's
        summary["replication"] = replication(summary, rep)
    copy_plotly_js(staging)
    atomic_write_text(staging / "summary.json", summary_json(summary))
    write_index(staging, summary)
    _swap_in(staging, out, keep=[p for p in ("paper", "replicate", "cold", "bench.json", "README.md")
                                 if (out / p).exists()])
    log(f"[report] wrote {out}/index.html and summary.json in {summary['wall_seconds']:.0f} s")
    return summary


def summary_json(summary: dict) -> str:
    """``summary`` as JSON text: indented, but each result row on one line (the rows are
    most of it: indented key by key they tripled the file)."""
    rows = {exp: info["rows"] for exp, info in summary["experiments"].items() if "rows" in info}
    try:
        for exp in rows:
            summary["experiments"][exp]["rows"] = f"@rows {exp}@"
        text = json.dumps(summary, indent=1, ensure_ascii=False)
    finally:
        for exp, rs in rows.items():
            summary["experiments"][exp]["rows"] = rs
    for exp, rs in rows.items():
        lines = ",\n  ".join(json.dumps(r, ensure_ascii=False, separators=(",", ":")) for r in rs)
        text = text.replace(json.dumps(f"@rows {exp}@"), f"[\n  {lines}\n  ]" if rs else "[]", 1)
    return text


def _task_label(plan):
    def label(key: str) -> str:
        task = plan.tasks.get(key)
        return task.desc.label if task is not None else key.removeprefix("render-")
    return label


def _previous_entries(out: Path, profile: str) -> dict[str, dict]:
    """The experiments of the report in ``out`` (of this profile) whose files are all there."""
    try:
        old = json.loads((out / "summary.json").read_text())
    except (OSError, ValueError):
        return {}
    if old.get("profile") != profile:
        return {}
    return {exp: info for exp, info in old.get("experiments", {}).items()
            if all((out / name).is_file() for name in _entry_files(exp, info))}


def _entry_files(exp: str, info: dict) -> tuple[str, ...]:
    return info["notebook"], info["html"], f"results/{exp}.json"


def _copy_entry(out: Path, staging: Path, exp: str, info: dict) -> None:
    for name in _entry_files(exp, info):
        if (out / name).exists():
            shutil.copy2(out / name, staging / name)


def _carry_over(out: Path, staging: Path, summary: dict, keep_out: set[str]) -> None:
    """With ``--only``: keep the previous report's other experiments (same profile only)."""
    previous = _previous_entries(out, summary["profile"])
    merged = {}
    for exp in EXPERIMENTS:
        if exp in summary["experiments"]:
            merged[exp] = summary["experiments"][exp]
        elif exp in previous and exp not in keep_out:
            _copy_entry(out, staging, exp, previous[exp])
            merged[exp] = previous[exp]
    summary["experiments"] = merged


def _swap_in(staging: Path, out: Path, keep: list[str]) -> None:
    """Replace ``out`` by ``staging``, carrying over the files named in ``keep``."""
    for name in keep:
        src, dst = out / name, staging / name
        if src.is_dir():
            shutil.copytree(src, dst, dirs_exist_ok=True)
        else:
            shutil.copy2(src, dst)
    old = out.parent / f".{out.name}.previous"
    shutil.rmtree(old, ignore_errors=True)
    if out.exists():
        os.replace(out, old)
    os.replace(staging, out)
    shutil.rmtree(old, ignore_errors=True)


REPLICATE_SEED_OFFSET = 100  # the replicate's source and finetuning seeds: the profile's + 100


def replicate_parameters(profile: str) -> dict:
    """The replicate's notebook parameters: the profile's source and finetuning seeds + 100."""
    from rtstudy.profiles import get_profile

    P = get_profile(profile)
    return {"source_seeds": [s + REPLICATE_SEED_OFFSET for s in P.source_seeds],
            "gate_source_seeds": [s + REPLICATE_SEED_OFFSET for s in P.gate_seeds],
            "seeds": [s + REPLICATE_SEED_OFFSET for s in P.seeds]}


def replication(main: dict, rep: dict) -> dict:
    """How the verdicts of the report ``main`` replicate in the replicate report ``rep``
    (both summaries): counts, a sentence, the replicate's seeds, when and how fast it ran."""
    from rtstudy.experiments.answer import compare_replicates, contrasts_of
    from rtstudy.experiments.headlines import compare_headlines, estimate_record, report_headlines

    cells = compare_replicates(contrasts_of(main), contrasts_of(rep))
    rep_hs = report_headlines(rep)
    heads = compare_headlines(report_headlines(main), rep_hs)
    return {**cells, "sentence": f"{heads['sentence']} Secondary cells: {cells['sentence']}",
            "headlines": heads,
            "headline_estimates": {h.estimand.id: estimate_record(h) for h in rep_hs},
            **replicate_parameters(main["profile"]),
            "replicate_created": rep.get("created"), "wall_seconds": rep.get("wall_seconds")}


def _stored_replicate(out: Path, profile: str) -> dict | None:
    """The summary of ``out/replicate`` when it is a replicate of this profile."""
    try:
        rep = json.loads((out / "replicate" / "summary.json").read_text())
    except (OSError, ValueError):
        return None
    return rep if rep.get("profile") == profile else None


def replicate(profile: str = "default", out: Path | str = ROOT / "reports", *, store: str | None = None,
              log=print, **engine) -> dict:
    """Rerun every notebook with disjoint source and finetuning seeds into ``out/replicate``
    and record in ``out``'s summary and index how many verdicts agree, flip or move."""
    out = Path(out)
    main_file = out / "summary.json"
    if not main_file.exists():
        raise ValueError(f"no report in {out} to replicate: run the report first")
    main = json.loads(main_file.read_text())
    if main.get("profile") != profile:
        raise ValueError(f"the report in {out} is of profile {main.get('profile')!r}, not {profile!r}")
    rep = build_report(profile, out / "replicate", store=store, log=log,
                       parameters=replicate_parameters(profile), **engine)
    main["replication"] = replication(main, rep)
    atomic_write_text(main_file, summary_json(main))
    write_index(out, main)
    log(f"[report] replication: {main['replication']['sentence']}")
    return main["replication"]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--profile", default="default", choices=PROFILES)
    ap.add_argument("--only", default="", help="comma-separated experiment ids, e.g. E1,E2")
    ap.add_argument("--out", default=str(ROOT / "reports"), help="report folder")
    ap.add_argument("--store", default=None, help="artifact store (default $RTSTUDY_STORE or ~/.cache/rtstudy/artifacts)")
    ap.add_argument("--plan", action="store_true",
                    help="print the plan (tasks per stage, what is stored, estimated time) and run nothing")
    ap.add_argument("--scheduler", default=None, metavar="ADDRESS",
                    help="an existing Dask scheduler, e.g. tcp://head:8786 (its workers must share "
                         "the store and this folder); default: a LocalCluster on this machine")
    ap.add_argument("--workers", type=int, default=None,
                    help="LocalCluster worker processes (default: one per core, one per GPU)")
    ap.add_argument("--render-only", action="store_true",
                    help="build nothing: render the notebooks against what the store holds")
    ap.add_argument("--gpu", action=argparse.BooleanOptionalAction, default=None,
                    help="training tasks ask for the worker resource GPU (default: when this machine has one)")
    ap.add_argument("--rerender", action="store_true",
                    help="render every notebook, also those whose inputs are unchanged since the last report")
    ap.add_argument("--replicate", action="store_true",
                    help="rerun with disjoint source and finetuning seeds and record how the verdicts "
                         "of the existing report replicate (into <out>/replicate and the summary)")
    ap.add_argument("--precision", choices=("auto", "fp32", "bf16"), default=None,
                    help="what training computes in (default: $RTSTUDY_PRECISION, else auto: bf16 where "
                         "the processor computes it natively); recorded in every artifact's key")
    args = ap.parse_args(argv)
    if args.precision:  # the plan, the workers and the notebooks all read it from here
        os.environ["RTSTUDY_PRECISION"] = args.precision
    for stream in (sys.stdout, sys.stderr):  # a log file or a pipe gets every line as it happens
        stream.reconfigure(line_buffering=True)
    only = [e.strip().upper() for e in args.only.split(",") if e.strip()] or None
    if args.workers is not None and args.workers < 1:
        ap.error(f"--workers must be >= 1, got {args.workers}")
    if args.plan:
        from rtstudy.core.store import Store
        from rtstudy.engine.plan import plan_report
        from rtstudy.gpu_estimate import gpu_hours
        from rtstudy.profiles import get_profile
        from rtstudy.requirements import describe_requirements

        params = replicate_parameters(args.profile) if args.replicate else None
        P = get_profile(args.profile)
        plan = plan_report(P, only or profile_experiments(args.profile), params, Store(args.store))
        print(plan.describe(bench_throughput()))
        print("\n".join(gpu_hours(plan, P)))
        print(describe_requirements(plan_requirements(plan)))
        return 0
    engine = {"scheduler": args.scheduler, "workers": args.workers, "gpu": args.gpu}
    try:
        if args.replicate:
            replicate(args.profile, args.out, store=args.store, **engine)
            return 0
        build_report(args.profile, args.out, only, store=args.store, build=not args.render_only,
                     rerender=args.rerender, **engine)
    except NotebookFailed as exc:
        print(f"[report] error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
