"""SuperTickets (You et al., ECCV 2022): search the architecture and prune the weights in one
training, as ticket schemes of the image-classification track.

``superticket`` draws its ticket *during* one supernet training on the source (natural or
adversarial, as the source was trained), starting from the source's pretrained weights
(the supernet is the source network with elastic inner widths, ``rtstudy.vision.supernet``):

* every optimiser step, the L1 penalty's proximal step shrinks the blocks' BN scales;
* at ``events`` evenly spaced steps over the first ``prune_end`` of the training (the
  schedule), the search removes the channels whose |γ| fell below ``threshold`` times the
  mean |γ| the blocks had at the start (rounded up to an allowed width, never restored),
  and magnitude pruning brings the prunable weights to that event's sparsity, the
  cubic ramp ``s·(1 − (1 − k/n)³)`` (Zhu & Gupta 2017) or an explicit ``schedule``;
* with ``regrow`` > 0 (prune-and-regrow, RigL-style), each event prunes a further
  ``regrow`` of that many weights and lets as many pruned weights return where the last
  step's gradient is largest (a weight pruned earlier can come back, at zero); the
  sparsity after every event is the event's target, exactly.

The ticket is the final mask (weights, plus the removed channels' BN scale and shift), and
like every ticket it is applied to the pretrained source weights when transferred.

``search_then_prune`` is the pipeline SuperTickets replaces: the same supernet training
with the penalty, the channels removed once at its end (the search), then IMP on the
searched architecture (``rate``, ``epochs`` per round, rewinding to the pretrained
weights; each round retrains the slim network). Plain IMP on the dense model is the core's
``imp_source``.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping
from typing import Any, ClassVar

import torch
import torch.nn as nn

from rtstudy.core import masks as masks_mod
from rtstudy.core.checks import check_range
from rtstudy.core.descriptions import TicketDesc
from rtstudy.core.masks import Mask
from rtstudy.core.prunable import prunable_names
from rtstudy.core.schemes import SCHEMES, Drawing, Scheme
from rtstudy.vision import supernet
from rtstudy.vision.track import VisionSource, source_task, subset
from rtstudy.vision.train import TrainConfig, train

SUPERTICKET, SEARCH_THEN_PRUNE = "superticket", "search_then_prune"
SCHEMES_HERE = (SUPERTICKET, SEARCH_THEN_PRUNE)


# ----------------------------------------------------------------------------- schedule
def cubic_targets(sparsity: float, events: int) -> list[float]:
    """The sparsity after each of ``events`` pruning events: ``s·(1 − (1 − k/n)³)``."""
    return [sparsity * (1 - (1 - k / events) ** 3) for k in range(1, events + 1)]


def parse_schedule(schedule: str, sparsity: float) -> list[float]:
    """An explicit schedule (comma-separated sparsities, non-decreasing, none past the
    ticket's ``sparsity``; the target is appended when the last is below it)."""
    try:
        values = [float(v) for v in schedule.split(",")]
    except ValueError:
        raise ValueError(f"schedule {schedule!r} must be comma-separated sparsities, e.g. "
                         f"'0.4,0.7,0.8'") from None
    for v in values:
        if v > sparsity + 1e-12:
            raise ValueError(f"schedule step {v!r} in {schedule!r} prunes past the target "
                             f"sparsity {sparsity!r}")
        check_range("schedule step", v, 0.0, 1.0, high_open=True)
    if any(b < a for a, b in zip(values, values[1:], strict=False)):
        raise ValueError(f"schedule {schedule!r} must not decrease (pruned weights only return "
                         "by regrowth)")
    return values if math.isclose(values[-1], sparsity) else [*values, sparsity]


def schedule_targets(desc: TicketDesc) -> list[float]:
    """The per-event sparsities of a ``superticket`` description."""
    text = desc.option("schedule")
    if text:
        return parse_schedule(text, desc.sparsity)
    return cubic_targets(desc.sparsity, desc.option("events"))


def training_epochs(desc: TicketDesc) -> float:
    """Epochs of supernet training and retraining a drawing of ``desc`` takes at most (for a
    plan's time estimate): search-then-prune counts every IMP round of its schedule."""
    if desc.scheme == SEARCH_THEN_PRUNE:
        rounds = len(desc.pattern.imp_schedule(desc.sparsity, desc.rate))
        return desc.option("search_epochs") + rounds * desc.epochs
    return desc.epochs


def total_steps(n: int, recipe: TrainConfig) -> int:
    """The optimiser steps ``rtstudy.vision.train.train`` takes on ``n`` examples."""
    batch = min(recipe.batch_size, n)
    return max(1, recipe.min_steps, round(recipe.epochs * (n // batch)))


def event_steps(total: int, events: int, end: float) -> list[int]:
    """The steps (1-based, after the optimiser step) at which the events happen: evenly
    spaced over the first ``end`` of ``total``; two events never share a step."""
    steps = [max(1, round(end * total * k / events)) for k in range(1, events + 1)]
    for i in range(1, len(steps)):
        steps[i] = max(steps[i], steps[i - 1] + 1)
    return steps


# ----------------------------------------------------------------------------- two-in-one
class TwoInOne:
    """The search and the pruning of one supernet training, as an optimiser step hook.

    ``attach(optimizer)`` runs after every step: the scales' penalty, an event where one is
    due (``targets[i]`` at ``steps[i]``), then the mask re-applied (pruned weights and
    removed channels stay exactly zero, momentum notwithstanding). ``prune=False``: events
    only search (the weights stay dense but for removed channels). ``history`` holds one
    dict per event; ``mask`` the current ticket.
    """

    def __init__(self, model: nn.Module, *, targets: list[float], steps: list[int],
                 penalty: float, threshold: float, widths: str, regrow: float = 0.0,
                 prune: bool = True):
        if len(targets) != len(steps):
            raise ValueError(f"{len(targets)} targets for {len(steps)} event steps")
        check_range("penalty", penalty, 0.0, 1.0, high_open=True)
        check_range("threshold", threshold, 0.0, 1.0, low_open=True, high_open=True)
        check_range("regrow", regrow, 0.0, 1.0, high_open=True)
        self.model, self.targets, self.steps = model, list(targets), list(steps)
        self.penalty, self.regrow, self.prune = penalty, regrow, prune
        self.groups = supernet.elastic_groups(model)
        self.counts = supernet.width_counts(model, widths)
        gammas = supernet.scales(model, self.groups)
        self.threshold = threshold * float(torch.cat([g.detach().abs().flatten()
                                                      for g in gammas.values()]).mean())
        self.alive = {k: torch.ones(len(g), dtype=torch.bool) for k, g in gammas.items()}
        self.names = prunable_names(model)
        self.mask: Mask = supernet.channel_mask(model, self.groups, self.alive)
        self.total = sum(v.numel() for k, v in self.mask.items() if k in self.names)
        self.step, self.history = 0, []
        self._float: dict[str, torch.Tensor] = {}

    # -- the hook
    def attach(self, optimizer: torch.optim.Optimizer) -> TwoInOne:
        optimizer.register_step_post_hook(lambda opt, args, kwargs: self.after_step(opt))
        self.apply()
        return self

    def after_step(self, optimizer: torch.optim.Optimizer) -> None:
        lr = optimizer.param_groups[0]["lr"]
        supernet.shrink_scales(self.model, self.groups, lr * self.penalty)
        self.step += 1
        if self.step in self.steps:
            self.event(self.targets[self.steps.index(self.step)])
        self.apply()

    @torch.no_grad()
    def apply(self) -> None:
        params = dict(self.model.named_parameters())
        for k, keep in self.mask.items():
            if not bool(keep.all()):
                p = params[k]
                p.mul_(keep.to(p.device, p.dtype))

    # -- one event
    def pruned_count(self, mask: Mapping[str, torch.Tensor]) -> int:
        return sum(int((~mask[k]).sum()) for k in self.names)

    @torch.no_grad()
    def event(self, target: float) -> None:
        """Search (remove channels), then prune by magnitude (and regrow) to ``target``."""
        wanted = round(target * self.total)
        gammas = supernet.scales(self.model, self.groups)
        alive = {k: supernet.keep_channels(gammas[k], self.alive[k], self.threshold, self.counts[k])
                 for k in self.alive}
        base = supernet.channel_mask(self.model, self.groups, alive)
        if self.pruned_count(base) > wanted:  # the search would prune past the target: it waits
            base = supernet.channel_mask(self.model, self.groups, self.alive)
        else:
            self.alive = alive
        channel_pruned = self.pruned_count(base)
        regrown = 0
        mask = base
        if self.prune and wanted > channel_pruned:
            mask, regrown = self._magnitude(base, wanted, channel_pruned)
        self.mask = mask
        self.history.append({"step": self.step, "target": target, "pruned": self.pruned_count(mask),
                             "wanted": wanted, "channels_kept": {k: int(v.sum()) for k, v in self.alive.items()},
                             "regrown": regrown})

    def _magnitude(self, base: Mask, wanted: int, channel_pruned: int) -> tuple[Mask, int]:
        params = dict(self.model.named_parameters())
        names = self.names
        flat_w = torch.cat([params[k].detach().abs().float().flatten().cpu() for k in names])
        structural = torch.cat([(~base[k]).flatten() for k in names])
        scores = torch.where(structural, torch.full_like(flat_w, -1.0), flat_w)
        n_mag = wanted - channel_pruned
        grads = [params[k].grad for k in names]
        extra = round(self.regrow * n_mag) if all(g is not None for g in grads) else 0
        extra = min(extra, len(scores) - wanted)
        order = torch.sort(scores, stable=True).indices
        keep = torch.ones_like(structural)
        keep[order[:wanted + extra]] = False
        if extra:
            g = torch.cat([gr.detach().abs().float().flatten().cpu() for gr in grads])
            candidates = torch.where(~keep & ~structural, g, torch.full_like(g, -1.0))
            keep[torch.sort(candidates, descending=True, stable=True).indices[:extra]] = True
        out = dict(base)
        start = 0
        for k in names:
            n = base[k].numel()
            out[k] = keep[start:start + n].view(base[k].shape).clone()
            start += n
        return out, extra


# ----------------------------------------------------------------------------- schemes
def _source_data(desc: TicketDesc):
    source: VisionSource = desc.source
    data = source_task(source)
    return subset(data.train_x, data.train_y, source.fraction, desc.seed)


def supernet_training(drawing: Drawing, desc: TicketDesc, *, epochs: float, targets: list[float],
                      end: float, events: int, regrow: float, prune: bool) -> tuple[nn.Module, TwoInOne]:
    """One supernet training of the source's network on the source task, from its
    pretrained weights, with ``TwoInOne`` attached; the trained model and its bookkeeping."""
    model = copy.deepcopy(drawing.model)
    x, y = _source_data(desc)
    recipe = desc.source.train.with_(epochs=epochs)  # natural or adversarial, as the source was
    steps = event_steps(total_steps(len(y), recipe), events, end)
    two = TwoInOne(model, targets=targets, steps=steps, penalty=desc.option("penalty"),
                   threshold=desc.option("threshold"), widths=desc.option("widths"),
                   regrow=regrow, prune=prune)
    train(model, x, y, recipe, seed=desc.seed, device=drawing.device, progress=False,
          on_optimizer=two.attach)
    return model, two


class _SupernetScheme(Scheme):
    trains = True
    options: ClassVar[Mapping[str, Any]] = {
        "penalty": 0.02,  # L1 strength on the blocks' BN scales (proximal step lr·penalty)
        "threshold": 0.2,  # remove a channel below this fraction of the initial mean |γ|
        "widths": supernet.WIDTHS,  # the elastic width choices of every block
    }

    def check_options(self, options: Mapping[str, Any]) -> None:
        check_range("penalty", options["penalty"], 0.0, 1.0, high_open=True)
        check_range("threshold", options["threshold"], 0.0, 1.0, low_open=True, high_open=True)
        supernet.parse_widths(options["widths"])

    _uses_rate: ClassVar[bool] = True  # IMP rounds after the search: ``rate`` and ``epochs``

    def validate(self, desc: TicketDesc) -> None:
        if self._uses_rate:
            super().validate(desc)
        else:
            self._validate_without_rate(desc)
        if desc.pattern.name != "unstructured":
            raise ValueError(f"scheme {self.name!r} prunes weights globally by magnitude: pattern "
                             f"must be 'unstructured', got {desc.pattern.name!r}")
        self.check_desc(desc)

    def check_desc(self, desc: TicketDesc) -> None:
        """Checks that need the whole description (e.g. a schedule against the sparsity)."""

    def _validate_without_rate(self, desc: TicketDesc) -> None:
        unknown = sorted(set(dict(desc.options)) - set(self.options))
        if unknown:
            raise ValueError(f"scheme {self.name!r} has no option(s) {unknown}; allowed: "
                             f"{', '.join(self.options)}")
        self.check_options({**self.options, **dict(desc.options)})
        if desc.target is not None:
            raise ValueError(f"scheme {self.name!r} draws on the source; got target={desc.target!r}")
        if desc.rate is not None:
            raise ValueError(f"scheme {self.name!r} prunes on its schedule; rate must be None, "
                             f"got {desc.rate!r}")
        if desc.epochs is None or not desc.epochs > 0:
            raise ValueError(f"scheme {self.name!r} needs epochs > 0 (the supernet training); "
                             f"got {desc.epochs!r}")


class SuperTicket(_SupernetScheme):
    """Search and prune in one supernet training (``epochs`` of it), with optional regrowth."""

    name = SUPERTICKET
    _uses_rate = False
    options: ClassVar[Mapping[str, Any]] = {
        **_SupernetScheme.options,
        "events": 4,  # pruning events (the cubic schedule's steps)
        "prune_end": 0.6,  # the last event at this fraction of the training
        "schedule": "",  # explicit per-event sparsities instead of the cubic ramp
        "regrow": 0.0,  # prune-and-regrow: fraction of each event's pruning that may return
    }

    def check_options(self, options: Mapping[str, Any]) -> None:
        super().check_options(options)
        if not isinstance(options["events"], int) or options["events"] < 1:
            raise ValueError(f"events must be an integer >= 1, got {options['events']!r}")
        check_range("prune_end", options["prune_end"], 0.0, 1.0, low_open=True)
        check_range("regrow", options["regrow"], 0.0, 1.0, high_open=True)
        if not isinstance(options["schedule"], str):
            raise ValueError(f"schedule must be a string of sparsities, got {options['schedule']!r}")

    def check_desc(self, desc: TicketDesc) -> None:
        if desc.option("schedule"):
            parse_schedule(desc.option("schedule"), desc.sparsity)

    def draw(self, drawing: Drawing, desc: TicketDesc) -> Mask:
        targets = schedule_targets(desc)
        _, two = supernet_training(drawing, desc, epochs=desc.epochs, targets=targets,
                                   end=desc.option("prune_end"), events=len(targets),
                                   regrow=desc.option("regrow"), prune=True)
        return two.mask


class SearchThenPrune(_SupernetScheme):
    """Search (``search_epochs`` of supernet training, channels removed at its end), then IMP
    on the searched architecture from the pretrained weights (``rate``, ``epochs`` per round)."""

    name = SEARCH_THEN_PRUNE
    options: ClassVar[Mapping[str, Any]] = {**_SupernetScheme.options, "search_epochs": 0.25}

    def check_options(self, options: Mapping[str, Any]) -> None:
        super().check_options(options)
        check_range("search_epochs", options["search_epochs"], 0.0, 1e6, low_open=True)

    def draw(self, drawing: Drawing, desc: TicketDesc) -> Mask:
        _, two = supernet_training(drawing, desc, epochs=desc.option("search_epochs"),
                                   targets=[desc.sparsity], end=1.0, events=1, regrow=0.0,
                                   prune=False)
        mask = two.mask
        searched = two.pruned_count(mask) / two.total
        schedule = [s for s in desc.pattern.imp_schedule(desc.sparsity, desc.rate) if s > searched]
        model = copy.deepcopy(drawing.model)
        rewind = {k: v.detach().clone() for k, v in model.state_dict().items()}
        x, y = _source_data(desc)
        recipe = desc.source.train.with_(epochs=desc.epochs)
        names = prunable_names(model)
        for s in schedule:  # IMP: prune the current weights further, rewind, retrain the slim net
            params = dict(model.named_parameters())
            weights = {k: params[k].detach() for k in names}
            pruned = desc.pattern.magnitude(weights, s, current={k: mask[k] for k in names})
            mask = {**mask, **pruned}
            model.load_state_dict(rewind)
            masks_mod.apply_mask(model, mask)
            train(model, x, y, recipe, seed=desc.seed, device=drawing.device, progress=False,
                  on_optimizer=lambda opt, m=mask, net=model: masks_mod.apply_mask(net, m, opt))
        return mask


for _scheme in (SuperTicket(), SearchThenPrune()):
    SCHEMES.register(_scheme.name, _scheme)
