"""E10 mask anatomy: the interactive mask explorer and the numbers behind it.

A teacher picks a source model (natural, or robust at any stored eps), a pruning scheme,
a sparsity pattern, a sparsity and a layer, and sees at once

* the layer's mask as a heatmap (filters x inputs*kernel, or the N:M groups), the
  natural and the chosen ticket side by side and their disagreement (XOR) coloured
  by who kept the weight;
* per-layer sparsity of both tickets, and the per-layer overlap (IoU of the kept
  weights) against the IoU two random masks of those sparsities would have;
* channel survival of the layer's filters (whole filters for channel tickets);
* where transfer artifacts exist, the downstream accuracy of both tickets.

Nothing is trained here. Source models are read from a ``Store``
(``store.list("source")``); OMP and random tickets are read from the store when it holds
them and otherwise drawn in memory with the same functions ``pipeline.draw_ticket``
uses (OMP needs no data), without writing anything; IMP tickets are offered only where
the store holds them for both sides.

Layers of the code, each testable without a browser:

``ExplorerData``  the store's contents for one source family (same task, model, recipe;
                  only the robustness differs) and cached models and masks.
``ExplorerData.view_data(state)``  the pure computation of everything the figures show.
``MaskExplorer``  ipywidgets controls (``.controls``), plotly figures (``.figures``),
                  the page (``.widget``), ``.set(...)`` and ``.refresh()``. A control
                  change updates the figures' trace data in place inside
                  ``fig.batch_update()``.
``anatomy`` / ``anatomy_finding``  the E10 numbers for the report.

Figures are ``plotly.graph_objects.FigureWidget`` when plotly's widget backend
(``anywidget``, needed by plotly >= 6) is importable: a control change reaches each plot in
the browser as one restyle/relayout message, and plotly.js updates the plot in place (no
re-drawn page, no flicker). Three things make them work in a page that builds its widgets
after the notebook ran (Voilà) and not only in JupyterLab (``_figure_widget_class``): the
state the kernel hands to a newly connecting front end is the figure's current state
(plotly's own FigureWidget hands out the figure as constructed, here empty); plotly's
~5 MB front end is evaluated once per page, not once per figure (anywidget drops every
update of a widget whose module is not ready within 2 s); and a plot is drawn once its
element is on the page, so it takes the page's width. ``rtstudy.explorer_server`` also
serves that front end from its template and preloads it (``PLOTLY_WIDGET_URL_ENV``).
Without anywidget the figures are plain ``go.Figure`` objects, still updated in place in
Python, and each is shown in an ``ipywidgets.Output`` whose content is replaced after every
change (the plot is re-rendered in the browser by plotly's JupyterLab/Voila mime renderer;
the output keeps its height, so the page does not jump).
"""

from __future__ import annotations

import functools
import html
import json
import math
import os
import statistics
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import plotly.graph_objects as go
import torch
from plotly.subplots import make_subplots

from rtstudy.core import masks as masks_mod
from rtstudy.core import tickets
from rtstudy.core.checks import check_choice
from rtstudy.core.stats import mean_ci
from rtstudy.core.store import Artifact, Store, canonical_json
from rtstudy.pipeline import Source, eps_label, load_model, source_config
from rtstudy.profiles import Profile, get_profile

SCHEMES = tickets.SCHEMES
PATTERNS = tickets.PATTERNS
STORED_ONLY_SCHEMES = ("imp_source", "imp_target")  # they need training: only what is stored
NATURAL_COLOR, ROBUST_COLOR = "#1f77b4", "#d62728"
BOTH_KEPT_COLOR, BOTH_PRUNED_COLOR = "#c7c7c7", "#ffffff"
# disagreement codes of the third heatmap
BOTH_PRUNED, BOTH_KEPT, NATURAL_ONLY, ROBUST_ONLY = 0, 1, 2, 3
CODE_NAMES = ("both pruned", "both kept", "only natural kept", "only robust kept")
FIGURES = ("masks", "sparsity", "iou", "channels", "transfer")
MAX_CELLS = 60_000  # heatmap cells per panel before blocks are pooled (resnet8 never pools)


@functools.lru_cache(maxsize=1)
def figure_widgets_available() -> bool:
    """Whether ``go.FigureWidget`` works here (plotly >= 6 needs the ``anywidget`` package).

    Checked without making a widget: a throw-away FigureWidget would still be recorded in
    the notebook's widget state (5 MB of plotly's front end each).
    """
    import importlib.util

    return importlib.util.find_spec("anywidget") is not None


# Where the page serves plotly's FigureWidget front end (a URL relative to the page); set by
# ``rtstudy.explorer_server`` for its Voilà kernels. Unset (JupyterLab): the module travels
# inside each widget's state, as plotly's own FigureWidget does.
PLOTLY_WIDGET_URL_ENV = "RTSTUDY_PLOTLY_WIDGET_URL"


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
    """The ``_esm`` of the explorer's FigureWidgets: a small module that loads plotly's widget
    front end once per page and re-exports it (``None``: plotly's bundle is not there).

    anywidget evaluates each widget's ``_esm`` separately and gives up on a widget whose
    module is not ready within 2 s ("[anywidget] Failed to initialize model."); such a
    widget still shows its first state but drops every later update. plotly's bundle took
    1-2 s to evaluate in headless Chromium on a busy 2-core machine, so five FigureWidgets
    evaluating it side by side went past that limit. Loaded once, every widget waits for
    the same evaluation. With ``url`` (the explorer server: its page starts loading the
    module while the notebook runs) it is ready before any widget exists; without (e.g.
    JupyterLab) the source travels in each widget's state, as with plotly's own
    FigureWidget, and the one evaluation must fit in anywidget's 2 s: on a machine as busy
    as that one it may not."""
    key = json.dumps(plotly_widget_key())
    if url:
        load = f"import(new URL({json.dumps(url)}, document.baseURI).href)"
    else:
        bundle = plotly_widget_bundle()
        if not bundle.is_file():
            return None
        load = ("(() => {\n  const url = URL.createObjectURL(new Blob([" + json.dumps(bundle.read_text())
                + '], {type: "text/javascript"}));\n  return import(url).finally(() => URL.revokeObjectURL(url));\n})()')
    return ("// rtstudy.explorer: plotly's FigureWidget front end, evaluated once per page\n"
            f"const key = Symbol.for({key});\n"
            f"globalThis[key] ??= {load};\n"
            "const plotly = await globalThis[key];\n" + _ESM_RENDER)


# plotly lays a figure out for its element's width when it first draws it, and anywidget calls
# render before the element is on the page (and Voilà keeps its cells hidden until they all
# ran): the figures came out 700 px wide, or as wide as the whole page. Draw once the element
# is on the page and displayed (later size changes: plotly's ``responsive`` config).
_ESM_RENDER = """const shown = (el, signal) => new Promise((resolve) => {
  const check = () => (signal?.aborted || (el.isConnected && el.getClientRects().length > 0)
                       ? resolve() : requestAnimationFrame(check));
  check();
});
export default () => {
  const widget = plotly.default();
  return {
    initialize: (ctx) => widget.initialize(ctx),
    async render(ctx) {
      await shown(ctx.el, ctx.signal);
      return ctx.signal?.aborted ? undefined : widget.render(ctx);
    },
  };
};
"""


@functools.cache
def _figure_widget_class(base: type, url: str | None = None) -> type:
    """``base`` (``go.FigureWidget``) fixed for pages that build their widgets late.

    * Its widget state is the figure's current state. plotly's FigureWidget syncs the full
      state (``_widget_data``, ``_widget_layout``) only when it is constructed or displayed
      on its own; every later change (``batch_update``, ``fig.data[0].z = ...``) is a
      one-off restyle/relayout message that only front ends already connected receive.
      Voilà runs the whole notebook before the browser connects and then asks the kernel
      for every widget's state, so the page showed the figures as constructed (empty), not
      the explorer's first view (and JupyterLab did the same after a page reload). Here
      ``get_state`` (the comm open, the ``request_states`` reply, embedding) returns the
      current figure; a change still reaches a live plot as one in-place update, and
      nothing more is sent.
    * Its front end is loaded once per page (``_widget_esm``), not once per widget.
    * Its plot is drawn once its element is on the page and displayed, and with plotly's
      ``responsive`` config, so it fills its box (drawn earlier, plotly fell back to 700 px).
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


def short_name(entry: str) -> str:
    """``net.layer1.0.conv1.weight`` -> ``layer1.0.conv1``."""
    name = entry[4:] if entry.startswith("net.") else entry
    return name[: -len(".weight")] if name.endswith(".weight") else name


def random_iou(keep_a: float, keep_b: float) -> float:
    """Expected IoU of two independent uniform random masks keeping fractions ``keep_a``, ``keep_b``.

    Per weight P(both kept) = ka*kb and P(either kept) = ka + kb - ka*kb; for many weights
    the IoU concentrates at their ratio (s = sparsity, k = 1 - s: k / (2 - k) when equal).
    """
    union = keep_a + keep_b - keep_a * keep_b
    return keep_a * keep_b / union if union > 0 else 1.0


def expected_random_iou(a: Mapping[str, torch.Tensor], b: Mapping[str, torch.Tensor]) -> float:
    """``random_iou`` over a whole mask: masks with the same per-layer kept fractions, drawn at random."""
    inter = union = 0.0
    for k, va in masks_mod.weight_entries(a).items():
        n = va.numel()
        ka, kb = float(va.float().mean()), float(b[k].float().mean())
        inter += ka * kb * n
        union += (ka + kb - ka * kb) * n
    return inter / union if union > 0 else 1.0


def filter_iou(a: Mapping[str, torch.Tensor], b: Mapping[str, torch.Tensor]) -> tuple[float, float]:
    """IoU of the surviving output filters (any weight kept) over the layers where either
    ticket removed whole filters, and the expectation for random filter choices of the same
    per-layer counts. ``(nan, nan)`` when neither removed a filter."""
    sa, sb = masks_mod.surviving_channels(a), masks_mod.surviving_channels(b)
    wa = masks_mod.weight_entries(a)
    inter = union = exp_inter = exp_union = 0.0
    for k, va in wa.items():
        filters = va.shape[0]
        na, nb = len(sa[k]), len(sb[k])
        if na == filters and nb == filters:
            continue
        both = len(set(sa[k].tolist()) & set(sb[k].tolist()))
        inter += both
        union += na + nb - both
        ka, kb = na / filters, nb / filters
        exp_inter += ka * kb * filters
        exp_union += (ka + kb - ka * kb) * filters
    if union == 0 and exp_union == 0:
        return float("nan"), float("nan")
    return (inter / union if union else 1.0), (exp_inter / exp_union if exp_union else 1.0)


# ----------------------------------------------------------------------------- store contents
@dataclass(frozen=True)
class SourceEntry:
    """A stored source model."""

    key: str
    label: str  # e.g. "robust fgsm_rs linf ε=2/255"
    short: str  # e.g. "robust ε=2/255" (the attack only when it is not the profile's)
    eps: float
    kind: str
    norm: str
    artifact: Artifact

    @property
    def natural(self) -> bool:
        return self.eps == 0


@dataclass(frozen=True)
class ExplorerState:
    """What the controls select. ``source``: artifact key of the ticket's source model (the
    other side is always the natural model of the same family); ``layer``: a weight entry
    name (``None``: the first); ``target``: only for ``imp_target`` tickets."""

    source: str
    scheme: str = "omp"
    pattern: str = "unstructured"
    sparsity: float = 0.8
    layer: str | None = None
    target: str | None = None


@dataclass
class TicketMask:
    """One side's mask: the full mask (channel masks carry BN companions), its weight entries,
    the stored ticket artifact key (``dense`` at sparsity 0, ``None`` when drawn in memory)."""

    mask: dict[str, torch.Tensor]
    weights: dict[str, torch.Tensor]
    ticket_key: str | None
    stored: bool


def _family(config: dict) -> str:
    """What two source models must share to be compared: everything but the robustness."""
    rest = {k: v for k, v in config.items() if k not in ("attack", "eval_attack", "train", "robust_n")}
    rest["train"] = {k: v for k, v in config.get("train", {}).items() if k != "attack"}
    return canonical_json(rest)


def _skey(sparsity: float) -> float:
    return round(float(sparsity), 6)


class ExplorerData:
    """The stored source models of one family, their masks (cached) and transfer results.

    ``profile`` picks the family (task, model, width, recipe of ``source_config(profile, 0)``);
    when the store holds no source of that family but holds others, the family with the
    most models is used and ``note`` says so. ``sources`` is empty when the store holds no
    source model at all (``message`` says what to do).
    """

    def __init__(self, store: Store | None = None, profile: str | Profile = "default", *,
                 nm: tuple[int, int] = (2, 4), max_cells: int = MAX_CELLS):
        self.store = store if store is not None else Store()
        self.profile = get_profile(profile) if isinstance(profile, str) else profile
        self.n, self.m = nm
        self.max_cells = max_cells
        self.note = ""
        self.message = ""
        self._models: dict[str, Any] = {}
        self._masks: dict[tuple, TicketMask | None] = {}
        self._load_store()

    # -- store ---------------------------------------------------------------------------
    def _load_store(self) -> None:
        arts = self.store.list("source")
        families: dict[str, list[Artifact]] = {}
        for art in arts:
            if "spec" not in art.meta:
                continue
            families.setdefault(_family(art.config), []).append(art)
        wanted = _family(source_config(self.profile, 0.0))
        if not families:
            self.sources: list[SourceEntry] = []
            self.message = (
                f"No source models are stored in {self.store.root}. The explorer only reads what the "
                f"pipeline stored: run the experiments first (e.g. python -m rtstudy.report --profile "
                f"{self.profile.name}, or notebook 01), or point RTSTUDY_STORE at a store that has them.")
        else:
            if wanted in families:
                chosen = families[wanted]
            else:
                chosen = max(families.values(), key=len)
                cfg = chosen[0].config
                self.note = (f"No source models of profile '{self.profile.name}' are stored; showing "
                             f"the {len(chosen)} stored models of {cfg['model']} on {cfg['task']} "
                             f"({cfg['image_size']}px) instead.")
            entries = []
            for art in chosen:
                attack = art.config["attack"]
                eps, kind, norm = float(attack["eps"]), attack["kind"], attack["norm"]
                short = "natural" if eps == 0 else f"robust ε={eps_label(eps, norm)}"
                if eps and (kind, norm) != (self.profile.robust_kind, self.profile.norm):
                    short += f" ({kind} {norm})"
                entries.append(SourceEntry(art.key, Source(art, None).label, short, eps, kind, norm, art))
            entries.sort(key=lambda e: (not e.natural, e.kind, e.norm, e.eps))
            self.sources = entries
        self.by_key = {e.key: e for e in self.sources}
        naturals = [e for e in self.sources if e.natural]
        self.natural = naturals[0] if naturals else (self.sources[0] if self.sources else None)
        if self.sources and not naturals:
            self.note += (f" No natural (ε=0) source model is stored; the left side shows "
                          f"{self.natural.label} instead.")
        keys = set(self.by_key)
        self._tickets: dict[tuple, Artifact] = {}
        for art in self.store.list("ticket") if keys else []:
            c = art.config
            if c.get("source") not in keys:
                continue
            pattern, sparsity = c["pattern"], c["sparsity"]
            if pattern == "nm":
                sparsity = 1.0 - c.get("n", 2) / c.get("m", 4)
                if (c.get("n"), c.get("m")) != (self.n, self.m):
                    continue
            self._tickets[(c["source"], c["scheme"], pattern, _skey(sparsity), c.get("target"),
                           c.get("seed", 0))] = art
        self._transfers: dict[tuple[str, str], list[Artifact]] = {}
        for art in self.store.list("transfer") if keys else []:
            c = art.config
            if c.get("source") in keys:
                self._transfers.setdefault((c["source"], c["ticket"]), []).append(art)

    @functools.cached_property
    def layers(self) -> list[str]:
        """The prunable weight entries (what every ticket masks), in model order."""
        if not self.sources:
            return []
        return tickets.prunable_names(self.model(self.natural.key))

    def default_source(self) -> SourceEntry | None:
        """The robust model at the profile's eps* and attack, else the first robust, else natural."""
        robust = [e for e in self.sources if not e.natural]
        p = self.profile
        for e in robust:
            if abs(e.eps - p.eps_star) < 1e-9 and e.kind == p.robust_kind and e.norm == p.norm:
                return e
        return robust[0] if robust else self.natural

    def default_state(self) -> ExplorerState | None:
        """What the explorer shows first: eps* vs natural, OMP, unstructured, the profile's
        first fixed sparsity (E2-E9's), the first layer. ``None`` for an empty store."""
        src = self.default_source()
        if src is None:
            return None
        spars = self.sparsities("unstructured")
        wanted = (self.profile.fixed_sparsities or (0.8,))[0]
        return ExplorerState(source=src.key, scheme="omp", pattern="unstructured",
                             sparsity=min(spars, key=lambda s: abs(s - wanted)), layer=self.layers[0])

    def model(self, key: str):
        if key not in self._models:
            self._models[key] = load_model(self.by_key[key].artifact)
        return self._models[key]

    # -- options -------------------------------------------------------------------------
    def sparsities(self, pattern: str) -> list[float]:
        """Sparsities offered for OMP/random: the profile's (above 0); N:M has its implied one."""
        if pattern == "nm":
            return [_skey(1.0 - self.n / self.m)]
        values = sorted({_skey(s) for s in (*self.profile.sparsities, *self.profile.fixed_sparsities) if s > 0})
        return values or [0.0]

    def stored_combos(self, scheme: str, source_key: str) -> list[tuple[str, float, str | None]]:
        """``(pattern, sparsity, target)`` with a stored ``scheme`` ticket for both sides."""
        nat = self.natural.key

        def have(key):
            return {(p, s, t) for (src, sch, p, s, t, seed) in self._tickets
                    if src == key and sch == scheme and seed == 0}

        both = have(nat) & have(source_key)
        return sorted(both, key=lambda c: (PATTERNS.index(c[0]), c[1], c[2] or ""))

    def schemes(self, source_key: str) -> list[str]:
        """OMP and random always; IMP schemes where both sides have a stored ticket."""
        return [s for s in SCHEMES if s not in STORED_ONLY_SCHEMES or self.stored_combos(s, source_key)]

    # -- masks ---------------------------------------------------------------------------
    def mask(self, source_key: str, scheme: str, pattern: str, sparsity: float,
             target: str | None = None, seed: int = 0) -> TicketMask | None:
        """The ticket of ``source_key``: stored if the store has it, else drawn in memory
        (OMP, random); ``None`` for an IMP ticket the store lacks. Cached."""
        check_choice("scheme", scheme, SCHEMES)
        check_choice("pattern", pattern, PATTERNS)
        if pattern == "nm":
            sparsity = 1.0 - self.n / self.m
        if scheme != "imp_target":
            target = None
        cache_key = (source_key, scheme, pattern, _skey(sparsity), target, seed)
        if cache_key not in self._masks:
            self._masks[cache_key] = self._load_mask(*cache_key)
        return self._masks[cache_key]

    def _load_mask(self, source_key, scheme, pattern, sparsity, target, seed) -> TicketMask | None:
        kw = {"n": self.n, "m": self.m} if pattern == "nm" else {}
        if sparsity == 0 and pattern != "nm":
            model = self.model(source_key)
            params = dict(model.named_parameters())
            full = {k: torch.ones_like(params[k], dtype=torch.bool) for k in tickets.prunable_names(model)}
            return TicketMask(full, full, "dense", False)
        art = self._tickets.get((source_key, scheme, pattern, _skey(sparsity), target, seed))
        if art is not None:
            full = {k: v.bool() for k, v in art.tensors("mask").items()}
            return TicketMask(full, masks_mod.weight_entries(full), art.key, True)
        if scheme in STORED_ONLY_SCHEMES:
            return None
        model = self.model(source_key)
        if scheme == "omp":
            full = tickets.omp(model, pattern, sparsity, **kw)
        else:
            reference = self.mask(source_key, "omp", pattern, sparsity, seed=seed)
            full = tickets.random_mask(reference.mask, pattern, seed=seed, **kw)
        return TicketMask(full, masks_mod.weight_entries(full), None, False)

    def matrix(self, weight_mask: torch.Tensor, pattern: str) -> tuple[np.ndarray, str]:
        """The 2-D view of one weight mask and its x-axis title (N:M: groups side by side)."""
        if pattern == "nm" and weight_mask.dim() >= 2:
            try:
                groups = masks_mod.nm_groups(weight_mask, self.m)
                kernel = "×".join(str(d) for d in weight_mask.shape[2:])
                where = f"(kernel position {kernel}, input)" if kernel else "input"
                return (groups.reshape(weight_mask.shape[0], -1).numpy(),
                        f"{where}: each run of {self.m} columns is one {self.n}:{self.m} group")
            except ValueError:
                pass
        shape = weight_mask.shape
        what = f"inputs × kernel ({shape[1]}×{'×'.join(map(str, shape[2:]))})" if len(shape) > 2 else "inputs"
        return masks_mod.layer_matrix(weight_mask).numpy(), what

    # -- transfer ------------------------------------------------------------------------
    def transfer_results(self, source_key: str, ticket_key: str | None) -> dict[str, list[float]]:
        """Test accuracies by group label (``"mnist5k finetune"``, ...) over seeds."""
        out: dict[str, list[float]] = {}
        if ticket_key is None:
            return out
        for art in self._transfers.get((source_key, ticket_key), []):
            c, metrics = art.config, art.metrics
            if "test_acc" not in metrics:
                continue
            label = f"{c['target']} {c['regime']}"
            attack = (c.get("train") or {}).get("attack") or {}
            if attack.get("kind", "none") != "none":
                label += " adv-ft"
            if abs(c.get("fraction", self.profile.target_fraction) - self.profile.target_fraction) > 1e-9:
                label += f" {c['fraction']:.0%} data"
            out.setdefault(label, []).append(float(metrics["test_acc"]))
        return out

    # -- the view ------------------------------------------------------------------------
    def view_data(self, state: ExplorerState) -> dict:
        """Everything the figures show for ``state`` (no widgets involved).

        Keys: ``layers`` (weight entries), ``layer``, ``labels`` (natural / robust side),
        ``natural`` and ``robust`` (each: ``matrix`` (bool, layer view), ``sparsity``
        (per layer, ``masks.layer_sparsity``), ``overall_sparsity``, ``survival`` (per
        filter of the layer, ``masks.channel_survival``), ``filters_kept``, ``ticket_key``,
        ``stored``, ``transfer``), ``disagree`` (XOR of the two matrices), ``code``
        (0 both pruned, 1 both kept, 2 natural only, 3 robust only), ``iou`` (per layer,
        ``masks.layer_iou``), ``iou_random`` (per layer, ``random_iou``), ``overall_iou``,
        ``overall_iou_random``, ``hamming`` (fraction of weights that differ), ``pooled``
        (block size when a big layer is pooled to ``max_cells``, else ``None``; the
        matrices are then kept fractions), ``message`` ("" when all is well).
        """
        if not self.sources:
            return {"message": self.message, "layers": []}
        check_choice("source", state.source, list(self.by_key))
        nat, src = self.natural, self.by_key[state.source]
        a = self.mask(nat.key, state.scheme, state.pattern, state.sparsity, state.target)
        b = self.mask(src.key, state.scheme, state.pattern, state.sparsity, state.target)
        if a is None or b is None:
            missing = [e.label for e, t in ((nat, a), (src, b)) if t is None]
            return {"message": f"no stored {state.scheme} ticket ({state.pattern}, "
                               f"{state.sparsity:.0%}) for {' and '.join(missing)}", "layers": self.layers}
        layers = list(a.weights)
        layer = state.layer if state.layer in a.weights else layers[0]
        sp_a, sp_b = masks_mod.layer_sparsity(a.weights), masks_mod.layer_sparsity(b.weights)
        liou = masks_mod.layer_iou(a.weights, b.weights)
        ma, xlabel = self.matrix(a.weights[layer], state.pattern)
        mb, _ = self.matrix(b.weights[layer], state.pattern)
        disagree = ma ^ mb
        code = np.where(disagree, np.where(ma, NATURAL_ONLY, ROBUST_ONLY),
                        np.where(ma, BOTH_KEPT, BOTH_PRUNED)).astype(np.uint8)
        surv_a = masks_mod.channel_survival({layer: a.weights[layer]})[layer].numpy()
        surv_b = masks_mod.channel_survival({layer: b.weights[layer]})[layer].numpy()
        pooled = None
        shown = {"natural": ma, "robust": mb, "disagree": disagree, "code": code}
        if ma.size > self.max_cells:
            block = _block_shape(ma.shape, self.max_cells)
            pooled = block
            shown = {"natural": _pool(ma, block), "robust": _pool(mb, block),
                     "disagree": _pool(disagree, block), "code": None}
        keep = {k: (1 - sp_a[k], 1 - sp_b[k]) for k in layers}
        fa, fb = set(np.nonzero(surv_a > 0)[0].tolist()), set(np.nonzero(surv_b > 0)[0].tolist())
        state_used = replace(state, layer=layer, source=src.key, sparsity=state.sparsity
                             if state.pattern != "nm" else _skey(1 - self.n / self.m))
        return {
            "state": state_used,
            "message": "",
            "layers": layers,
            "layer": layer,
            "shape": tuple(a.weights[layer].shape),
            "xlabel": xlabel,
            "labels": {"natural": nat.label, "robust": src.label},
            "short": {"natural": nat.short, "robust": src.short},
            "natural": {
                "matrix": shown["natural"], "mask_matrix": ma,
                "sparsity": [sp_a[k] for k in layers],
                "overall_sparsity": masks_mod.sparsity(a.weights),
                "survival": surv_a, "filters_kept": len(fa),
                "ticket_key": a.ticket_key, "stored": a.stored,
                "transfer": self.transfer_results(nat.key, a.ticket_key),
            },
            "robust": {
                "matrix": shown["robust"], "mask_matrix": mb,
                "sparsity": [sp_b[k] for k in layers],
                "overall_sparsity": masks_mod.sparsity(b.weights),
                "survival": surv_b, "filters_kept": len(fb),
                "ticket_key": b.ticket_key, "stored": b.stored,
                "transfer": self.transfer_results(src.key, b.ticket_key),
            },
            "filters_shared": len(fa & fb),
            "disagree": disagree,
            "disagree_shown": shown["disagree"],
            "code": shown["code"],
            "pooled": pooled,
            "iou": [liou[k] for k in layers],
            "iou_random": [random_iou(*keep[k]) for k in layers],
            "layer_iou": liou[layer],
            "overall_iou": masks_mod.iou(a.weights, b.weights),
            "overall_iou_random": expected_random_iou(a.weights, b.weights),
            "hamming": masks_mod.hamming(a.weights, b.weights, normalized=True),
            "layer_hamming": float(disagree.mean()) if disagree.size else 0.0,
        }


def _block_shape(shape: tuple[int, int], max_cells: int) -> tuple[int, int]:
    """Tiles so that at most 256 rows and ``max_cells`` cells remain."""
    rows, cols = shape
    br = max(1, math.ceil(rows / 256))
    per_row = max(1, max_cells // math.ceil(rows / br))
    return br, max(1, math.ceil(cols / per_row))


def _pool(matrix: np.ndarray, block: tuple[int, int]) -> np.ndarray:
    """Mean over ``block``-sized tiles (the last tiles may be partial)."""
    br, bc = block
    rows, cols = matrix.shape
    r2, c2 = math.ceil(rows / br), math.ceil(cols / bc)
    padded = np.zeros((r2 * br, c2 * bc), dtype=np.float32)
    count = np.zeros_like(padded)
    padded[:rows, :cols] = matrix
    count[:rows, :cols] = 1
    s = padded.reshape(r2, br, c2, bc).sum((1, 3))
    n = count.reshape(r2, br, c2, bc).sum((1, 3))
    return (s / np.maximum(n, 1)).astype(np.float32)


# ----------------------------------------------------------------------------- widgets
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


class ExplorerFigures:
    """The explorer's five figures and how a view updates them; no ipywidgets involved.

    ``figures``: ``masks`` (the layer's natural | robust | disagreement heatmaps),
    ``sparsity`` (per-layer bars), ``iou`` (per-layer IoU and the random-mask IoU),
    ``channels`` (filter survival of the layer), ``transfer`` (downstream accuracy).
    ``figure_widgets``: make ``go.FigureWidget``s (needs anywidget) or plain ``go.Figure``s.
    """

    def __init__(self, figure_widgets: bool = False):
        self.figure_widgets = figure_widgets
        self.figures: dict[str, go.Figure] = {}
        self.sizes: dict[str, tuple[int, str]] = {}
        self._build()

    def _build(self) -> None:
        base = {"template": "plotly_white", "margin": {"l": 60, "r": 20, "t": 70, "b": 50},
                "font": {"size": 12}}
        # 1. the layer's masks side by side + disagreement
        fig = make_subplots(rows=1, cols=3, shared_yaxes=True, horizontal_spacing=0.03,
                            subplot_titles=("natural", "robust", "disagreement"))
        for i, color in enumerate((NATURAL_COLOR, ROBUST_COLOR)):
            fig.add_trace(go.Heatmap(
                z=[[0]], zmin=0, zmax=1, colorscale=[[0, BOTH_PRUNED_COLOR], [1, color]], showscale=False,
                hovertemplate="filter %{y}<br>column %{x}<br>kept %{z}<extra></extra>",
                name=("natural", "robust")[i]), row=1, col=i + 1)
        fig.add_trace(go.Heatmap(
            z=[[0]], zmin=-0.5, zmax=3.5, colorscale=_CODE_SCALE, name="disagreement",
            colorbar={"tickvals": [0, 1, 2, 3], "ticktext": list(CODE_NAMES), "len": 0.9, "thickness": 12},
            hovertemplate="filter %{y}<br>column %{x}<br>code %{z}<extra></extra>"), row=1, col=3)
        fig.update_yaxes(autorange="reversed", title_text="output filter", row=1, col=1)
        fig.update_layout(**base, height=380, title={"text": "", "x": 0.01, "font": {"size": 14}})
        self._add("masks", fig, 380)
        # 2. per-layer sparsity
        fig = go.Figure([go.Bar(name="natural", marker_color=NATURAL_COLOR),
                         go.Bar(name="robust", marker_color=ROBUST_COLOR)])
        fig.update_layout(**base, barmode="group", height=330, yaxis={"title": "sparsity", "range": [0, 1]},
                          legend={"orientation": "h", "y": 1.12, "x": 1, "xanchor": "right"},
                          title={"text": "per-layer sparsity", "x": 0.01, "font": {"size": 13}})
        self._add("sparsity", fig, 330, "50%")
        # 3. per-layer IoU vs random
        fig = go.Figure([go.Bar(name="IoU natural vs robust", marker_color="#9467bd"),
                         go.Scatter(name="two random masks", mode="markers",
                                    marker={"symbol": "line-ew-open", "size": 22, "color": "#444",
                                            "line": {"width": 3}})])
        fig.update_layout(**base, height=330, yaxis={"title": "IoU of kept weights", "range": [0, 1.05]},
                          legend={"orientation": "h", "y": 1.12, "x": 1, "xanchor": "right"},
                          title={"text": "overlap per layer", "x": 0.01, "font": {"size": 13}})
        self._add("iou", fig, 330, "50%")
        # 4. channel survival of the layer's filters
        fig = go.Figure([go.Heatmap(z=[[0]], zmin=0, zmax=1, colorscale="Greys",
                                    colorbar={"title": {"text": "kept"}, "thickness": 12},
                                    hovertemplate="%{y}<br>filter %{x}<br>kept fraction %{z:.2f}<extra></extra>")])
        fig.update_layout(**base, height=330, xaxis={"title": "output filter"}, yaxis={"autorange": "reversed"},
                          title={"text": "channel survival", "x": 0.01, "font": {"size": 13}})
        self._add("channels", fig, 330, "50%")
        # 5. downstream accuracy of both tickets
        fig = go.Figure([go.Bar(name="natural ticket", marker_color=NATURAL_COLOR),
                         go.Bar(name="robust ticket", marker_color=ROBUST_COLOR)])
        fig.update_layout(**base, barmode="group", height=330, yaxis={"title": "test accuracy", "range": [0, 1]},
                          legend={"orientation": "h", "y": 1.12, "x": 1, "xanchor": "right"},
                          title={"text": "downstream accuracy", "x": 0.01, "font": {"size": 13}})
        self._add("transfer", fig, 330, "50%")

    def _add(self, name: str, fig: go.Figure, height: int, width: str = "100%") -> None:
        if self.figure_widgets:
            fig = _figure_widget_class(go.FigureWidget, os.environ.get(PLOTLY_WIDGET_URL_ENV) or None)(fig)
        self.figures[name] = fig
        self.sizes[name] = (height, width)

    def draw(self, v: dict) -> None:
        """Update every figure in place (inside ``batch_update``) to show the view ``v``."""
        nat, rob = v["short"]["natural"], v["short"]["robust"]
        layer = short_name(v["layer"])
        pooled = v["pooled"]
        fig = self.figures["masks"]
        with fig.batch_update():
            fig.data[0].z, fig.data[1].z = _z(v["natural"]["matrix"]), _z(v["robust"]["matrix"])
            if pooled:
                fig.data[2].update(z=v["disagree_shown"], zmin=0, zmax=1, colorscale=_POOLED_SCALE,
                                   colorbar={"tickvals": None, "ticktext": None, "title": {"text": "differ"}})
            else:
                fig.data[2].update(z=v["code"], zmin=-0.5, zmax=3.5, colorscale=_CODE_SCALE,
                                   colorbar={"tickvals": [0, 1, 2, 3], "ticktext": list(CODE_NAMES),
                                             "title": {"text": ""}})
            ann = fig.layout.annotations
            ann[0].text = f"{nat}: {1 - v['natural']['sparsity'][v['layers'].index(v['layer'])]:.0%} kept"
            ann[1].text = f"{rob}: {1 - v['robust']['sparsity'][v['layers'].index(v['layer'])]:.0%} kept"
            ann[2].text = (f"disagreement (XOR): {v['layer_hamming']:.1%} of weights"
                           + (f" — pooled {pooled[0]}×{pooled[1]} blocks" if pooled else ""))
            shape = "×".join(map(str, v["shape"]))
            fig.layout.title.text = (f"<b>{layer}</b> [{shape}] — {v['state'].scheme}, {v['state'].pattern}, "
                                     f"{v['state'].sparsity:.0%} sparsity — IoU {v['layer_iou']:.2f} "
                                     f"(random {v['iou_random'][v['layers'].index(v['layer'])]:.2f})")
            for ax in ("xaxis", "xaxis2", "xaxis3"):
                fig.layout[ax].title.text = v["xlabel"] if ax == "xaxis2" else None
        names = [short_name(k) for k in v["layers"]]
        sel = v["layers"].index(v["layer"])
        outline = [3 if i == sel else 0 for i in range(len(names))]
        fig = self.figures["sparsity"]
        with fig.batch_update():
            for trace, side, label in zip(fig.data, ("natural", "robust"), (nat, rob), strict=True):
                trace.x, trace.y, trace.name = names, v[side]["sparsity"], label
                trace.marker.line.width, trace.marker.line.color = outline, "#000"
            fig.layout.title.text = (f"per-layer sparsity — overall {nat} {v['natural']['overall_sparsity']:.1%}, "
                                     f"{rob} {v['robust']['overall_sparsity']:.1%}")
        fig = self.figures["iou"]
        with fig.batch_update():
            fig.data[0].x, fig.data[0].y = names, v["iou"]
            fig.data[0].marker.line.width, fig.data[0].marker.line.color = outline, "#000"
            fig.data[1].x, fig.data[1].y = names, v["iou_random"]
            fig.layout.title.text = (f"overlap per layer — overall IoU {v['overall_iou']:.2f} "
                                     f"(two random masks: {v['overall_iou_random']:.2f})")
        fig = self.figures["channels"]
        with fig.batch_update():
            fig.data[0].z = np.stack([v["natural"]["survival"], v["robust"]["survival"]])
            fig.data[0].y = [nat, rob]
            filters = len(v["natural"]["survival"])
            kind = "whole filters (channel ticket)" if v["state"].pattern == "channel" else "weights kept per filter"
            fig.layout.title.text = (f"channel survival, {layer}: {kind}<br>filters alive {nat} "
                                     f"{v['natural']['filters_kept']}/{filters}, {rob} "
                                     f"{v['robust']['filters_kept']}/{filters}, shared {v['filters_shared']}")
        fig = self.figures["transfer"]
        groups = sorted(set(v["natural"]["transfer"]) | set(v["robust"]["transfer"]))
        with fig.batch_update():
            for trace, side, label in zip(fig.data, ("natural", "robust"), (nat, rob), strict=True):
                est = [mean_ci(v[side]["transfer"][g]) if v[side]["transfer"].get(g) else None for g in groups]
                trace.x = groups
                trace.y = [e.mean if e else None for e in est]
                trace.error_y = {"type": "data", "array": [(e.high - e.mean) if e else 0 for e in est],
                                 "visible": True, "thickness": 1}
                trace.name = f"{label} ticket"
                trace.text = [f"n={e.n}" if e else "" for e in est]
            fig.layout.xaxis.visible = bool(groups)
            fig.layout.annotations = [] if groups else [{
                "text": "no transfer results stored for these tickets", "showarrow": False,
                "xref": "paper", "yref": "paper", "x": 0.5, "y": 0.5, "font": {"size": 13, "color": "#666"}}]
            fig.layout.title.text = (f"downstream accuracy at {v['state'].sparsity:.0%} sparsity "
                                     f"(mean over seeds, 95% CI)")

    def static(self) -> list[go.Figure]:
        """Plain copies of the figures (for ``rtstudy.plots.show`` in a static report)."""
        return [go.Figure(self.figures[k]) for k in FIGURES]


def default_view_figures(data: ExplorerData) -> list[go.Figure]:
    """The explorer's default view as plain figures, without creating any widget (for a
    static report: a notebook run by papermill saves the state of every widget it created,
    and nbconvert then adds a CDN loader for it). Empty for an empty store."""
    state = data.default_state()
    if state is None:
        return []
    plots = ExplorerFigures(figure_widgets=False)
    plots.draw(data.view_data(state))
    return plots.static()


class MaskExplorer:
    """The E10 explorer: ``display(MaskExplorer().widget)`` in a notebook or a Voila page.

    ``controls``: ``source``, ``scheme``, ``pattern``, ``layer``, ``target`` (Dropdowns) and
    ``sparsity`` (SelectionSlider). ``figures``: ``masks``, ``sparsity``, ``iou``,
    ``channels``, ``transfer`` (FigureWidgets, or plain Figures without anywidget).
    ``set(...)`` changes several controls and redraws once; ``view_data()`` is what the
    figures show now; ``timings`` holds the seconds of each update (Python side).
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
        self.view: dict = {}
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
        self.plots = ExplorerFigures(self.use_figure_widgets)
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

    def view_data(self, state: ExplorerState | None = None) -> dict:
        """What the figures show for ``state`` (default: the controls' current state)."""
        return self.data.view_data(state or self.state())

    def set(self, **values) -> dict:
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
            if c["pattern"].value == "nm":
                _set_options(c["sparsity"], [(f"{d.n}:{d.m} ({s:.0%})", s) for s in spars])
            else:  # back from N:M: the sparsity chosen before
                _set_options(c["sparsity"], [(f"{s:.0%}", s) for s in spars],
                             keep=self._sparsity if c["pattern"].value != self._pattern else c["sparsity"].value)
            targets = []
        c["sparsity"].disabled = c["pattern"].value == "nm"
        if c["pattern"].value != "nm":
            self._sparsity = c["sparsity"].value
        self._pattern = c["pattern"].value
        if scheme == "imp_target" and targets:
            _set_options(c["target"], [(t, t) for t in targets], keep=c["target"].value)
            c["target"].disabled = False
        else:
            _set_options(c["target"], [("—", None)], keep=None)
            c["target"].disabled = True

    # -- drawing -------------------------------------------------------------------------
    def refresh(self) -> dict:
        """Recompute the view for the controls' state and update every figure in place."""
        if not self.controls:
            return {"message": self.message}
        start = time.perf_counter()
        view = self.view_data()
        self.view = view
        if view["message"]:
            self.status.value = f'<span style="color:#a00">{html.escape(view["message"])}</span>'
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


_CODE_SCALE = [[0.0, BOTH_PRUNED_COLOR], [0.25, BOTH_PRUNED_COLOR], [0.25, BOTH_KEPT_COLOR],
               [0.5, BOTH_KEPT_COLOR], [0.5, NATURAL_COLOR], [0.75, NATURAL_COLOR],
               [0.75, ROBUST_COLOR], [1.0, ROBUST_COLOR]]
_POOLED_SCALE = [[0.0, "#ffffff"], [1.0, "#6a3d9a"]]


def _z(matrix: np.ndarray) -> np.ndarray:
    """Heatmap data: plotly.js has no typed array for bools, so 0/1 as uint8."""
    return matrix.astype(np.uint8) if matrix.dtype == np.bool_ else matrix


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


def _status_html(v: dict) -> str:
    how = {True: "stored ticket", False: "drawn now by OMP, which needs no data"}
    st = v["state"]
    kinds = {side: ("dense" if v[side]["ticket_key"] == "dense" else how[v[side]["stored"]])
             for side in ("natural", "robust")}
    if st.scheme == "random":
        kinds = {s: k.replace("by OMP, which needs no data", "at random, seed 0") for s, k in kinds.items()}
    return (f'<div style="font-size:13px">IoU of kept weights <b>{v["overall_iou"]:.3f}</b> over all layers '
            f'(two random masks of these sparsities: {v["overall_iou_random"]:.3f}); '
            f'{v["hamming"]:.1%} of weights differ. Left: {html.escape(v["labels"]["natural"])} '
            f'({kinds["natural"]}); right: {html.escape(v["labels"]["robust"])} ({kinds["robust"]}).</div>')


# ----------------------------------------------------------------------------- E10 numbers
def anatomy(data: ExplorerData, *, scheme: str = "omp", patterns: Sequence[str] = ("unstructured", "channel", "nm"),
            sparsities: Sequence[float] | None = None, random_draws: int = 5) -> tuple[list[dict], list[dict]]:
    """The E10 numbers for every stored robust source vs the natural one.

    Returns ``(rows, summary)``: ``rows`` in ``rtstudy.results.row`` format (metrics
    ``iou``, ``iou_random`` (expected, ``expected_random_iou``), ``iou_random_drawn``
    (mean of ``random_draws`` pairs of the pipeline's random tickets), ``hamming``,
    ``filter_iou`` / ``filter_iou_random`` (channel), and per layer ``layer_iou`` and
    ``layer_sparsity_diff`` (robust - natural) and, for channel tickets,
    ``filters_alive_natural`` / ``_robust`` / ``_shared`` (fractions of the layer's filters)
    with a ``layer`` column); ``summary`` one
    dict per (source, pattern, sparsity) with the same numbers for ``anatomy_finding``.
    """
    from rtstudy.results import row

    rows: list[dict] = []
    summary: list[dict] = []
    if not data.sources:
        return rows, summary
    nat = data.natural
    task = nat.artifact.config["task"]
    # the report's numbers come from the profile's own source models, not whatever else is stored
    from rtstudy.core.store import config_hash

    profile_keys = {config_hash("source", source_config(data.profile, **spec))
                    for spec in data.profile.source_specs()}
    if profile_keys & set(data.by_key):
        sources = [s for s in data.sources if s.key in profile_keys]
    else:
        sources = data.sources
    for src in sources:
        if src.key == nat.key:
            continue
        for pattern in patterns:
            spars = data.sparsities(pattern) if sparsities is None or pattern == "nm" else sorted(
                {_skey(s) for s in sparsities if s > 0})
            for s in spars:
                a = data.mask(nat.key, scheme, pattern, s)
                b = data.mask(src.key, scheme, pattern, s)
                if a is None or b is None:
                    continue
                kw = {"n": data.n, "m": data.m} if pattern == "nm" else {}
                drawn = []
                for i in range(random_draws):
                    ra = tickets.random_mask(a.mask, pattern, seed=1000 + 2 * i, **kw)
                    rb = tickets.random_mask(b.mask, pattern, seed=1001 + 2 * i, **kw)
                    drawn.append(masks_mod.iou(ra, rb))
                sp_a, sp_b = masks_mod.layer_sparsity(a.weights), masks_mod.layer_sparsity(b.weights)
                liou = masks_mod.layer_iou(a.weights, b.weights)
                item = {
                    "source": src.label, "eps": src.eps, "eps_label": eps_label(src.eps, src.norm),
                    "kind": src.kind, "norm": src.norm, "pattern": pattern, "sparsity": s,
                    "iou": masks_mod.iou(a.weights, b.weights),
                    "iou_random": expected_random_iou(a.weights, b.weights),
                    "iou_random_drawn": statistics.mean(drawn) if drawn else float("nan"),
                    "iou_random_max": max(drawn) if drawn else float("nan"),
                    "hamming": masks_mod.hamming(a.weights, b.weights, normalized=True),
                    "layer_iou": liou,
                    "layer_sparsity_diff": {k: sp_b[k] - sp_a[k] for k in sp_a},
                }
                if pattern == "channel":
                    item["filter_iou"], item["filter_iou_random"] = filter_iou(a.weights, b.weights)
                    item["filters_alive"] = _filters_alive(a.weights, b.weights)
                summary.append(item)
                base = {"task": task, "source": src.label, "eps": src.eps, "scheme": scheme,
                        "pattern": pattern, "sparsity": s, "seed": 0}
                for metric in ("iou", "iou_random", "iou_random_drawn", "hamming", "filter_iou",
                               "filter_iou_random"):
                    if metric in item and not math.isnan(item[metric]):
                        rows.append(row(**base, metric=metric, value=item[metric]))
                for k, (fa, fb, shared) in item.get("filters_alive", {}).items():
                    for metric, value in (("filters_alive_natural", fa), ("filters_alive_robust", fb),
                                          ("filters_alive_shared", shared)):
                        rows.append(row(**base, metric=metric, value=value, layer=short_name(k)))
                for k in liou:
                    rows.append(row(**base, metric="layer_iou", value=liou[k], layer=short_name(k)))
                    rows.append(row(**base, metric="layer_sparsity_diff", value=item["layer_sparsity_diff"][k],
                                    layer=short_name(k)))
    return rows, summary


def _filters_alive(a: Mapping[str, torch.Tensor], b: Mapping[str, torch.Tensor]) -> dict[str, tuple]:
    """Per layer where either ticket removed whole filters: the fractions of filters alive in
    the natural ticket, in the robust one, and in both."""
    sa, sb = masks_mod.surviving_channels(a), masks_mod.surviving_channels(b)
    out = {}
    for k, va in masks_mod.weight_entries(a).items():
        filters = va.shape[0]
        na, nb = set(sa[k].tolist()), set(sb[k].tolist())
        if len(na) < filters or len(nb) < filters:
            out[k] = (len(na) / filters, len(nb) / filters, len(na & nb) / filters)
    return out


def _pct(values: Sequence[float]) -> str:
    return ", ".join(f"{v:.0%}" for v in values)


def anatomy_finding(summary: list[dict], data: ExplorerData) -> str:
    """The E10 finding in words, computed from ``anatomy``'s summary."""
    if not data.sources:
        return f"Nothing to compare: {data.message}"
    if not summary:
        return ("Nothing to compare: the store holds only the natural source model "
                f"({data.natural.label}); E10 needs a robust one too.")
    star = data.default_source()
    main_src = star.label if star is not None and not star.natural else summary[0]["source"]
    parts = []
    main = [s for s in summary if s["source"] == main_src and s["pattern"] == "unstructured"]
    if main:
        ious = [s["iou"] for s in main]
        rnd = [s["iou_random"] for s in main]
        above = all(s["iou"] > s["iou_random_max"] for s in main)
        ratios = [i / r for i, r in zip(ious, rnd, strict=True) if r > 0]
        text = (f"OMP tickets (unstructured) from the {main_src} model and from the natural model "
                f"overlap with IoU {', '.join(f'{i:.2f}' for i in ious)} (kept weights) at "
                f"{_pct([s['sparsity'] for s in main])} sparsity, vs {', '.join(f'{r:.2f}' for r in rnd)} "
                f"expected for two random masks of the same per-layer sparsities")
        if above and ratios:
            how = "far more than" if min(ratios) >= 1.5 else "more than"
            differ = max(s["hamming"] for s in main)
            same = (f"yet they are not the same subnetwork ({differ:.1%} of the weights differ at the "
                    f"highest sparsity)" if differ > 0 else "and they are the same subnetwork")
            text += (f" ({min(ratios):.1f}–{max(ratios):.1f}× chance, and above every drawn pair of "
                     f"random tickets): robust and natural tickets share {how} chance, {same}.")
        else:
            text += (" — not above every drawn pair of random tickets, so the overlap is not clearly "
                     "more than chance.")
        parts.append(text)
        focus = (data.profile.fixed_sparsities or (0.8,))[0]
        mid = min(main, key=lambda s: abs(s["sparsity"] - focus))
        layer, diff = max(mid["layer_sparsity_diff"].items(), key=lambda kv: abs(kv[1]))
        parts.append(
            f"At {mid['sparsity']:.0%} sparsity the per-layer sparsities differ most in {short_name(layer)}: "
            f"the robust ticket prunes {abs(diff) * 100:.1f} points {'more' if diff > 0 else 'less'} there.")
        by_eps = sorted((s for s in summary if s["pattern"] == "unstructured"
                         and abs(s["sparsity"] - mid["sparsity"]) < 1e-6
                         and s["kind"] == main[0]["kind"] and s["norm"] == main[0]["norm"]),
                        key=lambda s: s["eps"])
        if len(by_eps) >= 2:
            vals = [s["iou"] for s in by_eps]
            trend = ("falls steadily" if all(x > y for x, y in zip(vals, vals[1:], strict=False)) else
                     "rises steadily" if all(x < y for x, y in zip(vals, vals[1:], strict=False)) else
                     "does not change monotonically")
            parts.append(f"As ε grows the overlap with the natural ticket {trend}: IoU "
                         + ", ".join(f"{s['iou']:.2f} (ε={s['eps_label']})" for s in by_eps)
                         + f" at {mid['sparsity']:.0%}.")
    chan = [s for s in summary if s["source"] == main_src and s["pattern"] == "channel"
            and not math.isnan(s.get("filter_iou", float("nan")))]
    if chan:
        parts.append("Channel tickets keep the same filters with filter-IoU "
                     + ", ".join(f"{s['filter_iou']:.2f}" for s in chan)
                     + f" at {_pct([s['sparsity'] for s in chan])} (random choice of the same counts: "
                     + ", ".join(f"{s['filter_iou_random']:.2f}" for s in chan) + ").")
    nm = [s for s in summary if s["source"] == main_src and s["pattern"] == "nm"]
    if nm:
        parts.append(f"{data.n}:{data.m} tickets: IoU {nm[0]['iou']:.2f} (random {nm[0]['iou_random']:.2f}).")
    return " ".join(parts) if parts else "No comparable tickets were found."


def describe_environment() -> dict:
    """What renders the figures here (for the notebook's footer and for debugging)."""
    import plotly

    return {"plotly": plotly.__version__, "figure_widgets": figure_widgets_available(),
            "note": "" if figure_widgets_available() else
            "plotly's FigureWidget needs the 'anywidget' package (plotly >= 6), which is not "
            "installed: figures are re-rendered through an ipywidgets.Output instead."}


def summary_table(summary: list[dict]) -> str:
    """An HTML table of the E10 numbers (one row per source x pattern x sparsity)."""
    head = ("<tr><th>source</th><th>pattern</th><th>sparsity</th><th>IoU</th><th>random IoU (expected)</th>"
            "<th>random IoU (drawn)</th><th>weights differing</th><th>filter IoU (random)</th></tr>")
    body = []
    for s in summary:
        fi = s.get("filter_iou")
        filt = "" if fi is None or math.isnan(fi) else f"{fi:.3f} ({s['filter_iou_random']:.3f})"
        body.append(f"<tr><td>{html.escape(s['source'])}</td><td>{s['pattern']}</td><td>{s['sparsity']:.0%}</td>"
                    f"<td>{s['iou']:.3f}</td><td>{s['iou_random']:.3f}</td><td>{s['iou_random_drawn']:.3f}</td>"
                    f"<td>{s['hamming']:.1%}</td><td>{filt}</td></tr>")
    return f'<table class="rt-e10">{head}{"".join(body)}</table>'
