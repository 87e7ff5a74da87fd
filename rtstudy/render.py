"""Render one notebook: execute it with papermill, export offline HTML (plotly.js beside it).

Light on imports on purpose: a Dask worker imports this module to render a notebook.
"""

from __future__ import annotations

import hashlib
import html
import json
import os
import time
from collections.abc import Iterable
from pathlib import Path

from rtstudy.core.store import atomic_write_text


class NotebookFailed(RuntimeError):
    """A notebook raised: names the notebook, the cell and the error."""


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


def run_notebook(src: Path, dst: Path, parameters: dict, cwd: Path | None = None) -> float:
    """Execute one notebook with papermill (in ``cwd``, default its own folder); return
    wall seconds or raise NotebookFailed. The kernel inherits this process's environment
    (``RTSTUDY_STORE`` etc.)."""
    import papermill as pm

    start = time.perf_counter()
    try:
        pm.execute_notebook(str(src), str(dst), parameters=parameters, kernel_name="python3",
                            cwd=str(cwd or src.parent), progress_bar=False, log_output=False)
    except pm.PapermillExecutionError as exc:
        raise NotebookFailed(f"{src.name} failed at cell {exc.cell_index} "
                             f"(execution count {exc.exec_count}): {exc.ename}: {exc.evalue}") from None
    except Exception as exc:
        where = _failed_cell(dst) if dst.exists() else "before any cell ran"
        raise NotebookFailed(f"{src.name} failed, {where}: {exc}") from None
    _strip_paths(dst)
    return time.perf_counter() - start


def _strip_paths(nb_path: Path) -> None:
    """papermill records where the notebook came from and went: keep the file names only."""
    import nbformat

    nb = nbformat.read(nb_path, as_version=4)
    meta = nb.metadata.get("papermill", {})
    for key in ("input_path", "output_path"):
        if meta.get(key):
            meta[key] = Path(meta[key]).name
    atomic_write_text(nb_path, nbformat.writes(nb))


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


def render_notebook(exp: str, title: str, src: str, staging: str, parameters: dict, env: dict,
                    *after) -> dict:
    """A Dask task: execute one notebook into ``staging`` with ``env`` (the report sets
    ``RTSTUDY_READ_ONLY``: no training), export its HTML; its summary entry. ``after``:
    the plan tasks it reads, unused."""
    src_path, out = Path(src), Path(staging)
    dst = out / src_path.name
    saved = dict(os.environ)
    os.environ.update(env)  # the kernel inherits it; restored for the worker's next task
    try:
        seconds = run_notebook(src_path, dst, parameters, cwd=out)
    finally:
        os.environ.clear()
        os.environ.update(saved)
    result_file = out / "results" / f"{exp}.json"
    if not result_file.exists():
        raise NotebookFailed(f"{src_path.name} ran but recorded no results (rtstudy.results.record)")
    result = json.loads(result_file.read_text())
    html_name = src_path.with_suffix(".html").name
    to_html(dst, out / html_name, f"{exp} — {title}")
    return {"status": "ok", "title": title, "notebook": src_path.name, "html": html_name,
            "wall_seconds": round(seconds, 1), "parameters": result["parameters"],
            "finding": result["finding"], "rows": result["rows"],
            "contrasts": result.get("contrasts", [])}


PACKAGE = Path(__file__).resolve().parent
LIBRARIES = ("torch", "numpy", "scipy", "statsmodels", "plotly", "papermill", "nbconvert", "transformers",
             "scikit-image")


def package_digest() -> str:
    """Every source file of the rtstudy package and the versions of the libraries the notebooks use."""
    from importlib import metadata

    h = hashlib.sha256()
    for path in sorted(PACKAGE.rglob("*")):
        if path.suffix in (".py", ".js") and "__pycache__" not in path.parts:
            h.update(str(path.relative_to(PACKAGE)).encode() + b"\0" + path.read_bytes())
    for lib in LIBRARIES:
        try:
            h.update(f"{lib}={metadata.version(lib)}".encode())
        except metadata.PackageNotFoundError:
            h.update(f"{lib}=none".encode())
    return h.hexdigest()


def notebook_fingerprint(src: str | Path, parameters: dict, artifacts: Iterable[Path],
                         package: str | None = None) -> str:
    """What a rendered notebook depends on: its source, its parameters, the package's code
    and library versions (``package``: ``package_digest()``, computed once per report), and
    the stored artifacts it reads (each artifact folder's ``meta.json``: path, size, mtime).
    Equal fingerprints render equal notebooks, so the report reuses the previous render."""
    h = hashlib.sha256()
    h.update(Path(src).read_bytes())
    h.update(json.dumps(parameters, sort_keys=True, default=str).encode())
    h.update((package or package_digest()).encode())
    for folder in sorted(str(a) for a in artifacts):
        st = (Path(folder) / "meta.json").stat()
        h.update(f"{folder}:{st.st_size}:{st.st_mtime_ns}".encode())
    return h.hexdigest()[:32]
