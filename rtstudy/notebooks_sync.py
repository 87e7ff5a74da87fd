"""Keep every notebook in step with its plain-text twin (jupytext percent format).

    python -m rtstudy.notebooks_sync --check   # exit 1 and name the pairs out of step
    python -m rtstudy.notebooks_sync           # rewrite each .ipynb from its .py twin

The ``.py`` file is the one to edit and review; the ``.ipynb`` (no outputs) is what
papermill and JupyterLab open. Both carry the ``python3`` kernelspec.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
KERNELSPEC = {"display_name": "Python 3", "language": "python", "name": "python3"}


def _cells(nb) -> list[tuple[str, str]]:
    return [(c.cell_type, c.source.strip()) for c in nb.cells]


def out_of_step(notebooks_dir: Path = NOTEBOOKS) -> list[str]:
    """Names of the pairs whose cells differ, whose twin is missing, or lack a kernelspec."""
    import jupytext

    problems = []
    for py in sorted(notebooks_dir.glob("*.py")):
        ipynb = py.with_suffix(".ipynb")
        if not ipynb.exists():
            problems.append(f"{ipynb.name} is missing (twin of {py.name})")
            continue
        a, b = jupytext.read(py), jupytext.read(ipynb)
        if _cells(a) != _cells(b):
            problems.append(f"{py.name} and {ipynb.name} differ")
        if b.metadata.get("kernelspec", {}).get("name") != "python3":
            problems.append(f"{ipynb.name} has no python3 kernelspec (papermill needs one)")
        if not any("parameters" in c.metadata.get("tags", []) for c in b.cells):
            problems.append(f"{ipynb.name} has no cell tagged 'parameters' (papermill needs one)")
    for ipynb in sorted(notebooks_dir.glob("*.ipynb")):
        if not ipynb.with_suffix(".py").exists():
            problems.append(f"{ipynb.name} has no .py twin")
    return problems


def sync(notebooks_dir: Path = NOTEBOOKS) -> list[Path]:
    """Write each ``.ipynb`` that differs from its ``.py`` twin (outputs dropped, kernelspec set)."""
    import jupytext

    written = []
    for py in sorted(notebooks_dir.glob("*.py")):
        nb = jupytext.read(py)
        ipynb = py.with_suffix(".ipynb")
        if ipynb.exists() and _cells(jupytext.read(ipynb)) == _cells(nb):
            continue  # in step: leave it (and its cell ids) alone
        nb.metadata["kernelspec"] = dict(KERNELSPEC)
        nb.metadata.setdefault("language_info", {"name": "python"})
        nb.metadata.setdefault("jupytext", {})["formats"] = "ipynb,py:percent"
        jupytext.write(nb, py.with_suffix(".ipynb"))
        written.append(py.with_suffix(".ipynb"))
    return written


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--check", action="store_true", help="only check; exit 1 when out of step")
    args = ap.parse_args(argv)
    if args.check:
        problems = out_of_step()
        for p in problems:
            print(f"out of step: {p}  (fix: python -m rtstudy.notebooks_sync)")
        print(f"{len(problems)} notebook pair(s) out of step" if problems else "notebooks in step")
        return 1 if problems else 0
    for path in sync():
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
