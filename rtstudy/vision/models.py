"""Models by name. Every model takes pixels in [0, 1]: the normaliser lives inside.

Two families:

* CIFAR-style ResNets (He et al. 2016, §4.2): ``resnet8``, ``resnet20``, ``resnet32``,
  ``resnet56``, 3 stages of basic blocks, widths 16/32/64 times a width multiplier.
* torchvision ``resnet18`` / ``resnet50`` with a small-image stem (3x3 conv, stride 1,
  no max-pool) for 28-64 px inputs, or the ImageNet stem for ``image_size >= 128``.

Names are stable: the first conv is ``net.conv1``, the classifier is ``net.fc``.
"""

from __future__ import annotations

import functools

import torch
import torch.nn as nn
import torchvision

from rtstudy.core.checks import check_choice, check_int, check_positive
from rtstudy.core.patterns import register_residual_block
from rtstudy.core.registry import Registry

CIFAR_DEPTHS = {"resnet8": 8, "resnet20": 20, "resnet32": 32, "resnet56": 56}
TORCHVISION_NAMES = ("resnet18", "resnet50")


class Normalize(nn.Module):
    """Per-channel (x - mean) / std, stored as buffers so it travels with the weights."""

    def __init__(self, mean: tuple[float, ...], std: tuple[float, ...]):
        super().__init__()
        if len(mean) != len(std) or min(std) <= 0:
            raise ValueError(f"mean {mean} and std {std} must have the same length and std > 0")
        self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


class Classifier(nn.Module):
    """``net(normalize(x))`` for x in [0, 1]; remembers how it was built."""

    def __init__(self, net: nn.Module, normalize: Normalize, spec: dict):
        super().__init__()
        self.normalize = normalize
        self.net = net
        self.spec = dict(spec)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(self.normalize(x))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate features (the input of ``net.fc``)."""
        fc = self.net.fc
        self.net.fc = nn.Identity()
        try:
            return self.net(self.normalize(x))
        finally:
            self.net.fc = fc

    @property
    def head(self) -> nn.Linear:
        return self.net.fc

    def reset_head(self, num_classes: int, seed: int = 0) -> None:
        """Replace the classifier with a fresh ``num_classes``-way linear layer."""
        check_int("num_classes", num_classes, 1)
        old = self.net.fc
        gen = torch.Generator().manual_seed(seed)
        new = nn.Linear(old.in_features, num_classes)
        bound = 1.0 / old.in_features**0.5
        with torch.no_grad():
            new.weight.uniform_(-bound, bound, generator=gen)
            new.bias.uniform_(-bound, bound, generator=gen)
        self.net.fc = new.to(old.weight.device, old.weight.dtype)
        self.spec["num_classes"] = num_classes


class BasicBlock(nn.Module):
    """3x3-3x3 residual block; a 1x1 conv + BN shortcut when the shape changes."""

    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = nn.Sequential()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(
                nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return torch.relu(out + self.shortcut(x))


class CifarResNet(nn.Module):
    """ResNet-(6n+2) for small images: conv1 -> layer1..3 -> global pool -> fc."""

    def __init__(self, depth: int, num_classes: int, in_channels: int, width: float):
        super().__init__()
        if (depth - 2) % 6:
            raise ValueError(f"CIFAR ResNet depth must be 6n+2, got {depth}")
        n = (depth - 2) // 6
        widths = [max(1, round(w * width)) for w in (16, 32, 64)]
        self.conv1 = nn.Conv2d(in_channels, widths[0], 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        layers, cin = [], widths[0]
        for i, w in enumerate(widths):
            blocks = []
            for j in range(n):
                blocks.append(BasicBlock(cin, w, 2 if (i > 0 and j == 0) else 1))
                cin = w
            layers.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3 = layers
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(cin, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.fc(torch.flatten(self.pool(x), 1))


def _torchvision_resnet(
    name: str, num_classes: int, in_channels: int, image_size: int, width: float
) -> nn.Module:
    if width != 1.0:
        raise ValueError(f"width {width} is only supported for CIFAR ResNets; {name} needs 1.0")
    net = getattr(torchvision.models, name)(weights=None, num_classes=num_classes)
    if image_size < 128:  # small-image stem: keep the resolution for 28-64 px inputs
        net.conv1 = nn.Conv2d(in_channels, 64, 3, 1, 1, bias=False)
        net.maxpool = nn.Identity()
    elif in_channels != 3:
        net.conv1 = nn.Conv2d(in_channels, 64, 7, 2, 3, bias=False)
    return net


ARCHITECTURES: Registry = Registry("model")  # name -> (num_classes, in_channels, image_size, width) -> net
for _name, _depth in CIFAR_DEPTHS.items():
    ARCHITECTURES.register(_name, functools.partial(
        lambda depth, k, cin, size, width: CifarResNet(depth, k, cin, width), _depth))
for _name in TORCHVISION_NAMES:
    ARCHITECTURES.register(_name, functools.partial(_torchvision_resnet, _name))
MODELS = ARCHITECTURES.names()


def build_model(
    name: str,
    num_classes: int,
    *,
    in_channels: int = 3,
    image_size: int = 32,
    width: float = 1.0,
    mean: tuple[float, ...] | None = None,
    std: tuple[float, ...] | None = None,
    seed: int | None = None,
) -> Classifier:
    """Build a model by name (see ``MODELS``) with its normaliser inside."""
    make_net = ARCHITECTURES.get(name)
    check_int("num_classes", num_classes, 1)
    check_choice("in_channels", in_channels, (1, 3))
    check_int("image_size", image_size, 1)
    check_positive("width", width)
    mean = tuple(mean) if mean is not None else (0.5,) * in_channels
    std = tuple(std) if std is not None else (0.25,) * in_channels
    if len(mean) != in_channels or len(std) != in_channels:
        raise ValueError(f"mean/std need {in_channels} values, got mean={mean} std={std}")
    if seed is not None:
        torch.manual_seed(seed)
    net = make_net(num_classes, in_channels, image_size, width)
    spec = dict(
        name=name, num_classes=num_classes, in_channels=in_channels, image_size=image_size,
        width=width, mean=list(mean), std=list(std),
    )
    return Classifier(net, Normalize(mean, std), spec)


def model_from_spec(spec: dict) -> Classifier:
    """Rebuild an (untrained) model from ``Classifier.spec``."""
    return build_model(
        spec["name"], spec["num_classes"], in_channels=spec["in_channels"],
        image_size=spec["image_size"], width=spec["width"],
        mean=tuple(spec["mean"]), std=tuple(spec["std"]),
    )


def load_state(model: nn.Module, state: dict[str, torch.Tensor], *, source: str = "state") -> None:
    """Load a state dict strictly, with an error that names missing/extra/mis-shaped keys."""
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    extra = sorted(set(state) - set(own))
    shapes = [
        f"{k}: {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
        for k in own.keys() & state.keys()
        if tuple(own[k].shape) != tuple(state[k].shape)
    ]
    if missing or extra or shapes:
        raise ValueError(
            f"{source} does not fit the model: missing keys {missing[:5]}"
            f"{'...' if len(missing) > 5 else ''}, unexpected keys {extra[:5]}"
            f"{'...' if len(extra) > 5 else ''}, shape mismatches {shapes[:5]}"
        )
    model.load_state_dict(state)


def count_parameters(model: nn.Module) -> int:
    """Number of parameter elements (masked weights count: they are still stored)."""
    return sum(p.numel() for p in model.parameters())


register_residual_block(BasicBlock, torchvision.models.resnet.BasicBlock, torchvision.models.resnet.Bottleneck)
