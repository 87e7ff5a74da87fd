"""A second track for the tests: an MLP on synthetic tabular tasks, written against the
public core interface only (descriptions, Track, registries). Nothing in rtstudy knows it."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import ClassVar

import torch
import torch.nn as nn
from sklearn.datasets import make_classification

from rtstudy.core.descriptions import SourceDesc
from rtstudy.core.masks import apply_mask
from rtstudy.core.track import TRACKS, Track, register_track

TASKS = {"blobs_a": (4, 0), "blobs_b": (3, 1)}  # name -> (classes, data seed)


def task(name: str):
    if name not in TASKS:
        raise ValueError(f"unknown tabular task {name!r}; allowed: {sorted(TASKS)}")
    classes, seed = TASKS[name]
    x, y = make_classification(n_samples=600, n_features=16, n_informative=8, n_classes=classes,
                               random_state=seed)
    x, y = torch.tensor(x, dtype=torch.float32), torch.tensor(y)
    return x[:400], y[:400], x[400:], y[400:]


@dataclass(frozen=True)
class Recipe:
    epochs: int = 60
    lr: float = 0.01

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping) -> Recipe:
        return cls(**d)


@dataclass(frozen=True)
class Accuracy:
    def config(self) -> dict:
        return {"metric": "accuracy"}


@dataclass(frozen=True)
class TabularSource(SourceDesc):
    track: ClassVar[str] = "tabular"
    task: str = "blobs_a"
    hidden: int = 32
    noise: float = 0.0  # Gaussian input noise during pretraining: this track's "robust" source
    recipe: Recipe = Recipe()
    seed: int = 0

    @property
    def robust(self) -> bool:
        return self.noise > 0

    @property
    def label(self) -> str:
        return f"mlp noise={self.noise:g}"

    def config(self) -> dict:
        return {"track": self.track, "task": self.task, "hidden": self.hidden, "noise": self.noise,
                "recipe": self.recipe.to_dict(), "seed": self.seed}

    @classmethod
    def from_config(cls, c: Mapping) -> TabularSource:
        return cls(c["task"], c["hidden"], c["noise"], Recipe.from_dict(c["recipe"]), c["seed"])


class MLP(nn.Module):
    def __init__(self, hidden: int, classes: int):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(16, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU())
        self.head = nn.Linear(hidden, classes)

    def forward(self, x):
        return self.head(self.body(x))


def _log_build(what: str, key: str) -> None:
    """Append one line per artifact built to ``$TOY_TRACK_LOG`` (tests count builds)."""
    path = os.environ.get("TOY_TRACK_LOG")
    if path:
        with open(path, "a") as f:
            f.write(f"{what} {key}\n")


def fit(model, x, y, recipe: Recipe, seed: int, noise: float = 0.0, keep_mask=None):
    torch.manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=recipe.lr)
    if keep_mask is not None:
        keep_mask(opt)
    for _ in range(recipe.epochs):
        xb = x + noise * torch.randn_like(x) if noise else x
        opt.zero_grad()
        nn.functional.cross_entropy(model(xb), y).backward()
        opt.step()


def accuracy(model, x, y) -> float:
    with torch.no_grad():
        return float((model(x).argmax(1) == y).float().mean())


class TabularTrack(Track):
    name = "tabular"
    source_desc = TabularSource
    recipe = Recipe

    def pretrain(self, source, *, device, progress):
        _log_build("source", source.key)
        x, y, tx, ty = task(source.task)
        torch.manual_seed(source.seed)
        model = MLP(source.hidden, int(y.max()) + 1)
        fit(model, x, y, source.recipe, source.seed, source.noise)
        spec = {"hidden": source.hidden, "classes": int(y.max()) + 1}
        return model, {"test_acc": accuracy(model, tx, ty)}, {"spec": spec}

    def load_model(self, meta, state, device):
        model = MLP(meta["spec"]["hidden"], meta["spec"]["classes"])
        model.load_state_dict(dict(state))
        return model.to(device).eval()

    def imp_retrainer(self, ticket, model, *, on_target, device):
        x, y, _, _ = task(ticket.target if on_target else ticket.source.task)
        if on_target:
            model.head = nn.Linear(model.head.in_features, int(y.max()) + 1)
        recipe = Recipe(epochs=int(ticket.epochs))

        def retrain(net, mask):
            fit(net, x, y, recipe, ticket.seed, keep_mask=lambda opt: apply_mask(net, mask, opt))

        return retrain

    def transfer(self, desc, model, keep_mask, *, device, progress):
        _log_build("transfer", desc.key)
        x, y, tx, ty = task(desc.target)
        torch.manual_seed(desc.seed)
        model.head = nn.Linear(model.head.in_features, int(y.max()) + 1)
        n = int(len(y) * desc.fraction)
        fit(model, x[:n], y[:n], desc.recipe, desc.seed, keep_mask=keep_mask)
        return {"test_acc": accuracy(model, tx, ty), "n_train": n}


TABULAR = TRACKS.get("tabular") if "tabular" in TRACKS else register_track(TabularTrack())
