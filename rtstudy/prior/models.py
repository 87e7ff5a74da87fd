"""The deep image prior network: an hourglass (encoder-decoder) with skip connections.

``Hourglass(depth, width, skip, code_channels, out_channels)`` is the "skip" network of
Ulyanov et al. (Deep Image Prior, 2018) in small: ``depth`` levels, each halving the
resolution with a strided 3x3 conv then a 3x3 conv (``width`` channels), a 1x1 skip
branch (``skip`` channels, 0: none) and, on the way up, bilinear upsampling, the skip
concatenated, a 3x3 and a 1x1 conv; LeakyReLU(0.2) and batch norm (always over the one
image: no running statistics, so train and eval modes agree); a 1x1 conv and a sigmoid to
the image. Its input is a fixed random code (``input_code``). Every conv weight is prunable.
"""

from __future__ import annotations

import torch
import torch.nn as nn


def _conv(cin: int, cout: int, k: int, stride: int = 1) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, k, stride=stride, padding=k // 2, padding_mode="reflect"),
            nn.BatchNorm2d(cout, track_running_stats=False), nn.LeakyReLU(0.2)]


class Level(nn.Module):
    """One level: down (strided conv, conv), the deeper levels, up (conv, 1x1 conv); skip."""

    def __init__(self, cin: int, width: int, skip: int, inner: nn.Module | None, inner_out: int):
        super().__init__()
        self.down = nn.Sequential(*_conv(cin, width, 3, stride=2), *_conv(width, width, 3))
        self.inner = inner
        self.skip = nn.Sequential(*_conv(cin, skip, 1)) if skip else None
        below = inner_out if inner is not None else width
        self.up = nn.Sequential(nn.BatchNorm2d(below + skip, track_running_stats=False),
                                *_conv(below + skip, width, 3), *_conv(width, width, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.down(x)
        if self.inner is not None:
            y = self.inner(y)
        y = nn.functional.interpolate(y, size=x.shape[-2:], mode="bilinear", align_corners=False)
        if self.skip is not None:
            y = torch.cat([self.skip(x), y], dim=1)
        return self.up(y)


class Hourglass(nn.Module):
    """The DIP skip network mapping a fixed code ``[1, code_channels, H, W]`` to an image."""

    def __init__(self, depth: int = 3, width: int = 16, skip: int = 4, code_channels: int = 8,
                 out_channels: int = 1):
        super().__init__()
        for name, v, low in (("depth", depth, 1), ("width", width, 1), ("skip", skip, 0),
                             ("code_channels", code_channels, 1), ("out_channels", out_channels, 1)):
            if not isinstance(v, int) or v < low:
                raise ValueError(f"{name} must be an int >= {low}, got {v!r}")
        self.spec = {"depth": depth, "width": width, "skip": skip, "code_channels": code_channels,
                     "out_channels": out_channels}
        inner = None
        for level in range(depth - 1, -1, -1):  # build from the deepest level up
            cin = code_channels if level == 0 else width
            inner = Level(cin, width, skip, inner, width)
        self.body = inner
        self.head = nn.Conv2d(width, out_channels, 1)

    @property
    def factor(self) -> int:
        """How much the encoder downsamples: an image side must be a multiple of it."""
        return 2 ** self.spec["depth"]

    def forward(self, code: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.head(self.body(code)))

    def prunable_names(self) -> list[str]:
        """Every conv weight (the masks of E12 cover the whole network)."""
        return [f"{n}.weight" for n, m in self.named_modules() if isinstance(m, nn.Conv2d)]


def check_image_size(size: int, depth: int) -> None:
    """An image side the network's ``depth`` levels can halve down to at least 2 pixels."""
    factor = 2 ** depth
    if not isinstance(size, int) or size < 2 * factor or size % factor:
        raise ValueError(f"image size {size!r} does not fit a depth-{depth} hourglass: it must be a "
                         f"multiple of {factor} and at least {2 * factor}")


def input_code(channels: int, size: int, seed: int) -> torch.Tensor:
    """The fixed random input of the prior: uniform noise in [0, 0.1) (as in DIP), seeded."""
    gen = torch.Generator().manual_seed(int(seed) + 7919)
    return 0.1 * torch.rand((1, channels, size, size), generator=gen)
