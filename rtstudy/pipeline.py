"""The three stages of the study, each a content-addressed artifact in a ``Store``.

    pretrain(profile, eps)                    -> source model  (kind "source")
    draw_ticket(profile, source, scheme, ...) -> mask          (kind "ticket", IMP rounds "imp_round")
    transfer(profile, source, ticket, target) -> accuracies    (kind "transfer")

Asking twice for the same configuration returns the stored artifact and does no work;
an interrupted IMP resumes from its last finished round.
"""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass

import torch
import torch.nn as nn

from rtstudy.core import masks as masks_mod
from rtstudy.core import tickets
from rtstudy.core.checks import check_choice, check_range
from rtstudy.core.store import Artifact, Builder, Store
from rtstudy.profiles import Profile
from rtstudy.vision.attacks import AttackConfig
from rtstudy.vision.data import TaskData, load_task
from rtstudy.vision.models import Classifier, build_model, load_state, model_from_spec
from rtstudy.vision.train import EvalSet, TrainConfig, default_device, evaluate, train

REGIMES = ("finetune", "probe")


# ----------------------------------------------------------------------------- data
@functools.lru_cache(maxsize=16)
def task_data(name: str, channels: int, image_size: int) -> TaskData:
    """A task at the model's input shape, loaded once per process."""
    return load_task(name, channels=channels, image_size=image_size)


def profile_task(profile: Profile, name: str) -> TaskData:
    return task_data(name, profile.channels, profile.image_size)


def _subset(x: torch.Tensor, y: torch.Tensor, fraction: float, seed: int):
    if fraction >= 1.0:
        return x, y
    from rtstudy.vision.data import stratified_subset

    idx = stratified_subset(y, fraction, seed)
    return x[idx], y[idx]


def _test_split(profile: Profile, data: TaskData):
    """The test set in a fixed shuffled order (so any prefix is a fair sample), cut to ``test_n``."""
    order = torch.randperm(len(data.test_y), generator=torch.Generator().manual_seed(1234))
    n = profile.test_n or len(data.test_y)
    return data.test_x[order[:n]], data.test_y[order[:n]]


# ----------------------------------------------------------------------------- stage 1
@dataclass
class Source:
    """A pretrained source model and its artifact."""

    artifact: Artifact
    model: Classifier

    @property
    def eps(self) -> float:
        return self.artifact.config["attack"]["eps"]

    @property
    def label(self) -> str:
        a = self.artifact.config["attack"]
        if a["eps"] == 0:
            return "natural"
        return f"robust {a['kind']} {a['norm']} ε={eps_label(a['eps'], a['norm'])}"


def eps_label(eps: float, norm: str = "linf") -> str:
    """``2/255`` for l-inf budgets that are multiples of 1/255, else the number."""
    k = eps * 255
    if norm == "linf" and abs(k - round(k)) < 1e-6 and eps > 0:
        return f"{round(k)}/255"
    return f"{eps:g}"


def source_config(profile: Profile, eps: float, *, kind: str | None = None, norm: str | None = None,
                  steps: int | None = None, seed: int = 0) -> dict:
    """The full configuration of a source model (its artifact key)."""
    check_range("eps", eps, 0.0, 1.0)
    attack = profile.source_attack(eps, kind=kind, norm=norm, steps=steps)
    return {
        "task": profile.source,
        "fraction": profile.source_fraction,
        "model": profile.model,
        "width": profile.width,
        "image_size": profile.image_size,
        "channels": profile.channels,
        "train": profile.pretrain.with_(attack=attack).to_dict(),
        "attack": attack.to_dict(),
        "eval_attack": profile.eval_attack(eps, norm=attack.norm).to_dict() if eps > 0 else None,
        "robust_n": profile.robust_n,
        "test_n": profile.test_n,
        "seed": seed,
    }


def _new_model(config: dict, data: TaskData, seed: int) -> Classifier:
    mean = data.train_x.mean(dim=(0, 2, 3)).tolist()
    std = data.train_x.std(dim=(0, 2, 3)).clamp_min(1e-3).tolist()
    return build_model(
        config["model"], data.num_classes, in_channels=config["channels"],
        image_size=config["image_size"], width=config["width"], mean=mean, std=std, seed=seed,
    )


def load_model(artifact: Artifact, name: str = "model", device: str | torch.device = "cpu") -> Classifier:
    """Rebuild a model stored by this pipeline (spec in meta, weights in safetensors)."""
    model = model_from_spec(artifact.meta["spec"])
    load_state(model, artifact.tensors(name), source=str(artifact.path / f"{name}.safetensors"))
    return model.to(device).eval()


def pretrain(profile: Profile, eps: float, *, kind: str | None = None, norm: str | None = None,
             steps: int | None = None, seed: int = 0, store: Store | None = None,
             device: str | torch.device | None = None, progress: bool | None = None) -> Source:
    """Natural (eps = 0) or adversarial pretraining on the source task; stored."""
    store = store or Store()
    config = source_config(profile, eps, kind=kind, norm=norm, steps=steps, seed=seed)
    device = torch.device(device) if device is not None else default_device()

    def compute(b: Builder) -> None:
        data = profile_task(profile, profile.source)
        x, y = _subset(data.train_x, data.train_y, config["fraction"], seed)
        model = _new_model(config, data, seed)
        tx, ty = _test_split(profile, data)
        attack = AttackConfig.from_dict(config["attack"])
        ev_attack = AttackConfig.from_dict(config["eval_attack"]) if config["eval_attack"] else None
        label = "natural" if eps == 0 else f"{attack.kind} {attack.norm} eps={eps_label(eps, attack.norm)}"
        history = train(
            model, x, y, TrainConfig.from_dict(config["train"]), seed=seed, device=device,
            eval_set=EvalSet(tx, ty, ev_attack, profile.robust_n), progress=f"pretrain {label}" if progress is not False else False,
        )
        final = dict(history[-1])
        b.metrics.update({k: final[k] for k in ("test_acc", "robust_acc") if k in final})
        b.metrics["train_img_per_s"] = sum(h["img_per_s"] for h in history) / len(history)
        b.extra.update(spec=model.spec, history=history, device=str(device))
        b.save("model", model.state_dict())

    art = store.get_or_create("source", config, compute)
    return Source(art, load_model(art, device=device))


def robust_eval_of_source(source: Source, profile: Profile, eps: float, norm: str | None = None,
                          *, store: Store | None = None) -> dict:
    """Clean and PGD accuracy of a source model on S's test set at any eps; stored."""
    store = store or Store()
    attack = profile.eval_attack(eps, norm=norm)
    config = {"source": source.artifact.key, "attack": attack.to_dict(), "robust_n": profile.robust_n,
              "test_n": profile.test_n}

    def compute(b: Builder) -> None:
        data = profile_task(profile, profile.source)
        tx, ty = _test_split(profile, data)
        b.metrics.update(evaluate(source.model, EvalSet(tx, ty, attack, profile.robust_n),
                                  next(source.model.parameters()).device))

    return store.get_or_create("source_eval", config, compute).metrics


# ----------------------------------------------------------------------------- stage 2
@dataclass
class Ticket:
    """A drawn mask and its artifact (``None`` artifact = the dense model)."""

    artifact: Artifact | None
    mask: dict[str, torch.Tensor] | None

    @property
    def key(self) -> str:
        return self.artifact.key if self.artifact else "dense"

    @property
    def sparsity(self) -> float:
        return self.artifact.metrics["achieved_sparsity"] if self.artifact else 0.0


DENSE = Ticket(None, None)


def ticket_config(source: Source, scheme: str, pattern: str, sparsity: float, *, target: str | None,
                  seed: int, n: int, m: int, profile: Profile) -> dict:
    check_choice("scheme", scheme, tickets.SCHEMES)
    check_choice("pattern", pattern, tickets.PATTERNS)
    check_range("sparsity", sparsity, 0.0, 1.0, high_open=True)
    if scheme == "imp_target" and target is None:
        raise ValueError("scheme 'imp_target' needs a target task; got target=None")
    config = {"source": source.artifact.key, "scheme": scheme, "pattern": pattern,
              "sparsity": sparsity, "seed": seed}
    if pattern == "nm":
        config.update(n=n, m=m)
    if scheme.startswith("imp"):
        config.update(rate=profile.imp_rate, epochs=profile.imp_epochs)
    if scheme == "imp_target":  # round 0 prunes the weights finetuned on T, not the pretrained ones
        config.update(target=target, finetune=profile.finetune.to_dict(),
                      target_fraction=profile.target_fraction, train_first=True)
    return config


def draw_ticket(profile: Profile, source: Source, scheme: str, pattern: str, sparsity: float, *,
                target: str | None = None, seed: int = 0, n: int = 2, m: int = 4,
                store: Store | None = None, progress: bool | None = None) -> Ticket:
    """A mask by scheme x pattern x sparsity from ``source``; stored (IMP round by round)."""
    store = store or Store()
    check_choice("scheme", scheme, tickets.SCHEMES)
    check_choice("pattern", pattern, tickets.PATTERNS)
    if sparsity == 0 and pattern != "nm":
        return DENSE
    config = ticket_config(source, scheme, pattern, sparsity, target=target, seed=seed, n=n, m=m,
                           profile=profile)
    kw = {"n": n, "m": m} if pattern == "nm" else {}

    def compute(b: Builder) -> None:
        model = load_model(source.artifact, device=next(source.model.parameters()).device)
        if scheme == "omp":
            mask = tickets.omp(model, pattern, sparsity, **kw)
        elif scheme == "random":
            reference = draw_ticket(profile, source, "omp", pattern, sparsity, seed=seed, n=n, m=m,
                                    store=store, progress=progress)
            mask = tickets.random_mask(reference.mask, pattern, seed=seed, **kw)
        else:
            mask = _imp(profile, source, model, config, store, progress, **kw)
        b.save("mask", mask)
        report = tickets.mask_report(model, mask, sparsity)
        b.metrics.update(achieved_sparsity=report["achieved"], requested_sparsity=sparsity)
        b.extra.update(report=report)

    art = store.get_or_create("ticket", config, compute)
    mask = {k: v.bool() for k, v in art.tensors("mask").items()}
    return Ticket(art, mask)


def _imp(profile: Profile, source: Source, model: Classifier, config: dict, store: Store,
         progress: bool, **kw) -> dict[str, torch.Tensor]:
    """Iterative magnitude pruning; each finished round is an artifact, so it resumes."""
    device = next(model.parameters()).device
    if config["scheme"] == "imp_source":
        data = profile_task(profile, profile.source)
        x, y = _subset(data.train_x, data.train_y, profile.source_fraction, config["seed"])
        retrain_cfg = TrainConfig.from_dict(source.artifact.config["train"]).with_(epochs=config["epochs"])
    else:
        data = profile_task(profile, config["target"])
        x, y = _subset(data.train_x, data.train_y, config["target_fraction"], config["seed"])
        retrain_cfg = profile.finetune.with_(epochs=config["epochs"])
        model.reset_head(data.num_classes, seed=config["seed"])
    rewind = {k: v.clone() for k, v in model.state_dict().items()}

    def retrain(net: nn.Module, mask: dict) -> None:
        train(net, x, y, retrain_cfg, seed=config["seed"], device=device, progress=False,
              on_optimizer=lambda opt: masks_mod.apply_mask(net, mask, opt))

    schedule = tickets.imp_schedule(config["sparsity"], config["rate"], config["pattern"])
    start, mask = None, None
    for r in range(len(schedule)):  # resume: the last stored round
        found = store.get("imp_round", {**config, "round": r})
        if found is None:
            break
        start = (r, {k: v.bool() for k, v in found.tensors("mask").items()})
    if start is not None and start[0] == len(schedule) - 1:
        return start[1]
    if start is not None:
        model.load_state_dict(rewind)
    for r, mask in tickets.imp(model, config["pattern"], config["sparsity"], rate=config["rate"],
                               retrain=retrain, rewind_state=rewind, start=start,
                               train_first=config.get("train_first", False), **kw):
        store.get_or_create("imp_round", {**config, "round": r},
                            lambda b, mask=mask, r=r: (b.save("mask", mask),
                                                       b.metrics.update(round=r, sparsity=masks_mod.sparsity(mask))))
    return mask


# ----------------------------------------------------------------------------- stage 3
def transfer_config(profile: Profile, source: Source, ticket: Ticket, target: str, *, regime: str,
                    adversarial_eps: float, eval_eps: float | None, fraction: float, seed: int) -> dict:
    check_choice("regime", regime, REGIMES)
    check_range("fraction", fraction, 0.0, 1.0, low_open=True)
    check_range("adversarial_eps", adversarial_eps, 0.0, 1.0)
    if regime == "probe" and adversarial_eps > 0:
        raise ValueError(f"adversarial finetuning (adversarial_eps={adversarial_eps}) needs regime 'finetune'")
    recipe = profile.finetune if regime == "finetune" else profile.probe
    if adversarial_eps > 0:
        recipe = recipe.with_(attack=profile.source_attack(adversarial_eps))
    return {
        "source": source.artifact.key,
        "ticket": ticket.key,
        "target": target,
        "regime": regime,
        "train": recipe.to_dict(),
        "eval_attack": profile.eval_attack(eval_eps).to_dict() if eval_eps else None,
        "robust_n": profile.robust_n,
        "test_n": profile.test_n,
        "fraction": fraction,
        "seed": seed,
    }


def transfer(profile: Profile, source: Source, ticket: Ticket, target: str, *, regime: str = "finetune",
             adversarial_eps: float = 0.0, eval_eps: float | None = None, fraction: float | None = None,
             seed: int = 0, store: Store | None = None, progress: bool | None = False) -> Artifact:
    """Finetune ``source ⊙ mask`` (mask fixed) or a linear probe on ``target``; stored.

    Metrics: ``test_acc``, ``robust_acc`` (if ``eval_eps``), ``sparsity`` (of the
    prunable weights after training, measured, not assumed).
    """
    store = store or Store()
    fraction = profile.target_fraction if fraction is None else fraction
    config = transfer_config(profile, source, ticket, target, regime=regime,
                             adversarial_eps=adversarial_eps, eval_eps=eval_eps, fraction=fraction, seed=seed)

    def compute(b: Builder) -> None:
        device = next(source.model.parameters()).device
        data = profile_task(profile, target)
        x, y = _subset(data.train_x, data.train_y, fraction, seed)
        tx, ty = _test_split(profile, data)
        model = load_model(source.artifact, device=device)
        model.reset_head(data.num_classes, seed=seed)
        cfg = TrainConfig.from_dict(config["train"])
        ev_attack = AttackConfig.from_dict(config["eval_attack"]) if config["eval_attack"] else None
        ev = EvalSet(tx, ty, ev_attack, profile.robust_n)
        t0 = time.perf_counter()
        handle = masks_mod.apply_mask(model, ticket.mask) if ticket.mask is not None else None
        if regime == "finetune":  # the mask stays fixed: re-applied after every optimiser step
            train(model, x, y, cfg, seed=seed, device=device, eval_set=None, progress=progress,
                  on_optimizer=handle.attach if handle is not None else None)
        else:
            linear_probe(model, x, y, cfg, seed=seed, device=device, progress=progress)
        b.metrics.update(evaluate(model, ev, device))
        b.metrics["train_seconds"] = round(time.perf_counter() - t0, 3)
        prunable = tickets.prunable_names(model)
        params = dict(model.named_parameters())
        total = sum(params[k].numel() for k in prunable)
        zeros = sum(int((params[k] == 0).sum()) for k in prunable)
        b.metrics["sparsity"] = zeros / max(1, total)
        b.metrics["n_train"] = len(y)

    return store.get_or_create("transfer", config, compute)


def linear_probe(model: Classifier, x: torch.Tensor, y: torch.Tensor, cfg: TrainConfig, *, seed: int,
                 device: torch.device, progress: bool | None = None) -> list[dict]:
    """Train only the head on frozen features (computed once, in eval mode)."""
    model.eval().to(device)
    with torch.inference_mode():
        feats = torch.cat([model.features(xb.to(device)) for xb in x.split(512)])
    head = model.head
    history = train(head, feats.clone(), y, cfg.with_(channels_last=False, augment=False), seed=seed,
                    device=device, progress=progress)
    model.eval()
    return history
