"""The text track: BERT sources finetuned on a text task, natural or in embedding space
adversarially, for the core's pipeline (tickets over the encoder's linear layers, transfer
to another text task).

A ``TextSource`` is the pretrained encoder ``model`` finetuned on ``task`` with ``recipe``
(robust when ``recipe.eps`` > 0: PGD in embedding space, ``rtstudy.text.attacks``) at
``max_length`` tokens; ``TextEvaluation`` says how a transfer is measured (clean accuracy
on ``test_n`` test examples, robust accuracy at ``eval_eps`` on ``robust_n``).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn as nn

from rtstudy.core import masks as masks_mod
from rtstudy.core.descriptions import SourceDesc, TicketDesc, TransferDesc
from rtstudy.core.masks import Mask
from rtstudy.core.track import TRACKS, Track, register_track
from rtstudy.text.data import TextData, check_max_length, check_task, tokenized
from rtstudy.text.models import (
    TextClassifier,
    bert_config,
    build_model,
    load_pretrained,
    model_from_spec,
)
from rtstudy.text.train import TextRecipe, evaluate, subset, train


@dataclass(frozen=True)
class TextSource(SourceDesc):
    """``model`` finetuned on ``task`` at ``max_length`` tokens with ``recipe`` (seed ``seed``)."""

    track: ClassVar[str] = "text"
    task: str
    model: str
    recipe: TextRecipe
    max_length: int = 64
    test_n: int = 0
    seed: int = 0
    download: bool = False

    def __post_init__(self):
        check_task(self.task)
        pre = load_pretrained(self.model, self.download)  # an unknown model is an error now
        check_max_length(self.max_length, pre.positions)

    @property
    def robust(self) -> bool:
        return self.recipe.adversarial

    @property
    def eps(self) -> float:
        return self.recipe.eps

    @property
    def label(self) -> str:
        """``natural`` or ``PGD-2 emb-ℓ2 0.5``."""
        return f"PGD-{self.recipe.steps} emb-ℓ2 {self.eps:g}" if self.robust else "natural"

    def config(self) -> dict:
        return {"track": self.track, "task": self.task, "model": self.model,
                "recipe": self.recipe.to_dict(), "max_length": self.max_length,
                "test_n": self.test_n, "seed": self.seed}

    @classmethod
    def from_config(cls, c: Mapping) -> TextSource:
        return cls(task=c["task"], model=c["model"], recipe=TextRecipe.from_dict(c["recipe"]),
                   max_length=c["max_length"], test_n=c["test_n"], seed=c["seed"])


@dataclass(frozen=True)
class TextEvaluation:
    """Clean accuracy on ``test_n`` test examples (0: all); robust accuracy under embedding
    PGD-``steps`` at ``eval_eps`` (``None``: not measured) on the first ``robust_n``."""

    test_n: int = 0
    eval_eps: float | None = None
    robust_n: int = 0
    steps: int = 5

    def config(self) -> dict:
        return {"test_n": self.test_n, "eval_eps": self.eval_eps, "robust_n": self.robust_n,
                "eval_steps": self.steps}


@functools.lru_cache(maxsize=8)
def task_data(task: str, model: str, max_length: int) -> TextData:
    """``task`` tokenised by ``model``'s tokenizer at ``max_length`` (cached on disk and here)."""
    pre = load_pretrained(model)
    return tokenized(task, pre.tokenizer, max_length, positions=pre.positions)


def source_data(source: TextSource, task: str | None = None) -> TextData:
    return task_data(task or source.task, source.model, source.max_length)


def test_split(data: TextData, test_n: int):
    """The test set in a fixed shuffled order (any prefix a fair sample), cut to ``test_n``."""
    order = torch.randperm(len(data.test_y), generator=torch.Generator().manual_seed(1234))
    order = order[:test_n or len(order)]
    return data.test_ids[order], data.test_mask[order], data.test_y[order]


def _fit(model, data: TextData, recipe: TextRecipe, seed: int, device, on_optimizer=None) -> dict:
    ids, mask, y = subset(data.train_ids, data.train_mask, data.train_y, recipe.n_train, seed)
    return train(model, ids, mask, y, recipe, seed=seed, device=device, on_optimizer=on_optimizer)


class TextTrack(Track):
    """BERT encoders on text classification tasks."""

    name = "text"
    source_desc = TextSource
    recipe = TextRecipe

    def pretrain(self, source: TextSource, *, device: torch.device, progress: bool | None):
        data = source_data(source)
        model = build_model(source.model, data.num_classes, seed=source.seed, download=source.download)
        history = _fit(model, data, source.recipe, source.seed, device)
        tx, tm, ty = test_split(data, source.test_n)
        metrics = evaluate(model, tx, tm, ty, device=device)
        metrics["train_tokens_per_s"] = history["train_tokens_per_s"]
        return model, metrics, {"spec": model.spec, "history": history, "device": str(device)}

    def load_model(self, meta: Mapping, state: Mapping[str, torch.Tensor], device: torch.device):
        model = model_from_spec(meta["spec"])
        model.load_state_dict(dict(state))
        return model.to(device).eval()

    def reinitialize(self, model: TextClassifier, seed: int) -> None:
        """BERT's own initialisation (normal, std ``initializer_range``) under ``seed``."""
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            from transformers import BertModel

            fresh = BertModel(bert_config(model.spec["config"]), add_pooling_layer=False)
        dev = model.head.weight.device
        model.encoder.load_state_dict({k: v.to(dev) for k, v in fresh.state_dict().items()})

    def imp_retrainer(self, ticket: TicketDesc, model: TextClassifier, *, on_target: bool,
                      device: torch.device) -> Callable[[nn.Module, Mask], None]:
        source: TextSource = ticket.source
        if on_target:
            data = source_data(source, ticket.target)
            recipe = ticket.finetune.with_(epochs=ticket.epochs)
            model.reset_head(data.num_classes, seed=ticket.seed)
        else:  # on the source: natural, or adversarial with the source's own eps
            data = source_data(source)
            recipe = source.recipe.with_(epochs=ticket.epochs)

        def retrain(net: nn.Module, mask: Mask) -> None:
            _fit(net, data, recipe, ticket.seed, device,
                 on_optimizer=lambda opt: masks_mod.apply_mask(net, mask, opt))

        return retrain

    def transfer(self, desc: TransferDesc, model: TextClassifier,
                 keep_mask: Callable[[torch.optim.Optimizer], Any] | None, *,
                 device: torch.device, progress: bool | None) -> dict:
        if desc.regime != "finetune":
            raise ValueError(f"the text track finetunes; regime {desc.regime!r} is not implemented "
                             "(allowed: 'finetune')")
        data = source_data(desc.source, desc.target)
        recipe = desc.recipe
        if desc.fraction < 1.0:
            n = recipe.n_train or len(data.train_y)
            recipe = recipe.with_(n_train=max(1, round(n * desc.fraction)))
        model.reset_head(data.num_classes, seed=desc.seed)
        history = _fit(model, data, recipe, desc.seed, device, on_optimizer=keep_mask)
        ev = desc.evaluation
        tx, tm, ty = test_split(data, ev.test_n)
        out = evaluate(model, tx, tm, ty, device=device, eval_eps=ev.eval_eps, steps=ev.steps,
                       robust_n=ev.robust_n)
        return {**out, "n_train": recipe.n_train or len(data.train_y),
                "train_tokens_per_s": history["train_tokens_per_s"]}

    def work(self, desc) -> float | None:
        """Not in the vision track's clean-image units: a token step costs another amount."""
        return None


TEXT = TRACKS.get("text") if "text" in TRACKS else register_track(TextTrack())
