"""E12, the image prior: its grid as data, its results, and its finding.

    [grid] = grid_e12(P)                  # sizes from rtstudy.prior.sizes for P's name
    res = run_e12(grid)                   # rows, PSNR curves, last outputs, masks (stored)
    finding = prior_finding(res.rows)     # paired contrasts over (image, seed), Holm

Each (image, source seed) is one unit of replication: the network initialised under the
source seed, fitted to the image under each noise seed (averaged within the unit). On it
run the dense prior and the masked priors of every method (``METHODS``), all at the grid's
sparsity, each mask drawn at initialisation on that noisy image; and the OES mask learned
on the *previous* image of the list (same network and noise seed), transferred to this one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from rtstudy.core.descriptions import TicketDesc, TransferDesc
from rtstudy.core.pipeline import draw_ticket, transfer
from rtstudy.core.stats import PairedContrast, holm, paired_contrast
from rtstudy.core.store import Store
from rtstudy.experiments.findings import Finding
from rtstudy.prior.images import from_uint8
from rtstudy.prior.problem import DenoiseEvaluation, DenoiseRecipe, PriorSource, noisy_target
from rtstudy.prior.sizes import PriorSizes, prior_sizes
from rtstudy.results import row as make_row

# method -> (scheme, pattern, label); every mask is drawn at initialisation
METHODS = {
    "dense": (None, None, "dense"),
    "oes": ("oes", "unstructured", "OES (learned)"),
    "oes_random": ("oes_random", "unstructured", "random, OES layer budgets"),
    "omp": ("omp", "unstructured_layerwise", "magnitude at init"),
    "random": ("random", "unstructured_layerwise", "random"),
    "imp": ("imp_target", "unstructured_layerwise", "IMP (rewind to init)"),
}
TRANSFERRED = "oes_transferred"  # the OES mask learned on another image
LABELS = {**{k: v[2] for k, v in METHODS.items()}, TRANSFERRED: "OES from another image"}
METRICS = ("psnr_peak", "psnr_final", "psnr_drop", "psnr_peak_iteration", "ssim_peak", "ssim_final")


@dataclass(frozen=True)
class Cell:
    """One denoising run: ``method`` on ``image`` with the network of ``seed`` and the noise of
    ``noise_seed``, its mask drawn on ``mask_from``."""

    method: str
    image: str
    seed: int
    noise_seed: int
    mask_from: str
    desc: TransferDesc


@dataclass(frozen=True)
class PriorGrid:
    """E12's grid: ``images`` x network ``seeds`` x ``noise_seeds`` x methods (+ the
    transferred OES mask)."""

    sizes: PriorSizes
    images: tuple[str, ...]
    seeds: tuple[int, ...]
    noise_seeds: tuple[int, ...]
    sparsity: float
    sigma: float

    def __post_init__(self):
        if not self.images or not self.seeds or not self.noise_seeds:
            raise ValueError(f"E12 needs at least one image, network seed and noise seed; got "
                             f"images={self.images!r}, seeds={self.seeds!r}, "
                             f"noise_seeds={self.noise_seeds!r}")

    def source(self, seed: int) -> PriorSource:
        s = self.sizes
        return PriorSource(image_size=s.image_size, channels=s.channels, depth=s.depth, width=s.width,
                           skip=s.skip, code_channels=s.code_channels, seed=int(seed))

    def target(self, image: str, seed: int) -> str:
        return noisy_target(image, self.sigma, int(seed))

    @property
    def recipe(self) -> DenoiseRecipe:
        return DenoiseRecipe(iterations=self.sizes.iterations, lr=self.sizes.lr)

    def ticket(self, method: str, image: str, seed: int, noise_seed: int) -> TicketDesc | None:
        """The mask of ``method`` drawn at the initialisation of ``seed`` on ``image`` with the
        noise of ``noise_seed``."""
        scheme, pattern, _ = METHODS[method]
        if scheme is None:
            return None
        s, src, target = self.sizes, self.source(seed), self.target(image, noise_seed)
        common = dict(source=src, scheme=scheme, pattern=pattern, sparsity=self.sparsity)
        if scheme in ("oes", "oes_random"):
            return TicketDesc(**common, seed=int(seed) if scheme == "oes_random" else 0, target=target,
                              finetune=self.recipe, target_fraction=1.0,
                              options={"steps": s.oes_steps, "lr": s.oes_lr, "kl_weight": s.kl_weight})
        if scheme == "imp_target":
            return TicketDesc(**common, rate=s.imp_rate, epochs=float(s.imp_iterations), target=target,
                              finetune=self.recipe, target_fraction=1.0)
        return TicketDesc(**common, seed=int(seed) if scheme == "random" else 0)

    def cells(self) -> list[Cell]:
        out = []
        for seed in self.seeds:
            for noise in self.noise_seeds:
                for i, image in enumerate(self.images):
                    for method in METHODS:
                        out.append(self._cell(method, image, seed, noise, image,
                                              self.ticket(method, image, seed, noise)))
                    if len(self.images) > 1:
                        other = self.images[i - 1]
                        out.append(self._cell(TRANSFERRED, image, seed, noise, other,
                                              self.ticket("oes", other, seed, noise)))
        return out

    def _cell(self, method, image, seed, noise, mask_from, ticket) -> Cell:
        desc = TransferDesc(self.source(seed), ticket, self.target(image, noise), self.recipe,
                            DenoiseEvaluation(self.sizes.every), seed=int(noise))
        return Cell(method, image, int(seed), int(noise), mask_from, desc)

    def descriptions(self, profile=None) -> list[TransferDesc]:
        """Every denoising run E12 reads (with its ticket and source)."""
        return [c.desc for c in self.cells()]


def grid_e12(P, *, images=None, source_seeds=None, seeds=None, sparsity=None, sigma=None) -> list[PriorGrid]:
    """E12's grid under profile ``P`` (its sizes: ``rtstudy.prior.sizes``; ``None``: theirs).
    ``source_seeds``: the networks' initialisations (the unit of replication, with the
    image); ``seeds``: the noise drawn on each image."""
    s = prior_sizes(P)
    return [PriorGrid(s, tuple(images or s.images),
                      tuple(int(x) for x in (s.seeds if source_seeds is None else source_seeds)),
                      tuple(int(x) for x in (s.noise_seeds if seeds is None else seeds)),
                      float(s.sparsity if sparsity is None else sparsity),
                      float(s.sigma if sigma is None else sigma))]


# ----------------------------------------------------------------------------- results
@dataclass
class PriorResults:
    """E12's rows (one per run and metric), PSNR curves, last outputs and masks."""

    rows: list[dict] = field(default_factory=list)
    curves: dict[tuple, tuple[list[int], list[float]]] = field(default_factory=dict)
    outputs: dict[tuple, np.ndarray] = field(default_factory=dict)
    masks: dict[tuple, dict[str, torch.Tensor]] = field(default_factory=dict)


def run_e12(grid: PriorGrid, store: Store | None = None) -> PriorResults:
    """Every run of ``grid`` (built, or read from the store); keys ``(method, image, seed,
    noise seed)``; rows: ``seed`` the network's, ``noise_seed`` the noise's."""
    store = store or Store()
    res = PriorResults()
    for c in grid.cells():
        m = transfer(c.desc, store=store).metrics
        key = (c.method, c.image, c.seed, c.noise_seed)
        if c.desc.ticket is not None and c.method != TRANSFERRED:
            res.masks[key] = draw_ticket(c.desc.ticket, store=store).mask
        res.curves[key] = (m["curve_iterations"], m["curve_psnr"])
        res.outputs[key] = from_uint8(m["output_u8"])
        sparsity = grid.sparsity if c.desc.ticket is not None else 0.0
        for metric in METRICS:
            res.rows.append(make_row(c.image, c.desc.source.label, 0.0, c.method,
                                     METHODS.get(c.method, METHODS["oes"])[1] or "dense", sparsity,
                                     c.seed, metric, m[metric], method=LABELS[c.method],
                                     mask_from=c.mask_from, sigma=grid.sigma, noise_seed=c.noise_seed))
    return res


def layer_keep_rates(masks: dict[tuple, dict[str, torch.Tensor]]) -> dict[str, dict[str, float]]:
    """Per method, each layer's kept fraction, averaged over images and seeds."""
    out: dict[str, dict[str, list[float]]] = {}
    for (method, *_), mask in masks.items():
        for layer, m in mask.items():
            out.setdefault(method, {}).setdefault(layer, []).append(float(m.float().mean()))
    return {meth: {k: float(np.mean(v)) for k, v in layers.items()} for meth, layers in out.items()}


# ----------------------------------------------------------------------------- finding
def _values(rows: Sequence[dict], method: str, metric: str) -> dict[tuple, float]:
    """``{(image, network seed, noise seed): value}``."""
    return {(r["task"], r["seed"], r.get("noise_seed", 0)): r["value"] for r in rows
            if r["scheme"] == method and r["metric"] == metric}


def dB_contrast(rows: Sequence[dict], a: str, b: str, metric: str) -> PairedContrast:
    """``a − b`` in ``metric`` (dB for PSNR), paired on the same image, network and noise;
    the units are (image, network seed), the noise seeds averaged within them."""
    va, vb = _values(rows, a, metric), _values(rows, b, metric)
    diffs: dict[tuple, list[float]] = {}
    for u in va:
        if u in vb:
            diffs.setdefault(u[:2], []).append(va[u] - vb[u])
    return paired_contrast(diffs, key=(a, b, metric))


def _db(x: float) -> str:
    return f"{round(x, 2) + 0.0:+.2f} dB"


def _say(c: PairedContrast) -> str:
    a, b, _ = c.key
    if not c.has_interval:
        return f"{LABELS[a]} − {LABELS[b]}: {_db(c.diff)} (a single unit, no interval)"
    stats = f"95% CI [{_db(c.low)}, {_db(c.high)}], Holm-adjusted p = {c.p_adjusted:.2g}"
    if c.key[2] == "psnr_drop" and c.verdict != "tie":  # a drop: smaller is better
        more = "more" if c.diff > 0 else "less"
        return f"{LABELS[a]} drops {abs(c.diff):.2f} dB {more} than {LABELS[b]} ({stats})"
    if c.verdict == "better":
        return f"{LABELS[a]} beats {LABELS[b]} by {_db(c.diff)} ({stats})"
    if c.verdict == "worse":
        return f"{LABELS[a]} trails {LABELS[b]} by {_db(c.diff)} ({stats})"
    mde = f"{c.mde:.2f} dB" if np.isfinite(c.mde) else "∞"
    if c.p < c.alpha <= c.p_adjusted:  # separated before the correction, not after
        return (f"{LABELS[a]} vs {LABELS[b]}: not separated after the Holm correction (observed "
                f"{_db(c.diff)}, {stats}, p = {c.p:.2g} before it; the design detects {mde} at 80% "
                "power before the correction)")
    return (f"{LABELS[a]} vs {LABELS[b]}: no difference larger than {mde} (the smallest the design "
            f"detects at 80% power; observed {_db(c.diff)}, {stats})")


def _mean(rows: Sequence[dict], method: str, metric: str) -> float:
    v = list(_values(rows, method, metric).values())
    return float(np.mean(v)) if v else float("nan")


def prior_finding(rows: Sequence[dict]) -> Finding:
    """Does the sparse prior resist the noise? Dense vs OES peak/final/drop (means), then the
    paired contrasts (final PSNR: OES vs dense and every baseline; the drop; the transferred
    mask vs the mask learned on the image and vs random), Holm-corrected together."""
    rows = list(rows)
    if not rows:
        return Finding("E12 has no results.")
    units = {(r["task"], r["seed"]) for r in rows}
    noises = {r.get("noise_seed", 0) for r in rows}
    pairs = [("oes", "dense", "psnr_final"), ("oes", "dense", "psnr_drop"),
             ("oes", "dense", "psnr_peak")]
    pairs += [("oes", m, "psnr_final") for m in METHODS if m not in ("oes", "dense")]
    transfer_pairs = [(TRANSFERRED, "oes", "psnr_final"), (TRANSFERRED, "random", "psnr_final"),
                      (TRANSFERRED, "dense", "psnr_final")]
    present = {r["scheme"] for r in rows}
    pairs = [p for p in pairs if p[0] in present and p[1] in present]
    transfer_pairs = [p for p in transfer_pairs if p[0] in present and p[1] in present]
    cs = holm([dB_contrast(rows, *p) for p in pairs + transfer_pairs])
    main, moved = cs[:len(pairs)], cs[len(pairs):]

    def curve(method: str) -> str:
        return (f"{LABELS[method]} peaks at {_mean(rows, method, 'psnr_peak'):.2f} dB (iteration "
                f"~{_mean(rows, method, 'psnr_peak_iteration'):.0f}) and ends at "
                f"{_mean(rows, method, 'psnr_final'):.2f} dB (drop {_mean(rows, method, 'psnr_drop'):.2f} dB)")

    sparsity = next((r["sparsity"] for r in rows if r["scheme"] == "oes"), float("nan"))
    opening = (f"Over {len(units)} (image, network seed) units × {len(noises)} noise "
            f"seed{'' if len(noises) == 1 else 's'}, the {curve('dense')}; at {sparsity:.0%} sparsity "
            f"the {curve('oes')}.")
    first = [c for c in main if c.key[2] in ("psnr_final", "psnr_drop", "psnr_peak") and c.key[1] == "dense"]
    names = {"psnr_final": "final PSNR", "psnr_drop": "drop from peak to final", "psnr_peak": "peak PSNR"}
    vs_dense = "; ".join(f"{names[c.key[2]]}: {_say(c)}" for c in first)
    rest = [c for c in main if c not in first]
    baselines = ("Final PSNR against the baselines at the same sparsity: " + "; ".join(_say(c) for c in rest)
                 + ".") if rest else ""
    transfer_text = ("Mask transfer (OES mask learned on another image, final PSNR): "
                     + "; ".join(_say(c) for c in moved) + ".") if moved else ""
    design = (f"Paired differences (same image, network initialisation and noise), averaged over "
              f"the noise seeds within each of the {len(units)} (image, network seed) units; t "
              f"intervals over the units; Holm across the {len(cs)} contrasts of this "
              "notebook (α = 0.05); a tie reads \"no difference larger than X\", X the smallest true "
              "difference the design detects with 80% power.")
    return Finding(" ".join([opening, f"Against dense: {vs_dense}.", baselines, transfer_text, design]),
                   [p for p in (opening, f"Against dense: {vs_dense}.", baselines, transfer_text, design) if p])
