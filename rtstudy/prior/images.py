"""Images of the image-prior track: scikit-image's bundled photographs or a file, noise, quality.

    clean = load_image("camera", size=64)                 # [C, H, W] float in [0, 1]
    noisy = add_noise(clean, sigma=0.1, seed=0)           # Gaussian, seeded, not clipped
    psnr(output, clean), ssim(output, clean)              # against the clean image

A name is one of ``SAMPLES`` (read offline from scikit-image's own data folder) or a
path to an image file. Images are resized (anti-aliased) to a square ``size`` and made
grayscale (``channels=1``) or RGB (``channels=3``).
"""

from __future__ import annotations

import functools
import math
from pathlib import Path

import numpy as np
import torch

from rtstudy.core.checks import check_choice

# scikit-image's bundled sample photographs (no network needed to read them)
SAMPLES = ("camera", "astronaut", "coffee", "coins", "moon", "text", "brick", "grass", "gravel",
           "cat", "chelsea", "rocket", "page", "clock", "immunohistochemistry", "hubble_deep_field",
           "retina", "colorwheel", "microaneurysms")


def _read(name: str) -> np.ndarray:
    """The raw image ``name`` (a sample or a file) as an array, with clear errors."""
    if name in SAMPLES:
        import skimage.data

        return np.asarray(getattr(skimage.data, name)())
    path = Path(name)
    if not path.is_file():
        raise ValueError(f"image {name!r} is neither one of scikit-image's samples "
                         f"({', '.join(SAMPLES)}) nor an existing file")
    import warnings

    import skimage.io

    try:
        with warnings.catch_warnings():  # imageio's plugin search warns about its own deprecations
            warnings.simplefilter("ignore", DeprecationWarning)
            return np.asarray(skimage.io.imread(path))
    except Exception as err:  # any decoder failure: say which file and why
        raise ValueError(f"image file {name!r} cannot be read as an image: {err}") from err


@functools.lru_cache(maxsize=32)
def _load(name: str, size: int, channels: int) -> np.ndarray:
    from skimage.color import gray2rgb, rgb2gray, rgba2rgb
    from skimage.transform import resize
    from skimage.util import img_as_float

    raw = _read(name)
    if raw.ndim not in (2, 3) or (raw.ndim == 3 and raw.shape[2] not in (1, 3, 4)):
        raise ValueError(f"image {name!r} has shape {raw.shape}; allowed: H x W, or H x W x 1/3/4")
    img = img_as_float(raw).astype(np.float64)
    if img.ndim == 3 and img.shape[2] == 4:
        img = rgba2rgb(img)
    if img.ndim == 3 and img.shape[2] == 1:
        img = img[..., 0]
    if channels == 1 and img.ndim == 3:
        img = rgb2gray(img)
    if channels == 3 and img.ndim == 2:
        img = gray2rgb(img)
    h, w = img.shape[:2]
    if min(h, w) < size:
        raise ValueError(f"image {name!r} is {h}x{w}, smaller than the requested size {size}")
    side = min(h, w)  # the central square, then an anti-aliased resize
    top, left = (h - side) // 2, (w - side) // 2
    img = img[top:top + side, left:left + side]
    img = resize(img, (size, size), anti_aliasing=True, preserve_range=True)
    img = np.clip(img, 0.0, 1.0)
    return img[None] if img.ndim == 2 else img.transpose(2, 0, 1)


def load_image(name: str, size: int, channels: int = 1) -> torch.Tensor:
    """The clean image ``name`` as a float32 ``[channels, size, size]`` tensor in [0, 1]."""
    check_choice("channels", channels, (1, 3))
    if not isinstance(size, int) or size < 1:
        raise ValueError(f"image size must be a positive int, got {size!r}")
    return torch.from_numpy(_load(str(name), size, channels).astype(np.float32))


def check_sigma(sigma: float) -> float:
    """A noise level σ >= 0 (in [0, 1] pixel units); NaN and negatives are errors."""
    try:
        s = float(sigma)
    except (TypeError, ValueError):
        raise ValueError(f"noise sigma must be a number >= 0, got {sigma!r}") from None
    if math.isnan(s) or s < 0 or math.isinf(s):
        raise ValueError(f"noise sigma must be a finite number >= 0, got {sigma!r}")
    return s


def add_noise(clean: torch.Tensor, sigma: float, seed: int) -> torch.Tensor:
    """``clean`` plus Gaussian noise of standard deviation ``sigma`` drawn under ``seed``
    (not clipped, as in the deep-image-prior denoising setting)."""
    sigma = check_sigma(sigma)
    gen = torch.Generator().manual_seed(int(seed))
    return clean + sigma * torch.randn(clean.shape, generator=gen, dtype=clean.dtype)


def _np(x: torch.Tensor) -> np.ndarray:
    return x.detach().cpu().double().numpy()


def psnr(output: torch.Tensor, clean: torch.Tensor) -> float:
    """Peak signal-to-noise ratio in dB of ``output`` (clipped to [0, 1]) against ``clean``
    (data range 1): 10 log10(1 / MSE)."""
    mse = float(torch.mean((output.detach().double().clamp(0, 1) - clean.detach().double()) ** 2))
    return math.inf if mse == 0 else 10.0 * math.log10(1.0 / mse)


def ssim(output: torch.Tensor, clean: torch.Tensor) -> float:
    """Structural similarity of ``output`` (clipped to [0, 1]) to ``clean`` (scikit-image's
    ``structural_similarity``, data range 1, channels first)."""
    from skimage.metrics import structural_similarity

    return float(structural_similarity(_np(clean), _np(output.clamp(0, 1)), data_range=1.0,
                                       channel_axis=0))


def to_uint8(x: torch.Tensor) -> list:
    """An image ``[C, H, W]`` in [0, 1] as nested lists of 0..255 ints (JSON-storable)."""
    return (x.detach().cpu().clamp(0, 1) * 255).round().to(torch.uint8).tolist()


def from_uint8(values) -> np.ndarray:
    """``to_uint8``'s lists back as a float ``[C, H, W]`` array in [0, 1]."""
    return np.asarray(values, dtype=np.float64) / 255.0
