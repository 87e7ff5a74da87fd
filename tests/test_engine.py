"""The plan and its execution on Dask: deduplication, dependencies, what is stored, faults.

Execution tests run the toy tabular track (tests/_toy_track.py) on a real
``LocalCluster`` of worker processes: a worker killed mid-task, two plans at once
against one store, and stale build directories of a dead builder.
"""

from __future__ import annotations

import io
import os
import signal
import threading
import time

import pytest
from _toy_track import Accuracy, Recipe, TabularSource

from rtstudy.core.descriptions import TicketDesc, TransferDesc
from rtstudy.core.store import NotInStore, Store
from rtstudy.engine import Plan, execute, open_client, plan_report, plan_transfers, submit_plan
from rtstudy.engine.execute import gather
from rtstudy.engine.progress import PlanProgress
from rtstudy.profiles import get_profile

pytestmark = pytest.mark.timeout(300)


def _transfers(epochs: int = 60) -> list[TransferDesc]:
    """2 sources x (dense, OMP 50%) x 2 finetuning seeds, plus one from-scratch control."""
    out = []
    for noise in (0.0, 0.3):
        src = TabularSource(noise=noise, recipe=Recipe(epochs=epochs))
        omp = TicketDesc(src, "omp", "unstructured", 0.5)
        for ticket in (None, omp):
            out += [TransferDesc(src, ticket, "blobs_b", Recipe(), Accuracy(), seed=s) for s in (0, 1)]
    out.append(TransferDesc(src, omp, "blobs_b", Recipe(), Accuracy(), seed=0, init="scratch"))
    return out


def _artifacts(store: Store) -> dict[tuple[str, str], float | None]:
    return {(kind, a.key): a.metrics.get("test_acc")
            for kind in ("source", "ticket", "transfer") for a in store.list(kind)}


# ----------------------------------------------------------------------------- the plan
def test_plan_deduplicates_orders_and_marks_what_is_stored(tmp_path):
    descs = _transfers()
    plan = plan_transfers(descs + descs[:3], Store(tmp_path))  # asked twice: planned once
    counts = plan.counts()
    assert {s: c["total"] for s, c in counts.items()} == {"source": 2, "ticket": 2, "transfer": 9}
    assert plan.done == set()
    seen = set()
    for key, task in plan.tasks.items():  # every task after the tasks it reads
        assert set(task.deps) <= seen, key
        seen.add(key)
    dense = plan.tasks[f"transfer-{descs[0].key}"]
    assert dense.deps == (f"source-{descs[0].source.key}",)
    sparse = plan.tasks[f"transfer-{descs[2].key}"]
    assert sparse.deps == (f"source-{descs[2].source.key}", f"ticket-{descs[2].ticket.key}")


def test_plan_of_the_report_covers_every_grid_and_groups_it_by_experiment(tmp_path):
    P = get_profile("smoke")
    plan = plan_report(P, store=Store(tmp_path))
    from rtstudy.experiments.registry import EXPERIMENTS

    assert list(plan.groups) == list(EXPERIMENTS)
    for exp_id in ("E1", "E4", "E9"):
        grids = EXPERIMENTS.get(exp_id).grids(P)
        for desc in (d for g in grids for d in g.descriptions(P)):
            assert f"transfer-{desc.key}" in plan.groups[exp_id]
    e1 = set(plan.groups["E1"])
    assert all(set(plan.tasks[k].deps) <= e1 for k in e1), "a group holds what its tasks read"
    sources = {k for k, t in plan.tasks.items() if t.stage == "source"}
    assert set(plan.groups["E10"]) == sources  # no grid: it reads the stored source models
    vision = {k for k in sources if plan.tasks[k].desc.track == "vision"}
    assert len(vision) == len(P.source_models())
    text = plan.describe(throughput=1000.0)
    assert "source" in text and "transfer" in text and "min" in text and "0 already stored" in text


def test_replicate_parameters_plan_other_source_seeds(tmp_path):
    P = get_profile("smoke")
    plan = plan_report(P, ["E1"], {"source_seeds": [100, 101], "seeds": [100]}, Store(tmp_path))
    seeds = {t.desc.seed for t in plan.tasks.values() if t.stage == "source"}
    assert seeds == {100, 101}  # the gate follows other source seeds unless told its own
    plan = plan_report(P, ["E1"], {"source_seeds": [100, 101], "gate_source_seeds": [100, 101, 102]},
                       Store(tmp_path))
    assert {t.desc.seed for t in plan.tasks.values() if t.stage == "source"} == {100, 101, 102}


# ----------------------------------------------------------------------------- execution
@pytest.fixture(scope="module")
def client():
    with open_client(workers=2, log=lambda *a: None) as c:
        yield c


def test_executes_the_plan_and_a_second_run_computes_nothing(client, tmp_path, monkeypatch):
    store = Store(tmp_path / "store")
    plan = plan_transfers(_transfers(), store)
    times = execute(client, plan, store, progress=False)
    assert times["transfer"]["tasks"] == 9 and times["transfer"]["computed"] == 9
    assert times["source"]["computed"] == 2
    assert len(_artifacts(store)) == 13
    again = plan_transfers(_transfers(), store)
    assert again.done == set(again.tasks) and again.todo == []
    assert execute(client, again, store, progress=False) == {}


def test_a_failing_task_names_itself(client, tmp_path):
    store = Store(tmp_path)
    bad = TransferDesc(TabularSource(seed=5), None, "no_such_task", Recipe(), Accuracy())
    from rtstudy.engine import TaskFailed

    with pytest.raises(TaskFailed, match="transfer task .*no_such_task.*unknown tabular task"):
        execute(client, plan_transfers([bad], store), store, progress=False, retries=0)


def test_killed_worker_task_is_rerun_and_gives_the_same_artifacts(tmp_path):
    slow = _transfers(epochs=2500)  # a few seconds per source model
    undisturbed = Store(tmp_path / "a")
    with open_client(workers=2, log=lambda *a: None) as c:
        execute(c, plan_transfers(slow, undisturbed), undisturbed, progress=False)
        disturbed = Store(tmp_path / "b")
        plan = plan_transfers(slow, disturbed)
        futures = submit_plan(c, plan, disturbed)
        pids = c.run(os.getpid)
        victim = None
        for _ in range(200):  # a worker busy with a source model
            busy = [w for w, ks in c.processing().items() if any(k.startswith("source-") for k in ks)]
            if busy:
                victim = busy[0]
                break
            time.sleep(0.05)
        assert victim is not None, "no source task started"
        time.sleep(0.5)  # inside the training loop, its build directory made
        os.kill(pids[victim], signal.SIGKILL)
        gather(futures, {k: plan.tasks[k].stage for k in futures})
    assert _artifacts(disturbed) == _artifacts(undisturbed)
    leftovers = [p for p in (tmp_path / "b").rglob(".*.tmp-*")]
    assert leftovers == [], "the rerun removed the killed builder's directory"


def test_two_plans_at_once_compute_each_artifact_once(tmp_path, monkeypatch):
    log = tmp_path / "builds.log"
    monkeypatch.setenv("TOY_TRACK_LOG", str(log))  # the workers inherit it
    store = Store(tmp_path / "store")
    descs = _transfers(epochs=800)
    errors = []

    def one_plan(c):
        try:
            execute(c, plan_transfers(descs, store), store, progress=False)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    # two clusters (started one after the other), two plans at once on one store
    with open_client(workers=1, log=lambda *a: None) as c1, open_client(workers=1, log=lambda *a: None) as c2:
        threads = [threading.Thread(target=one_plan, args=(c,)) for c in (c1, c2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert errors == []
    builds = log.read_text().splitlines()
    assert len(builds) == 2 + 9 and len(set(builds)) == len(builds), builds
    assert len(_artifacts(store)) == 13


def test_every_source_runs_before_the_work_that_waits_on_the_first(tmp_path, monkeypatch):
    """Sources are root tasks: Dask's root-task queuing would hold them back while
    transfers of the first source keep the worker busy. Ours runs by priority."""
    log = tmp_path / "builds.log"
    monkeypatch.setenv("TOY_TRACK_LOG", str(log))
    store = Store(tmp_path / "store")
    sources = [TabularSource(noise=0.1 * i, recipe=Recipe(epochs=200)) for i in range(6)]
    descs = [TransferDesc(s, None, "blobs_b", Recipe(epochs=200), Accuracy(), seed=f)
             for s in sources for f in range(3)]
    with open_client(workers=1, log=lambda *a: None) as c:
        execute(c, plan_transfers(descs, store), store, progress=False)
    stages = [line.split()[0] for line in log.read_text().splitlines()]
    assert stages == ["source"] * 6 + ["transfer"] * 18, stages


# ----------------------------------------------------------------------------- store guards
def test_stale_build_directory_is_removed_when_the_lock_is_taken(tmp_path):
    store = Store(tmp_path)
    final = store.path("transfer", {"a": 1})
    final.parent.mkdir(parents=True)
    stale = final.parent / f".{final.name}.tmp-dead"
    stale.mkdir()
    (stale / "half.safetensors").write_bytes(b"half")
    other = final.parent / ".0123456789abcdef.tmp-alive"  # another artifact's build: not ours
    other.mkdir()
    store.get_or_create("transfer", {"a": 1}, lambda b: b.metrics.update(x=1))
    assert not stale.exists() and other.exists()


def test_read_only_kinds_refuse_to_compute(tmp_path, monkeypatch):
    store = Store(tmp_path)
    store.get_or_create("source", {"a": 1}, lambda b: None)
    monkeypatch.setenv("RTSTUDY_READ_ONLY", "source,transfer")
    assert store.get_or_create("source", {"a": 1}, lambda b: None).config == {"a": 1}  # stored: read
    with pytest.raises(NotInStore, match="source artifact .* not in the store"):
        store.get_or_create("source", {"a": 2}, lambda b: None)
    store.get_or_create("source_eval", {"a": 2}, lambda b: None)  # not a read-only kind


# ----------------------------------------------------------------------------- progress
def test_progress_prints_plain_lines_when_not_a_terminal():
    out = io.StringIO()
    bar = PlanProgress({"source": 2, "transfer": 3}, file=out, interval=0.0, tty=False)
    bar.update("source")
    bar.update("transfer")
    bar.close()
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("[plan] 1/5 tasks (source 1/2, transfer 0/3)")
    assert lines[-1].startswith("[plan] 2/5 tasks (source 1/2, transfer 1/3)")


def test_progress_is_a_tqdm_bar_in_a_terminal():
    out = io.StringIO()
    bar = PlanProgress({"source": 1}, file=out, tty=True)
    bar.update("source")
    bar.close()
    assert "plan" in out.getvalue() and "1/1" in out.getvalue()


def test_empty_plan_is_valid():
    assert Plan().counts()["source"] == {"total": 0, "done": 0}


def test_local_workers_keep_glibc_dynamic_malloc_thresholds(client):
    """Dask's default MALLOC_TRIM_THRESHOLD_ makes torch training 1.75x slower: not in ours."""
    envs = client.run(lambda: os.environ.get("MALLOC_TRIM_THRESHOLD_"))
    assert set(envs.values()) == {None}
