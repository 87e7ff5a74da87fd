"""Ticket schemes: how a mask is drawn (OMP, IMP on the source or a target, random), by registry.

A scheme draws a ticket in a ``Drawing``: the context that holds the source model with
its pretrained weights and can draw another ticket or run an IMP. The pipeline gives a
stored one (``rtstudy.core.pipeline``); the mask explorer a memory-only one. A scheme
that ``trains`` needs data and training to draw; the others need only the weights.
New schemes (learned masks, masks drawn during training) register here too.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

import torch
import torch.nn as nn

from rtstudy.core.checks import check_range
from rtstudy.core.masks import Mask
from rtstudy.core.registry import Registry
from rtstudy.core.tickets import prunable_weights

if TYPE_CHECKING:
    from rtstudy.core.descriptions import TicketDesc


class Drawing(Protocol):
    """What a scheme may use: the source ``model`` (on ``device``) and the drawing of other
    tickets. A scheme that learns its mask with data asks the source's track
    (``rtstudy.core.track.track_of(desc.source)``) for the training it needs."""

    model: nn.Module
    device: torch.device

    def ticket(self, desc: TicketDesc) -> Mask:
        """The mask of another ticket of the same source (drawn or read from the store)."""
        ...

    def imp(self, desc: TicketDesc, on_target: bool) -> Mask:
        """Iterative magnitude pruning with retraining on the source task or on the target."""
        ...


class Scheme:
    """A way of drawing a ticket. ``trains``: needs data and training; ``needs_target``:
    drawn on a downstream task; ``redrawn_per_seed``: a study draws one mask per seed;
    ``options``: the scheme's own hyperparameters and their defaults (a ticket's
    ``options`` may set them; ``check_options`` checks their values)."""

    name: ClassVar[str] = ""
    trains: ClassVar[bool] = False
    needs_target: ClassVar[bool] = False
    redrawn_per_seed: ClassVar[bool] = False  # the mask itself depends on the seed
    options: ClassVar[Mapping[str, Any]] = {}

    def validate(self, desc: TicketDesc) -> None:
        """Raise ``ValueError`` when ``desc`` lacks what this scheme needs."""
        unknown = sorted(set(dict(desc.options)) - set(self.options))
        if unknown:
            allowed = ", ".join(self.options) or "none"
            raise ValueError(f"scheme {self.name!r} has no option(s) {unknown}; allowed: {allowed}")
        for key, value in desc.options:
            if not isinstance(value, (int, float, str, bool)):
                raise ValueError(f"option {key!r} of scheme {self.name!r} must be a number, string "
                                 f"or bool; got {value!r}")
        self.check_options({**self.options, **dict(desc.options)})
        if self.needs_target and desc.target is None:
            raise ValueError(f"scheme {self.name!r} needs a target task; got target=None")
        if self.needs_target and (desc.finetune is None or desc.target_fraction is None):
            raise ValueError(f"scheme {self.name!r} needs the target's finetune recipe and "
                             f"target_fraction; got {desc.finetune!r}, {desc.target_fraction!r}")
        if not self.needs_target and desc.target is not None:
            raise ValueError(f"scheme {self.name!r} draws on the source; got target={desc.target!r}")
        if self.trains:
            if desc.rate is None or desc.epochs is None:
                raise ValueError(f"scheme {self.name!r} needs rate and epochs; got rate={desc.rate!r}, "
                                 f"epochs={desc.epochs!r}")
            check_range("rate", desc.rate, 0.0, 1.0, low_open=True, high_open=True)
        elif desc.rate is not None or desc.epochs is not None:
            raise ValueError(f"scheme {self.name!r} does not retrain; rate/epochs must be None")

    def check_options(self, options: Mapping[str, Any]) -> None:
        """Raise ``ValueError`` naming an option whose value is out of range (all of them,
        defaults filled in); nothing to check by default."""

    def draw(self, drawing: Drawing, desc: TicketDesc) -> Mask:
        raise NotImplementedError


SCHEMES: Registry[Scheme] = Registry("scheme")


class OMP(Scheme):
    """One-shot magnitude pruning of the pretrained weights (no data)."""

    name = "omp"

    def draw(self, drawing: Drawing, desc: TicketDesc) -> Mask:
        weights = prunable_weights(drawing.model)
        return desc.pattern.magnitude(weights, desc.sparsity, model=drawing.model)


class Random(Scheme):
    """A random mask with the per-layer sparsity of the OMP ticket (its magnitude twin)."""

    name = "random"
    redrawn_per_seed = True

    def draw(self, drawing: Drawing, desc: TicketDesc) -> Mask:
        return desc.pattern.random(drawing.ticket(desc.with_(scheme=OMP.name)), seed=desc.seed)


class IMP(Scheme):
    """Iterative magnitude pruning, rewinding to the pretrained weights each round."""

    trains = True
    on_target: ClassVar[bool] = False

    def draw(self, drawing: Drawing, desc: TicketDesc) -> Mask:
        return drawing.imp(desc, on_target=self.on_target)


class IMPSource(IMP):
    """IMP retraining on the source task (natural or adversarial, as the source was)."""

    name = "imp_source"


class IMPTarget(IMP):
    """IMP retraining on the target task; round 0 prunes the weights finetuned on it."""

    name = "imp_target"
    needs_target = True
    on_target = True


for _scheme in (OMP(), IMPSource(), IMPTarget(), Random()):
    SCHEMES.register(_scheme.name, _scheme)


BASELINE = Random.name  # the sanity baseline every drawn ticket is compared with


def get_scheme(name: str) -> Scheme:
    """The registered scheme ``name`` (a clear error naming the allowed ones)."""
    return SCHEMES.get(name)
