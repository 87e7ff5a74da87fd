"""The three stages of the study, each a content-addressed artifact in a ``Store``.

    pretrain(SourceDesc)      -> Source     (kind "source")
    draw_ticket(TicketDesc)   -> Ticket     (kind "ticket"; IMP rounds "imp_round")
    transfer(TransferDesc)    -> Artifact   (kind "transfer")

Each stage takes a description (``rtstudy.core.descriptions``) and asks the source's
track (``rtstudy.core.track``) for everything that touches data or a model. Asking
twice for the same description returns the stored artifact and does no work; an
interrupted IMP resumes from its last finished round.
"""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass, field

import torch
import torch.nn as nn

from rtstudy.core import masks as masks_mod
from rtstudy.core import tickets
from rtstudy.core.descriptions import ImpRoundDesc, SourceDesc, TicketDesc, TransferDesc
from rtstudy.core.masks import Mask
from rtstudy.core.schemes import get_scheme
from rtstudy.core.store import Artifact, Builder, Store
from rtstudy.core.track import default_device, track_of


# ----------------------------------------------------------------------------- stage 1
@dataclass
class Source:
    """A pretrained source model: its description, its artifact, its model (loaded lazily)."""

    desc: SourceDesc
    artifact: Artifact
    device: torch.device = field(default_factory=default_device)

    @functools.cached_property
    def model(self) -> nn.Module:
        return load_model(self.desc, self.artifact, self.device)

    @property
    def key(self) -> str:
        return self.artifact.key

    @property
    def label(self) -> str:
        return self.desc.label


def load_model(desc: SourceDesc, artifact: Artifact, device: torch.device | str = "cpu") -> nn.Module:
    """A fresh copy of the stored source model, in eval mode."""
    return track_of(desc).load_model(artifact.meta, artifact.tensors("model"), torch.device(device))


def pretrain(desc: SourceDesc, *, store: Store | None = None, device: str | torch.device | None = None,
             progress: bool | None = None) -> Source:
    """Train the source model ``desc`` (or read it from the store)."""
    store = store or Store()
    device = torch.device(device) if device is not None else default_device()
    track = track_of(desc)

    def compute(b: Builder) -> None:
        model, metrics, extra = track.pretrain(desc, device=device, progress=progress)
        b.metrics.update(metrics)
        b.extra.update(extra)
        b.save("model", model.state_dict())

    return Source(desc, store.get_or_create(desc.kind, desc.config(), compute), device)


# ----------------------------------------------------------------------------- stage 2
@dataclass
class Ticket:
    """A drawn mask and its artifact (``artifact`` and ``mask`` are ``None`` for dense)."""

    desc: TicketDesc | None
    artifact: Artifact | None
    mask: Mask | None

    @property
    def key(self) -> str:
        return self.artifact.key if self.artifact else "dense"

    @property
    def sparsity(self) -> float:
        return self.artifact.metrics["achieved_sparsity"] if self.artifact else 0.0


DENSE = Ticket(None, None, None)


class _StoredDrawing:
    """The ``Drawing`` of the pipeline: other tickets and IMP rounds come from the store."""

    def __init__(self, source: Source, store: Store, progress: bool | None):
        self.source, self.store, self.progress = source, store, progress

    @functools.cached_property
    def model(self) -> nn.Module:
        return self.source.model

    @property
    def device(self) -> torch.device:
        return self.source.device

    def ticket(self, desc: TicketDesc) -> Mask:
        return draw_ticket(desc, store=self.store, progress=self.progress, source=self.source).mask

    def imp(self, desc: TicketDesc, on_target: bool) -> Mask:
        model = load_model(self.source.desc, self.source.artifact, self.source.device)
        retrain = track_of(desc.source).imp_retrainer(desc, model, on_target=on_target,
                                                      device=self.source.device)
        return _imp(desc, model, retrain, self.store, train_first=on_target)


def draw_ticket(desc: TicketDesc, *, store: Store | None = None, progress: bool | None = None,
                source: Source | None = None) -> Ticket:
    """The mask ``desc`` describes, drawn once and stored (IMP round by round)."""
    if desc.dense:
        return DENSE
    store = store or Store()
    scheme = get_scheme(desc.scheme)

    def compute(b: Builder) -> None:
        src = source if source is not None else pretrain(desc.source, store=store)
        drawing = _StoredDrawing(src, store, progress)
        mask = scheme.draw(drawing, desc)
        b.save("mask", mask)
        report = tickets.mask_report(drawing.model, mask, desc.sparsity)
        b.metrics.update(achieved_sparsity=report["achieved"], requested_sparsity=desc.sparsity)
        b.extra.update(report=report)

    art = store.get_or_create(desc.kind, desc.config(), compute)
    return Ticket(desc, art, {k: v.bool() for k, v in art.tensors("mask").items()})


def _imp(desc: TicketDesc, model: nn.Module, retrain, store: Store, *, train_first: bool) -> Mask:
    """Iterative magnitude pruning; each finished round is an artifact, so it resumes."""
    rewind = {k: v.clone() for k, v in model.state_dict().items()}
    schedule = desc.pattern.imp_schedule(desc.sparsity, desc.rate)
    start = None
    for r in range(len(schedule)):  # resume: the last stored round
        found = store.get(ImpRoundDesc.kind, ImpRoundDesc(desc, r).config())
        if found is None:
            break
        start = (r, {k: v.bool() for k, v in found.tensors("mask").items()})
    if start is not None and start[0] == len(schedule) - 1:
        return start[1]
    if start is not None:
        model.load_state_dict(rewind)
    mask = None
    for r, mask in tickets.imp(model, desc.pattern, desc.sparsity, rate=desc.rate, retrain=retrain,
                               rewind_state=rewind, start=start, train_first=train_first):
        round_desc = ImpRoundDesc(desc, r)
        store.get_or_create(round_desc.kind, round_desc.config(),
                            lambda b, mask=mask, r=r: (b.save("mask", mask),
                                                       b.metrics.update(round=r, sparsity=masks_mod.sparsity(mask))))
    return mask


# ----------------------------------------------------------------------------- stage 3
def transfer(desc: TransferDesc, *, store: Store | None = None, progress: bool | None = False,
             device: str | torch.device | None = None, source: Source | None = None,
             ticket: Ticket | None = None) -> Artifact:
    """Train ``source ⊙ mask`` on the target (the mask fixed) as ``desc`` says; stored.

    Metrics: the track's (e.g. ``test_acc``, ``robust_acc``), plus ``sparsity`` of the
    prunable weights after training (measured, not assumed), ``moved`` (how far training
    moved them, relative to where it started) and ``train_seconds``.
    """
    store = store or Store()

    def compute(b: Builder) -> None:
        src = source if source is not None else pretrain(desc.source, store=store, device=device)
        tk = ticket if ticket is not None else (
            DENSE if desc.dense else draw_ticket(desc.ticket, store=store, source=src))
        dev = torch.device(device) if device is not None else src.device
        model = load_model(desc.source, src.artifact, dev)
        if desc.scratch:  # the control: the same architecture (and mask) on random weights
            track_of(desc.source).reinitialize(model, desc.init_seed)
        t0 = time.perf_counter()
        handle = None
        if tk.mask is not None:
            handle = masks_mod.apply_mask(model, tk.mask)
        params = dict(model.named_parameters())
        prunable = tickets.prunable_names(model)
        start = {k: params[k].detach().clone() for k in prunable}  # masked: what training starts from
        b.metrics.update(track_of(desc.source).transfer(
            desc, model, handle.attach if handle is not None else None, device=dev, progress=progress))
        b.metrics["train_seconds"] = round(time.perf_counter() - t0, 3)
        params = dict(model.named_parameters())
        total = sum(params[k].numel() for k in prunable)
        zeros = sum(int((params[k] == 0).sum()) for k in prunable)
        b.metrics["sparsity"] = zeros / max(1, total)
        b.metrics["moved"] = _relative_distance({k: params[k].detach() for k in prunable}, start)

    return store.get_or_create(desc.kind, desc.config(), compute)


def _relative_distance(after: dict[str, torch.Tensor], before: dict[str, torch.Tensor]) -> float:
    """‖after − before‖ / ‖before‖ over the prunable weights (how far training moved them)."""
    num = sum(float((after[k] - before[k]).float().pow(2).sum()) for k in before)
    den = sum(float(before[k].float().pow(2).sum()) for k in before)
    return (num / den) ** 0.5 if den > 0 else float("nan")
