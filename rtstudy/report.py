"""Regenerate the report: run every notebook through papermill, then write HTML and a summary.

    python -m rtstudy.report [--profile smoke|default|paper] [--only E1,E2] [--out reports]

Notebooks run in order into a staging folder. Only when all succeed does the staging
folder replace the report (the old one is kept until then), so a failing notebook
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
from rtstudy.experiments.registry import TITLES as EXPERIMENTS  # {id: title}, E0 ... E10
from rtstudy.profiles import PROFILES

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"


class NotebookFailed(RuntimeError):
    """A notebook raised: names the notebook, the cell and the error."""


def notebook_order(notebooks_dir: Path = NOTEBOOKS) -> list[tuple[str, Path]]:
    """``[(experiment id, path)]`` in E0, E1, ..., E10 order, from the file names."""
    found = {}
    for path in notebooks_dir.glob("*.ipynb"):
        prefix = path.stem.split("_")[0]  # "00_quickstart" -> E0, "10_anatomy" -> E10
        exp = f"E{int(prefix)}" if prefix.isdigit() else prefix.upper()
        if exp in EXPERIMENTS:
            found[exp] = path
    return [(e, found[e]) for e in EXPERIMENTS if e in found]


def _failed_cell(nb_path: Path) -> str:
    """Index and first line of the first cell that holds an error output."""
    import nbformat

    nb = nbformat.read(nb_path, as_version=4)
    for i, cell in enumerate(nb.cells):
        for out in cell.get("outputs", []):
            if out.get("output_type") == "error":
                first = cell.source.strip().splitlines()[0] if cell.source.strip() else ""
                return f"cell {i} ({first[:80]!r}): {out.get('ename')}: {out.get('evalue')}"
    return "no failing cell recorded"


def run_notebook(src: Path, dst: Path, parameters: dict) -> float:
    """Execute one notebook with papermill; return wall seconds or raise NotebookFailed.

    The kernel inherits this process's environment (``RTSTUDY_STORE`` etc.).
    """
    import papermill as pm

    start = time.perf_counter()
    try:
        pm.execute_notebook(str(src), str(dst), parameters=parameters, kernel_name="python3",
                            cwd=str(src.parent), progress_bar=False, log_output=False)
    except pm.PapermillExecutionError as exc:
        raise NotebookFailed(f"{src.name} failed at cell {exc.cell_index} "
                             f"(execution count {exc.exec_count}): {exc.ename}: {exc.evalue}") from None
    except Exception as exc:
        where = _failed_cell(dst) if dst.exists() else "before any cell ran"
        raise NotebookFailed(f"{src.name} failed, {where}: {exc}") from None
    return time.perf_counter() - start


def _pretrain_one(desc) -> str:
    """Worker: pretrain one source model (one torch thread)."""
    import torch

    from rtstudy.core.pipeline import pretrain

    torch.set_num_threads(1)
    source = pretrain(desc, progress=False)
    return f"{source.label}: test acc {source.artifact.metrics['test_acc']:.4f}" + (
        f", robust acc {source.artifact.metrics['robust_acc']:.4f}" if "robust_acc" in source.artifact.metrics else "")


def prefetch_sources(profile: str, jobs: int, log=print, seeds=None) -> None:
    """Pretrain every source model of the profile up front, ``jobs`` at a time.

    Small models train faster as several one-thread processes than as one process with
    several threads; the store's file lock keeps workers from computing one model twice.
    """
    import multiprocessing as mp

    from rtstudy.profiles import get_profile

    specs = get_profile(profile).source_models(tuple(seeds) if seeds is not None else None)
    cost = {"none": 1.0, "fgsm_rs": 1.8, "pgd": 3.3}  # longest first balances the workers
    specs.sort(key=lambda s: -cost[s.attack.kind])
    if jobs <= 1:
        for spec in specs:
            log(f"[report] source {_pretrain_one(spec)}")
        return
    with mp.get_context("spawn").Pool(jobs) as pool:
        for line in pool.imap_unordered(_pretrain_one, specs):
            log(f"[report] source {line}")


def to_html(nb_path: Path, html_path: Path, title: str) -> None:
    """Export an executed notebook to HTML that loads plotly.js from ``plotly.min.js`` beside it."""
    import nbformat
    from nbconvert import HTMLExporter

    # no MathJax/require.js from a CDN (mermaid is only fetched for mermaid diagrams: none here)
    exporter = HTMLExporter(template_name="lab", mathjax_url="", require_js_url="", mermaid_js_url="")
    body, _ = exporter.from_notebook_node(nbformat.read(nb_path, as_version=4))
    head = '<script src="plotly.min.js" charset="utf-8"></script>'
    body = body.replace("<head>", f"<head>\n{head}", 1).replace(
        "<title>Notebook</title>", f"<title>{html.escape(title)}</title>")
    body = _strip_remote_scripts(body)
    atomic_write_text(html_path, body)


def _strip_remote_scripts(page: str) -> str:
    """Drop <script src="https://..."> tags (MathJax, require.js from a CDN): offline pages."""
    import re

    return re.sub(r'<script[^>]+src="https?://[^"]+"[^>]*>\s*</script>', "", page)


def copy_plotly_js(dst_dir: Path) -> None:
    import plotly

    src = Path(plotly.__file__).parent / "package_data" / "plotly.min.js"
    shutil.copyfile(src, dst_dir / "plotly.min.js")


def _answer_html(summary: dict) -> str:
    """The answer first: the paragraph and the forest plot of every recorded contrast."""
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
    return f"<h2>The answer</h2><p>{text}</p>{rep_html}{div}"


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
li{{margin:0.8rem 0}} span{{color:#333}}</style></head><body>
<h1>Robust tickets transfer better? — rtstudy report</h1>
<p>Profile <b>{html.escape(summary["profile"])}</b>, generated {html.escape(summary["created"])},
total wall time {summary["wall_seconds"]:.0f} s on {html.escape(summary["device"])}.
Machine-readable results: <a href="summary.json">summary.json</a>.</p>
{_answer_html(summary)}
<h2>The experiments</h2>
<ol>{"".join(items)}</ol></body></html>"""
    atomic_write_text(out / "index.html", page)


def _device() -> str:
    import torch

    if torch.cuda.is_available():
        return torch.cuda.get_device_name(0)
    return f"CPU ({os.cpu_count()} cores)"


def build_report(profile: str = "default", out: Path | str = ROOT / "reports",
                 only: list[str] | None = None, notebooks_dir: Path = NOTEBOOKS,
                 store: str | None = None, jobs: int = 1, prefetch: bool = False, log=print,
                 parameters: dict | None = None) -> dict:
    """Run the notebooks into ``out`` and return the summary (see module doc).

    ``jobs`` notebooks run at once (each kernel with ``cpu_count // jobs`` threads);
    ``prefetch`` pretrains every source model first, ``jobs`` at a time; ``parameters``
    go to every notebook (e.g. ``source_seeds`` and ``seeds`` of a replicate).
    """
    check_choice("profile", profile, PROFILES)
    out = Path(out)
    order = notebook_order(notebooks_dir)
    if only:
        for e in only:
            check_choice("experiment", e, [e for e, _ in order])
        order = [(e, p) for e, p in order if e in only]
    if not order:
        raise ValueError(f"no notebooks found in {notebooks_dir}")
    staging = out.parent / f".{out.name}.staging"
    shutil.rmtree(staging, ignore_errors=True)
    (staging / "results").mkdir(parents=True)
    summary = {"profile": profile, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "device": _device(),
               "experiments": {}}
    start = time.perf_counter()
    env = {"RTSTUDY_PROGRESS": "0"}
    if store:
        env["RTSTUDY_STORE"] = str(Path(store).resolve())
    if jobs > 1 and "OMP_NUM_THREADS" not in os.environ:
        env["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // jobs))
    old_env = dict(os.environ)
    os.environ.update(env)  # kernels and workers inherit it

    def one(exp: str, src: Path) -> dict:
        log(f"[report] {exp}: running {src.name} (profile {profile}) ...")
        dst = staging / src.name
        params = {"profile": profile, "results_dir": str((staging / "results").resolve()),
                  **(parameters or {})}
        seconds = run_notebook(src, dst, params)
        result_file = staging / "results" / f"{exp}.json"
        if not result_file.exists():
            raise NotebookFailed(f"{src.name} ran but recorded no results (rtstudy.results.record)")
        result = json.loads(result_file.read_text())
        html_name = src.with_suffix(".html").name
        to_html(dst, staging / html_name, f"{exp} — {EXPERIMENTS[exp]}")
        log(f"[report] {exp}: done in {seconds:.0f} s — {result['finding'][:160]}")
        return {"status": "ok", "title": EXPERIMENTS[exp], "notebook": src.name, "html": html_name,
                "wall_seconds": round(seconds, 1), "parameters": result["parameters"],
                "finding": result["finding"], "rows": result["rows"],
                "contrasts": result.get("contrasts", [])}

    try:
        if prefetch:
            t0 = time.perf_counter()
            prefetch_sources(profile, jobs, log, seeds=(parameters or {}).get("source_seeds"))
            summary["prefetch_seconds"] = round(time.perf_counter() - t0, 1)
        if jobs <= 1:
            results = {exp: one(exp, src) for exp, src in order}
        else:
            from concurrent.futures import ThreadPoolExecutor

            with ThreadPoolExecutor(jobs) as pool:  # each notebook runs in its own kernel process
                futures = {exp: pool.submit(one, exp, src) for exp, src in order}
                results = {exp: f.result() for exp, f in futures.items()}
        summary["experiments"] = {exp: results[exp] for exp, _ in order}
        if only:
            _carry_over(out, staging, summary, keep_out=set(only))
    except BaseException:
        log(f"[report] FAILED; the previous report in {out} is left as it was. "
            f"Partial outputs: {staging}")
        raise
    finally:
        os.environ.clear()
        os.environ.update(old_env)
    summary["wall_seconds"] = round(time.perf_counter() - start, 1)  # of this run only
    copy_plotly_js(staging)
    atomic_write_text(staging / "summary.json", json.dumps(summary, indent=1))
    write_index(staging, summary)
    _swap_in(staging, out, keep=[p for p in ("paper", "replicate", "bench.json", "README.md")
                                 if (out / p).exists()])
    log(f"[report] wrote {out}/index.html and summary.json in {summary['wall_seconds']:.0f} s")
    return summary


def _carry_over(out: Path, staging: Path, summary: dict, keep_out: set[str]) -> None:
    """With ``--only``: keep the previous report's other experiments (same profile only)."""
    old_file = out / "summary.json"
    if not old_file.exists():
        return
    old = json.loads(old_file.read_text())
    if old.get("profile") != summary["profile"]:
        return
    merged = {}
    for exp in EXPERIMENTS:
        if exp in summary["experiments"]:
            merged[exp] = summary["experiments"][exp]
        elif exp in old["experiments"] and exp not in keep_out:
            info = old["experiments"][exp]
            for name in (info["notebook"], info["html"], f"results/{exp}.json"):
                if (out / name).exists():
                    shutil.copy2(out / name, staging / name)
            merged[exp] = info
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


def replicate(profile: str = "default", out: Path | str = ROOT / "reports", *, store: str | None = None,
              jobs: int = 1, log=print) -> dict:
    """Rerun every notebook with disjoint source and finetuning seeds into ``out/replicate``
    and record in ``out``'s summary and index how many verdicts agree, flip or move."""
    from rtstudy.experiments.answer import compare_replicates, contrasts_of
    from rtstudy.profiles import get_profile

    out = Path(out)
    main_file = out / "summary.json"
    if not main_file.exists():
        raise ValueError(f"no report in {out} to replicate: run the report first")
    main = json.loads(main_file.read_text())
    if main.get("profile") != profile:
        raise ValueError(f"the report in {out} is of profile {main.get('profile')!r}, not {profile!r}")
    P = get_profile(profile)
    params = {"source_seeds": [s + REPLICATE_SEED_OFFSET for s in P.source_seeds],
              "seeds": [s + REPLICATE_SEED_OFFSET for s in P.seeds]}
    t0 = time.perf_counter()
    rep = build_report(profile, out / "replicate", store=store, jobs=jobs, prefetch=True, log=log,
                       parameters=params)
    main["replication"] = {**compare_replicates(contrasts_of(main), contrasts_of(rep)), **params,
                           "wall_seconds": round(time.perf_counter() - t0, 1)}
    atomic_write_text(main_file, json.dumps(main, indent=1))
    write_index(out, main)
    log(f"[report] replication: {main['replication']['sentence']}")
    return main["replication"]


def _default_jobs() -> int:
    import torch

    return 1 if torch.cuda.is_available() else min(2, os.cpu_count() or 1)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--profile", default="default", choices=PROFILES)
    ap.add_argument("--only", default="", help="comma-separated experiment ids, e.g. E1,E2")
    ap.add_argument("--out", default=str(ROOT / "reports"), help="report folder")
    ap.add_argument("--store", default=None, help="artifact store (default $RTSTUDY_STORE or ~/.cache/rtstudy/artifacts)")
    ap.add_argument("--jobs", type=int, default=None,
                    help="notebooks (and source pretrainings) at once; default: 2 on a CPU, 1 on a GPU")
    ap.add_argument("--no-prefetch", action="store_true", help="do not pretrain the source models up front")
    ap.add_argument("--replicate", action="store_true",
                    help="rerun with disjoint source and finetuning seeds and record how the verdicts "
                         "of the existing report replicate (into <out>/replicate and the summary)")
    args = ap.parse_args(argv)
    only = [e.strip().upper() for e in args.only.split(",") if e.strip()] or None
    jobs = args.jobs if args.jobs is not None else _default_jobs()
    if jobs < 1:
        ap.error(f"--jobs must be >= 1, got {jobs}")
    try:
        if args.replicate:
            replicate(args.profile, args.out, store=args.store, jobs=jobs)
            return 0
        build_report(args.profile, args.out, only, store=args.store, jobs=jobs,
                     prefetch=not args.no_prefetch and not only)
    except NotebookFailed as exc:
        print(f"[report] error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
