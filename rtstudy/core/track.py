"""The track interface: what a kind of model (images, text, image priors) brings to the core.

The core (descriptions, masks, patterns, schemes, store, pipeline) never touches data or
a model's internals; it asks the source description's track. A track implements:

    pretrain(source, device, progress) -> (model, metrics, extra)  train a source model
    load_model(meta, state, device) -> model                     rebuild a stored one
    imp_retrainer(ticket, model, on_target, device) -> retrain(net, mask)
                                                                 IMP's retraining (data, recipe)
    transfer(transfer, model, keep_mask, device, progress) -> metrics
                                                                 finetune/probe with the mask kept
                                                                 (``keep_mask(optimizer)``), evaluate
    reinitialize(model, seed)                                    random weights for the from-scratch
                                                                 control (default: reset_parameters)
    work(desc) -> examples                                       optional: cost of a stage, for
                                                                 a plan's time estimate
and names its ``source_desc`` class (a ``SourceDesc`` subclass) and ``recipe`` class.
Prunable weights: the model's own ``prunable_names()`` if it defines one, else every
conv/linear weight but the first conv and the last linear (``rtstudy.core.tickets``).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from typing import Any, ClassVar

import torch
import torch.nn as nn

from rtstudy.core.descriptions import SourceDesc, TicketDesc, TransferDesc
from rtstudy.core.masks import Mask
from rtstudy.core.registry import Registry


class Track(ABC):
    """A kind of model and data the core can pretrain, prune and transfer."""

    name: ClassVar[str] = ""
    source_desc: ClassVar[type[SourceDesc]]
    recipe: ClassVar[type]  # the training recipe (``from_dict``/``to_dict``)

    @abstractmethod
    def pretrain(self, source: SourceDesc, *, device: torch.device,
                 progress: bool | None) -> tuple[nn.Module, dict, dict]:
        """Train the source model; its metrics and extra meta (``spec`` to rebuild it)."""

    @abstractmethod
    def load_model(self, meta: Mapping, state: Mapping[str, torch.Tensor],
                   device: torch.device) -> nn.Module:
        """The stored model (``meta`` of its artifact, ``state`` its weights), in eval mode."""

    @abstractmethod
    def imp_retrainer(self, ticket: TicketDesc, model: nn.Module, *, on_target: bool,
                      device: torch.device) -> Callable[[nn.Module, Mask], None]:
        """Prepare ``model`` for IMP (e.g. a new head for the target) and return the
        retraining of one round; it must keep the mask through its optimiser."""

    @abstractmethod
    def transfer(self, desc: TransferDesc, model: nn.Module,
                 keep_mask: Callable[[torch.optim.Optimizer], Any] | None, *,
                 device: torch.device, progress: bool | None) -> dict:
        """Train ``model`` on the target as ``desc`` says and return its metrics."""

    def reinitialize(self, model: nn.Module, seed: int) -> None:
        """Give ``model`` fresh random weights in place (the from-scratch control); by
        default every module's own ``reset_parameters`` under ``seed``."""
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            for module in model.modules():
                if callable(getattr(module, "reset_parameters", None)):
                    module.reset_parameters()

    def work(self, desc: SourceDesc | TicketDesc | TransferDesc) -> float | None:
        """Roughly how many clean training examples (forward and backward) building ``desc``
        costs, for a plan's time estimate; ``None``: this track does not say."""
        return None

    def source_from_config(self, config: Mapping) -> SourceDesc:
        return self.source_desc.from_config(config)


TRACKS: Registry[Track] = Registry("track")


def register_track(track: Track) -> Track:
    """Make ``track`` known to the core (by ``track.name``)."""
    return TRACKS.register(track.name, track)


def track_of(source: SourceDesc) -> Track:
    """The track that trains ``source``."""
    return TRACKS.get(source.track)


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")
