"""The mask explorer (E10) as a standalone page, served by Voilà on localhost.

    python -m rtstudy.explorer.server [--port 8866] [--profile default] [--store DIR]

serves a small explorer notebook (written to a temporary folder: a title and
``MaskExplorer(...).widget``) at http://127.0.0.1:PORT/ and stops on Ctrl-C (or
SIGTERM). ``--notebook notebooks/10_anatomy.ipynb`` serves the full E10 notebook instead.

The page works offline: Voilà serves the widget manager and plotly's renderer from its
own labextensions, MathJax is off, and a template derived from Voilà's ``lab`` template
drops the two Font Awesome stylesheets that the stock template links from a CDN. The
``jupyterlab-jupytext`` extension (a JupyterLab-only plugin that fails to load in Voilà)
is not loaded. The server is bound to 127.0.0.1 only.

plotly's ~5 MB FigureWidget front end is served from the template's ``static`` folder and
preloaded while the notebook runs; the kernels are told where it is
(``RTSTUDY_PLOTLY_WIDGET_URL``), so each widget's state carries a few lines instead of the
bundle (see ``rtstudy.explorer.widgets._widget_esm``).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

from rtstudy.explorer.widgets import PLOTLY_WIDGET_URL_ENV, plotly_widget_bundle, plotly_widget_key
from rtstudy.profiles import PROFILES

TEMPLATE = "rtstudy-offline"
DENY_EXTENSIONS = ["jupyterlab-jupytext"]
_CDN_LINKS = (
    '<link rel="stylesheet" href="https://cdn.jsdelivr.net/npm/@fortawesome/fontawesome-free@^5/css/all.min.css" type="text/css" />',
    '<link rel="stylesheet" href="https://cdn.jsdelivr.net/npm/@fortawesome/fontawesome-free@^5/css/v4-shims.min.css" type="text/css" />',
)

_INDEX = """{%- extends 'lab/index.html.j2' -%}
{#- Voila's lab template without the Font Awesome stylesheets it links from a CDN (offline page) -#}
{%- block notebook_css -%}
{{ super() | replace(LINK0, "") | replace(LINK1, "") }}
{%- endblock notebook_css -%}
"""
_PRELOAD = """{#- plotly's FigureWidget front end, preloaded while the notebook runs (widgets._widget_esm) -#}
{%- block html_head_js -%}
{{ super() }}
<script>
globalThis[Symbol.for(WIDGET_KEY)] ??= import("{{ resources.base_url }}" + WIDGET_URL);
</script>
{%- endblock html_head_js -%}
"""


def widget_url() -> str:
    """Where the page serves plotly's FigureWidget front end, relative to Voilà's base URL
    (the template's ``static`` folder; the file name carries plotly's version)."""
    import plotly

    return f"voila/templates/{TEMPLATE}/static/plotly-widget-{plotly.__version__}.js"


def write_template(root: Path) -> Path:
    """Write the offline template under ``root/voila/templates`` (put ``root`` on JUPYTER_PATH),
    with a copy of plotly's FigureWidget front end in its ``static`` folder."""
    folder = root / "voila" / "templates" / TEMPLATE
    (folder / "static").mkdir(parents=True, exist_ok=True)
    url, bundle = widget_url(), plotly_widget_bundle()
    text = _INDEX.replace("LINK0", f"'{_CDN_LINKS[0]}'").replace("LINK1", f"'{_CDN_LINKS[1]}'")
    if bundle.is_file():
        shutil.copyfile(bundle, folder / "static" / Path(url).name)
        text += _PRELOAD.replace("WIDGET_KEY", json.dumps(plotly_widget_key())).replace("WIDGET_URL", json.dumps(url))
    (folder / "index.html.j2").write_text(text)
    (folder / "conf.json").write_text(json.dumps({"base_template": "lab"}))
    return folder


def write_notebook(path: Path, profile: str) -> Path:
    """The page's notebook: a short intro and the explorer."""
    import nbformat

    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; allowed: {', '.join(PROFILES)}")
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"display_name": "Python 3", "language": "python", "name": "python3"}
    nb.cells = [
        nbformat.v4.new_markdown_cell(
            "## Robust vs natural lottery tickets: the mask explorer\n"
            "Pick a source model, a pruning scheme, a sparsity pattern, a sparsity and a layer. "
            "Left: the ticket drawn from the **natural** model; middle: the ticket drawn from the "
            "chosen (**robust**) model; right: where they disagree. Below: per-layer sparsity, "
            "per-layer overlap against two random masks, filter survival and, where the study has "
            "them, downstream accuracies."),
        nbformat.v4.new_code_cell(
            "import torch\n"
            "torch.set_num_threads(1)\n"
            "from rtstudy.explorer import MaskExplorer\n"
            f"explorer = MaskExplorer(profile={profile!r})\n"
            "explorer.widget"),
    ]
    nbformat.write(nb, path)
    return path


def voila_argv(notebook: Path, port: int) -> list[str]:
    return [
        str(notebook), "--no-browser", "--Voila.ip=127.0.0.1", f"--port={port}",
        f"--template={TEMPLATE}", "--theme=light", "--show_tracebacks=True",
        *(f"--VoilaConfiguration.extension_denylist={name}" for name in DENY_EXTENSIONS),
    ]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--port", type=int, default=8866, help="port on 127.0.0.1 (default 8866)")
    ap.add_argument("--profile", default="default", choices=PROFILES,
                    help="which source family to show (default: default; the generated page only)")
    ap.add_argument("--store", default=None,
                    help="artifact store (default $RTSTUDY_STORE or ~/.cache/rtstudy/artifacts)")
    ap.add_argument("--notebook", default=None,
                    help="serve this notebook instead of the small explorer page (e.g. notebooks/10_anatomy.ipynb)")
    args = ap.parse_args(argv)
    if not 0 < args.port < 65536:
        ap.error(f"--port must be in 1..65535, got {args.port}")
    if args.store:
        os.environ["RTSTUDY_STORE"] = str(Path(args.store).expanduser().resolve())
    os.environ.setdefault("RTSTUDY_PROGRESS", "0")
    tmp = Path(tempfile.mkdtemp(prefix="rtstudy-explorer-"))
    try:
        folder = write_template(tmp)
        if (folder / "static" / Path(widget_url()).name).is_file():  # the kernels' FigureWidgets load it there
            os.environ[PLOTLY_WIDGET_URL_ENV] = widget_url()
        os.environ["JUPYTER_PATH"] = os.pathsep.join(p for p in (str(tmp), os.environ.get("JUPYTER_PATH")) if p)
        if args.notebook:
            notebook = Path(args.notebook).expanduser().resolve()
            if not notebook.is_file():
                ap.error(f"--notebook {args.notebook} does not exist")
        else:
            notebook = write_notebook(tmp / "mask_explorer.ipynb", args.profile)
        from voila.app import Voila

        print(f"[explorer] serving {notebook.name} on http://127.0.0.1:{args.port}/ "
              f"(store: {os.environ.get('RTSTUDY_STORE', '~/.cache/rtstudy/artifacts')}); Ctrl-C stops",
              flush=True)
        Voila.launch_instance(argv=voila_argv(notebook, args.port))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
