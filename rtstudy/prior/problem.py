"""What a denoising run of the image prior is: its network (the source), its noisy target,
its recipe and how it is measured, as the descriptions the core stores.

    source = PriorSource(image_size=64, depth=3, width=16, seed=0)   # the DIP at initialisation
    target = noisy_target("camera", sigma=0.1, noise_seed=0)         # "camera@0.1#0"
    code, noisy, clean = problem(source, target)                     # the fixed input, y, x

A target is a string (the core's ``target``): ``<image>@<sigma>#<noise seed>``; the image
is a scikit-image sample name or a file path (``rtstudy.prior.images``).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from typing import ClassVar

import torch

from rtstudy.core.checks import check_choice, check_int, check_positive
from rtstudy.core.descriptions import SourceDesc
from rtstudy.prior.images import add_noise, check_sigma, load_image
from rtstudy.prior.models import Hourglass, check_image_size, input_code

TRACK = "prior"


@dataclass(frozen=True)
class PriorSource(SourceDesc):
    """The deep image prior at its random initialisation (``seed``): an ``Hourglass`` of
    ``depth`` levels and ``width`` channels for ``image_size``-pixel images of ``channels``."""

    track: ClassVar[str] = TRACK
    image_size: int = 64
    channels: int = 1
    depth: int = 3
    width: int = 16
    skip: int = 4
    code_channels: int = 8
    seed: int = 0

    def __post_init__(self):
        check_choice("channels", self.channels, (1, 3))
        for name in ("depth", "width", "code_channels"):
            check_int(name, getattr(self, name), 1)
        check_int("skip", self.skip, 0)
        check_int("seed", self.seed, 0)
        check_image_size(self.image_size, self.depth)

    @property
    def robust(self) -> bool:
        return False

    @property
    def label(self) -> str:
        return f"DIP depth {self.depth} width {self.width}"

    def config(self) -> dict:
        return {"track": self.track, "image_size": self.image_size, "channels": self.channels,
                "depth": self.depth, "width": self.width, "skip": self.skip,
                "code_channels": self.code_channels, "seed": self.seed}

    @classmethod
    def from_config(cls, c: Mapping) -> PriorSource:
        return cls(**{k: c[k] for k in ("image_size", "channels", "depth", "width", "skip",
                                        "code_channels", "seed")})


@dataclass(frozen=True)
class DenoiseRecipe:
    """Adam at ``lr`` for ``iterations`` steps on the noisy image (mean squared error)."""

    iterations: int = 500
    lr: float = 0.01

    def __post_init__(self):
        check_int("iterations", self.iterations, 1)
        check_positive("lr", self.lr)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping) -> DenoiseRecipe:
        return cls(**d)

    def with_(self, **changes) -> DenoiseRecipe:
        return replace(self, **changes)


@dataclass(frozen=True)
class DenoiseEvaluation:
    """PSNR and SSIM against the clean image every ``every`` iterations (and at the last)."""

    every: int = 10

    def __post_init__(self):
        check_int("every", self.every, 1)

    def config(self) -> dict:
        return {"every": self.every}


@dataclass(frozen=True)
class NoisyTarget:
    """An image with Gaussian noise of ``sigma`` drawn under ``noise_seed``."""

    image: str
    sigma: float
    noise_seed: int

    def __post_init__(self):
        if not self.image or "@" in self.image:
            raise ValueError(f"image name {self.image!r} must be non-empty and contain no '@'")
        object.__setattr__(self, "sigma", check_sigma(self.sigma))
        check_int("noise_seed", self.noise_seed, 0)

    @property
    def name(self) -> str:
        return f"{self.image}@{self.sigma:g}#{self.noise_seed}"


def noisy_target(image: str, sigma: float, noise_seed: int) -> str:
    """The target string of ``image`` with noise ``sigma`` under ``noise_seed``."""
    return NoisyTarget(image, sigma, noise_seed).name


def parse_target(target: str) -> NoisyTarget:
    """``"camera@0.1#0"`` back as a ``NoisyTarget`` (a clear error for any other form)."""
    try:
        image, rest = str(target).rsplit("@", 1)
        sigma, seed = rest.split("#")
        return NoisyTarget(image, float(sigma), int(seed))
    except ValueError as err:
        raise ValueError(f"target {target!r} is not '<image>@<sigma>#<noise seed>' "
                         f"(e.g. 'camera@0.1#0'): {err}") from None


def new_network(source: PriorSource) -> Hourglass:
    """The source's network with its initial weights (seeded)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(source.seed)
        return Hourglass(source.depth, source.width, source.skip, source.code_channels, source.channels)


@functools.lru_cache(maxsize=64)
def _problem(source: PriorSource, target: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    t = parse_target(target)
    clean = load_image(t.image, source.image_size, source.channels)
    noisy = add_noise(clean, t.sigma, t.noise_seed)
    code = input_code(source.code_channels, source.image_size, source.seed)
    return code, noisy[None], clean[None]


def problem(source: PriorSource, target: str, device: torch.device | str = "cpu"):
    """``(code, noisy, clean)`` of denoising ``target`` with ``source``'s network, each
    ``[1, C, H, W]`` on ``device``."""
    return tuple(x.to(device) for x in _problem(source, target))
