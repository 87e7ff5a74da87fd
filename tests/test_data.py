"""Tests for rtstudy.vision.data: real offline data where cheap, tiny on-disk fixtures otherwise."""

from __future__ import annotations

import gzip
import math
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from rtstudy.vision import data as D
from rtstudy.vision.data import (
    NORMALIZATION,
    TaskData,
    augment_flip_crop,
    available_tasks,
    batches,
    data_root,
    dataset_stats,
    load_task,
    read_idx,
    stratified_subset,
    to_shape,
)

DEBIAN_FASHION = Path("/usr/share/datasets/fashion-mnist")


# --------------------------------------------------------------------------- helpers


def write_idx(path: Path, array: np.ndarray, *, compress: bool = False) -> Path:
    """Write a uint8 array as an idx file (the MNIST on-disk format)."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    header = bytes([0, 0, 0x08, array.ndim]) + np.array(array.shape, dtype=">u4").tobytes()
    payload = header + array.tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(payload) if compress else payload)
    return path


def write_mnist_like(folder: Path, *, n_train: int = 30, n_test: int = 10, compress: bool = False):
    """Tiny 28x28 idx files named like MNIST's; labels cycle 0..9."""
    rng = np.random.default_rng(0)
    suffix = ".gz" if compress else ""
    arrays = {}
    for split, n in (("train", n_train), ("t10k", n_test)):
        x = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        y = (np.arange(n) % 10).astype(np.uint8)
        write_idx(folder / f"{split}-images-idx3-ubyte{suffix}", x, compress=compress)
        write_idx(folder / f"{split}-labels-idx1-ubyte{suffix}", y, compress=compress)
        arrays[split] = (x, y)
    return arrays


def make_image_folder(folder: Path, *, test_name: str = "test", sizes=None) -> dict:
    """Two classes of small RGB PNGs; returns the pixel arrays per split."""
    from PIL import Image

    rng = np.random.default_rng(1)
    pixels: dict[str, list[np.ndarray]] = {"train": [], test_name: []}
    for split, per_class in (("train", 3), (test_name, 2)):
        for cls in ("cat", "dog"):
            (folder / split / cls).mkdir(parents=True, exist_ok=True)
            for i in range(per_class):
                size = sizes[i % len(sizes)] if sizes else 12
                arr = rng.integers(0, 256, size=(size, size, 3), dtype=np.uint8)
                Image.fromarray(arr, "RGB").save(folder / split / cls / f"{i}.png")
                pixels[split].append(arr)
    return pixels


@pytest.fixture(scope="module")
def mnist5k(tmp_path_factory) -> TaskData:
    return load_task("mnist5k", root=tmp_path_factory.mktemp("root"))


@pytest.fixture(scope="module")
def digits(tmp_path_factory) -> TaskData:
    return load_task("digits", root=tmp_path_factory.mktemp("root"))


@pytest.fixture
def no_system_fashion(monkeypatch):
    monkeypatch.setattr(D, "FASHION_MNIST_SYSTEM_DIRS", ())


def check_task(task: TaskData, *, channels: int, size: int, num_classes: int = 10) -> None:
    for x, y in ((task.train_x, task.train_y), (task.test_x, task.test_y)):
        assert x.dtype == torch.float32 and y.dtype == torch.int64
        assert x.shape[1:] == (channels, size, size) and len(x) == len(y) > 0
        assert 0.0 <= float(x.min()) and float(x.max()) <= 1.0
        assert 0 <= int(y.min()) and int(y.max()) < num_classes
    assert task.channels == channels and task.image_size == size
    assert task.num_classes == len(task.classes) == num_classes


# --------------------------------------------------------------------------- offline tasks


def test_registry_lists_offline_and_torchvision_tasks():
    names = available_tasks()
    for name in ("fashion_mnist", "mnist5k", "digits", "cifar10", "cifar100", "svhn", "mnist",
                 "kmnist", "stl10"):  # fmt: skip
        assert name in names
    assert set(available_tasks(offline_only=True)) == {"fashion_mnist", "mnist5k", "digits"}


def test_mnist5k_values_and_fixed_stratified_split(tmp_path, mnist5k):
    a = mnist5k
    check_task(a, channels=1, size=28)
    assert (len(a.train_y), len(a.test_y)) == (4000, 1000)
    assert a.train_y.bincount().tolist() == [400] * 10
    assert a.test_y.bincount().tolist() == [100] * 10
    # uint8 data: every value is k / 255
    assert torch.equal(a.test_x * 255, (a.test_x * 255).round())
    b = load_task("mnist5k", root=tmp_path, seed=123)  # seed only drives subsets
    assert torch.equal(a.train_x, b.train_x) and torch.equal(a.test_x, b.test_x)
    assert torch.equal(a.test_y, b.test_y)
    # train and test are disjoint images (no test image appears in train)
    train_rows = {row.numpy().tobytes() for row in (a.train_x * 255).to(torch.uint8).flatten(1)}
    test_rows = [row.numpy().tobytes() for row in (a.test_x * 255).to(torch.uint8).flatten(1)]
    assert sum(r in train_rows for r in test_rows) <= 5  # MNIST has a few duplicate digits


def test_digits_native_and_resized(tmp_path, digits):
    native = digits
    check_task(native, channels=1, size=8)
    assert len(native.train_y) + len(native.test_y) == 1797
    assert float(native.train_x.max()) == 1.0  # 16 / 16
    big = load_task("digits", root=tmp_path, channels=3, image_size=28)
    check_task(big, channels=3, size=28)
    assert torch.equal(big.train_x[:, 0], big.train_x[:, 2])  # gray repeated
    assert torch.equal(big.test_y, native.test_y)


@pytest.mark.skipif(
    not (DEBIAN_FASHION / "train-images-idx3-ubyte.gz").is_file(),
    reason="Debian package dataset-fashion-mnist not installed (/usr/share/datasets/fashion-mnist)",
)
def test_fashion_mnist_from_debian_package(tmp_path):
    task = load_task("fashion_mnist", root=tmp_path)
    check_task(task, channels=1, size=28)
    assert (len(task.train_y), len(task.test_y)) == (60000, 10000)
    assert task.train_y.bincount().tolist() == [6000] * 10
    assert task.classes[0] == "T-shirt/top"
    mean, std = dataset_stats(task)
    assert mean == pytest.approx(NORMALIZATION["fashion_mnist"][0], abs=1e-3)
    assert std == pytest.approx(NORMALIZATION["fashion_mnist"][1], abs=1e-3)


def test_fashion_mnist_from_root_folders(tmp_path, no_system_fashion):
    arrays = write_mnist_like(tmp_path / "fashion-mnist")  # plain idx in root/fashion-mnist
    task = load_task("fashion_mnist", root=tmp_path)
    assert torch.equal(task.train_x[:, 0], torch.from_numpy(arrays["train"][0]).float() / 255)
    assert task.test_y.tolist() == arrays["t10k"][1].tolist()
    other = tmp_path / "other"
    write_mnist_like(other / "FashionMNIST" / "raw", n_train=20, compress=True)  # torchvision's
    assert len(load_task("fashion_mnist", root=other).train_y) == 20


def test_offline_normalization_constants_match_data(mnist5k, digits):
    for task in (mnist5k, digits):
        name = task.name
        mean, std = dataset_stats(task)
        assert mean == pytest.approx(NORMALIZATION[name][0], abs=1e-3)
        assert std == pytest.approx(NORMALIZATION[name][1], abs=1e-3)
    assert dataset_stats("mnist", channels=3) == ((0.1307,) * 3, (0.3081,) * 3)
    assert dataset_stats("cifar10") == NORMALIZATION["cifar10"]
    with pytest.raises(ValueError, match="channels=1"):
        dataset_stats("cifar10", channels=1)
    with pytest.raises(ValueError, match="nope"):
        dataset_stats("nope")


# --------------------------------------------------------------------------- errors


def test_missing_fashion_mnist_says_where_and_how(tmp_path, no_system_fashion):
    with pytest.raises(FileNotFoundError) as err:
        load_task("fashion_mnist", root=tmp_path)
    msg = str(err.value)
    assert str(tmp_path / "fashion-mnist") in msg and str(tmp_path / "FashionMNIST" / "raw") in msg
    assert "apt-get install dataset-fashion-mnist" in msg and "download=True" in msg


@pytest.mark.parametrize("name", ["mnist", "cifar10", "svhn"])
def test_missing_torchvision_dataset_says_where_and_how(tmp_path, name):
    with pytest.raises(FileNotFoundError) as err:
        load_task(name, root=tmp_path)
    msg = str(err.value)
    assert str(tmp_path) in msg and "download=True" in msg


def test_unknown_task_names_it_and_lists_available():
    with pytest.raises(ValueError, match="'imagenet9'.*mnist5k.*cifar10"):
        load_task("imagenet9")


@pytest.mark.parametrize(
    ("kwargs", "pattern"),
    [
        ({"fraction": 0.0}, r"fraction=0\.0.*\(0, 1\]"),
        ({"fraction": 1.5}, r"fraction=1\.5.*\(0, 1\]"),
        ({"fraction": -0.1}, r"fraction=-0\.1.*\(0, 1\]"),
        ({"fraction": float("nan")}, r"fraction=nan"),
        ({"channels": 2}, r"channels=2.*1, 3"),
        ({"image_size": 0}, r"image_size=0.*>= 1"),
    ],
)
def test_bad_arguments_name_value_and_range(kwargs, pattern):
    with pytest.raises(ValueError, match=pattern):
        load_task("digits", **kwargs)


def test_truncated_and_corrupt_idx_files(tmp_path):
    good = write_idx(tmp_path / "x-idx3-ubyte", np.zeros((4, 5, 5), np.uint8))
    assert read_idx(good).shape == (4, 5, 5)
    cut = tmp_path / "cut-idx3-ubyte"
    cut.write_bytes(good.read_bytes()[:-7])
    with pytest.raises(ValueError, match=r"cut-idx3-ubyte.*truncated.*\(4, 5, 5\).*100 bytes"):
        read_idx(cut)
    gz = write_idx(tmp_path / "g-idx3-ubyte.gz", np.zeros((4, 5, 5), np.uint8), compress=True)
    cut_gz = tmp_path / "cutgz-idx3-ubyte.gz"
    cut_gz.write_bytes(gz.read_bytes()[:-10])
    with pytest.raises(ValueError, match="cutgz-idx3-ubyte.gz.*truncated"):
        read_idx(cut_gz)
    junk = tmp_path / "junk-idx1-ubyte"
    junk.write_bytes(b"PK\x03\x04 not an idx file")
    with pytest.raises(ValueError, match="junk-idx1-ubyte.*magic"):
        read_idx(junk)


def test_truncated_fashion_file_is_an_error_not_a_fallback(tmp_path, no_system_fashion):
    folder = tmp_path / "fashion-mnist"
    write_mnist_like(folder)
    labels = folder / "t10k-labels-idx1-ubyte"
    labels.write_bytes(labels.read_bytes()[:-3])
    with pytest.raises(ValueError, match="t10k-labels-idx1-ubyte"):
        load_task("fashion_mnist", root=tmp_path)


# --------------------------------------------------------------------------- shapes


def test_to_shape_gray_to_rgb_and_back():
    gray = torch.rand(5, 1, 10, 10)
    rgb = to_shape(gray, channels=3)
    assert rgb.shape == (5, 3, 10, 10) and rgb.is_contiguous()
    assert all(torch.equal(rgb[:, c], gray[:, 0]) for c in range(3))
    back = to_shape(rgb, channels=1)
    assert torch.allclose(back, gray, atol=1e-6)  # luminance weights sum to 1
    red = torch.zeros(1, 3, 4, 4)
    red[:, 0] = 1.0
    assert torch.allclose(to_shape(red, channels=1), torch.full((1, 1, 4, 4), 0.299))
    assert to_shape(gray) is gray  # nothing to do


def test_to_shape_resizes_uint8_and_clamps():
    x = torch.full((3, 3, 16, 16), 200, dtype=torch.uint8)
    small = to_shape(x, image_size=5)
    assert small.shape == (3, 3, 5, 5) and small.dtype == torch.float32
    assert torch.allclose(small, torch.full_like(small, 200 / 255))
    big = to_shape(torch.rand(7, 1, 8, 8), channels=3, image_size=32)
    assert big.shape == (7, 3, 32, 32)
    assert 0.0 <= float(big.min()) and float(big.max()) <= 1.0
    # chunked processing equals one whole-tensor call
    many = torch.rand(50, 3, 9, 9)
    whole = torch.nn.functional.interpolate(
        many, size=(4, 4), mode="bilinear", antialias=True, align_corners=False
    ).clamp(0, 1)
    old = D._CHUNK_ELEMENTS
    try:
        D._CHUNK_ELEMENTS = 3 * 81 * 7  # 7 images per chunk
        assert torch.allclose(to_shape(many, image_size=4), whole)
    finally:
        D._CHUNK_ELEMENTS = old
    with pytest.raises(ValueError, match="channels=4"):
        to_shape(many, channels=4)
    with pytest.raises(ValueError, match=r"\[N, C, H, W\]"):
        to_shape(torch.rand(3, 9, 9))


# --------------------------------------------------------------------------- subsets


def test_stratified_subset_per_class_counts_and_determinism():
    y = torch.cat([torch.full((n,), c) for c, n in enumerate([100, 37, 5, 1])])
    y = y[torch.randperm(len(y), generator=torch.Generator().manual_seed(3))]
    idx = stratified_subset(y, 0.1, seed=7)
    assert idx.dtype == torch.int64 and torch.equal(idx, idx.sort().values)
    assert len(set(idx.tolist())) == len(idx)
    counts = torch.bincount(y[idx], minlength=4).tolist()
    assert counts == [10, 4, 1, 1]  # round(fraction * n_c), at least 1
    assert torch.equal(idx, stratified_subset(y, 0.1, seed=7))
    assert not torch.equal(idx, stratified_subset(y, 0.1, seed=8))
    assert torch.equal(stratified_subset(y, 1.0, seed=0), torch.arange(len(y)))
    for bad in (0, 1.01, -1):
        with pytest.raises(ValueError, match=r"\(0, 1\]"):
            stratified_subset(y, bad)


def test_fraction_subsets_train_split_only(tmp_path, digits):
    full = digits
    part = load_task("digits", root=tmp_path, fraction=0.1, seed=1)
    assert len(part.test_y) == len(full.test_y)
    for c in range(10):
        n_c = int((full.train_y == c).sum())
        assert int((part.train_y == c).sum()) == math.floor(0.1 * n_c + 0.5)
    again = load_task("digits", root=tmp_path, fraction=0.1, seed=1)
    assert torch.equal(part.train_x, again.train_x)


# --------------------------------------------------------------------------- batching


def test_batches_cover_every_sample_once_per_epoch():
    x = torch.arange(103, dtype=torch.float32).view(-1, 1, 1, 1)
    y = torch.arange(103)
    gen = torch.Generator().manual_seed(0)
    epochs = []
    for _ in range(2):
        seen = []
        for xb, yb in batches(x, y, 16, shuffle=True, generator=gen):
            assert torch.equal(xb.flatten().long(), yb) and len(yb) <= 16
            seen.append(yb)
        order = torch.cat(seen)
        assert sorted(order.tolist()) == list(range(103))
        epochs.append(order)
    assert not torch.equal(epochs[0], epochs[1])  # reshuffled each epoch
    plain = torch.cat([yb for _, yb in batches(x, y, 16, shuffle=False)])
    assert torch.equal(plain, y)
    dropped = [len(yb) for _, yb in batches(x, y, 16, shuffle=True, drop_last=True)]
    assert dropped == [16] * 6
    same = [
        yb for _, yb in batches(x, y, 50, shuffle=True, generator=torch.Generator().manual_seed(5))
    ]
    again = [
        yb for _, yb in batches(x, y, 50, shuffle=True, generator=torch.Generator().manual_seed(5))
    ]
    assert all(torch.equal(a, b) for a, b in zip(same, again, strict=True))
    moved = next(batches(x, y, 8, shuffle=False, device="cpu"))
    assert moved[0].device.type == "cpu"
    with pytest.raises(ValueError, match="batch_size=0"):
        batches(x, y, 0, shuffle=False)  # checked eagerly, not at the first next()
    with pytest.raises(ValueError, match="103 samples"):
        batches(x, y[:5], 4, shuffle=False)


def test_augment_flip_crop_is_batched_crop_and_flip():
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(64, 3, 8, 8)
    out = augment_flip_crop(x, pad=0, generator=gen)
    flipped = out.flip(-1)
    is_same = (out == x).flatten(1).all(1)
    is_flip = (flipped == x).flatten(1).all(1)
    assert bool((is_same | is_flip).all()) and 0 < int(is_flip.sum()) < 64
    assert torch.equal(augment_flip_crop(x, pad=0, flip=False, generator=gen), x)
    crop = augment_flip_crop(x, pad=2, flip=False, generator=gen)
    assert crop.shape == x.shape
    # every crop is a window of the zero-padded image
    padded = torch.nn.functional.pad(x, (2, 2, 2, 2))
    windows = padded.unfold(2, 8, 1).unfold(3, 8, 1)  # [N, C, 5, 5, 8, 8]
    match = (windows == crop[:, :, None, None]).all(-1).all(-1).all(1)  # [N, 5, 5]
    assert bool(match.flatten(1).any(1).all())
    aug = next(batches(x, torch.zeros(64, dtype=torch.long), 64, shuffle=False, augment=True))
    assert aug[0].shape == x.shape


def test_taskdata_properties_and_to(tmp_path):
    task = load_task("digits", root=tmp_path, image_size=12)
    assert (task.channels, task.image_size) == (1, 12)
    moved = task.to("cpu")
    assert moved is not task and torch.equal(moved.train_x, task.train_x)
    with pytest.raises(AttributeError):
        task.name = "x"  # frozen
    with pytest.raises(ValueError, match="labels outside"):
        TaskData("t", task.train_x, task.train_y + 10, task.test_x, task.test_y, 10, task.classes)


def test_data_root_defaults(monkeypatch, tmp_path):
    monkeypatch.setenv("RTSTUDY_DATA", str(tmp_path))
    assert data_root() == tmp_path
    monkeypatch.delenv("RTSTUDY_DATA")
    assert data_root() == Path.home() / ".cache" / "rtstudy" / "data"
    assert data_root(tmp_path / "x") == tmp_path / "x"


# --------------------------------------------------------------------------- torchvision + cache


def test_torchvision_mnist_layout_and_cache_round_trip(tmp_path):
    raw = tmp_path / "MNIST" / "raw"
    arrays = write_mnist_like(raw, n_train=40, n_test=20)  # torchvision wants plain idx here
    first = load_task("mnist", root=tmp_path)
    check_task(first, channels=1, size=28)
    assert torch.equal(first.train_x[:, 0], torch.from_numpy(arrays["train"][0]).float() / 255)
    assert first.classes[0].startswith("0")
    cache = tmp_path / ".tensors" / "mnist.safetensors"
    assert cache.is_file()
    assert [p.name for p in cache.parent.iterdir()] == ["mnist.safetensors"]  # no temp files
    for f in raw.iterdir():  # from now on only the cache can serve it
        f.unlink()
    second = load_task("mnist", root=tmp_path, channels=3, image_size=32)
    assert second.train_x.shape == (40, 3, 32, 32)
    third = load_task("mnist", root=tmp_path)
    for attr in ("train_x", "train_y", "test_x", "test_y"):
        assert torch.equal(getattr(first, attr), getattr(third, attr))
    assert third.classes == first.classes
    # a corrupt cache is ignored with a warning and rebuilt from the source
    write_mnist_like(raw, n_train=40, n_test=20)
    cache.write_bytes(b"garbage")
    with pytest.warns(UserWarning, match="unreadable tensor cache"):
        rebuilt = load_task("mnist", root=tmp_path)
    assert torch.equal(rebuilt.train_x, first.train_x)


def test_cache_is_never_a_pickle(tmp_path):
    write_mnist_like(tmp_path / "MNIST" / "raw")
    load_task("mnist", root=tmp_path)
    head = (tmp_path / ".tensors" / "mnist.safetensors").read_bytes()[:16]
    assert not head.startswith(b"\x80")  # pickle protocol marker
    assert int.from_bytes(head[:8], "little") < 10_000  # safetensors JSON header length


# --------------------------------------------------------------------------- ImageFolder


def test_imagefolder_loads_once_into_tensors_and_caches(tmp_path, monkeypatch):
    folder = tmp_path / "imgs"
    pixels = make_image_folder(folder, test_name="val")
    task = load_task(f"imagefolder:{folder}", root=tmp_path / "root")
    check_task(task, channels=3, size=12, num_classes=2)
    assert task.classes == ("cat", "dog")
    assert task.train_y.tolist() == [0, 0, 0, 1, 1, 1] and task.test_y.tolist() == [0, 0, 1, 1]
    expected = torch.from_numpy(pixels["train"][0]).permute(2, 0, 1).float() / 255
    assert torch.equal(task.train_x[0], expected)
    caches = list((tmp_path / "root" / ".tensors").glob("imagefolder-*.safetensors"))
    assert len(caches) == 1

    def no_decoding(*args, **kwargs):
        raise AssertionError("decoded again despite the cache")

    monkeypatch.setattr(D, "_decode_images", no_decoding)
    again = load_task(f"imagefolder:{folder}", root=tmp_path / "root", channels=1)
    assert again.train_x.shape == (6, 1, 12, 12)


def test_imagefolder_mixed_sizes_need_image_size(tmp_path):
    folder = tmp_path / "mixed"
    make_image_folder(folder, sizes=[10, 14])
    with pytest.raises(ValueError, match="image_size"):
        load_task(f"imagefolder:{folder}", root=tmp_path)
    task = load_task(f"imagefolder:{folder}", root=tmp_path, image_size=8)
    check_task(task, channels=3, size=8, num_classes=2)


def test_imagefolder_missing_split_and_corrupt_image(tmp_path):
    folder = tmp_path / "half"
    (folder / "train" / "a").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match="test"):
        load_task(f"imagefolder:{folder}", root=tmp_path)
    bad = tmp_path / "bad"
    make_image_folder(bad)
    (bad / "train" / "cat" / "0.png").write_bytes(b"not a png")
    with pytest.raises(ValueError, match="0.png"):
        load_task(f"imagefolder:{bad}", root=tmp_path)
    assert not os.path.exists(tmp_path / ".tensors") or not any(
        p.suffix == ".tmp" for p in (tmp_path / ".tensors").iterdir()
    )


def test_torchvision_layouts_nchw_and_label_attributes(tmp_path, monkeypatch):
    """SVHN stores NCHW + labels and has no class names (CIFAR's batches: tests/test_paper.py)."""
    from types import SimpleNamespace

    rng = np.random.default_rng(2)
    nchw = rng.integers(0, 256, size=(6, 3, 4, 4), dtype=np.uint8)

    def fake(name, root, *, download, train):
        return SimpleNamespace(data=nchw, labels=np.arange(6) % 10)

    monkeypatch.setattr(D, "_torchvision_dataset", fake)
    svhn = load_task("svhn", root=tmp_path)
    assert svhn.num_classes == 10 and svhn.classes[3] == "3"
    assert torch.equal(svhn.test_x, torch.from_numpy(nchw).float() / 255)
    assert (tmp_path / ".tensors" / "svhn.safetensors").is_file()


def test_fashion_mnist_download_fallback_uses_torchvision_layout(
    tmp_path, monkeypatch, no_system_fashion
):
    calls = []

    def fake_download(name, root, *, download, train):
        calls.append((name, download))
        write_mnist_like(root / "FashionMNIST" / "raw", n_train=20, compress=True)

    monkeypatch.setattr(D, "_torchvision_dataset", fake_download)
    task = load_task("fashion_mnist", root=tmp_path, download=True)
    assert calls == [("fashion_mnist", True)] and len(task.train_y) == 20
