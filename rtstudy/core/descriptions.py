"""Typed artifact descriptions: each makes its config, its store key and its label.

An artifact of the study is described once, by a frozen dataclass (OpenLTH's ``Desc``):

    SourceDesc      a pretrained source model (each track has its own subclass)
    TicketDesc      a mask drawn from a source: scheme x pattern x sparsity (+ IMP hparams)
    ImpRoundDesc    one finished round of an IMP ticket (so IMP resumes)
    TransferDesc    a ticket finetuned (or probed) on a target task

``config()`` is the artifact's full configuration (what the store hashes), ``key`` its
hash, ``label`` what a reader sees. Nothing else builds or parses config dicts;
``from_config`` reads a stored one back. A description validates itself on creation.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar, Protocol

from rtstudy.core.checks import check_range
from rtstudy.core.patterns import Pattern, make_pattern, pattern_from_config
from rtstudy.core.store import config_hash


class Recipe(Protocol):
    """A training recipe a track defines (e.g. ``TrainConfig``): frozen, with ``to_dict``."""

    def to_dict(self) -> dict: ...


class Desc:
    """Base of every description: ``kind``, ``config()``, ``key``, ``label``."""

    kind: ClassVar[str] = ""

    def config(self) -> dict:
        raise NotImplementedError

    @property
    def key(self) -> str:
        """The artifact's key in the store (16 hex digits of its config's hash); computed once
        per description (descriptions are frozen: a plan asks for each key many times)."""
        key = self.__dict__.get("_key")
        if key is None:
            key = config_hash(self.kind, self.config())
            object.__setattr__(self, "_key", key)
        return key

    @property
    def label(self) -> str:
        return self.kind

    def with_(self, **changes) -> Desc:
        return replace(self, **changes)


# ----------------------------------------------------------------------------- sources
class SourceDesc(Desc):
    """A pretrained source model. A track subclasses it (a frozen dataclass) and registers
    the subclass as its ``Track.source_desc``; ``track`` names the track."""

    kind: ClassVar[str] = "source"
    track: ClassVar[str] = ""

    @property
    def robust(self) -> bool:
        """Whether the source was trained adversarially."""
        raise NotImplementedError

    @property
    def role(self) -> str:
        """``"robust"`` or ``"natural"`` (the row column of the study)."""
        return "robust" if self.robust else "natural"

    @property
    def seed(self) -> int:
        raise NotImplementedError


# ----------------------------------------------------------------------------- tickets
@dataclass(frozen=True)
class TicketDesc(Desc):
    """A mask drawn from ``source`` by ``scheme`` with ``pattern`` at ``sparsity``.

    IMP schemes also carry ``rate`` (fraction of the remaining weights pruned per round)
    and ``epochs`` (retraining per round); IMP on a target carries ``target``, its
    ``finetune`` recipe and ``target_fraction``. A scheme with hyperparameters of its own
    (a learned mask's steps, a schedule) takes them as ``options`` (name -> number, string
    or bool; the scheme's ``options`` say which and their defaults). ``rtstudy.core.schemes``
    says which a scheme needs; a dense ticket (sparsity 0, no implied sparsity) has key
    ``"dense"``.
    """

    kind: ClassVar[str] = "ticket"
    source: SourceDesc
    scheme: str = "omp"
    pattern: Pattern = field(default_factory=lambda: make_pattern("unstructured"))
    sparsity: float = 0.0
    seed: int = 0
    rate: float | None = None
    epochs: float | None = None
    target: str | None = None
    finetune: Recipe | None = None
    target_fraction: float | None = None
    options: tuple[tuple[str, Any], ...] = ()

    def __post_init__(self):
        from rtstudy.core.schemes import SCHEMES

        if isinstance(self.options, Mapping):
            object.__setattr__(self, "options", tuple(sorted(self.options.items())))
        if isinstance(self.pattern, str):
            object.__setattr__(self, "pattern", make_pattern(self.pattern))
        if not isinstance(self.pattern, Pattern):
            raise ValueError(f"pattern must be a Pattern or a pattern name, got {self.pattern!r}")
        self.pattern.check_sparsity(self.sparsity)
        SCHEMES.get(self.scheme).validate(self)

    @property
    def dense(self) -> bool:
        """No mask: the dense model (sparsity 0 of a pattern without implied sparsity)."""
        return self.pattern.is_dense(self.sparsity)

    @property
    def achieved_sparsity_target(self) -> float:
        """The sparsity asked for (N:M: its implied one)."""
        implied = self.pattern.implied_sparsity
        return implied if implied is not None else self.sparsity

    def config(self) -> dict:
        c: dict[str, Any] = {"source": self.source.key, "scheme": self.scheme,
                             **self.pattern.config(), "sparsity": self.sparsity, "seed": self.seed}
        if self.rate is not None:
            c.update(rate=self.rate, epochs=self.epochs)
        if self.target is not None:
            c.update(target=self.target, finetune=self.finetune.to_dict(),
                     target_fraction=self.target_fraction, train_first=True)
        if self.options:
            c["options"] = dict(self.options)
        return c

    def option(self, name: str):
        """The value of the scheme option ``name`` (its default when not given)."""
        from rtstudy.core.schemes import SCHEMES

        return dict(self.options).get(name, SCHEMES.get(self.scheme).options[name])

    @property
    def key(self) -> str:
        return "dense" if self.dense else super().key

    @property
    def label(self) -> str:
        if self.dense:
            return "dense"
        pat = self.pattern.label.removeprefix("N:M ")
        return f"{self.scheme} {pat} {_pct(self.achieved_sparsity_target)}"

    @classmethod
    def from_config(cls, config: Mapping, source: SourceDesc, recipe: type | None = None) -> TicketDesc:
        """A stored ticket config back as a description (``source``: its resolved source;
        ``recipe``: the class of the finetune recipe, with ``from_dict``)."""
        finetune = config.get("finetune")
        if finetune is not None and recipe is not None:
            finetune = recipe.from_dict(finetune)
        return cls(source=source, scheme=config["scheme"], pattern=pattern_from_config(config),
                   sparsity=config["sparsity"], seed=config.get("seed", 0), rate=config.get("rate"),
                   epochs=config.get("epochs"), target=config.get("target"), finetune=finetune,
                   target_fraction=config.get("target_fraction"),
                   options=config.get("options", ()))


@dataclass(frozen=True)
class ImpRoundDesc(Desc):
    """Round ``round`` (0-based) of the IMP ticket ``ticket``."""

    kind: ClassVar[str] = "imp_round"
    ticket: TicketDesc
    round: int

    def config(self) -> dict:
        return {**self.ticket.config(), "round": self.round}

    @property
    def label(self) -> str:
        return f"{self.ticket.label}, round {self.round}"


# ----------------------------------------------------------------------------- transfers
class Evaluation(Protocol):
    """How a track measures a model on a target (e.g. clean and robust accuracy)."""

    def config(self) -> dict: ...


REGIMES = ("finetune", "probe")
INITS = ("pretrained", "scratch")  # scratch: the from-scratch control (same mask, random weights)


@dataclass(frozen=True)
class TransferDesc(Desc):
    """``source ⊙ ticket`` trained on ``target`` (``regime`` finetune, mask fixed, or a
    linear probe) with ``recipe`` on ``fraction`` of its training set, seed ``seed``.
    ``init="scratch"`` is its from-scratch control: the same architecture and mask on
    random weights (seeded by the source's and the finetuning seed), the same recipe and data."""

    kind: ClassVar[str] = "transfer"
    source: SourceDesc
    ticket: TicketDesc | None
    target: str
    recipe: Recipe
    evaluation: Evaluation
    regime: str = "finetune"
    fraction: float = 1.0
    seed: int = 0
    init: str = "pretrained"

    def __post_init__(self):
        from rtstudy.core.checks import check_choice

        check_choice("regime", self.regime, REGIMES)
        check_choice("init", self.init, INITS)
        if self.init == "scratch" and self.regime == "probe":
            raise ValueError("a linear probe of random features is no control; init 'scratch' "
                             "needs regime 'finetune'")
        check_range("fraction", self.fraction, 0.0, 1.0, low_open=True)
        if self.ticket is not None and self.ticket.source != self.source:
            raise ValueError(f"ticket {self.ticket.label!r} was drawn from another source than "
                             f"{self.source.label!r}")

    @property
    def dense(self) -> bool:
        return self.ticket is None or self.ticket.dense

    def config(self) -> dict:
        return {"source": self.source.key, "ticket": "dense" if self.dense else self.ticket.key,
                "target": self.target, "regime": self.regime, "train": self.recipe.to_dict(),
                **self.evaluation.config(), "fraction": self.fraction, "seed": self.seed,
                **({"init": self.init} if self.init != "pretrained" else {})}

    @property
    def scratch(self) -> bool:
        return self.init == "scratch"

    @property
    def init_seed(self) -> int:
        """The seed of the random weights of a from-scratch control."""
        return 1_000_003 * (self.source.seed + 1) + self.seed

    @property
    def label(self) -> str:
        ticket = "dense" if self.dense else self.ticket.label
        init = ", from scratch" if self.scratch else ""
        return f"{self.source.label} {ticket} -> {self.target} ({self.regime}{init}, seed {self.seed})"


def _pct(x: float) -> str:
    v = 100 * x
    return f"{v:.0f}%" if abs(v - round(v)) < 1e-6 else f"{v:.3g}%"
