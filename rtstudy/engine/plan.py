"""The plan of a report: every artifact its experiments need, as a task graph.

    plan = plan_report(profile, ["E1", "E2"])    # or plan_transfers(descriptions)
    print(plan.describe(throughput))              # counts per stage, estimated time

A task is one stage of the pipeline for one description: ``source`` (pretrain),
``ticket`` (draw a mask; IMP runs its rounds in order inside the task) or ``transfer``.
Tasks are deduplicated by artifact key (two experiments asking for one transfer share
it), depend on the tasks whose artifacts they read, and are marked done when the store
already holds their artifact. ``Plan.groups`` maps each experiment to the tasks its
notebook reads, so the report renders a notebook as soon as its own tasks are done.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from rtstudy.core.descriptions import Desc, SourceDesc, TicketDesc, TransferDesc
from rtstudy.core.store import Store
from rtstudy.core.track import track_of

STAGES = ("source", "ticket", "transfer")


@dataclass(frozen=True)
class Task:
    """One artifact to build: its stage, its description and the tasks it reads."""

    stage: str
    desc: Desc
    deps: tuple[str, ...] = ()

    @property
    def key(self) -> str:
        """``<stage>-<artifact key>``: unique in a plan, and the task's key on a Dask cluster."""
        return f"{self.stage}-{self.desc.key}"

    @property
    def source(self) -> SourceDesc:
        return self.desc if isinstance(self.desc, SourceDesc) else self.desc.source


@dataclass
class Plan:
    """Tasks in dependency order (a task comes after the tasks it reads), which of them
    the store already holds, and which tasks each experiment reads."""

    tasks: dict[str, Task] = field(default_factory=dict)
    done: set[str] = field(default_factory=set)
    groups: dict[str, list[str]] = field(default_factory=dict)

    def add_source(self, desc: SourceDesc) -> str:
        return self._add(Task("source", desc))

    def add_ticket(self, desc: TicketDesc) -> str | None:
        """The ticket's task (``None`` for the dense ticket, which is no artifact)."""
        if desc.dense:
            return None
        return self._add(Task("ticket", desc, (self.add_source(desc.source),)))

    def add_transfer(self, desc: TransferDesc) -> str:
        deps = [self.add_source(desc.source)]
        if not desc.dense:
            deps.append(self.add_ticket(desc.ticket))
        return self._add(Task("transfer", desc, tuple(deps)))

    def add(self, desc: Desc) -> str | None:
        """Add any description with what it needs; its task key."""
        if isinstance(desc, TransferDesc):
            return self.add_transfer(desc)
        if isinstance(desc, TicketDesc):
            return self.add_ticket(desc)
        if isinstance(desc, SourceDesc):
            return self.add_source(desc)
        raise TypeError(f"cannot plan a {type(desc).__name__}; allowed: SourceDesc, TicketDesc, "
                        f"TransferDesc")

    def _add(self, task: Task) -> str:
        self.tasks.setdefault(task.key, task)
        return task.key

    def closure(self, keys: Iterable[str]) -> list[str]:
        """``keys`` and every task they depend on, in plan order."""
        need: set[str] = set()
        stack = [k for k in keys if k is not None]
        while stack:
            k = stack.pop()
            if k not in need:
                need.add(k)
                stack.extend(self.tasks[k].deps)
        return [k for k in self.tasks if k in need]

    def mark_done(self, store: Store) -> Plan:
        """Mark the tasks whose artifacts ``store`` already holds."""
        self.done = {k for k, t in self.tasks.items() if store.holds(t.desc.kind, t.desc.key)}
        return self

    @property
    def todo(self) -> list[Task]:
        return [t for k, t in self.tasks.items() if k not in self.done]

    def counts(self) -> dict[str, dict[str, int]]:
        """``{stage: {"total", "done"}}``."""
        out = {s: {"total": 0, "done": 0} for s in STAGES}
        for k, t in self.tasks.items():
            out[t.stage]["total"] += 1
            out[t.stage]["done"] += k in self.done
        return out

    def work(self) -> dict[str, float]:
        """Clean-step training examples still to do, per stage (``Track.work``)."""
        out = dict.fromkeys(STAGES, 0.0)
        for t in self.todo:
            out[t.stage] += track_of(t.source).work(t.desc) or 0.0
        return out

    def describe(self, throughput: float | None = None) -> str:
        """Counts per stage and, given the machine's clean training throughput (examples/s
        with all its cores, e.g. the bench's), the estimated training time."""
        counts, work = self.counts(), self.work()
        lines = [f"plan: {len(self.tasks)} tasks, {len(self.done)} already stored, "
                 f"{len(self.tasks) - len(self.done)} to run"]
        for s in STAGES:
            c = counts[s]
            est = f", ~{work[s] / throughput / 60:.1f} min" if throughput else ""
            lines.append(f"  {s:<9}{c['total']:>6} tasks, {c['done']:>6} stored{est}")
        if throughput:
            lines.append(f"  estimate: ~{sum(work.values()) / throughput / 60:.1f} min of training at "
                         f"{throughput:,.0f} clean examples/s, plus evaluation and notebooks")
        if self.groups:
            lines.append("  experiments: " + ", ".join(f"{g} {len(ks)}" for g, ks in self.groups.items()))
        return "\n".join(lines)


def plan_transfers(descs: Iterable[Desc], store: Store | None = None) -> Plan:
    """The plan of building ``descs`` (transfers, tickets or sources) and what they need."""
    plan = Plan()
    for d in descs:
        plan.add(d)
    return plan.mark_done(store or Store())


def experiment_descriptions(profile, exp_id: str, parameters: Mapping | None = None) -> list[Desc] | None:
    """Every description experiment ``exp_id`` reads under its notebook ``parameters``
    (those its grid function accepts); ``None`` when it declares no grid."""
    from rtstudy.experiments.registry import EXPERIMENTS

    exp = EXPERIMENTS.get(exp_id)
    if exp.grids is None:
        return None
    accepted = inspect.signature(exp.grids).parameters
    kwargs = {k: v for k, v in (parameters or {}).items() if k in accepted}
    return [d for grid in exp.grids(profile, **kwargs) for d in grid.descriptions(profile)]


def plan_report(profile, experiments: Sequence[str] | None = None, parameters: Mapping | None = None,
                store: Store | None = None) -> Plan:
    """The plan of a report: the union of the experiments' grids (default: all), grouped
    by experiment. An experiment without a grid reads stored source models only (E10):
    its group is every source of the plan."""
    from rtstudy.experiments.registry import EXPERIMENTS

    plan = Plan()
    ids = list(experiments) if experiments is not None else list(EXPERIMENTS)
    gridless = []
    for exp_id in ids:
        descs = experiment_descriptions(profile, exp_id, parameters)
        if descs is None:
            gridless.append(exp_id)
            continue
        plan.groups[exp_id] = plan.closure(plan.add(d) for d in descs)
    sources = [k for k, t in plan.tasks.items() if t.stage == "source"]
    for exp_id in gridless:
        plan.groups[exp_id] = sources
    plan.groups = {e: plan.groups[e] for e in ids}
    return plan.mark_done(store or Store())
