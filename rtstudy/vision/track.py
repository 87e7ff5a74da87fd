"""The image-classification track: source descriptions, data, training and metrics for the core.

A ``VisionSource`` is a classifier pretrained on an image task, natural (attack kind
``none``) or adversarial; a ``VisionEvaluation`` says how a transfer is measured (clean
accuracy on ``test_n`` test images, robust accuracy under ``eval_attack`` on
``robust_n``). ``VisionTrack`` implements ``rtstudy.core.track.Track`` with the one
training loop of ``rtstudy.vision.train``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn as nn

from rtstudy.core import masks as masks_mod
from rtstudy.core.checks import check_range
from rtstudy.core.descriptions import SourceDesc, TicketDesc, TransferDesc
from rtstudy.core.masks import Mask
from rtstudy.core.precision import autocast
from rtstudy.core.store import Artifact, Builder, Store
from rtstudy.core.track import Track, register_track
from rtstudy.vision.attacks import AttackConfig
from rtstudy.vision.data import TaskData, load_task, stratified_subset
from rtstudy.vision.models import Classifier, build_model, load_state, model_from_spec
from rtstudy.vision.train import EvalSet, TrainConfig, evaluate, train

NATURAL, ROBUST = "natural", "robust"


def eps_label(eps: float, norm: str = "linf") -> str:
    """``2/255`` for l-inf budgets that are multiples of 1/255, else the number."""
    k = eps * 255
    if norm == "linf" and abs(k - round(k)) < 1e-6 and eps > 0:
        return f"{round(k)}/255"
    return f"{eps:g}"


def attack_name(attack: AttackConfig) -> str:
    """``natural`` for no attack, else e.g. ``PGD-3 ℓ∞ 2/255`` or ``FGSM-RS ℓ2 0.25``."""
    if attack.kind == "none" or attack.eps == 0:
        return NATURAL
    kind = f"PGD-{attack.steps}" if attack.kind == "pgd" else attack.kind.upper().replace("_", "-")
    norm = {"linf": "ℓ∞", "l2": "ℓ2"}.get(attack.norm, attack.norm)
    return f"{kind} {norm} {eps_label(attack.eps, attack.norm)}"


# ----------------------------------------------------------------------------- descriptions
@dataclass(frozen=True)
class VisionSource(SourceDesc):
    """A classifier pretrained on ``task`` (natural when ``attack`` is no attack)."""

    track: ClassVar[str] = "vision"
    task: str
    model: str
    train: TrainConfig
    attack: AttackConfig
    eval_attack: AttackConfig | None
    fraction: float = 1.0
    width: float = 1.0
    image_size: int = 32
    channels: int = 3
    robust_n: int = 500
    test_n: int = 0
    seed: int = 0

    def __post_init__(self):
        check_range("fraction", self.fraction, 0.0, 1.0, low_open=True)
        if self.train.attack != self.attack:
            raise ValueError(f"the recipe's attack {self.train.attack} is not the source's attack "
                             f"{self.attack}")

    @property
    def eps(self) -> float:
        return self.attack.eps

    @property
    def robust(self) -> bool:
        return self.attack.is_attack

    @property
    def label(self) -> str:
        """``natural``, ``FGSM-RS ℓ∞ 2/255``, ``PGD-3 ℓ2 0.25``."""
        return attack_name(self.attack)

    @property
    def config_label(self) -> str:
        """The label in the config's own words: ``natural``, ``robust fgsm_rs linf ε=2/255``."""
        a = self.attack
        return "natural" if not self.robust else f"robust {a.kind} {a.norm} ε={eps_label(a.eps, a.norm)}"

    def config(self) -> dict:
        return {"task": self.task, "fraction": self.fraction, "model": self.model, "width": self.width,
                "image_size": self.image_size, "channels": self.channels, "train": self.train.to_dict(),
                "attack": self.attack.to_dict(),
                "eval_attack": self.eval_attack.to_dict() if self.eval_attack else None,
                "robust_n": self.robust_n, "test_n": self.test_n, "seed": self.seed}

    @classmethod
    def from_config(cls, config: Mapping) -> VisionSource:
        ev = config.get("eval_attack")
        return cls(task=config["task"], model=config["model"],
                   train=TrainConfig.from_dict(config["train"]),
                   attack=AttackConfig.from_dict(config["attack"]),
                   eval_attack=AttackConfig.from_dict(ev) if ev else None,
                   fraction=config["fraction"], width=config["width"], image_size=config["image_size"],
                   channels=config["channels"], robust_n=config["robust_n"], test_n=config["test_n"],
                   seed=config.get("seed", 0))


@dataclass(frozen=True)
class VisionEvaluation:
    """Clean accuracy on ``test_n`` test images (0: all), robust accuracy under
    ``eval_attack`` (``None``: not measured) on the first ``robust_n``."""

    eval_attack: AttackConfig | None = None
    robust_n: int = 500
    test_n: int = 0

    def config(self) -> dict:
        return {"eval_attack": self.eval_attack.to_dict() if self.eval_attack else None,
                "robust_n": self.robust_n, "test_n": self.test_n}


# ----------------------------------------------------------------------------- data
@functools.lru_cache(maxsize=16)
def task_data(name: str, channels: int, image_size: int) -> TaskData:
    """A task at the model's input shape, loaded once per process."""
    return load_task(name, channels=channels, image_size=image_size)


def source_task(source: VisionSource, task: str | None = None) -> TaskData:
    """``task`` (default: the source's own) at the source model's input shape."""
    return task_data(task or source.task, source.channels, source.image_size)


def subset(x: torch.Tensor, y: torch.Tensor, fraction: float, seed: int):
    """A seeded stratified ``fraction`` of (x, y); all of it at 1."""
    if fraction >= 1.0:
        return x, y
    idx = stratified_subset(y, fraction, seed)
    return x[idx], y[idx]


def test_split(data: TaskData, test_n: int):
    """The test set in a fixed shuffled order (any prefix is a fair sample), cut to ``test_n``."""
    order = torch.randperm(len(data.test_y), generator=torch.Generator().manual_seed(1234))
    n = test_n or len(data.test_y)
    return data.test_x[order[:n]], data.test_y[order[:n]]


# ----------------------------------------------------------------------------- the track
def _new_model(source: VisionSource, data: TaskData) -> Classifier:
    mean = data.train_x.mean(dim=(0, 2, 3)).tolist()
    std = data.train_x.std(dim=(0, 2, 3)).clamp_min(1e-3).tolist()
    return build_model(source.model, data.num_classes, in_channels=source.channels,
                       image_size=source.image_size, width=source.width, mean=mean, std=std,
                       seed=source.seed)


def linear_probe(model: Classifier, x: torch.Tensor, y: torch.Tensor, cfg: TrainConfig, *, seed: int,
                 device: torch.device, progress: bool | None = None) -> list[dict]:
    """Train only the head on frozen features (computed once, in eval mode)."""
    model.eval().to(device)
    with torch.inference_mode(), autocast(device, cfg.compute_precision(device)):
        feats = torch.cat([model.features(xb.to(device)).float() for xb in x.split(512)])
    history = train(model.head, feats.clone(), y, cfg.with_(channels_last=False, augment=False),
                    seed=seed, device=device, progress=progress)
    model.eval()
    return history


class VisionTrack(Track):
    """Image classifiers (CIFAR/torchvision ResNets) on image tasks in [0, 1] pixel space."""

    name = "vision"
    source_desc = VisionSource
    recipe = TrainConfig

    def pretrain(self, source: VisionSource, *, device: torch.device, progress: bool | None):
        data = source_task(source)
        x, y = subset(data.train_x, data.train_y, source.fraction, source.seed)
        model = _new_model(source, data)
        tx, ty = test_split(data, source.test_n)
        history = train(model, x, y, source.train, seed=source.seed, device=device,
                        eval_set=EvalSet(tx, ty, source.eval_attack, source.robust_n),
                        progress=f"pretrain {source.config_label}" if progress is not False else False)
        final = dict(history[-1])
        metrics = {k: final[k] for k in ("test_acc", "robust_acc") if k in final}
        metrics["train_img_per_s"] = sum(h["img_per_s"] for h in history) / len(history)
        return model, metrics, {"spec": model.spec, "history": history, "device": str(device)}

    def load_model(self, meta: Mapping, state: Mapping[str, torch.Tensor], device: torch.device):
        model = model_from_spec(meta["spec"])
        load_state(model, dict(state), source="stored source model")
        return model.to(device).eval()

    def reinitialize(self, model: Classifier, seed: int) -> None:
        """The weights the model's own initialisation gives under ``seed`` (normaliser kept)."""
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            fresh = model_from_spec(model.spec)
        model.load_state_dict({k: v.to(model.normalize.mean.device) for k, v in fresh.state_dict().items()})

    def imp_retrainer(self, ticket: TicketDesc, model: Classifier, *, on_target: bool,
                      device: torch.device) -> Callable[[nn.Module, Mask], None]:
        source: VisionSource = ticket.source
        if on_target:
            data = source_task(source, ticket.target)
            x, y = subset(data.train_x, data.train_y, ticket.target_fraction, ticket.seed)
            recipe = ticket.finetune.with_(epochs=ticket.epochs)
            model.reset_head(data.num_classes, seed=ticket.seed)
        else:
            data = source_task(source)
            x, y = subset(data.train_x, data.train_y, source.fraction, ticket.seed)
            recipe = source.train.with_(epochs=ticket.epochs)

        def retrain(net: nn.Module, mask: Mask) -> None:
            train(net, x, y, recipe, seed=ticket.seed, device=device, progress=False,
                  on_optimizer=lambda opt: masks_mod.apply_mask(net, mask, opt))

        return retrain

    def transfer(self, desc: TransferDesc, model: Classifier,
                 keep_mask: Callable[[torch.optim.Optimizer], Any] | None, *,
                 device: torch.device, progress: bool | None) -> dict:
        data = source_task(desc.source, desc.target)
        x, y = subset(data.train_x, data.train_y, desc.fraction, desc.seed)
        tx, ty = test_split(data, desc.evaluation.test_n)
        model.reset_head(data.num_classes, seed=desc.seed)
        if desc.regime == "finetune":  # the mask stays fixed: re-applied after every optimiser step
            train(model, x, y, desc.recipe, seed=desc.seed, device=device, eval_set=None,
                  progress=progress, on_optimizer=keep_mask)
        else:
            linear_probe(model, x, y, desc.recipe, seed=desc.seed, device=device, progress=progress)
        ev = EvalSet(tx, ty, desc.evaluation.eval_attack, desc.evaluation.robust_n)
        precision = desc.recipe.compute_precision(device)
        return {**evaluate(model, ev, device, precision=precision), "n_train": len(y)}

    def work(self, desc) -> float:
        """Clean-step equivalents: examples x epochs (at least ``min_steps`` batches) x the
        attack's cost (FGSM-RS 1.8, PGD-k 1 + 0.75 k); a probe trains only its head (0.3)."""
        if isinstance(desc, VisionSource):
            n = train_n(desc) * desc.fraction
            return _examples(n, desc.train)
        if isinstance(desc, TransferDesc):
            n = train_n(desc.source, desc.target) * desc.fraction
            return _examples(n, desc.recipe) * (0.3 if desc.regime == "probe" else 1.0)
        if isinstance(desc, TicketDesc) and desc.scheme in _supertickets.SCHEMES_HERE:
            n = train_n(desc.source) * desc.source.fraction
            return _examples(n, desc.source.train.with_(epochs=_supertickets.training_epochs(desc)))
        if isinstance(desc, TicketDesc) and desc.rate is not None:  # IMP: a retraining per round
            rounds = len(desc.pattern.imp_schedule(desc.sparsity, desc.rate))
            if desc.target is not None:
                n = train_n(desc.source, desc.target) * desc.target_fraction
                return rounds * _examples(n, desc.finetune.with_(epochs=desc.epochs))
            n = train_n(desc.source) * desc.source.fraction
            return rounds * _examples(n, desc.source.train.with_(epochs=desc.epochs))
        return 0.0


def train_n(source, task: str | None = None) -> int:
    """The training-set size of ``task`` (default: the source's own); its nominal size when
    the data is not here yet, so a plan can be costed before anything is downloaded."""
    from rtstudy.vision.natural_tasks import train_size

    return train_size(task or source.task, source.channels, source.image_size)


def _examples(n: float, recipe: TrainConfig) -> float:
    steps = max(recipe.epochs * n / recipe.batch_size, recipe.min_steps)
    attack = recipe.attack
    cost = {"none": 1.0, "fgsm_rs": 1.8}.get(attack.kind, 1.0 + 0.75 * attack.steps)
    return steps * min(recipe.batch_size, n) * cost


VISION = register_track(VisionTrack())


# ----------------------------------------------------------------------------- source metrics
def evaluate_source(source, attack: AttackConfig, *, robust_n: int, test_n: int,
                    store: Store | None = None) -> dict:
    """Clean and attacked accuracy of a stored source model on its own test set; stored."""
    store = store or Store()
    config = {"source": source.key, "attack": attack.to_dict(), "robust_n": robust_n,
              "test_n": test_n}

    def compute(b: Builder) -> None:
        tx, ty = test_split(source_task(source.desc), test_n)
        model = source.model
        device = next(model.parameters()).device
        recipe = getattr(source.desc, "train", None)  # a pretrained file has no recipe: fp32
        precision = recipe.compute_precision(device) if recipe is not None else "fp32"
        b.metrics.update(evaluate(model, EvalSet(tx, ty, attack, robust_n), device, precision=precision))

    art: Artifact = store.get_or_create("source_eval", config, compute)
    return art.metrics


from rtstudy.vision import supertickets as _supertickets  # noqa: E402,F401  (registers its schemes)
