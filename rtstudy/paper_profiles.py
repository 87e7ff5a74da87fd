"""The GPU profiles of the paper's setting: ImageNet-pretrained sources (``paper``,
``paper-linf``) and sources the study pretrains itself under many seeds (``gpu``).

``paper`` takes torchvision's natural ResNet-18 and the robust zoo's ResNet-18 along the
ℓ2 grid (``paper-linf``: the ℓ∞ grid) to CIFAR-10, CIFAR-100, SVHN and STL-10. One file
per ε means one source per ε: its intervals are over finetuning seeds, not source models.
``get_profile("paper", model="resnet50")`` uses ResNet-50 files instead. Registered with
``rtstudy.profiles`` on import; the experiments each runs are ``EXPERIMENTS``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from rtstudy.profiles import Profile, register_profile
from rtstudy.vision import natural_tasks as _natural_tasks  # noqa: F401  (registers the tasks)
from rtstudy.vision.pretrained import ZOO_EPS, PretrainedSource, pretrained_source
from rtstudy.vision.train import TrainConfig

PAPER_TARGETS = ("cifar10", "cifar100", "svhn", "stl10")
#: The experiments a pretrained source can answer: no IMP on ImageNet (E4), no FGSM-RS zoo
#: (E5), no ImageNet training set to measure a domain gap to (E8), no text or prior (E11-E13);
#: the mask explorer (E10) reads the config of a source trained here.
PRETRAINED_EXPERIMENTS = ("E0", "E1", "E2", "E3", "E6", "E7", "E9")


@dataclass(frozen=True)
class PretrainedProfile(Profile):
    """A profile whose sources are ImageNet-pretrained files (``rtstudy.vision.pretrained``):
    ``model`` is the architecture, ε = 0 is ``natural_origin``'s natural weights (torchvision's,
    or the zoo's own ε = 0 file), every ε > 0 the zoo's file at ``norm``. ``source`` is the
    task on which a source's own accuracy is measured."""

    natural_origin: str = "torchvision"

    def source_model(self, eps: float, *, kind: str | None = None, norm: str | None = None,
                     steps: int | None = None, seed: int = 0) -> PretrainedSource:
        if kind not in (None, "pgd"):
            raise ValueError(f"the zoo's robust models are PGD-trained; there is no {kind!r} source "
                             f"in profile {self.name!r} (allowed kind: 'pgd')")
        norm = norm or self.norm
        common = dict(task=self.source, image_size=self.image_size, width=self.width,
                      robust_n=self.robust_n, test_n=self.test_n, seed=seed)
        if eps == 0:
            origin = self.natural_origin
            return pretrained_source(origin, self.model, norm=norm, eps=0.0, **common)
        return pretrained_source("zoo", self.model, norm=norm, eps=eps,
                                 eval_attack=self.eval_attack(eps, norm=norm), **common)

    def _source_models(self) -> list[PretrainedSource]:
        eps = sorted({0.0, *self.eps_sweep, self.eps_star})
        return [self.source_model(e) for e in eps]


_PAPER = PretrainedProfile(
    name="paper",
    source="imagenet",
    targets=PAPER_TARGETS,
    model="resnet18",
    width=1.0,
    image_size=96,
    # 96 px: STL-10's own size, and every target's training set fits in memory as float32
    # (SVHN at 224 px would take 44 GB); the ImageNet stem leaves a 3x3 map at layer 4.
    channels=3,
    source_fraction=1.0,
    pretrain=TrainConfig(),  # not used: the sources are files
    norm="l2",
    robust_kind="pgd",
    robust_steps=3,
    eps_star=1.0,  # declared before any run: the middle of the l2 range (0.25-3) where
    #                Salman et al. found full-network transfer to CIFAR best
    eps_sweep=ZOO_EPS["l2"],
    eps_l2=1.0,
    sparsities=(0.0, 0.5, 0.7, 0.8, 0.9, 0.95, 0.98),
    fixed_sparsities=(0.8, 0.95),
    seeds=(0, 1, 2),
    source_seeds=(0,),
    finetune=TrainConfig(epochs=10, batch_size=128, lr=0.01, schedule="cosine", augment=True,
                         min_steps=300),
    probe=TrainConfig(epochs=20, batch_size=256, lr=0.05, schedule="cosine", weight_decay=0.0),
    target_fraction=1.0,
    data_fractions=(0.01, 0.1, 1.0),
    imp_rate=0.2,
    imp_epochs=1,
    eval_attack_steps=20,
    robust_n=1000,
    test_n=0,
)

_PAPER_LINF = replace(_PAPER, name="paper-linf", norm="linf", eps_star=2 / 255,
                      eps_sweep=(0.0, *ZOO_EPS["linf"]), eps_l2=1.0)

_GPU = Profile(
    name="gpu",
    source="cifar100",
    targets=("cifar10", "svhn", "stl10"),
    model="resnet18",
    width=1.0,
    image_size=32,  # CIFAR's own size (small-image stem): 8 seeds x 7 sources stay within a GPU-day
    channels=3,
    source_fraction=1.0,
    pretrain=TrainConfig(epochs=20, batch_size=512, lr=0.2, augment=True, label_smoothing=0.1),
    norm="linf",
    robust_kind="fgsm_rs",
    robust_steps=3,
    eps_star=2 / 255,
    eps_sweep=(0.0, 1 / 255, 2 / 255, 4 / 255, 8 / 255),
    eps_l2=0.25,
    sparsities=(0.0, 0.5, 0.7, 0.8, 0.9, 0.95, 0.98),
    fixed_sparsities=(0.8, 0.95),
    seeds=(0, 1),
    source_seeds=tuple(range(8)),
    finetune=TrainConfig(epochs=10, batch_size=256, lr=0.05, schedule="cosine", augment=True,
                         min_steps=300),
    probe=TrainConfig(epochs=20, batch_size=256, lr=0.05, schedule="cosine", weight_decay=0.0),
    target_fraction=1.0,
    data_fractions=(0.01, 0.1, 1.0),
    imp_rate=0.2,
    imp_epochs=2,
    eval_attack_steps=20,
    robust_n=2000,
    test_n=0,
)

EXPERIMENTS = {"paper": PRETRAINED_EXPERIMENTS, "paper-linf": PRETRAINED_EXPERIMENTS}
for _p in (_PAPER, _PAPER_LINF, _GPU):
    register_profile(_p)


def profile_experiments(name: str) -> tuple[str, ...] | None:
    """The experiments profile ``name`` runs (``None``: every one)."""
    return EXPERIMENTS.get(name)
