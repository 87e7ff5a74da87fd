"""ImageNet-pretrained models as sources of the image-classification track.

Two origins, each read from a local file (nothing is downloaded here):

* ``torchvision``: torchvision's natural ImageNet weights, by architecture and weights
  enum (``ResNet18_Weights.IMAGENET1K_V1``), looked for under the zoo folder and torch's
  hub cache (``$TORCH_HOME/hub/checkpoints``) by the file name of the enum's URL.
* ``zoo``: the robust ImageNet models of Salman et al. (NeurIPS 2020) in the robustness
  library's layout, ``<arch>_<norm>_eps<eps>.ckpt`` in ``$RTSTUDY_ZOO`` (default
  ``~/.cache/rtstudy/zoo``), or their conversion (``rtstudy.vision.convert``).

A ``PretrainedSource`` is keyed by the file's sha256 (a converted file: its original's)
and the ε and norm it declares; its "pretraining" loads the file into a ``Classifier``
with the ImageNet stem at the profile's resolution and the ImageNet normaliser inside.
Tickets, transfers and controls then run as for any source (``PretrainedTrack``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import torch
import torch.nn as nn
import torchvision

from rtstudy.core.checks import check_choice, check_int, check_positive
from rtstudy.core.descriptions import SourceDesc, TicketDesc
from rtstudy.core.track import register_track
from rtstudy.vision import checkpoints as ck
from rtstudy.vision.attacks import AttackConfig
from rtstudy.vision.models import ARCHITECTURES, Classifier, build_model, load_state
from rtstudy.vision.track import VisionTrack, attack_name, eps_label, source_task, test_split
from rtstudy.vision.train import EvalSet, evaluate

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
IMAGENET_CLASSES = 1000
ORIGINS = ("torchvision", "zoo")
#: arch -> (block, blocks per stage, width per group): torchvision's ResNet definitions
#: (``wide_resnet50_4`` is the zoo's: a WRN-50-2 twice as wide again).
ARCHS = {
    "resnet18": ("basic", (2, 2, 2, 2), 64),
    "resnet50": ("bottleneck", (3, 4, 6, 3), 64),
    "wide_resnet50_2": ("bottleneck", (3, 4, 6, 3), 128),
    "wide_resnet50_4": ("bottleneck", (3, 4, 6, 3), 256),
}
#: torchvision's weights enum per architecture (the natural source of the paper profile).
TORCHVISION_WEIGHTS = {
    "resnet18": "ResNet18_Weights.IMAGENET1K_V1",
    "resnet50": "ResNet50_Weights.IMAGENET1K_V1",
    "wide_resnet50_2": "Wide_ResNet50_2_Weights.IMAGENET1K_V1",
}
#: The zoo's grids (Salman et al. 2020): l2 eps in pixel units, l-inf eps as k/255.
ZOO_EPS = {
    "l2": (0.0, 0.01, 0.03, 0.05, 0.1, 0.25, 0.5, 1.0, 3.0, 5.0),
    "linf": tuple(k / 255 for k in (0.5, 1, 2, 4, 8)),
}
ZOO_ARCHS = {"l2": tuple(ARCHS), "linf": ("resnet18", "resnet50", "wide_resnet50_2")}
ZOO_ATTACK_STEPS = 3  # the declared threat model's PGD steps (descriptive: nothing is trained)
ZOO_WHERE = ("the robust ImageNet models of Salman et al. 2020, listed in the README of "
             "github.com/microsoft/robust-models-transfer (mirrored at "
             "huggingface.co/madrylab/robust-imagenet-models)")


# ----------------------------------------------------------------------------- architectures
class ImageNetResNet(torchvision.models.ResNet):
    """torchvision's ResNet (same module and state-dict names, ImageNet stem at any input
    size) with every stage's width times ``width`` (1: torchvision's own)."""

    def __init__(self, arch: str, num_classes: int, width: float = 1.0):
        check_choice("architecture", arch, ARCHS)
        check_positive("width", width)
        nn.Module.__init__(self)
        kind, layers, per_group = ARCHS[arch]
        block = torchvision.models.resnet.BasicBlock if kind == "basic" else \
            torchvision.models.resnet.Bottleneck
        w = [max(1, round(c * width)) for c in (64, 128, 256, 512)]
        self._norm_layer, self.dilation, self.groups = nn.BatchNorm2d, 1, 1
        self.base_width = per_group if kind == "bottleneck" else 64
        self.inplanes = w[0]
        self.conv1 = nn.Conv2d(3, w[0], kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(w[0])
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._make_layer(block, w[0], layers[0])
        self.layer2 = self._make_layer(block, w[1], layers[1], stride=2)
        self.layer3 = self._make_layer(block, w[2], layers[2], stride=2)
        self.layer4 = self._make_layer(block, w[3], layers[3], stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(w[3] * block.expansion, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)


def _imagenet_net(arch: str, num_classes: int, in_channels: int, image_size: int, width: float):
    if in_channels != 3:
        raise ValueError(f"ImageNet-pretrained {arch} takes 3 channels, got in_channels={in_channels}")
    return ImageNetResNet(arch, num_classes, width)


def model_name(arch: str) -> str:
    """The name under which ``build_model`` knows the ImageNet-stem ``arch``."""
    return f"imagenet_{arch}"


for _arch in ARCHS:
    ARCHITECTURES.register(model_name(_arch), lambda k, c, s, w, _a=_arch: _imagenet_net(_a, k, c, s, w))


# ----------------------------------------------------------------------------- where files are
def zoo_dir() -> Path:
    """``$RTSTUDY_ZOO``, else ``~/.cache/rtstudy/zoo``."""
    return Path(os.environ.get("RTSTUDY_ZOO") or Path.home() / ".cache" / "rtstudy" / "zoo").expanduser()


def zoo_file_name(arch: str, norm: str, eps: float) -> str:
    """The zoo's file name: ``resnet18_l2_eps3.ckpt``, ``resnet18_linf_eps4.0.ckpt``."""
    check_choice("norm", norm, ZOO_EPS)
    if norm == "linf":
        return f"{arch}_linf_eps{eps * 255:.1f}.ckpt"
    return f"{arch}_l2_eps{eps:g}.ckpt"


def torchvision_file_name(weights: str) -> str:
    """The file torchvision downloads for a weights enum (``resnet18-f37072fd.pth``)."""
    return Path(_weights_enum(weights).url).name


def _weights_enum(weights: str):
    try:
        return torchvision.models.get_weight(weights)
    except (ValueError, KeyError, AttributeError):
        allowed = ", ".join(TORCHVISION_WEIGHTS.values())
        raise ValueError(f"unknown torchvision weights {weights!r}; allowed e.g. {allowed}") from None


def torchvision_dirs() -> tuple[Path, ...]:
    """Where torchvision weight files are looked for: the zoo folder, then torch's hub cache."""
    return zoo_dir(), Path(torch.hub.get_dir()) / "checkpoints"


@dataclass(frozen=True)
class WeightsLocation:
    """The file a pretrained source reads (``None``: not found), where it was looked for,
    and how to get it."""

    name: str
    found: Path | None
    looked_in: tuple[Path, ...]
    how: str
    converted: bool = False


def locate(origin: str, arch: str, norm: str, eps: float, weights: str = "") -> WeightsLocation:
    """Find the weights of a source: a zoo file (its conversion first) or a torchvision file."""
    check_choice("origin", origin, ORIGINS)
    check_choice("architecture", arch, ARCHS)
    if origin == "torchvision":
        name = torchvision_file_name(weights)
        dirs = torchvision_dirs()
        hit = next((d / name for d in dirs if (d / name).is_file()), None)
        how = (f"on a machine with a network: python -c \"import torchvision; "
               f"torchvision.models.get_weight('{weights}').get_state_dict()\" (it lands in "
               f"{dirs[1]}), or download {_weights_enum(weights).url} into {dirs[0]}")
        return WeightsLocation(name, hit, dirs, how)
    name = zoo_file_name(arch, norm, eps)
    folder = zoo_dir()
    converted, sidecar = ck.converted_paths(folder / name)
    how = (f"download {name} from {ZOO_WHERE} into {folder} (set RTSTUDY_ZOO for another "
           f"folder); a dill-pickled file then needs one {ck.convert_command(folder / name)}")
    if converted.is_file() and sidecar.is_file():
        return WeightsLocation(name, converted, (folder,), how, converted=True)
    hit = folder / name if (folder / name).is_file() else None
    return WeightsLocation(name, hit, (folder,), how)


# ----------------------------------------------------------------------------- the description
@dataclass(frozen=True)
class PretrainedSource(SourceDesc):
    """An ImageNet-pretrained source: ``origin`` (torchvision | zoo), ``arch``, the threat
    model it declares (``attack``; kind ``none`` for natural weights) and the sha256 of its
    file; used at ``image_size`` px (ImageNet stem), its own accuracy measured on ``task``.
    ``sha256`` is ``""`` while the file is missing (``pretrain`` then says how to get it)."""

    track: ClassVar[str] = "pretrained"
    channels: ClassVar[int] = 3
    origin: str
    arch: str
    attack: AttackConfig
    sha256: str
    weights: str = ""  # torchvision's weights enum (origin torchvision)
    task: str = "imagenet"
    image_size: int = 224
    width: float = 1.0
    eval_attack: AttackConfig | None = None
    robust_n: int = 500
    test_n: int = 0
    seed: int = 0
    path: str = field(default="", compare=False)  # where the file was found: not part of the key

    def __post_init__(self):
        check_choice("origin", self.origin, ORIGINS)
        check_choice("architecture", self.arch, ARCHS)
        check_int("image_size", self.image_size, 32)
        if self.seed != 0:
            raise ValueError(f"source seed {self.seed}: a pretrained source is one file, so it has "
                             f"source seed 0 only (its intervals are over finetuning seeds)")
        if self.origin == "torchvision":
            _weights_enum(self.weights)
            if self.attack.is_attack:
                raise ValueError(f"torchvision weights are natural; got the threat model {self.attack}")
        elif self.attack.is_attack:
            check_choice("norm", self.attack.norm, ZOO_EPS)
            allowed = ZOO_EPS[self.attack.norm]
            if not any(abs(self.attack.eps - e) < 1e-9 for e in allowed):
                shown = ", ".join(eps_label(e, self.attack.norm) for e in allowed)
                raise ValueError(f"the zoo has no {self.attack.norm} model at eps "
                                 f"{eps_label(self.attack.eps, self.attack.norm)}; allowed: {shown}")

    @property
    def robust(self) -> bool:
        return self.attack.is_attack

    @property
    def eps(self) -> float:
        return self.attack.eps

    @property
    def model(self) -> str:
        return model_name(self.arch)

    @property
    def label(self) -> str:
        """``natural`` or e.g. ``zoo ℓ2 3``, ``zoo ℓ∞ 4/255``."""
        if not self.robust:
            return attack_name(self.attack)
        return "zoo " + attack_name(self.attack).split(" ", 1)[1]

    @property
    def config_label(self) -> str:
        return f"{self.origin} {self.arch} {attack_name(self.attack)}"

    def config(self) -> dict:
        return {"origin": self.origin, "arch": self.arch, "weights": self.weights,
                "sha256": self.sha256, "attack": self.attack.to_dict(), "task": self.task,
                "image_size": self.image_size, "width": self.width,
                "eval_attack": self.eval_attack.to_dict() if self.eval_attack else None,
                "robust_n": self.robust_n, "test_n": self.test_n, "seed": self.seed}

    @classmethod
    def from_config(cls, config: Mapping) -> PretrainedSource:
        ev = config.get("eval_attack")
        return cls(origin=config["origin"], arch=config["arch"], weights=config.get("weights", ""),
                   sha256=config["sha256"], attack=AttackConfig.from_dict(config["attack"]),
                   task=config["task"], image_size=config["image_size"], width=config["width"],
                   eval_attack=AttackConfig.from_dict(ev) if ev else None,
                   robust_n=config["robust_n"], test_n=config["test_n"], seed=config.get("seed", 0))

    def location(self) -> WeightsLocation:
        return locate(self.origin, self.arch, self.attack.norm, self.attack.eps, self.weights)


def declared_attack(norm: str, eps: float) -> AttackConfig:
    """The threat model a zoo file declares (none at eps 0)."""
    if eps == 0:  # the zoo's natural file keeps its grid's norm in its identity
        return AttackConfig(kind="none", norm=norm, eps=0.0)
    return AttackConfig(kind="pgd", norm=norm, eps=eps, steps=ZOO_ATTACK_STEPS)


def pretrained_source(origin: str, arch: str, *, norm: str = "l2", eps: float = 0.0,
                      weights: str | None = None, **fields) -> PretrainedSource:
    """The source description of a file, with its sha256 when the file is there."""
    if origin == "torchvision":
        weights = weights or TORCHVISION_WEIGHTS.get(arch, "")
        if not weights:
            raise ValueError(f"torchvision has no ImageNet weights for {arch!r} here; allowed: "
                             f"{', '.join(TORCHVISION_WEIGHTS)}")
        attack = AttackConfig(kind="none", eps=0.0)
    else:
        norm = "l2" if eps == 0 else norm  # the zoo's one natural file per arch sits in its l2 grid
        check_choice("architecture", arch, ZOO_ARCHS.get(norm, ()))
        attack = declared_attack(norm, eps)
        weights = ""
    loc = locate(origin, arch, norm, eps, weights)
    digest = ""
    if loc.found is not None:
        digest = ck.read_sidecar(ck.converted_paths(loc.found)[1])["sha256"] if loc.converted \
            else ck.sha256_of(loc.found)
    return PretrainedSource(origin=origin, arch=arch, attack=attack, sha256=digest,
                            weights=weights, path=str(loc.found or ""), **fields)


# ----------------------------------------------------------------------------- loading
def load_pretrained(source: PretrainedSource) -> tuple[Classifier, dict]:
    """The source's network with its ImageNet head and normaliser, and what was read."""
    loc = source.location()
    if loc.found is None:
        raise FileNotFoundError(f"{source.config_label}: {loc.name} not found in "
                                f"{', '.join(map(str, loc.looked_in))}; to get it: {loc.how}")
    info: dict = {"file": loc.name}
    if loc.converted:
        state, meta = ck.read_converted(loc.found, ck.converted_paths(loc.found)[1])
        _check_declared(source, meta, ck.converted_paths(loc.found)[1])
        digest = meta["sha256"]
        info.update(converted=True, epoch=meta.get("epoch"))
        mean, std = meta.get("mean") or IMAGENET_MEAN, meta.get("std") or IMAGENET_STD
    else:
        digest = ck.sha256_of(loc.found)
        obj = ck.read_torch_file(loc.found)
        if source.origin == "torchvision":
            state, mean, std = ck.plain_state(obj, loc.found), IMAGENET_MEAN, IMAGENET_STD
        else:
            state, zinfo = ck.zoo_network_state(obj, loc.found)
            mean, std = zinfo.get("mean", IMAGENET_MEAN), zinfo.get("std", IMAGENET_STD)
            info["epoch"] = zinfo.get("epoch")
    if source.sha256 and digest != source.sha256:
        raise ValueError(f"{loc.found} has sha256 {digest[:12]}…, the planned source "
                         f"{source.config_label} has {source.sha256[:12]}…: the file changed "
                         f"since planning; plan again")
    model = network_from_state(state, source.arch, source.width, source.image_size, mean, std,
                               where=str(loc.found))
    info["sha256"] = digest
    return model, info


def network_from_state(state: Mapping[str, torch.Tensor], arch: str, width: float, image_size: int,
                       mean, std, *, where: str) -> Classifier:
    """A ``Classifier`` of ``arch`` (the ImageNet stem) holding ``state`` (torchvision key
    names); a state that does not fit names its first missing and unexpected keys."""
    fc = state.get("fc.weight")
    if fc is None or fc.ndim != 2:
        raise ValueError(f"{where} does not fit {arch}: it has no 2-d 'fc.weight' "
                         f"(found e.g. {sorted(state)[:3]})")
    model = build_model(model_name(arch), int(fc.shape[0]), in_channels=3, image_size=image_size,
                        width=width, mean=tuple(float(m) for m in mean), std=tuple(float(s) for s in std))
    load_state(model.net, dict(state), source=f"{where} (declared {arch}, width {width:g})")
    return model


def _check_declared(source: PretrainedSource, meta: Mapping, sidecar: Path) -> None:
    declared = {"arch": source.arch, "norm": source.attack.norm if source.robust else meta["norm"],
                "eps": source.attack.eps}
    for key, want in declared.items():
        got = meta[key]
        same = abs(float(got) - float(want)) < 1e-9 if key == "eps" else got == want
        if not same:
            raise ValueError(f"{sidecar} says {key} = {got!r}, the source {source.config_label} "
                             f"declares {want!r}; the file is not the model the profile asks for")


# ----------------------------------------------------------------------------- the track
class PretrainedTrack(VisionTrack):
    """Image classifiers pretrained elsewhere: ``pretrain`` reads their file; tickets and
    transfers are the image track's. IMP on the source is refused: its data is not here."""

    name = "pretrained"
    source_desc = PretrainedSource

    def pretrain(self, source: PretrainedSource, *, device: torch.device, progress: bool | None):
        """Read the file, then measure the model on its own task (clean, and under its
        ``eval_attack`` on ``robust_n`` images) as a trained source is measured."""
        model, info = load_pretrained(source)
        data = source_task(source)
        if data.num_classes > model.head.out_features:
            raise ValueError(f"{source.task} has {data.num_classes} classes, the head of "
                             f"{source.config_label} {model.head.out_features}: not its own task")
        tx, ty = test_split(data, source.test_n)
        model = model.to(device)
        metrics = evaluate(model, EvalSet(tx, ty, source.eval_attack, source.robust_n), device)
        return model, metrics, {"spec": model.spec, **info, "device": str(device)}

    def imp_retrainer(self, ticket: TicketDesc, model: nn.Module, *, on_target: bool,
                      device: torch.device):
        if not on_target:
            raise ValueError(f"{ticket.scheme}: IMP on the source retrains on ImageNet, which "
                             f"{ticket.source.config_label} was trained on elsewhere; use omp, "
                             f"imp_target or random")
        return super().imp_retrainer(ticket, model, on_target=on_target, device=device)

    def work(self, desc) -> float:
        if isinstance(desc, PretrainedSource):
            return 0.0  # read from a file
        if isinstance(desc, TicketDesc) and desc.rate is not None and desc.target is None:
            return 0.0  # refused when run (IMP on the source)
        return super().work(desc)


PRETRAINED = register_track(PretrainedTrack())
