"""Store indexing and the view: the tickets of one source family, and what the figures show.

``ExplorerData`` reads the stored source models, tickets and transfer results of one family
(same task, model, recipe; only the robustness differs) and caches models and masks;
``ExplorerData.view_data(state)`` computes a ``View``, the data of every figure, without
any widget.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch

from rtstudy.core import masks as masks_mod
from rtstudy.core import tickets
from rtstudy.core.checks import check_choice
from rtstudy.core.descriptions import TicketDesc
from rtstudy.core.patterns import NM, Pattern, make_pattern, pattern_from_config
from rtstudy.core.pipeline import load_model
from rtstudy.core.schemes import SCHEMES as _SCHEME_REGISTRY
from rtstudy.core.schemes import get_scheme
from rtstudy.core.store import Artifact, Store, canonical_json
from rtstudy.explorer.analytics import expected_random_iou, random_iou, sparsity_key
from rtstudy.profiles import Profile, get_profile
from rtstudy.vision.track import VisionSource, eps_label

SCHEMES = _SCHEME_REGISTRY.names()
PATTERNS = tickets.PATTERNS
# they need training: only what is stored
STORED_ONLY_SCHEMES = tuple(s for s in SCHEMES if _SCHEME_REGISTRY.get(s).trains)
# disagreement codes of the third heatmap
BOTH_PRUNED, BOTH_KEPT, NATURAL_ONLY, ROBUST_ONLY = 0, 1, 2, 3
MAX_CELLS = 60_000  # heatmap cells per panel before blocks are pooled (resnet8 never pools)


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


@dataclass(frozen=True, eq=False)
class Side:
    """One side of a ``View`` (the natural ticket or the chosen one)."""

    label: str  # the source model's full label
    short: str  # its short label (legends, titles)
    matrix: np.ndarray  # the layer's mask as shown (kept fractions when pooled)
    mask_matrix: np.ndarray  # the layer's mask (bool, ``ExplorerData.matrix``)
    sparsity: list[float]  # per layer (``masks.layer_sparsity``)
    overall_sparsity: float
    survival: np.ndarray  # per filter of the layer (``masks.channel_survival``)
    filters_kept: int
    ticket_key: str | None  # ``dense`` at sparsity 0, ``None`` when drawn in memory
    stored: bool
    transfer: dict[str, list[float]]  # test accuracies by group (``transfer_results``)


@dataclass(frozen=True, eq=False)
class View:
    """Everything the figures show for one ``ExplorerState``.

    With a ``message`` (empty store, missing ticket) only ``layers`` is set besides it.
    Per-layer lists follow ``layers``; ``pooled`` is the block size when a big layer is
    pooled to ``max_cells`` (the ``matrix`` fields then hold kept fractions), else ``None``.
    """

    message: str = ""  # "" when all is well
    layers: list[str] = field(default_factory=list)  # the weight entries
    state: ExplorerState | None = None  # the state shown (layer and sparsity resolved)
    layer: str = ""
    shape: tuple[int, ...] = ()  # of the layer's weight
    xlabel: str = ""  # x-axis title of the heatmaps
    natural: Side | None = None
    robust: Side | None = None
    filters_shared: int = 0  # filters of the layer alive in both tickets
    disagree: np.ndarray | None = None  # XOR of the two mask matrices
    disagree_shown: np.ndarray | None = None  # as shown (pooled: fraction differing)
    code: np.ndarray | None = None  # BOTH_PRUNED ... ROBUST_ONLY per weight; None when pooled
    pooled: tuple[int, int] | None = None
    iou: list[float] = field(default_factory=list)  # per layer (``masks.layer_iou``)
    iou_random: list[float] = field(default_factory=list)  # per layer (``random_iou``)
    layer_iou: float = math.nan
    overall_iou: float = math.nan
    overall_iou_random: float = math.nan  # ``expected_random_iou``
    hamming: float = math.nan  # fraction of all weights that differ
    layer_hamming: float = math.nan  # fraction of the layer's weights that differ

    @property
    def layer_index(self) -> int:
        return self.layers.index(self.layer)


class _MemoryDrawing:
    """A ``Drawing`` that never trains or writes: other tickets come from ``reference``."""

    def __init__(self, model: torch.nn.Module,
                 reference: Callable[[TicketDesc], Mapping[str, torch.Tensor]] | None):
        self.model = model
        self.device = next(model.parameters()).device
        self._reference = reference

    def ticket(self, desc: TicketDesc) -> dict[str, torch.Tensor]:
        if self._reference is not None:
            return dict(self._reference(desc))
        return get_scheme(desc.scheme).draw(self, desc)

    def imp(self, desc: TicketDesc, on_target: bool) -> dict[str, torch.Tensor]:
        raise ValueError(f"scheme {desc.scheme!r} needs training; the explorer shows only stored ones")


def draw_in_memory(desc: TicketDesc, model: torch.nn.Module, *,
                   reference: Callable[[TicketDesc], Mapping[str, torch.Tensor]] | None = None,
                   ) -> dict[str, torch.Tensor]:
    """The mask of ``desc`` drawn from ``model`` by its scheme, without the store (schemes
    that need no training). ``reference(desc)`` supplies another ticket a scheme builds on
    (random: its OMP twin); by default that one is drawn here too."""
    scheme = get_scheme(desc.scheme)
    if scheme.trains:
        raise ValueError(f"scheme {desc.scheme!r} needs training and cannot be drawn in memory; "
                         f"allowed: {', '.join(s for s in SCHEMES if s not in STORED_ONLY_SCHEMES)}")
    return scheme.draw(_MemoryDrawing(model, reference), desc)


def _family(config: dict) -> str:
    """What two source models must share to be compared: everything but the robustness."""
    rest = {k: v for k, v in config.items() if k not in ("attack", "eval_attack", "train", "robust_n")}
    rest["train"] = {k: v for k, v in config.get("train", {}).items() if k != "attack"}
    return canonical_json(rest)


class ExplorerData:
    """The stored source models of one family, their masks (cached) and transfer results.

    ``profile`` picks the family (task, model, width, recipe of ``profile.source_model(0)``);
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
        wanted = _family(self.profile.source_model(0.0).config())
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
                label = VisionSource.from_config(art.config).config_label
                short = "natural" if eps == 0 else f"robust ε={eps_label(eps, norm)}"
                if eps and (kind, norm) != (self.profile.robust_kind, self.profile.norm):
                    short += f" ({kind} {norm})"
                entries.append(SourceEntry(art.key, label, short, eps, kind, norm, art))
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
            pat = pattern_from_config(c)
            if pat != self.pattern(pat.name):  # an N:M ticket of another N and M
                continue
            pattern, sparsity = pat.name, self._sparsity(pat.name, c["sparsity"])
            key = (c["source"], c["scheme"], pattern, sparsity_key(sparsity), c.get("target"),
                   c.get("seed", 0))
            self._tickets[key] = art
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

    def pattern(self, name: str) -> Pattern:
        """The pattern ``name`` as the explorer shows it (N:M with its ``n`` and ``m``)."""
        return make_pattern(name, n=self.n, m=self.m)

    def _sparsity(self, pattern: str, sparsity: float) -> float:
        implied = self.pattern(pattern).implied_sparsity
        return sparsity if implied is None else implied

    def model(self, key: str):
        if key not in self._models:
            art = self.by_key[key].artifact
            self._models[key] = load_model(VisionSource.from_config(art.config), art)
        return self._models[key]

    # -- options -------------------------------------------------------------------------
    def sparsities(self, pattern: str) -> list[float]:
        """Sparsities offered for OMP/random: the profile's (above 0); N:M has its implied one."""
        implied = self.pattern(pattern).implied_sparsity
        if implied is not None:
            return [sparsity_key(implied)]
        offered = (*self.profile.sparsities, *self.profile.fixed_sparsities)
        values = sorted({sparsity_key(s) for s in offered if s > 0})
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
        sparsity = self._sparsity(pattern, sparsity)
        if not get_scheme(scheme).needs_target:
            target = None
        cache_key = (source_key, scheme, pattern, sparsity_key(sparsity), target, seed)
        if cache_key not in self._masks:
            self._masks[cache_key] = self._load_mask(*cache_key)
        return self._masks[cache_key]

    def _load_mask(self, source_key, scheme, pattern, sparsity, target, seed) -> TicketMask | None:
        if self.pattern(pattern).is_dense(sparsity):
            model = self.model(source_key)
            params = dict(model.named_parameters())
            full = {k: torch.ones_like(params[k], dtype=torch.bool) for k in tickets.prunable_names(model)}
            return TicketMask(full, full, "dense", False)
        art = self._tickets.get((source_key, scheme, pattern, sparsity_key(sparsity), target, seed))
        if art is not None:
            full = {k: v.bool() for k, v in art.tensors("mask").items()}
            return TicketMask(full, masks_mod.weight_entries(full), art.key, True)
        if scheme in STORED_ONLY_SCHEMES:
            return None
        def reference(other: TicketDesc):
            return self.mask(source_key, other.scheme, pattern, sparsity, seed=other.seed).mask

        source = VisionSource.from_config(self.by_key[source_key].artifact.config)
        desc = TicketDesc(source, scheme, self.pattern(pattern), sparsity, seed=seed)
        full = draw_in_memory(desc, self.model(source_key), reference=reference)
        return TicketMask(full, masks_mod.weight_entries(full), None, False)

    def matrix(self, weight_mask: torch.Tensor, pattern: str) -> tuple[np.ndarray, str]:
        """The 2-D view of one weight mask and its x-axis title (N:M: groups side by side)."""
        if isinstance(self.pattern(pattern), NM) and weight_mask.dim() >= 2:
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
    def view_data(self, state: ExplorerState) -> View:
        """Everything the figures show for ``state`` (no widgets involved)."""
        if not self.sources:
            return View(message=self.message, layers=[])
        check_choice("source", state.source, list(self.by_key))
        nat, src = self.natural, self.by_key[state.source]
        a = self.mask(nat.key, state.scheme, state.pattern, state.sparsity, state.target)
        b = self.mask(src.key, state.scheme, state.pattern, state.sparsity, state.target)
        if a is None or b is None:
            missing = [e.label for e, t in ((nat, a), (src, b)) if t is None]
            message = (f"no stored {state.scheme} ticket ({state.pattern}, "
                       f"{state.sparsity:.0%}) for {' and '.join(missing)}")
            return View(message=message, layers=self.layers)
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

        def side(entry, ticket, matrix, mask, sp, survival, kept) -> Side:
            return Side(label=entry.label, short=entry.short, matrix=matrix, mask_matrix=mask,
                        sparsity=[sp[k] for k in layers], overall_sparsity=masks_mod.sparsity(ticket.weights),
                        survival=survival, filters_kept=len(kept), ticket_key=ticket.ticket_key,
                        stored=ticket.stored, transfer=self.transfer_results(entry.key, ticket.ticket_key))

        state_used = replace(state, layer=layer, source=src.key,
                             sparsity=sparsity_key(self._sparsity(state.pattern, state.sparsity)))
        return View(
            state=state_used,
            message="",
            layers=layers,
            layer=layer,
            shape=tuple(a.weights[layer].shape),
            xlabel=xlabel,
            natural=side(nat, a, shown["natural"], ma, sp_a, surv_a, fa),
            robust=side(src, b, shown["robust"], mb, sp_b, surv_b, fb),
            filters_shared=len(fa & fb),
            disagree=disagree,
            disagree_shown=shown["disagree"],
            code=shown["code"],
            pooled=pooled,
            iou=[liou[k] for k in layers],
            iou_random=[random_iou(*keep[k]) for k in layers],
            layer_iou=liou[layer],
            overall_iou=masks_mod.iou(a.weights, b.weights),
            overall_iou_random=expected_random_iou(a.weights, b.weights),
            hamming=masks_mod.hamming(a.weights, b.weights, normalized=True),
            layer_hamming=float(disagree.mean()) if disagree.size else 0.0,
        )


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
