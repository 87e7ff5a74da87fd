"""Run a plan on Dask distributed: each task one pipeline stage, ordered by its dependencies.

    with open_client() as client:                      # a LocalCluster sized to the machine
        results = execute(client, plan, store)          # or open_client("tcp://host:8786")

Workers read and write one artifact store (a shared filesystem on a cluster). The
store's per-artifact file lock makes a task that another worker, or another plan, is
already building wait and then read the result, so nothing is computed twice; a task
whose worker dies is rerun elsewhere by the scheduler (and ``retries`` more times if it
raises). Tasks that want a GPU ask for the worker resource ``GPU``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from rtstudy.core.store import Store
from rtstudy.engine.plan import Plan, Task
from rtstudy.engine.progress import PlanProgress

GPU = "GPU"  # the worker resource a GPU task asks for (start GPU workers with --resources GPU=1)

# Dask's nanny sets MALLOC_TRIM_THRESHOLD_ (64 KiB) in its workers' environment. Any explicit
# value turns off glibc's dynamic mmap threshold, so every large tensor is mmap'ed and unmapped
# again: measured, one-thread torch training ran 1.75x slower in such a worker. Unset (None)
# for our workers; the statistical profiler (for the dashboard) is off too.
# The scheduler's root-task queuing (worker-saturation 1.1) holds tasks without dependencies
# (our sources) back while any worker has downstream work: measured, a cold report had 4 of
# 38 sources after 25 minutes while tickets and transfers of those 4 ran. With queuing off
# every ready task goes to a worker, which runs the highest priority (sources) first. A
# remote scheduler wants the same: DASK_DISTRIBUTED__SCHEDULER__WORKER_SATURATION=inf.
WORKER_CONFIG = {
    "distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None,
    "distributed.worker.profile.enabled": False,
    "distributed.scheduler.worker-saturation": "inf",
}


class TaskFailed(RuntimeError):
    """A task of the plan raised: names its stage and description."""


def default_workers() -> int:
    """One worker per core on a CPU (one torch thread each), one per GPU on a GPU machine."""
    import torch

    if torch.cuda.is_available():
        return torch.cuda.device_count()
    return os.cpu_count() or 1


@contextlib.contextmanager
def open_client(scheduler: str | None = None, *, workers: int | None = None, gpu: bool = False,
                log=print) -> Iterator:
    """A Dask client: of the scheduler at ``scheduler``, or of a ``LocalCluster`` of
    ``workers`` processes with one thread each, started here and stopped on exit."""
    from distributed import Client, LocalCluster

    if scheduler:
        client = Client(scheduler)
        try:
            n = len(client.scheduler_info().get("workers", {}))
            log(f"[plan] Dask scheduler {scheduler}: {n} worker(s)")
            _log_dashboard(client, log)
            yield client
        finally:
            client.close()
        return
    n = workers or default_workers()
    if n < 1:
        raise ValueError(f"workers must be >= 1, got {n}")
    import dask

    with dask.config.set(WORKER_CONFIG):
        cluster = LocalCluster(n_workers=n, threads_per_worker=1, processes=True,
                               resources={GPU: 1} if gpu else None, dashboard_address=":0",
                               silence_logs=logging.ERROR)
    client = Client(cluster)
    try:
        log(f"[plan] Dask LocalCluster: {n} worker process(es), one thread each")
        _log_dashboard(client, log)
        yield client
    finally:
        client.close()
        cluster.close()


def _has_bokeh() -> bool:
    import importlib.util

    return importlib.util.find_spec("bokeh") is not None


def _log_dashboard(client, log) -> None:
    link = getattr(client, "dashboard_link", None)
    if link and _has_bokeh():
        log(f"[plan] Dask dashboard: {link}")


def worker_threads() -> int:
    """The torch threads a task may use: its Dask worker's thread count (1 outside Dask)."""
    try:
        from distributed import get_worker

        return max(1, int(get_worker().state.nthreads))
    except (ImportError, ValueError, AttributeError):
        return 1


def run_task(stage: str, desc, store_root: str, device: str | None = None, *after) -> dict:
    """Build one artifact (``after``: the results of the tasks it depends on, unused)."""
    import torch

    from rtstudy.core.pipeline import draw_ticket, pretrain, transfer

    if device is None or device == "cpu":
        torch.set_num_threads(worker_threads())
    store = Store(store_root)
    stored = store.get(desc.kind, desc.config()) is not None
    t0 = time.perf_counter()
    if stage == "source":
        pretrain(desc, store=store, device=device, progress=False)
    elif stage == "ticket":
        draw_ticket(desc, store=store, progress=False)
    elif stage == "transfer":
        transfer(desc, store=store, device=device)
    else:
        raise ValueError(f"unknown stage {stage!r}; allowed: source, ticket, transfer")
    return {"stage": stage, "computed": not stored, "seconds": time.perf_counter() - t0}


def submit_plan(client, plan: Plan, store: Store, *, gpu: bool = False, retries: int = 2) -> dict:
    """Submit every task the store does not hold yet; ``{task key: Future}``.

    A task's dependencies are passed to it as arguments, so the scheduler runs it after
    them. Sources go first, the costliest first (``Track.work``), then tickets, then
    transfers: what many tasks wait on is never left for the end. Its Dask key is the plan's key and the store's, so two plans on one scheduler
    and one store share their tasks, and plans on different stores do not."""
    import hashlib

    device = "cuda" if gpu else None
    where = hashlib.sha256(str(store.root).encode()).hexdigest()[:8]
    futures = {}
    for key, task in plan.tasks.items():
        if key in plan.done:
            continue
        deps = [futures[d] for d in task.deps if d in futures]
        futures[key] = client.submit(run_task, task.stage, task.desc, str(store.root), device, *deps,
                                     key=f"{key}-{where}", retries=retries, priority=_priority(task),
                                     resources={GPU: 1} if gpu else None)
    return futures


STAGE_PRIORITY = {"source": 2_000_000_000, "ticket": 1_000_000_000, "transfer": 0}


def _priority(task: Task) -> int:
    """Dask runs ready tasks of higher priority first: by stage, then by cost."""
    from rtstudy.core.track import track_of

    return STAGE_PRIORITY[task.stage] + int(min(track_of(task.source).work(task.desc) or 0.0, 9e8) // 1000)


@dataclass
class StageTimes:
    """What one stage cost: tasks run, artifacts computed (not found stored), worker seconds."""

    tasks: int = 0
    computed: int = 0
    seconds: float = 0.0

    def to_dict(self) -> dict:
        return {"tasks": self.tasks, "computed": self.computed, "worker_seconds": round(self.seconds, 1)}


def gather(futures: Mapping[str, object], stages: Mapping[str, str], *, describe=None,
           progress: PlanProgress | None = None) -> dict[str, object]:
    """Wait for every future (as they finish, updating ``progress``); their results by key.

    The first failure cancels the rest and raises ``TaskFailed`` naming the task
    (``describe(key)``, default the key)."""
    from distributed import as_completed

    by_future = {f: k for k, f in futures.items()}
    results = {}
    for fut in as_completed(list(futures.values())):
        key = by_future[fut]
        if fut.status != "finished":
            exc = fut.exception()
            for other in futures.values():
                other.cancel()
            label = describe(key) if describe else key
            raise TaskFailed(f"{stages[key]} task {label} failed: {type(exc).__name__}: {exc}") from exc
        results[key] = fut.result()
        if progress is not None:
            progress.update(stages[key])
    return results


def stage_times(results: Mapping[str, dict], tasks: Mapping[str, Task] | None = None) -> dict[str, dict]:
    """Per-stage totals of finished task results (dicts with stage/computed/seconds)."""
    out: dict[str, StageTimes] = {}
    for r in results.values():
        st = out.setdefault(r["stage"], StageTimes())
        st.tasks += 1
        st.computed += bool(r.get("computed", True))
        st.seconds += float(r.get("seconds", 0.0))
    return {s: v.to_dict() for s, v in out.items()}


def wait(futures: Mapping[str, object], stages: Mapping[str, str], *, describe=None,
         progress: bool = True, interval: float = 30.0) -> dict[str, object]:
    """``gather`` under one progress display counting tasks per stage."""
    totals = {s: list(stages.values()).count(s) for s in dict.fromkeys(stages.values())}
    bar = PlanProgress(totals, interval=interval, enabled=progress)
    try:
        return gather(futures, stages, describe=describe, progress=bar)
    finally:
        bar.close()


def execute(client, plan: Plan, store: Store, *, gpu: bool = False, retries: int = 2,
            progress: bool = True, interval: float = 30.0) -> dict[str, dict]:
    """Run ``plan`` on ``client``'s cluster; per-stage times (see ``stage_times``)."""
    futures = submit_plan(client, plan, store, gpu=gpu, retries=retries)
    stages = {k: plan.tasks[k].stage for k in futures}
    results = wait(futures, stages, describe=lambda k: plan.tasks[k].desc.label, progress=progress,
                   interval=interval)
    return stage_times(results)
