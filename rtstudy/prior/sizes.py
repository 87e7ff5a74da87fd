"""The image-prior track's sizes per profile (E12): network, images, noise, iterations, masks.

Kept here, not in ``rtstudy.profiles`` (whose sizes are the image-classification track's).
"""

from __future__ import annotations

from dataclasses import dataclass

from rtstudy.core.checks import check_choice
from rtstudy.profiles import PROFILES, side_track_scale


@dataclass(frozen=True)
class PriorSizes:
    """Sizes of E12 under one profile.

    ``seeds``: the networks' initialisations (source seeds; with the image, the unit of
    replication); ``noise_seeds``: the noise drawn on each image; a contrast pairs two
    methods on the same image, network and noise. ``iterations`` of Adam at ``lr`` per
    denoising run, measured every ``every``; masks at ``sparsity`` (OES: ``oes_steps`` of
    mask learning; IMP: prune ``imp_rate`` of the remaining weights per round, each round
    ``imp_iterations`` of fitting the noisy image).
    """

    name: str = "default"
    image_size: int = 64
    channels: int = 1
    depth: int = 3
    width: int = 16
    skip: int = 4
    code_channels: int = 8
    images: tuple[str, ...] = ("camera", "coins", "moon")
    sigma: float = 0.1
    seeds: tuple[int, ...] = (0, 1)
    noise_seeds: tuple[int, ...] = (0,)
    iterations: int = 250
    lr: float = 0.01
    every: int = 10
    sparsity: float = 0.9
    oes_steps: int = 150
    oes_lr: float = 0.05
    kl_weight: float = 1.0
    imp_rate: float = 0.5
    imp_iterations: int = 50


@dataclass(frozen=True)
class SmokeSizes(PriorSizes):
    """Seconds: a 16-pixel image, a 2-level network of width 4, 20 iterations, one seed."""

    name: str = "smoke"
    image_size: int = 16
    depth: int = 2
    width: int = 4
    skip: int = 2
    code_channels: int = 4
    images: tuple[str, ...] = ("camera", "coins")
    seeds: tuple[int, ...] = (0,)
    iterations: int = 20
    every: int = 5
    sparsity: float = 0.8
    oes_steps: int = 5
    imp_rate: float = 0.6
    imp_iterations: int = 5


@dataclass(frozen=True)
class DefaultSizes(PriorSizes):
    """The offline study on a 2-core CPU, measured (one torch thread per worker).

    64x64 grayscale images, a 3-level hourglass of width 16 (23k weights): one dense or
    masked iteration (forward, backward, Adam; SSIM every 10) runs at ~60-90 it/s on one
    idle core of the development machine; an OES mask step costs ~1.1 dense steps
    (``rtstudy.bench``). At sigma = 0.1 the dense prior's PSNR peaks after ~60 iterations
    and has fallen 5 dB by iteration 250 (it fits the noise), so 250 iterations show the
    whole overfitting curve. Per (image, network seed): six denoising runs (dense, OES,
    random with OES's layer budgets, magnitude at init, random, IMP) and one transferred
    OES mask of 250 iterations each, 150 OES mask steps, and IMP's 50-iteration dense fit
    and 4 rounds: ~2,150 iterations; 3 images x 2 network seeds: ~12,900 iterations, about
    3 CPU-minutes, 1.5-2 minutes on 2 workers. Measured in a cold default report on an
    otherwise idle 2-core machine (bench clean training 2,897 img/s, 0.85 of the reference
    machine): 34 worker-seconds of tickets, 136 of denoising runs and 18 to render the
    notebook, 188 in all: 1.6 minutes on the 2 workers here, 1.3 on the reference machine
    (E12 may add 5). At 90% sparsity every masked prior
    still reaches the dense peak (27.0 dB on average).
    """

    # the default profile's pilot (``pilot_sd``) gives E12's primary estimand (OES − dense
    # final PSNR) an SD of 0.74 dB over (image, network seed) units: 3 images x 7 seeds would
    # reach 80% power at its 0.5 dB margin (3 x 2 give 27%), at 3.5 times the cost above


@dataclass(frozen=True)
class PaperSizes(PriorSizes):
    """A GPU: 256-pixel colour images and a 5-level DIP of width 64 (the papers' scale),
    sigma 25/255, 3,000 iterations, 95% sparsity, three seeds, six images."""

    name: str = "paper"
    image_size: int = 256
    channels: int = 3
    depth: int = 5
    width: int = 64
    code_channels: int = 32
    images: tuple[str, ...] = ("camera", "coins", "moon", "astronaut", "coffee", "chelsea")
    sigma: float = 25 / 255
    seeds: tuple[int, ...] = (0, 1, 2)
    noise_seeds: tuple[int, ...] = (0, 1)
    iterations: int = 3000
    every: int = 25
    sparsity: float = 0.95
    oes_steps: int = 2000
    oes_lr: float = 0.01
    imp_rate: float = 0.2
    imp_iterations: int = 500


_BY_NAME = {s.name: s for s in (SmokeSizes(), DefaultSizes(), PaperSizes())}


def prior_sizes(profile) -> PriorSizes:
    """The sizes of ``profile`` (a profile name or a ``rtstudy.profiles.Profile``)."""
    name = getattr(profile, "name", profile)
    check_choice("profile", name, PROFILES)
    return _BY_NAME[side_track_scale(name)]
