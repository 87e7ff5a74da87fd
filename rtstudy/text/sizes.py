"""The text track's sizes per profile (smoke / default / paper): one frozen dataclass each.

``text_sizes(profile_name)`` gives them; E11 (``rtstudy.experiments.text_tickets``) builds
its grid from them.
"""

from __future__ import annotations

from dataclasses import dataclass

from rtstudy.core.checks import check_choice
from rtstudy.text.train import TextRecipe


@dataclass(frozen=True)
class TextSizes:
    """What E11 trains: the encoder, the tasks, the recipes, the ticket axes and the seeds.

    ``directions``: (source task, target task) pairs; ``eps``: the robust source's per-token
    ℓ2 budget in embedding space (PGD-``pgd_steps``); ``sparsities``: of the OMP and random
    tickets; ``imp_sparsities`` of the IMP-source tickets (``imp_rate`` of the remaining
    weights per round, ``imp_epochs`` of the source recipe per round); ``source_seeds``: the
    unit of replication; ``seeds``: finetuning seeds within each.
    """

    name: str
    model: str
    max_length: int
    source_recipe: TextRecipe
    finetune: TextRecipe
    eps: float
    pgd_steps: int
    test_n: int
    directions: tuple[tuple[str, str], ...]
    sparsities: tuple[float, ...]
    imp_sparsities: tuple[float, ...]
    imp_rate: float
    imp_epochs: float
    source_seeds: tuple[int, ...]
    seeds: tuple[int, ...] = (0,)
    eval_eps: tuple[float, ...] = (0.0, 0.03, 0.1)  # the attack check of the sources
    attack_n: int = 32  # (PGD-5 on MiniLM: rendering cost, not artifacts)

    def recipe(self, robust: bool) -> TextRecipe:
        """The source recipe, adversarial (embedding PGD at ``eps``) when ``robust``."""
        return self.source_recipe.with_(eps=self.eps if robust else 0.0, steps=self.pgd_steps)


DIRECTIONS = (("tweets", "bbc"), ("bbc", "tweets"))

@dataclass(frozen=True)
class SmokeSizes(TextSizes):
    """A tiny random BERT (no files), 64 examples of 16 tokens: E11 in seconds for the tests."""

    name: str = "smoke"
    model: str = "tiny"
    max_length: int = 16
    source_recipe: TextRecipe = TextRecipe(epochs=1, batch_size=32, lr=1e-3, n_train=64)
    finetune: TextRecipe = TextRecipe(epochs=1, batch_size=32, lr=1e-3, n_train=64)
    eps: float = 0.05
    pgd_steps: int = 2
    test_n: int = 64
    directions: tuple[tuple[str, str], ...] = DIRECTIONS
    sparsities: tuple[float, ...] = (0.5,)
    imp_sparsities: tuple[float, ...] = (0.5,)
    imp_rate: float = 0.5
    imp_epochs: float = 0.5
    source_seeds: tuple[int, ...] = (0, 1)
    eval_eps: tuple[float, ...] = (0.0, 0.1, 1.0)
    attack_n: int = 32


@dataclass(frozen=True)
class DefaultSizes(TextSizes):
    """all-MiniLM-L6-v2 sized for at most 6 minutes of the reference machine (2 Dask workers).

    Measured on the 2-core machine (one torch thread, AdamW, word embeddings frozen): a
    32-example step at 32 tokens costs 0.65-1.1 s depending on the load (1,000-1,500
    tokens/s); a 64-token step twice that, so ``max_length`` 32: tweets average 28 tokens,
    and the first 32 tokens of a BBC story (headline and lead) carry the topic (84% after 6
    steps). Freezing the 11.7M-entry word-embedding matrix saves its AdamW update, the
    largest cost of a small BERT's CPU step. Embedding PGD-2 makes a robust step ~2.5 clean
    steps. Pilot (source seed 0, 192 examples, 6 steps): tweets 59% natural / 59% robust,
    BBC 84% / 80%; the attack takes natural accuracy from 58% to 6% at ε = 0.1 (word
    embeddings have ℓ2 norm ≈ 1.1), so the robust budget is a small ε = 0.03. Per source
    seed and direction: a natural source of 6 steps (~5 s), a robust one (~12 s), an
    IMP-source ticket at 50%, seven transfers of 4 steps (128 examples) tested on 128
    examples (~3.5 s each): dense, OMP and random at 50% and 70%, IMP at 50%, and the dense
    from-scratch control. With 3 source seeds and 2 directions:
    ~430 s of one core by the pilot's step times (model loading and evaluation per task come
    on top: see below). 3 source seeds because 2 would give a paired CI with one degree of
    freedom.

    Measured in a cold default report on an otherwise idle 2-core machine (bench clean
    training 2,897 img/s, 0.85 of the reference machine): E11's artifacts cost 122
    worker-seconds of sources, 237 of tickets (IMP at ``imp_rate`` 0.3: two rounds, since
    one round at 0.5 gives the OMP mask itself), 356 of transfers, and its notebook 45 s to
    render (the attack check of the sources): 760 worker-seconds, 6.3 min on the 2 workers
    here, 5.4 min on the reference machine, within the 6 minutes E11 may add.
    """

    name: str = "default"
    model: str = "minilm"
    max_length: int = 32
    source_recipe: TextRecipe = TextRecipe(epochs=1, batch_size=32, lr=2e-4, n_train=192)
    finetune: TextRecipe = TextRecipe(epochs=1, batch_size=32, lr=2e-4, n_train=128)
    eps: float = 0.03
    pgd_steps: int = 2
    test_n: int = 128
    directions: tuple[tuple[str, str], ...] = DIRECTIONS
    sparsities: tuple[float, ...] = (0.5, 0.7)
    imp_sparsities: tuple[float, ...] = (0.5,)
    imp_rate: float = 0.3  # two rounds (30%, 50%): at rate 0.5 one round, the OMP mask itself
    imp_epochs: float = 0.5
    # the default profile's pilot (``pilot_sd``) gives E11's primary estimand an SD of 1.34
    # points: 6 source seeds would reach 80% power at its 2-point margin (3 give 31%), at
    # about twice the cost measured below
    source_seeds: tuple[int, ...] = (0, 1, 2)


@dataclass(frozen=True)
class PaperSizes(TextSizes):
    """A GPU: full splits, 128 tokens, trained embeddings, Chen et al.'s 20% IMP rate."""

    name: str = "paper"
    model: str = "minilm"
    max_length: int = 128
    source_recipe: TextRecipe = TextRecipe(epochs=3, batch_size=32, lr=5e-5, head_lr=1e-3,
                                           train_embeddings=True)
    finetune: TextRecipe = TextRecipe(epochs=3, batch_size=32, lr=5e-5, head_lr=1e-3,
                                      train_embeddings=True)
    eps: float = 0.03
    pgd_steps: int = 3
    test_n: int = 0
    directions: tuple[tuple[str, str], ...] = DIRECTIONS
    sparsities: tuple[float, ...] = (0.2, 0.4, 0.6, 0.7, 0.8, 0.9)
    imp_sparsities: tuple[float, ...] = (0.2, 0.4, 0.6, 0.8, 0.9)
    imp_rate: float = 0.2
    imp_epochs: float = 1.0
    source_seeds: tuple[int, ...] = (0, 1, 2)
    seeds: tuple[int, ...] = (0, 1)
    attack_n: int = 512


_BY_NAME = {s.name: s for s in (SmokeSizes(), DefaultSizes(), PaperSizes())}


def text_sizes(profile: str) -> TextSizes:
    """The sizes of profile ``profile`` (smoke, default, or a GPU profile: paper's sizes)."""
    from rtstudy.profiles import PROFILES, side_track_scale

    return _BY_NAME[side_track_scale(check_choice("profile", profile, PROFILES))]
