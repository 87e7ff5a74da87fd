"""Profiles: the sizes of the study. ``smoke`` (seconds, for tests), ``default`` (the
offline study on a 2-core CPU), ``fashion-gpu`` (a GPU with no network: Fashion-MNIST at
32 px, ResNet-18, full data, 3+ seeds); ``paper``, ``paper-linf`` and ``gpu`` (the paper's
natural-image setting, ``rtstudy.paper_profiles``).

A notebook takes ``profile`` as a papermill parameter and asks ``get_profile`` for
everything else; any field can be overridden (``get_profile("default", seeds=(0,))``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace

from rtstudy.core.checks import check_choice, check_range
from rtstudy.core.descriptions import REGIMES, SourceDesc, TicketDesc, TransferDesc
from rtstudy.core.patterns import Pattern, make_pattern
from rtstudy.core.precision import choose_precision
from rtstudy.core.schemes import get_scheme
from rtstudy.vision.attacks import AttackConfig
from rtstudy.vision.track import VisionEvaluation, VisionSource
from rtstudy.vision.train import TrainConfig

PROFILES = ("smoke", "default", "fashion-gpu")  # and those registered below (register_profile)
OVERRIDES_ENV = "RTSTUDY_PROFILE_OVERRIDES"  # JSON {field: value}: shrinks a profile everywhere


@dataclass(frozen=True)
class Profile:
    """Everything a notebook needs to size its experiment."""

    name: str  # a name in PROFILES
    source: str  # source task S
    targets: tuple[str, ...]  # downstream tasks T
    model: str  # architecture (rtstudy.vision.models.MODELS)
    width: float  # width multiplier (CIFAR ResNets)
    image_size: int  # every task is resized to this
    channels: int  # every task is converted to this many channels
    source_fraction: float  # fraction of S's training set used for pretraining
    pretrain: TrainConfig  # natural/robust pretraining recipe
    norm: str  # threat model of robust pretraining: "linf" | "l2"
    robust_kind: str  # "fgsm_rs" | "pgd": how robustness is induced by default
    robust_steps: int  # PGD steps when robust_kind == "pgd"
    eps_star: float  # the "properly induced" small eps of E1, E3, E4, ...
    eps_sweep: tuple[float, ...]  # E2: eps values (pixel scale, [0, 1]), incl. 0
    eps_l2: float  # E5: the l2 budget compared with eps_star in linf
    sparsities: tuple[float, ...]  # the sparsity axis of E1
    fixed_sparsities: tuple[float, ...]  # the few sparsities of E2-E9
    seeds: tuple[int, ...]  # finetuning seeds, within each source seed
    finetune: TrainConfig  # downstream finetuning recipe
    probe: TrainConfig  # linear probe recipe (E7)
    target_fraction: float  # fraction of T's training set (E6 varies it)
    data_fractions: tuple[float, ...]  # E6
    imp_rate: float  # IMP: fraction of remaining weights pruned per round
    imp_epochs: float  # IMP: retraining epochs per round
    eval_attack_steps: int  # PGD steps for robust accuracy on T (E9) and of S
    robust_n: int  # test samples used for robust accuracy
    test_n: int  # test samples used for clean accuracy (0 = all)
    source_seeds: tuple[int, ...] = (0,)  # every source model is pretrained under each (the unit of replication)
    gate_source_seeds: tuple[int, ...] = ()  # the transfer gate's (dense natural and robust); (): source_seeds
    extra: dict = field(default_factory=dict)
    # {primary estimand id: between-unit SD} measured by `pilot_command`: the design power
    pilot_sd: dict = field(default_factory=dict)
    pilot_command: str = ""

    def __post_init__(self):
        missing = sorted(set(self.source_seeds) - set(self.gate_seeds))
        if missing:
            raise ValueError(f"gate_source_seeds {self.gate_source_seeds} must include every source "
                             f"seed; missing {missing}")

    @property
    def precision(self) -> str:
        """What the profile's recipes compute in: ``fp32`` or ``bf16``."""
        return self.pretrain.precision

    @property
    def gate_seeds(self) -> tuple[int, ...]:
        """The source seeds of the transfer gate (a superset of ``source_seeds``)."""
        return self.gate_source_seeds or self.source_seeds

    def source_attack(self, eps: float, kind: str | None = None, norm: str | None = None,
                      steps: int | None = None) -> AttackConfig:
        """The attack that induces robustness at ``eps`` (``kind="none"`` at eps 0)."""
        if eps == 0:
            return AttackConfig(kind="none", eps=0.0)
        kind = kind or self.robust_kind
        return AttackConfig(
            kind=kind, norm=norm or self.norm, eps=eps,
            steps=(steps or self.robust_steps) if kind == "pgd" else 1,
        )

    def source_model(self, eps: float, *, kind: str | None = None, norm: str | None = None,
               steps: int | None = None, seed: int = 0) -> VisionSource:
        """The source model pretrained at ``eps`` (0: natural) with this profile's recipe."""
        check_range("eps", eps, 0.0, 1.0)
        attack = self.source_attack(eps, kind=kind, norm=norm, steps=steps)
        return VisionSource(
            task=self.source, model=self.model, train=self.pretrain.with_(attack=attack),
            attack=attack, eval_attack=self.eval_attack(eps, norm=attack.norm) if eps > 0 else None,
            fraction=self.source_fraction, width=self.width, image_size=self.image_size,
            channels=self.channels, robust_n=self.robust_n, test_n=self.test_n, seed=seed)

    def ticket(self, source: SourceDesc, scheme: str = "omp", pattern: str | Pattern = "unstructured",
               sparsity: float = 0.0, *, seed: int = 0, target: str | None = None, n: int = 2,
               m: int = 4) -> TicketDesc:
        """A ticket from ``source`` with this profile's IMP rate, rounds and target recipe."""
        s = get_scheme(scheme)
        pattern = make_pattern(pattern, n=n, m=m)
        imp = {"rate": self.imp_rate, "epochs": self.imp_epochs} if s.trains else {}
        if s.needs_target:
            imp.update(target=target, finetune=self.finetune, target_fraction=self.target_fraction)
        elif target is not None:
            target = None  # drawn on the source: the target does not change the ticket
        return TicketDesc(source=source, scheme=scheme, pattern=pattern, sparsity=sparsity, seed=seed,
                          **imp)

    def transfer(self, source: SourceDesc, ticket: TicketDesc | None, target: str, *,
                 regime: str = "finetune", adversarial_eps: float = 0.0,
                 eval_eps: float | None = None, fraction: float | None = None,
                 seed: int = 0, init: str = "pretrained") -> TransferDesc:
        """Finetuning (or a linear probe) of ``source ⊙ ticket`` on ``target``
        (``init="scratch"``: its from-scratch control)."""
        check_choice("regime", regime, REGIMES)
        check_range("adversarial_eps", adversarial_eps, 0.0, 1.0)
        if regime == "probe" and adversarial_eps > 0:
            raise ValueError(f"adversarial finetuning (adversarial_eps={adversarial_eps}) needs regime 'finetune'")
        recipe = self.finetune if regime == "finetune" else self.probe
        if adversarial_eps > 0:
            recipe = recipe.with_(attack=self.source_attack(adversarial_eps))
        evaluation = VisionEvaluation(self.eval_attack(eval_eps) if eval_eps else None,
                                      self.robust_n, self.test_n)
        fraction = self.target_fraction if fraction is None else fraction
        return TransferDesc(source=source, ticket=ticket, target=target, recipe=recipe,
                            evaluation=evaluation, regime=regime, fraction=fraction, seed=seed,
                            init=init)

    def source_models(self, seeds: tuple[int, ...] | None = None) -> list[VisionSource]:
        """Every source model the experiments use, under every source seed (default: the
        profile's): natural, the eps sweep (E1, E2), and E5's other attack kind (l-inf,
        eps_star) and other norm (l2, eps_l2)."""
        seeds = self.source_seeds if seeds is None else seeds
        return [replace(d, seed=s) for s in seeds for d in self._source_models()]

    def _source_models(self) -> list[VisionSource]:
        other = "pgd" if self.robust_kind == "fgsm_rs" else "fgsm_rs"
        out = [self.source_model(0.0)]
        out += [self.source_model(e, kind=self.robust_kind, norm=self.norm) for e in self.eps_sweep if e > 0]
        if self.eps_star not in self.eps_sweep:
            out.append(self.source_model(self.eps_star, kind=self.robust_kind, norm=self.norm))
        out.append(self.source_model(self.eps_star, kind=other, norm="linf"))
        out.append(self.source_model(self.eps_l2, kind=self.robust_kind, norm="l2"))
        return out

    def eval_attack(self, eps: float, norm: str | None = None) -> AttackConfig:
        """The PGD attack that measures robust accuracy at ``eps``."""
        return AttackConfig(kind="pgd", norm=norm or self.norm, eps=eps, steps=self.eval_attack_steps)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["pretrain"] = self.pretrain.to_dict()
        d["finetune"] = self.finetune.to_dict()
        d["probe"] = self.probe.to_dict()
        return d


_SMOKE = Profile(
    name="smoke",
    source="digits",
    targets=("mnist5k",),
    model="resnet8",
    width=0.5,
    image_size=12,
    channels=1,
    source_fraction=0.5,
    pretrain=TrainConfig(epochs=1, batch_size=64, lr=0.05),
    norm="linf",
    robust_kind="fgsm_rs",
    robust_steps=2,
    eps_star=2 / 255,
    eps_sweep=(0.0, 2 / 255, 16 / 255),
    eps_l2=0.1,
    sparsities=(0.0, 0.5, 0.9),
    fixed_sparsities=(0.8,),
    seeds=(0,),
    source_seeds=(0, 1),
    finetune=TrainConfig(epochs=2, batch_size=32, lr=0.05, schedule="cosine", min_steps=10),
    probe=TrainConfig(epochs=1, batch_size=64, lr=0.05, schedule="cosine"),
    target_fraction=0.05,
    data_fractions=(0.05, 0.1),
    imp_rate=0.6,
    imp_epochs=0.2,
    eval_attack_steps=2,
    robust_n=64,
    test_n=200,
)

_DEFAULT = Profile(
    name="default",
    source="fashion_mnist",
    targets=("mnist5k", "digits"),
    model="resnet8",
    width=1.0,
    image_size=20,
    channels=1,
    source_fraction=0.5,
    pretrain=TrainConfig(epochs=2, batch_size=128, lr=0.2),
    norm="linf",
    robust_kind="fgsm_rs",
    robust_steps=3,
    eps_star=2 / 255,
    eps_sweep=(0.0, 2 / 255, 8 / 255, 32 / 255),
    eps_l2=0.25,
    sparsities=(0.0, 0.5, 0.8, 0.95),
    fixed_sparsities=(0.8,),
    seeds=(0, 1),
    source_seeds=(0, 1, 2),  # below the pilot's powered design (26), which does not fit yet
    gate_source_seeds=(0, 1, 2, 3, 4, 5),
    finetune=TrainConfig(epochs=2, batch_size=32, lr=0.05, schedule="cosine", min_steps=40),
    probe=TrainConfig(epochs=20, batch_size=32, lr=0.05, schedule="cosine", weight_decay=0.0),
    target_fraction=0.05,
    data_fractions=(0.02, 0.05, 0.25),
    imp_rate=0.5,
    imp_epochs=0.25,
    eval_attack_steps=10,
    robust_n=500,
    test_n=0,
    # measured by `pilot_command` on the committed default report and its replicate (3 + 3
    # source seeds, 2 finetuning seeds each; E12: 6 + 9 (image, network seed) units)
    pilot_sd={"E1": 2.45, "E2": 2.34, "E3": 1.87, "E4": 1.88, "E5 attack": 3.44,
              "E5 norm": 2.87, "E6": 1.88, "E7": 2.39, "E8": 3.07, "E9": 3.37, "E11": 1.34,
              "E12": 0.74, "E13 robust": 1.89, "E13 method": 0.88},
    pilot_command="python -m rtstudy.experiments.pilot reports/summary.json "
                  "reports/replicate/summary.json",
)
"""The offline study on a 2-core CPU, chosen by a measured pilot (``tools/pilot_transfer.py``).

Why this transfer recipe. The earlier recipe (25% of T, i.e. 1,000 MNIST-5k images, 5
epochs at lr 0.05 with at least 100 steps) left pretraining nothing to carry: the dense
pretrained model beat the same network trained from scratch by +1.5 points [-0.9, +3.9]
on MNIST-5k and +1.7 [-1.5, +4.8] on Digits (3 seeds), so ticket comparisons measured
trainability, not transfer. With 5% of T (200 MNIST-5k images, 72 Digits images) and a
short finetuning (2 epochs, at least 40 steps) the pilot measured gains of +16.8
[+13.0, +20.6] on MNIST-5k and +6.4 [+3.6, +9.2] on Digits (full Fashion-MNIST source;
a source trained on a third of it gave +13.3 and +1.9 [-6.5, +10.2]: the source's size
matters for Digits). Each such transfer costs about 0.7 s here.

Why 3 source seeds, and what a powered design needs (the report prints each primary's
design power at the seeds it ran). The powered design is 26 source seeds. Each experiment answers one question
with one primary estimand (``rtstudy.experiments.primaries``), a t interval over source
seeds (natural and robust of one seed share their initialisation and batch order), 2
finetuning seeds within each. ``pilot_sd`` holds each estimand's between-unit SD measured
on the report of 3 source seeds and its disjoint-seed replicate (``pilot_command``); the
units each needs for 80% power at its 2-point margin: E1 14, E2 13, E3 9, E4 10, E5
attack 26, E5 norm 19, E6 10, E7 14, E8 21, E9 25, E13 10 (robust) and 4 (method); E11 (text) 6 and E12
(0.5 dB, image x network seed) 20, set in their own sizes. One set of source seeds serves
every grid, so the largest need sets it. Most of the SD is between source seeds, not
between finetuning seeds (E1: 4.4 of 6.0 points²), so more finetuning seeds would not
replace them. At 26 source seeds ``python -m rtstudy.report --plan`` counts 12,191 tasks
(187 sources, 1,133 tickets, 10,871 transfers), ~233 minutes of training on the 2-core
machine measured below: far over the budget, so the profile keeps 3 source seeds (6 for
the dense models) until secondary cells are cut to make room for units (E1's sparsity 0%
and 50%, E3's probe, E4's random scheme, E7's dense cells).

Before this design (3 source seeds): the sparsity axis of E1 dropped 90% (95% keeps the
high end) so that every transfer could carry its from-scratch control, and the transfer
gate got 6 source seeds. Every ticket comparison leans on one question: does
pretraining transfer to T at all (the dense pretrained model against the same network from
scratch)? With 3 source seeds it could not be answered on Digits: the dense natural model's
gain there is +5.8 points with a source-level SD of 2.3, p = 0.047 (``tools/power.py``
projects 0.014 at 4 seeds, 0.0045 at 5, 0.0015 at 6). So the natural and eps* sources are
pretrained under 3 more seeds, and every experiment's gate (``grids.gate_grids``: the dense
natural and robust models and their controls, on the profile's targets at the profile's
recipe) runs under all 6; the ticket contrasts stay on 3. Only the dense transfers and the 6
extra source models are added (some 170 tasks, about 5 minutes cold here), not the 2,196
tasks of giving every grid 6 seeds. The gains form a Holm family of their own in each
notebook (the same gate gets the same verdict whatever else a notebook asks); the contrasts
of the cells it lets through form the second. 80% tickets still carry little transfer to
Digits on their own (OMP, natural: -4.5 points over the same mask on random weights): the
per-ticket controls say so cell by cell.

What it cost, measured at 3 source seeds: a cold report of this profile (all fourteen notebooks, from an
empty store, empty data and token caches) took 2,672 s on an otherwise idle 2-core
machine whose bench clean training runs at 2,897 img/s (0.85 of the reference machine's
3,400), its 2 workers busy 98% of the time: sources 2,150 worker-seconds (38 models),
tickets 595, transfers 2,091, notebooks 379. By experiment (each artifact counted once,
for the first notebook that reads it), the image-classification study E0-E10 took 4,020
worker-seconds (28.5 reference minutes), E11 760 (5.4), E12 188 (1.3), E13 267 (1.9):
37.9 reference minutes for the whole report, within 30 + 6 + 5 + 5.
"""

_FASHION_GPU = Profile(
    name="fashion-gpu",
    source="fashion_mnist",
    targets=("mnist5k", "digits"),
    model="resnet18",
    width=1.0,
    image_size=32,
    channels=1,
    source_fraction=1.0,
    pretrain=TrainConfig(epochs=15, batch_size=256, lr=0.1),
    norm="linf",
    robust_kind="pgd",
    robust_steps=3,
    eps_star=2 / 255,
    eps_sweep=(0.0, 1 / 255, 2 / 255, 4 / 255, 8 / 255, 16 / 255, 32 / 255),
    eps_l2=0.25,
    sparsities=(0.0, 0.5, 0.7, 0.8, 0.9, 0.95, 0.98),
    fixed_sparsities=(0.8, 0.95),
    seeds=(0, 1),
    source_seeds=(0, 1, 2),
    finetune=TrainConfig(epochs=10, batch_size=128, lr=0.02, schedule="cosine", min_steps=300),
    probe=TrainConfig(epochs=20, batch_size=256, lr=0.05, schedule="cosine", weight_decay=0.0),
    target_fraction=1.0,
    data_fractions=(0.01, 0.1, 1.0),
    imp_rate=0.2,
    imp_epochs=2,
    eval_attack_steps=20,
    robust_n=2000,
    test_n=0,
)

_BY_NAME = {p.name: p for p in (_SMOKE, _DEFAULT, _FASHION_GPU)}


def register_profile(profile: Profile) -> Profile:
    """Make ``profile`` known to ``get_profile`` and the report by its name."""
    if profile.name in _BY_NAME and _BY_NAME[profile.name] is not profile:
        raise ValueError(f"profile {profile.name!r} is registered already")
    _BY_NAME[profile.name] = profile
    return profile


def side_track_scale(name: str) -> str:
    """The sizes the text, image-prior and SuperTicket tracks use under profile ``name``:
    its own for ``smoke`` and ``default``, the GPU sizes (named ``paper``) for every GPU profile."""
    return name if name in ("smoke", "default") else "paper"


def env_overrides() -> dict:
    """The overrides in ``$RTSTUDY_PROFILE_OVERRIDES`` (a JSON object; a recipe field takes an
    object of the recipe's own fields), which every process of a report reads alike."""
    import json
    import os

    text = os.environ.get(OVERRIDES_ENV, "").strip()
    if not text:
        return {}
    try:
        found = json.loads(text)
    except ValueError as exc:
        raise ValueError(f"${OVERRIDES_ENV} is not JSON ({exc}): {text[:80]!r}") from None
    if not isinstance(found, dict):
        raise ValueError(f"${OVERRIDES_ENV} must be a JSON object of profile fields, got {text[:80]!r}")
    return found


def get_profile(name: str, precision: str | None = None, **overrides) -> Profile:
    """The named profile, with any fields overridden (tuples for sequence fields), after
    those of ``$RTSTUDY_PROFILE_OVERRIDES``; its recipes in ``precision`` (default
    ``rtstudy.core.precision.choose_precision()``: bf16 where this machine computes it
    natively, else fp32; ``$RTSTUDY_PRECISION`` forces one)."""
    check_choice("profile", name, PROFILES)
    profile = _BY_NAME[name]
    overrides = {**env_overrides(), **overrides}
    unknown = set(overrides) - set(type(profile).__dataclass_fields__)
    if unknown:
        raise ValueError(f"unknown profile field(s) {sorted(unknown)}; allowed: {sorted(type(profile).__dataclass_fields__)}")
    fixed = {k: tuple(v) if isinstance(v, list) else v for k, v in overrides.items()}
    for k in ("pretrain", "finetune", "probe"):
        if isinstance(fixed.get(k), dict):
            fixed[k] = getattr(profile, k).with_(**fixed[k])
    p = replace(profile, **fixed)
    chosen = choose_precision(precision)
    return replace(p, pretrain=p.pretrain.with_(precision=chosen), finetune=p.finetune.with_(precision=chosen),
                   probe=p.probe.with_(precision=chosen))


from rtstudy import paper_profiles as _paper_profiles  # noqa: E402,F401  (registers its profiles)

PROFILES = tuple(_BY_NAME)
