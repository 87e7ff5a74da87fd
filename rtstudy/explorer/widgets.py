"""The ipywidgets controller ``MaskExplorer`` and the FigureWidget class its figures use.

Figures are ``go.FigureWidget``s when plotly's widget backend (``anywidget``) is importable:
a control change reaches each plot as one in-place update. Without it they are plain
``go.Figure``s, each shown in an ``ipywidgets.Output`` whose content is replaced after a change.
"""

from __future__ import annotations

import functools
import html
import importlib.resources
import json
import os
import re
import statistics
import time
from pathlib import Path
from typing import Any

import plotly.graph_objects as go

from rtstudy.core.checks import check_choice
from rtstudy.core.schemes import get_scheme
from rtstudy.core.store import Store
from rtstudy.explorer.analytics import short_name
from rtstudy.explorer.data import PATTERNS, STORED_ONLY_SCHEMES, ExplorerData, ExplorerState, View
from rtstudy.explorer.figures import ExplorerFigures
from rtstudy.profiles import Profile

# Where the page serves plotly's FigureWidget front end (a URL relative to the page); set by
# ``rtstudy.explorer.server`` for its Voilà kernels. Unset (JupyterLab): the module travels
# inside each widget's state, as with plotly's own FigureWidget.
PLOTLY_WIDGET_URL_ENV = "RTSTUDY_PLOTLY_WIDGET_URL"


@functools.lru_cache(maxsize=1)
def figure_widgets_available() -> bool:
    """Whether ``go.FigureWidget`` works here (plotly >= 6 needs the ``anywidget`` package).

    Checked without making a widget: a throw-away FigureWidget would still be recorded in
    the notebook's widget state (5 MB of plotly's front end each).
    """
    import importlib.util

    return importlib.util.find_spec("anywidget") is not None


def plotly_widget_bundle() -> Path:
    """plotly's FigureWidget front end (an ES module of ~5 MB with plotly.js inside)."""
    import plotly

    return Path(plotly.__file__).parent / "package_data" / "widgetbundle.js"


def plotly_widget_key() -> str:
    """Name of the page-wide slot (``Symbol.for(key)``) holding the loaded front-end module."""
    import plotly

    return f"rtstudy.plotly-widget/{plotly.__version__}"


@functools.cache
def _widget_esm(url: str | None) -> str | None:
    """The ``_esm`` of the explorer's FigureWidgets (``frontend.js``): it loads plotly's widget
    front end once per page, from ``url`` or else from the source it carries (``None``:
    plotly's bundle is not there).

    anywidget gives up on a widget whose module is not ready within 2 s, and plotly's bundle
    can take that long to evaluate: evaluated once, every widget waits for the same one.
    """
    if url:
        source = None
    else:
        bundle = plotly_widget_bundle()
        if not bundle.is_file():
            return None
        source = bundle.read_text()
    values = {"KEY": plotly_widget_key(), "URL": url or None, "SOURCE": source}
    template = importlib.resources.files("rtstudy.explorer").joinpath("frontend.js")
    text = template.read_text(encoding="utf-8")
    return re.sub(r"__(KEY|URL|SOURCE)__", lambda m: json.dumps(values[m[1]]), text)


@functools.cache
def _figure_widget_class(base: type, url: str | None = None) -> type:
    """``base`` (``go.FigureWidget``) fixed for pages that build their widgets late (Voilà).

    * ``get_state`` hands out the figure's current state: plotly's FigureWidget hands out the
      figure as constructed, and later changes are one-off messages that only front ends
      already connected receive. A change still reaches a live plot as one in-place update.
    * Its front end is loaded once per page (``_widget_esm``), not once per widget.
    * Its plot is drawn once its element is displayed, with plotly's ``responsive`` config,
      so it fills its box.
    """
    esm = _widget_esm(url)

    class CurrentFigureWidget(base):
        if esm is not None:
            _esm = esm

        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self._config = {**self._config, "responsive": True}  # follow the page's width

        def get_state(self, key=None, drop_defaults=False):
            state = super().get_state(key, drop_defaults=drop_defaults)
            if getattr(self, "_layout_obj", None) is None:  # ipywidgets opens the comm before plotly's set-up
                return state
            current = {"_widget_data": self._data, "_widget_layout": self._layout_obj._props}
            for name in current.keys() & state.keys():
                to_json = self.trait_metadata(name, "to_json", self._trait_to_json)
                state[name] = to_json(current[name], self)
            return state

    return CurrentFigureWidget


def describe_environment() -> dict:
    """What renders the figures here (for the notebook's footer and for debugging)."""
    import plotly

    return {"plotly": plotly.__version__, "figure_widgets": figure_widgets_available(),
            "note": "" if figure_widgets_available() else
            "plotly's FigureWidget needs the 'anywidget' package (plotly >= 6), which is not "
            "installed: figures are re-rendered through an ipywidgets.Output instead."}


class _FigureView:
    """A figure on the page: the FigureWidget itself, or (without anywidget) an Output
    whose content is replaced by the figure's plotly JSON after each update."""

    def __init__(self, fig: go.Figure, height: int, width: str = "100%"):
        import ipywidgets as widgets

        self.fig = fig
        self._shown: dict | None = None
        self.is_widget = isinstance(fig, go.FigureWidget)
        if self.is_widget:
            self.output = None
            self.widget = widgets.VBox([fig], layout=widgets.Layout(width=width))
        else:
            self.output = widgets.Output(layout=widgets.Layout(width=width, min_height=f"{height + 10}px"))
            self.widget = self.output

    def render(self) -> bool:
        """Show the figure's current state (Output only, and only when it changed)."""
        if self.output is None:
            return False
        spec = self.fig.to_plotly_json()
        if spec == self._shown:
            return False
        self._shown = spec
        bundle = {"application/vnd.plotly.v1+json": spec,
                  "text/plain": f"<plotly figure: {self.fig.layout.title.text or ''}>"}
        self.output.outputs = ({"output_type": "display_data", "data": bundle, "metadata": {}},)
        return True


def _set_options(widget, options: list, keep=None, fallback=None) -> None:
    """Replace a selection widget's options only when they change, keeping its value if allowed."""
    opts = [o if isinstance(o, tuple) else (str(o), o) for o in options]
    if list(widget.options) != opts:
        widget.options = opts
    values = [v for _, v in opts]
    for candidate in (keep, fallback):
        if candidate in values:
            if widget.value != candidate:
                widget.value = candidate
            return
    if isinstance(keep, float) and values and all(isinstance(x, float) for x in values):
        nearest = min(values, key=lambda x: abs(x - keep))
        widget.value = nearest
        return
    if values and widget.value not in values:
        widget.value = values[0]


def _layer_label(entry: str, shape: tuple) -> str:
    return f"{short_name(entry)} [{'×'.join(map(str, shape))}]"


def _header_html(d: ExplorerData) -> str:
    parts = ['<div style="font-size:15px"><b>Mask explorer</b> — natural vs robust tickets '
             f'(store <code>{html.escape(str(d.store.root))}</code>, profile <b>{d.profile.name}</b>'
             f'{", " + str(len(d.sources)) + " source models" if d.sources else ""})</div>']
    if d.note:
        parts.append(f'<div style="color:#8a6d00">{html.escape(d.note.strip())}</div>')
    return "".join(parts)


def _status_html(v: View) -> str:
    how = {True: "stored ticket", False: "drawn now by OMP, which needs no data"}
    kinds = [("dense" if s.ticket_key == "dense" else how[s.stored]) for s in (v.natural, v.robust)]
    if get_scheme(v.state.scheme).redrawn_per_seed:
        kinds = [k.replace("by OMP, which needs no data", "at random, seed 0") for k in kinds]
    return (f'<div style="font-size:13px">IoU of kept weights <b>{v.overall_iou:.3f}</b> '
            'over all layers '
            f'(two random masks of these sparsities: {v.overall_iou_random:.3f}); '
            f'{v.hamming:.1%} of weights differ. Left: {html.escape(v.natural.label)} '
            f'({kinds[0]}); right: {html.escape(v.robust.label)} ({kinds[1]}).</div>')


class MaskExplorer:
    """The E10 explorer: ``display(MaskExplorer().widget)`` in a notebook or a Voila page.

    ``controls``: ``source``, ``scheme``, ``pattern``, ``layer``, ``target`` (Dropdowns) and
    ``sparsity`` (SelectionSlider). ``figures``: ``masks``, ``sparsity``, ``iou``,
    ``channels``, ``transfer`` (FigureWidgets, or plain Figures without anywidget).
    ``set(...)`` changes several controls and redraws once; ``view`` is what the figures
    show now; ``timings`` holds the seconds of each update (Python side).
    With an empty store, ``widget`` is only the message (``message``), and ``controls`` and
    ``figures`` are empty.
    """

    def __init__(self, store: Store | None = None, profile: str | Profile = "default", *,
                 figure_widgets: bool | None = None, data: ExplorerData | None = None, **state):
        import ipywidgets as widgets

        self.data = data if data is not None else ExplorerData(store, profile)
        self.use_figure_widgets = figure_widgets_available() if figure_widgets is None else figure_widgets
        self.controls: dict[str, Any] = {}
        self.figures: dict[str, go.Figure] = {}
        self.views: dict[str, _FigureView] = {}
        self.timings: list[float] = []
        self.view: View | None = None
        self._hold = False
        self.header = widgets.HTML()
        self.status = widgets.HTML()
        self.message = self.data.message
        if not self.data.sources:
            self.header.value = _header_html(self.data)
            self.status.value = f'<div class="rt-empty" style="color:#a00"><b>{html.escape(self.message)}</b></div>'
            self.widget = widgets.VBox([self.header, self.status])
            return
        self._build_controls()
        figure_class = None
        if self.use_figure_widgets:
            url = os.environ.get(PLOTLY_WIDGET_URL_ENV) or None
            figure_class = _figure_widget_class(go.FigureWidget, url)
        self.plots = ExplorerFigures(figure_class)
        self.figures = self.plots.figures
        self.views = {k: _FigureView(f, *self.plots.sizes[k]) for k, f in self.figures.items()}
        self.header.value = _header_html(self.data)
        rows = [
            widgets.HBox([self.controls["source"], self.controls["scheme"], self.controls["pattern"]]),
            widgets.HBox([self.controls["sparsity"], self.controls["layer"], self.controls["target"]]),
        ]
        v = self.views
        self.widget = widgets.VBox([
            self.header, *rows, self.status, v["masks"].widget,
            widgets.HBox([v["sparsity"].widget, v["iou"].widget]),
            widgets.HBox([v["channels"].widget, v["transfer"].widget]),
        ], layout=widgets.Layout(width="100%"))
        self.set(**state) if state else self.refresh()

    # -- building ------------------------------------------------------------------------
    def _build_controls(self) -> None:
        import ipywidgets as widgets

        d = self.data
        style = {"description_width": "70px"}
        default = d.default_source()
        c = self.controls
        c["source"] = widgets.Dropdown(
            options=[(e.label, e.key) for e in d.sources], value=default.key, description="source",
            style=style, layout=widgets.Layout(width="340px"))
        c["scheme"] = widgets.Dropdown(options=d.schemes(default.key), value="omp", description="scheme",
                                       style=style, layout=widgets.Layout(width="230px"))
        c["pattern"] = widgets.Dropdown(options=list(PATTERNS), value="unstructured", description="pattern",
                                        style=style, layout=widgets.Layout(width="280px"))
        spars = d.sparsities("unstructured")
        pick = d.default_state().sparsity
        c["sparsity"] = widgets.SelectionSlider(
            options=[(f"{s:.0%}", s) for s in spars], value=pick, description="sparsity",
            style=style, layout=widgets.Layout(width="340px"), continuous_update=False)
        c["layer"] = widgets.Dropdown(
            options=[(_layer_label(k, self._shape(k)), k) for k in d.layers], description="layer",
            style=style, layout=widgets.Layout(width="330px"))
        c["target"] = widgets.Dropdown(options=[("—", None)], value=None, description="target",
                                       style=style, disabled=True, layout=widgets.Layout(width="200px"))
        self._sparsity, self._pattern = pick, "unstructured"
        for w in c.values():
            w.observe(self._on_control, names="value")

    def _shape(self, key: str) -> tuple:
        return tuple(dict(self.data.model(self.data.natural.key).named_parameters())[key].shape)

    # -- state ---------------------------------------------------------------------------
    def state(self) -> ExplorerState:
        c = self.controls
        return ExplorerState(source=c["source"].value, scheme=c["scheme"].value, pattern=c["pattern"].value,
                             sparsity=c["sparsity"].value, layer=c["layer"].value, target=c["target"].value)

    def view_data(self, state: ExplorerState | None = None) -> View:
        """What the figures show for ``state`` (default: the controls' current state)."""
        return self.data.view_data(state or self.state())

    def set(self, **values) -> View:
        """Set several controls (``source`` by key or label, ``layer`` by entry or short name,
        ``scheme``, ``pattern``, ``sparsity``, ``target``) and redraw once. Returns the view."""
        if not self.controls:
            raise ValueError(f"the explorer has no controls: {self.message}")
        unknown = set(values) - set(self.controls)
        if unknown:
            raise ValueError(f"unknown control(s) {sorted(unknown)}; allowed: {sorted(self.controls)}")
        self._hold = True
        try:
            for name in ("source", "scheme", "pattern", "target", "sparsity", "layer"):
                if name not in values:
                    continue
                value = self._resolve(name, values[name])
                self._sync_options()
                allowed = [v for _, v in self.controls[name].options]
                if name == "sparsity":
                    match = [v for v in allowed if abs(v - value) < 1e-6]
                    value = match[0] if match else value
                check_choice(name, value, allowed)
                self.controls[name].value = value
            self._sync_options()
        finally:
            self._hold = False
        return self.refresh()

    def _resolve(self, name: str, value):
        if name == "source" and value not in self.data.by_key:
            for e in self.data.sources:
                if value in (e.label, e.short):
                    return e.key
        if name == "layer" and value is not None and value not in self.data.layers:
            for k in self.data.layers:
                if value == short_name(k):
                    return k
        return value

    def _on_control(self, change) -> None:
        if self._hold:
            return
        self._hold = True
        try:
            self._sync_options()
        finally:
            self._hold = False
        self.refresh()

    def _sync_options(self) -> None:
        """Offer only what exists: IMP schemes where stored, their patterns/sparsities/targets."""
        c, d = self.controls, self.data
        src, scheme = c["source"].value, c["scheme"].value
        _set_options(c["scheme"], d.schemes(src), keep=scheme, fallback="omp")
        scheme = c["scheme"].value
        if scheme in STORED_ONLY_SCHEMES:
            combos = d.stored_combos(scheme, src)
            patterns = list(dict.fromkeys(p for p, _, _ in combos))
            _set_options(c["pattern"], patterns, keep=c["pattern"].value)
            pattern = c["pattern"].value
            spars = sorted({s for p, s, _ in combos if p == pattern})
            _set_options(c["sparsity"], [(f"{s:.0%}", s) for s in spars], keep=c["sparsity"].value)
            targets = sorted({t for p, s, t in combos if p == pattern and s == c["sparsity"].value} - {None})
        else:
            _set_options(c["pattern"], list(PATTERNS), keep=c["pattern"].value)
            spars = d.sparsities(c["pattern"].value)
            implied = d.pattern(c["pattern"].value).implied_sparsity is not None
            if implied:
                _set_options(c["sparsity"], [(f"{d.n}:{d.m} ({s:.0%})", s) for s in spars])
            else:  # back from N:M: the sparsity chosen before
                _set_options(c["sparsity"], [(f"{s:.0%}", s) for s in spars],
                             keep=self._sparsity if c["pattern"].value != self._pattern else c["sparsity"].value)
            targets = []
        implied = d.pattern(c["pattern"].value).implied_sparsity is not None
        c["sparsity"].disabled = implied
        if not implied:
            self._sparsity = c["sparsity"].value
        self._pattern = c["pattern"].value
        if get_scheme(scheme).needs_target and targets:
            _set_options(c["target"], [(t, t) for t in targets], keep=c["target"].value)
            c["target"].disabled = False
        else:
            _set_options(c["target"], [("—", None)], keep=None)
            c["target"].disabled = True

    # -- drawing -------------------------------------------------------------------------
    def refresh(self) -> View:
        """Recompute the view for the controls' state and update every figure in place."""
        if not self.controls:
            return View(message=self.message)
        start = time.perf_counter()
        view = self.view_data()
        self.view = view
        if view.message:
            self.status.value = f'<span style="color:#a00">{html.escape(view.message)}</span>'
        else:
            self.plots.draw(view)
            self.status.value = _status_html(view)
        for v in self.views.values():
            v.render()
        self.timings.append(time.perf_counter() - start)
        return view

    def static_figures(self) -> list[go.Figure]:
        """Plain copies of the current figures (for ``rtstudy.plots.show`` in a static report)."""
        return self.plots.static() if self.controls else []

    def time_changes(self, repeats: int = 5) -> dict:
        """Median seconds of a control change (Python side): layer, sparsity, source, pattern."""
        if not self.controls:
            return {}
        c = self.controls
        out = {}
        for name in ("layer", "sparsity", "pattern", "source"):
            options = [v for _, v in c[name].options]
            if len(options) < 2:
                continue
            original = c[name].value
            seconds = []
            for i in range(repeats + 1):
                value = options[(options.index(original) + 1 + i) % len(options)]
                n = len(self.timings)
                c[name].value = value
                if len(self.timings) > n and i > 0:  # the first visit of a value fills caches
                    seconds.append(self.timings[-1])
            c[name].value = original
            if seconds:
                out[name] = statistics.median(seconds)
        return out
