"""The artifact store: content addressing, atomic writes, locking, corrupt files."""

import json
import multiprocessing as mp
import time

import pytest
import torch

from rtstudy.core.store import Store, config_hash, load_tensors, save_tensors


def test_same_config_same_key_any_order():
    assert config_hash("k", {"a": 1, "b": [1, 2]}) == config_hash("k", {"b": [1, 2], "a": 1})
    assert config_hash("k", {"a": 1}) != config_hash("k", {"a": 2})
    assert config_hash("k", {"a": 1}) != config_hash("other", {"a": 1})


def test_get_or_create_computes_once(tmp_path):
    store, calls = Store(tmp_path), []

    def compute(b):
        calls.append(1)
        b.save("w", {"x": torch.arange(3.0)})
        b.metrics["acc"] = 0.5

    a1 = store.get_or_create("thing", {"lr": 0.1}, compute)
    a2 = store.get_or_create("thing", {"lr": 0.1}, compute)
    assert calls == [1]
    assert a1.path == a2.path and a2.metrics == {"acc": 0.5}
    assert torch.equal(a2.tensors("w")["x"], torch.arange(3.0))
    assert json.loads((a1.path / "meta.json").read_text())["config"] == {"lr": 0.1}
    assert [a.key for a in store.list("thing")] == [a1.key]


def test_failed_compute_leaves_nothing(tmp_path):
    store = Store(tmp_path)

    def boom(b):
        b.save("w", {"x": torch.zeros(2)})
        raise RuntimeError("interrupted")

    with pytest.raises(RuntimeError):
        store.get_or_create("thing", {"a": 1}, boom)
    assert store.get("thing", {"a": 1}) is None
    assert not any(p.is_dir() for p in (tmp_path / "thing").iterdir())


def _slow_compute(root, out):
    def compute(b):
        time.sleep(0.5)
        b.metrics["pid"] = mp.current_process().pid

    a = Store(root).get_or_create("race", {"same": True}, compute)
    out.put(a.metrics["pid"])


def test_two_processes_compute_once(tmp_path):
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    procs = [ctx.Process(target=_slow_compute, args=(str(tmp_path), q)) for _ in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    pids = {q.get(timeout=5), q.get(timeout=5)}
    assert len(pids) == 1, "both processes must see the one artifact the first computed"


def test_truncated_tensor_file_is_a_clear_error(tmp_path):
    path = tmp_path / "w.safetensors"
    save_tensors(path, {"x": torch.ones(100)})
    path.write_bytes(path.read_bytes()[:50])
    with pytest.raises(ValueError, match="truncated or corrupt"):
        load_tensors(path)


def test_corrupt_meta_is_a_clear_error(tmp_path):
    store = Store(tmp_path)
    a = store.get_or_create("thing", {"a": 1}, lambda b: None)
    (a.path / "meta.json").write_text("{not json")
    with pytest.raises(ValueError, match="corrupt"):
        store.get("thing", {"a": 1})


def test_list_ignores_builds_in_progress(tmp_path):
    store = Store(tmp_path)
    store.get_or_create("thing", {"a": 1}, lambda b: None)
    leftover = tmp_path / "thing" / ".deadbeef.tmp-x"  # a killed build that wrote meta.json
    leftover.mkdir()
    (leftover / "meta.json").write_text('{"config": {}}')
    assert [a.path.name.startswith(".") for a in store.list("thing")] == [False]
