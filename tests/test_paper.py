"""The paper's setting on a CPU: zoo-layout checkpoints, CIFAR batches and an ImageFolder
written in their real on-disk formats, loaded safely, and the new profiles' E1 end to end."""

import json
import pickle

import numpy as np
import pytest
import torch

from rtstudy.vision import checkpoints as ck
from rtstudy.vision.convert import convert
from rtstudy.vision.pretrained import (
    ImageNetResNet,
    load_pretrained,
    pretrained_source,
    torchvision_file_name,
)

WIDTH = 1 / 16  # a narrow ResNet-18: stages of 4, 8, 16, 32 channels
MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
CLASSES = 4  # the ImageFolder the sources' own accuracy is measured on


class Foreign:
    """A global that a weights-only load refuses (as dill's types are)."""


def _net(seed=0):
    torch.manual_seed(seed)
    net = ImageNetResNet("resnet18", CLASSES, WIDTH)
    with torch.no_grad():  # non-trivial BN statistics, so a wrong key shows in the outputs
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
    return net.eval()


def _zoo_checkpoint(net, path, *, key="model", extra=None):
    """A robustness-library file: both prefixes, the normaliser, optimizer, schedule, epoch."""
    state = {}
    for prefix in ("module.model.", "module.attacker.model."):
        state.update({prefix + k: v.clone() for k, v in net.state_dict().items()})
    state["module.normalizer.new_mean"] = torch.tensor(MEAN).view(3, 1, 1)
    state["module.normalizer.new_std"] = torch.tensor(STD).view(3, 1, 1)
    ckpt = {key: state, "optimizer": {"state": {}, "param_groups": [{"lr": 0.1, "params": [0]}]},
            "schedule": {"last_epoch": 89}, "epoch": 90, **(extra or {})}
    torch.save(ckpt, path)
    return path


def _reference(net, x):
    mean, std = torch.tensor(MEAN).view(1, 3, 1, 1), torch.tensor(STD).view(1, 3, 1, 1)
    return net((x - mean) / std)


@pytest.fixture
def zoo(tmp_path, monkeypatch):
    folder = tmp_path / "zoo"
    folder.mkdir()
    monkeypatch.setenv("RTSTUDY_ZOO", str(folder))
    nets = {"natural": _net(0), "robust": _net(1), "eps0": _net(2)}
    torch.save(nets["natural"].state_dict(), folder / torchvision_file_name("ResNet18_Weights.IMAGENET1K_V1"))
    _zoo_checkpoint(nets["robust"], folder / "resnet18_l2_eps1.ckpt")
    _zoo_checkpoint(nets["eps0"], folder / "resnet18_l2_eps0.ckpt", key="state_dict")  # older files
    return folder, nets


def _source(origin="zoo", eps=1.0, **kw):
    return pretrained_source(origin, "resnet18", norm="l2", eps=eps, width=WIDTH, image_size=32, **kw)


# ----------------------------------------------------------------------------- loading
def test_zoo_and_torchvision_files_load_to_bit_identical_outputs(zoo):
    _, nets = zoo
    x = torch.rand(5, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    for origin, eps, name in (("zoo", 1.0, "robust"), ("zoo", 0.0, "eps0"), ("torchvision", 0.0, "natural")):
        source = _source(origin, eps)
        model, info = load_pretrained(source)
        assert info["sha256"] == source.sha256 == ck.sha256_of(source.path)
        with torch.no_grad():
            assert torch.equal(model.eval()(x), _reference(nets[name], x)), (origin, eps)
        assert model.spec["mean"] == pytest.approx(MEAN) and model.spec["name"] == "imagenet_resnet18"
    robust = _source()
    assert robust.robust and robust.label == "zoo ℓ2 1" and robust.config()["attack"]["norm"] == "l2"
    assert _source("torchvision", 0.0).role == "natural"


def test_the_key_is_the_files_content_and_declared_threat_model(zoo):
    folder, nets = zoo
    a = _source()
    assert a.key == _source().key and a.key != _source(eps=0.0).key
    _zoo_checkpoint(nets["natural"], folder / "resnet18_l2_eps1.ckpt")  # other content, same name
    assert _source().sha256 != a.sha256 and _source().key != a.key
    with pytest.raises(ValueError, match="the file changed since planning"):
        load_pretrained(a)


def test_a_foreign_global_is_refused_with_the_convert_command(zoo):
    folder, nets = zoo
    path = _zoo_checkpoint(nets["robust"], folder / "resnet18_l2_eps0.5.ckpt", extra={"args": Foreign()})
    with pytest.raises(ck.UnsafeCheckpoint, match=r"Foreign.*python -m rtstudy\.vision\.convert .*--trust"):
        load_pretrained(_source(eps=0.5))
    with pytest.raises(PermissionError, match="--trust"):
        convert(path, trust=False)
    weights, sidecar = convert(path, trust=True, width=WIDTH)
    meta = json.loads(sidecar.read_text())
    assert (meta["arch"], meta["norm"], meta["eps"]) == ("resnet18", "l2", 0.5)
    assert meta["sha256"] == ck.sha256_of(path) and meta["weights_sha256"] == ck.sha256_of(weights)
    assert not list(folder.glob(".*.tmp")), "no temporary file is left behind"
    source = _source(eps=0.5)  # the conversion is found first and keeps the original's identity
    assert source.path == str(weights) and source.sha256 == meta["sha256"]
    model, info = load_pretrained(source)
    x = torch.rand(3, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(model.eval()(x), _reference(nets["robust"], x)) and info["converted"]
    meta["eps"] = 3.0
    sidecar.write_text(json.dumps(meta))
    with pytest.raises(ValueError, match=r"says eps = 3.0.*declares 0.5"):
        load_pretrained(source)


def test_bad_files_and_names_get_clear_errors(zoo, tmp_path):
    folder, nets = zoo
    good = (folder / "resnet18_l2_eps1.ckpt").read_bytes()
    (folder / "resnet18_l2_eps3.ckpt").write_bytes(good[: len(good) // 2])
    with pytest.raises(ValueError, match="truncated"):
        load_pretrained(_source(eps=3.0))
    with pytest.raises(ValueError, match=r"declared resnet50.*missing keys \['layer1.0.bn3.bias'"):
        convert(folder / "resnet18_l2_eps1.ckpt", trust=True, arch="resnet50", width=WIDTH)
    assert not (folder / "resnet18_l2_eps1.safetensors").exists(), "nothing half-written"
    with open(folder / "resnet18_l2_eps0.03.ckpt", "wb") as fh:  # a plain pickle, not a checkpoint
        pickle.dump({"model": [1, 2]}, fh, protocol=2)
    with pytest.raises(ValueError, match="not a torch checkpoint"):
        load_pretrained(_source(eps=0.03))
    torch.save({"epoch": 1}, folder / "resnet18_l2_eps5.ckpt")
    with pytest.raises(ValueError, match="no 'model' or 'state_dict' entry"):
        load_pretrained(_source(eps=5.0))
    missing = _source(eps=0.25)
    assert missing.sha256 == ""
    with pytest.raises(FileNotFoundError, match=r"resnet18_l2_eps0.25.ckpt not found.*download"):
        load_pretrained(missing)
    with pytest.raises(ValueError, match="unknown architecture 'resnet19'; allowed: 'resnet18'"):
        pretrained_source("zoo", "resnet19", eps=1.0)
    with pytest.raises(ValueError, match="unknown torchvision weights 'ResNet18_Weights.NOPE'"):
        pretrained_source("torchvision", "resnet18", weights="ResNet18_Weights.NOPE")
    with pytest.raises(ValueError, match=r"no l2 model at eps 2; allowed: 0, 0.01"):
        _source(eps=2.0)
    with pytest.raises(ValueError, match="source seed 3"):
        _source().with_(seed=3)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        convert(tmp_path / "nope.ckpt", trust=True)


def test_pickled_code_is_never_run(tmp_path, capsys):
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    torch.save({"model": Evil()}, tmp_path / "evil.ckpt")
    with pytest.raises(ck.UnsafeCheckpoint, match="builtins.print"):
        ck.read_torch_file(tmp_path / "evil.ckpt")
    assert "pwned" not in capsys.readouterr().out


# ----------------------------------------------------------------------------- data fixtures
def write_cifar10(root, n_train=40, n_test=20, seed=0):
    """CIFAR-10 in torchvision's on-disk layout: five pickled train batches, a test batch, meta."""
    rng = np.random.default_rng(seed)
    base = root / "cifar-10-batches-py"
    base.mkdir(parents=True)
    names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    with open(base / "batches.meta", "wb") as fh:
        pickle.dump({"label_names": names, "num_cases_per_batch": n_train // 5}, fh)
    labels = {"train": np.arange(n_train) % 10, "test": np.arange(n_test) % 10}
    files = [(f"data_batch_{i + 1}", "train", slice(i * n_train // 5, (i + 1) * n_train // 5)) for i in range(5)]
    for name, split, part in [*files, ("test_batch", "test", slice(0, n_test))]:
        y = labels[split][part]
        x = (rng.integers(0, 64, (len(y), 3072)) + 19 * y[:, None]).astype(np.uint8)  # learnable
        with open(base / name, "wb") as fh:
            pickle.dump({"batch_label": name, "labels": y.tolist(), "data": x,
                         "filenames": [f"{name}_{i}.png" for i in range(len(y))]}, fh)
    return root


def write_imagefolder(root, classes=CLASSES, per_class=(3, 2), size=40):
    from PIL import Image

    rng = np.random.default_rng(1)
    for split, n in zip(("train", "test"), per_class, strict=True):
        for c in range(classes):
            (root / split / f"class{c}").mkdir(parents=True)
            for i in range(n):
                img = (rng.integers(0, 60, (size, size, 3)) + 50 * c).astype(np.uint8)
                Image.fromarray(img).save(root / split / f"class{c}" / f"{i}.png")
    return root


def test_cifar_batches_in_torchvisions_layout_load_without_unpickling_code(tmp_path):
    from rtstudy.vision.data import load_task

    root = write_cifar10(tmp_path / "data")
    data = load_task("cifar10", root=root)
    assert data.train_x.shape == (40, 3, 32, 32) and data.test_x.shape == (20, 3, 32, 32)
    assert data.classes[0] == "airplane" and sorted(data.train_y.unique().tolist()) == list(range(10))
    with open(root / "cifar-10-batches-py" / "data_batch_1", "rb") as fh:
        first = pickle.load(fh)["data"][0]  # our own fixture: a row of 1024 R, 1024 G, 1024 B
    assert torch.equal(data.train_x[0], torch.from_numpy(first.reshape(3, 32, 32)).float() / 255)
    assert (root / ".tensors" / "cifar10.safetensors").is_file()
    with open(root / "cifar-10-batches-py" / "test_batch", "wb") as fh:
        pickle.dump({"data": Foreign(), "labels": []}, fh)
    (root / ".tensors" / "cifar10.safetensors").unlink()
    with pytest.raises(ValueError, match=r"arrays, lists and strings only; this file asks for .*Foreign"):
        load_task("cifar10", root=root)


def test_dtd_and_imagenet_val_in_torchvisions_layouts(tmp_path):
    from PIL import Image

    from rtstudy.vision.data import load_task

    rng = np.random.default_rng(0)
    base, lists = tmp_path / "dtd" / "dtd", {"train1.txt": [], "val1.txt": [], "test1.txt": []}
    for c in ("banded", "woven"):
        (base / "images" / c).mkdir(parents=True)
        (tmp_path / "imagenet" / "val" / f"n0{len(lists['test1.txt'])}").mkdir(parents=True)
        for i in range(3):  # not square: decoded as a centre crop
            Image.fromarray(rng.integers(0, 255, (60, 80, 3)).astype(np.uint8)).save(base / "images" / c / f"{i}.jpg")
            lists["train1.txt" if i < 2 else "test1.txt"].append(f"{c}/{i}.jpg")
    for name, lines in lists.items():
        (base / "labels").mkdir(exist_ok=True)
        (base / "labels" / name).write_text("".join(f"{line}\n" for line in lines))
    for i, folder in enumerate(sorted((tmp_path / "imagenet" / "val").iterdir())):
        Image.fromarray(np.full((50, 70, 3), 40 * i, np.uint8)).save(folder / "0.JPEG")
    dtd = load_task("dtd", root=tmp_path, image_size=24)
    assert (len(dtd.train_y), len(dtd.test_y), dtd.classes) == (4, 2, ("banded", "woven"))
    val = load_task("imagenet", root=tmp_path, image_size=24)
    assert (len(val.train_y), val.test_x.shape, val.test_y.tolist()) == (0, (2, 3, 24, 24), [0, 1])


def test_a_target_folder_without_its_files_names_them(tmp_path):
    from rtstudy.requirements import check_requirements, task_requirement
    from rtstudy.vision.data import load_task

    with pytest.raises(FileNotFoundError, match=r"cifar100: missing .*cifar-100-python/train"):
        load_task("cifar100", root=tmp_path)
    with pytest.raises(FileNotFoundError, match=r"dtd: torchvision DTD files missing .*dtd/"):
        load_task("dtd", root=tmp_path)
    reqs = [task_requirement(t, tmp_path) for t in ("cifar100", "flowers102", "imagefolder:" + str(tmp_path))]
    with pytest.raises(FileNotFoundError, match=r"(?s)3 file\(s\).*cifar100.*download=True.*flowers102.*ImageFolder"):
        check_requirements(reqs)
    assert task_requirement("digits", tmp_path) is None, "bundled with a package"


# ----------------------------------------------------------------------------- profiles
@pytest.fixture
def fixtures(tmp_path, zoo, monkeypatch):
    data = write_cifar10(tmp_path / "data")
    folder = write_imagefolder(tmp_path / "folder")
    monkeypatch.setenv("RTSTUDY_DATA", str(data))
    return data, folder


def _report(profile, overrides, tmp_path, monkeypatch, **kw):
    from rtstudy.report import build_report

    monkeypatch.setenv("RTSTUDY_PROFILE_OVERRIDES", json.dumps(overrides))
    kw.setdefault("only", ["E1"])
    return build_report(profile, tmp_path / "out", store=str(tmp_path / "store"), workers=1,
                        log=lambda *_: None, **kw)


def _paper_overrides(folder):
    return {"source": f"imagefolder:{folder}", "targets": ["cifar10"], "image_size": 32, "width": WIDTH,
            "sparsities": [0.0, 0.5], "seeds": [0, 1], "eps_star": 1.0, "eps_sweep": [0.0, 1.0],
            "finetune": {"epochs": 1, "batch_size": 16, "min_steps": 2, "augment": False},
            "robust_n": 4, "eval_attack_steps": 1}


def test_paper_profile_plans_runs_and_renders_e1_on_a_cpu(fixtures, tmp_path, monkeypatch, capsys):
    from rtstudy.report import main

    _, folder = fixtures
    monkeypatch.setenv("RTSTUDY_PROFILE_OVERRIDES", json.dumps(_paper_overrides(folder)))
    assert main(["--profile", "paper", "--plan", "--store", str(tmp_path / "store")]) == 0
    plan = capsys.readouterr().out
    assert "GPU-hours on an NVIDIA A100 (assumed" in plan and "files: 4 of 4 found" in plan
    assert "resnet18_l2_eps1.ckpt" in plan and "experiments: E0" in plan and "E4" not in plan
    summary = _report("paper", _paper_overrides(folder), tmp_path, monkeypatch)
    e1 = summary["experiments"]["E1"]
    assert e1["status"] == "ok" and e1["finding"]
    rows = [r for r in e1["rows"] if r["metric"] == "test_acc" and r.get("init") == "pretrained"]
    assert {r["source_label"] for r in rows} == {"natural", "zoo ℓ2 1"}
    assert {r["sparsity"] for r in rows} == {0.0, 0.5} and summary["profile_overrides"]["width"] == WIDTH
    assert "with a single source seed the CI is a t interval over the finetuning seeds" in e1["finding"]


def test_paper_profile_refuses_to_start_with_missing_files_and_lists_each(fixtures, tmp_path, monkeypatch):
    _, folder = fixtures
    overrides = {**_paper_overrides(folder), "eps_sweep": [0.0, 0.25, 3.0], "targets": ["cifar10", "svhn"]}
    with pytest.raises(FileNotFoundError, match=r"(?s)3 file\(s\).*svhn.*resnet18_l2_eps0.25.ckpt.*"
                                                r"resnet18_l2_eps3.ckpt"):
        _report("paper", {**overrides, "eps_star": 1.0}, tmp_path, monkeypatch, only=None)
    assert not (tmp_path / "store").exists() or not any((tmp_path / "store").rglob("meta.json"))


def test_gpu_profile_pretrains_its_own_sources_and_renders_e1(fixtures, tmp_path, monkeypatch):
    _, folder = fixtures
    overrides = {"source": "cifar10", "targets": [f"imagefolder:{folder}"], "model": "resnet8",
                 "width": 0.25, "image_size": 16, "source_seeds": [0, 1], "seeds": [0],
                 "sparsities": [0.0, 0.5], "eps_sweep": [0.0, 0.0078431], "robust_n": 4,
                 "eval_attack_steps": 1, "pretrain": {"epochs": 1, "batch_size": 16, "augment": False},
                 "finetune": {"epochs": 1, "batch_size": 8, "min_steps": 2, "augment": False}}
    summary = _report("gpu", overrides, tmp_path, monkeypatch)
    e1 = summary["experiments"]["E1"]
    assert e1["status"] == "ok"
    assert {r["source_seed"] for r in e1["rows"] if r["metric"] == "test_acc"} == {0, 1}


def test_the_fashion_gpu_profile_keeps_its_settings_under_its_new_name():
    from rtstudy.profiles import PROFILES, get_profile

    P = get_profile("fashion-gpu")
    assert (P.source, P.model, P.image_size, P.channels) == ("fashion_mnist", "resnet18", 32, 1)
    assert {"paper", "paper-linf", "gpu"} <= set(PROFILES)
    assert get_profile("paper-linf").eps_sweep[-1] == pytest.approx(8 / 255)
    assert len(get_profile("gpu").source_seeds) >= 8 and len(get_profile("paper").seeds) >= 3
    with pytest.raises(ValueError, match="no 'fgsm_rs' source"):
        get_profile("paper").source_model(1.0, kind="fgsm_rs")
