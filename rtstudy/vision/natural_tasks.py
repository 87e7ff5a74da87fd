"""Natural-image tasks beyond the offline digits: CIFAR batches read safely, the fine-grained
torchvision sets, and ImageNet's validation images (a pretrained source's own accuracy).

* ``cifar10`` / ``cifar100``: torchvision's on-disk layout (``cifar-10-batches-py/``,
  ``cifar-100-python/``), pickled batches read by an unpickler that builds nothing but
  numpy arrays, lists, numbers and strings (``read_cifar``), so no checksum needs to vouch
  for the file and a few-image copy in the same layout loads too.
* ``flowers102``, ``dtd``, ``pets``, ``food101``: torchvision's classes (``download=True``
  on a machine with a network, or their layout under the data root), decoded once to
  ``DECODE_SIZE`` px squares (centre crop) and cached as uint8 tensors.
* ``imagenet``: ``<root>/imagenet/val/<wnid>/*`` (torchvision's ImageNet val layout), the
  test split only, for the accuracy of an ImageNet-pretrained source on its own task.

``TRAIN_SIZES`` holds each task's training-set size, so a plan can cost work whose data
is not downloaded yet.
"""

from __future__ import annotations

import pickle
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from rtstudy.vision import data as D

DECODE_SIZE = 128  # fine-grained sets: one resolution in the cache, resized per profile by load_task
#: Training-set sizes (torchvision's splits), for plans made before the data is here.
TRAIN_SIZES = {
    "cifar10": 50_000, "cifar100": 50_000, "svhn": 73_257, "stl10": 5_000, "mnist": 60_000,
    "kmnist": 60_000, "fashion_mnist": 60_000, "flowers102": 1_020, "dtd": 1_880, "pets": 3_680,
    "food101": 75_750, "imagenet": 0,
}

# ----------------------------------------------------------------------------- CIFAR
_CIFAR = {  # name -> (folder, train files, test files, meta file, label key, class-name key)
    "cifar10": ("cifar-10-batches-py", [f"data_batch_{i}" for i in range(1, 6)], ["test_batch"],
                "batches.meta", "labels", "label_names"),
    "cifar100": ("cifar-100-python", ["train"], ["test"], "meta", "fine_labels", "fine_label_names"),
}
_ARRAY_GLOBALS = {  # what a pickled numpy array needs, and nothing else
    ("numpy._core.multiarray", "_reconstruct"), ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.numeric", "_frombuffer"), ("numpy.core.numeric", "_frombuffer"),
    ("numpy._core.multiarray", "scalar"), ("numpy.core.multiarray", "scalar"),
    ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode"),
}


class _ArrayUnpickler(pickle.Unpickler):
    def __init__(self, fh, path: Path):
        super().__init__(fh, encoding="latin1")
        self.path = path

    def find_class(self, module: str, name: str):
        if (module, name) not in _ARRAY_GLOBALS:
            raise pickle.UnpicklingError(f"{self.path}: a CIFAR batch holds arrays, lists and "
                                         f"strings only; this file asks for {module}.{name}")
        return super().find_class(module.replace("numpy.core.", "numpy._core."), name)


def _unpickle(path: Path) -> dict:
    try:
        with open(path, "rb") as fh:
            obj = _ArrayUnpickler(fh, path).load()
    except (EOFError, pickle.UnpicklingError, ValueError, TypeError) as exc:
        raise ValueError(f"{path}: truncated or not a CIFAR batch ({exc})") from None
    if not isinstance(obj, dict):
        raise ValueError(f"{path}: a CIFAR batch is a dict, found {type(obj).__name__}")
    return {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in obj.items()}


def read_cifar(name: str, root: Path) -> D._Raw:
    """CIFAR-10/100 from torchvision's on-disk layout under ``root``."""
    folder, train, test, meta, label_key, names_key = _CIFAR[name]
    base = root / folder
    wanted = [base / f for f in (*train, *test, meta)]
    missing = [str(p) for p in wanted if not p.is_file()]
    if missing:
        raise FileNotFoundError(
            f"{name}: missing {', '.join(missing)} (torchvision's layout {folder}/ under {root}). To "
            f"get them: load_task({name!r}, download=True) on a machine with a network, or copy "
            f"{folder}/ into {root} (set RTSTUDY_DATA or root= to use another folder)")
    classes = tuple(str(c.decode() if isinstance(c, bytes) else c) for c in _unpickle(base / meta)[names_key])
    splits = []
    for files in (train, test):
        xs, ys = [], []
        for f in files:
            batch = _unpickle(base / f)
            x = np.asarray(batch.get("data"))
            if x.dtype != np.uint8 or x.ndim != 2 or x.shape[1] != 3 * 32 * 32:
                raise ValueError(f"{base / f}: 'data' must be uint8 [N, 3072], got {x.dtype} {x.shape}")
            y = np.asarray(batch.get(label_key, []), dtype=np.int64)
            if len(y) != len(x):
                raise ValueError(f"{base / f}: {len(x)} images but {len(y)} '{label_key}'")
            if len(y) and (y.min() < 0 or y.max() >= len(classes)):
                raise ValueError(f"{base / f}: labels outside [0, {len(classes) - 1}]")
            xs.append(x.reshape(-1, 3, 32, 32))
            ys.append(y)
        splits.append((torch.from_numpy(np.concatenate(xs)), torch.from_numpy(np.concatenate(ys))))
    (tx, ty), (vx, vy) = splits
    return D._Raw(tx, ty, vx, vy, classes)


def _cifar_loader(name: str) -> Callable[[Path, bool], D._Raw]:
    def load(root: Path, download: bool) -> D._Raw:
        if download and not (root / _CIFAR[name][0]).is_dir():
            D._torchvision_dataset(name, root, download=True, train=True)
        files = [root / _CIFAR[name][0] / f for f in (*_CIFAR[name][1], *_CIFAR[name][2])]
        stamp = "|".join(f"{p.stat().st_size}:{p.stat().st_mtime_ns}" for p in files if p.is_file())
        cache = root / ".tensors" / f"{name}.safetensors"
        raw = D._read_cache(cache, fingerprint=f"{name}|{stamp}")
        if raw is None:
            raw = read_cifar(name, root)
            D._write_cache(cache, raw, fingerprint=f"{name}|{stamp}")
        return raw

    return load


# ----------------------------------------------------------------------------- fine-grained
#: name -> (torchvision class, train split, test split, folder under root, description)
FINE_GRAINED = {
    "flowers102": ("Flowers102", "train", "test", "flowers-102/", "Oxford Flowers-102, 102 classes"),
    "dtd": ("DTD", "train", "test", "dtd/", "Describable Textures (partition 1), 47 classes"),
    "pets": ("OxfordIIITPet", "trainval", "test", "oxford-iiit-pet/", "Oxford-IIIT Pets, 37 classes"),
    "food101": ("Food101", "train", "test", "food-101/", "Food-101, 101 classes"),
}


def _square_uint8(image) -> np.ndarray:
    """A PIL image -> a ``DECODE_SIZE`` px square (centre crop, bilinear), HWC uint8 RGB."""
    from PIL import Image

    im = image.convert("RGB")
    w, h = im.size
    s = min(w, h)
    im = im.crop(((w - s) // 2, (h - s) // 2, (w - s) // 2 + s, (h - s) // 2 + s))
    return np.asarray(im.resize((DECODE_SIZE, DECODE_SIZE), Image.Resampling.BILINEAR))


def _fine_grained_split(name: str, root: Path, download: bool, split: str):
    import torchvision.datasets as tvd

    cls_name, *_, folder, _ = FINE_GRAINED[name]
    try:
        return getattr(tvd, cls_name)(root=str(root), split=split, download=download,
                                      transform=_square_uint8)
    except (RuntimeError, OSError) as exc:
        how = "the download failed; check the network or" if download else \
            "pass download=True on a machine with a network, or"
        raise FileNotFoundError(
            f"{name}: torchvision {cls_name} files missing or corrupt; looked in {root} (expects "
            f"{folder} there). To get them: {how} copy torchvision's layout ({folder}) into {root} "
            f"(set RTSTUDY_DATA or root= to use another folder). [{type(exc).__name__}: {exc}]"
        ) from None


def _fine_grained_loader(name: str) -> Callable[[Path, bool], D._Raw]:
    def load(root: Path, download: bool) -> D._Raw:
        cache = root / ".tensors" / f"{name}-{DECODE_SIZE}.safetensors"
        raw = D._read_cache(cache, fingerprint=f"{name}|{DECODE_SIZE}")
        if raw is not None:
            return raw
        _, train_split, test_split, *_ = FINE_GRAINED[name]
        splits = []
        for split in (train_split, test_split):
            ds = _fine_grained_split(name, root, download, split)
            pairs = [ds[i] for i in range(len(ds))]  # decoded once, then cached
            x = np.stack([p[0] for p in pairs]) if pairs else np.zeros((0, DECODE_SIZE, DECODE_SIZE, 3), np.uint8)
            splits.append((torch.from_numpy(x).permute(0, 3, 1, 2).contiguous(),
                           torch.tensor([int(p[1]) for p in pairs], dtype=torch.int64)))
        n_classes = int(max(int(s[1].max()) for s in splits if len(s[1])) + 1)
        classes = tuple(getattr(ds, "classes", None) or (str(i) for i in range(n_classes)))
        raw = D._Raw(splits[0][0], splits[0][1], splits[1][0], splits[1][1], classes)
        D._write_cache(cache, raw, fingerprint=f"{name}|{DECODE_SIZE}")
        return raw

    return load


# ----------------------------------------------------------------------------- ImageNet val
def _load_imagenet_val(root: Path, download: bool) -> D._Raw:
    """``<root>/imagenet/val/<class>/*``: the test split (no training split)."""
    from torchvision.datasets.folder import IMG_EXTENSIONS, find_classes, make_dataset

    folder = root / "imagenet" / "val"
    if not folder.is_dir():
        raise FileNotFoundError(
            f"imagenet: {folder}/ not found (ImageNet's validation images in one folder per "
            f"class, torchvision's ImageNet layout). To get them: the ILSVRC2012 validation set "
            f"from image-net.org, sorted into class folders, in {folder}; needed only for a "
            f"pretrained source's accuracy on its own task")
    classes, to_idx = find_classes(folder)
    items = make_dataset(folder, to_idx, IMG_EXTENSIONS)
    stamp = f"{len(items)}|{folder.stat().st_mtime_ns}|{DECODE_SIZE}"
    cache = root / ".tensors" / f"imagenet-val-{DECODE_SIZE}.safetensors"
    raw = D._read_cache(cache, fingerprint=stamp)
    if raw is not None:
        return raw
    from PIL import Image

    x = np.empty((len(items), DECODE_SIZE, DECODE_SIZE, 3), dtype=np.uint8)
    for i, (path, _) in enumerate(items):
        try:
            with Image.open(path) as im:
                x[i] = _square_uint8(im)
        except OSError as exc:
            raise ValueError(f"imagenet: cannot decode {path}: {exc}") from None
    test_x = torch.from_numpy(x).permute(0, 3, 1, 2).contiguous()
    test_y = torch.tensor([label for _, label in items], dtype=torch.int64)
    empty = torch.zeros((0, 3, DECODE_SIZE, DECODE_SIZE), dtype=torch.uint8)
    raw = D._Raw(empty, torch.zeros(0, dtype=torch.int64), test_x, test_y, tuple(classes))
    D._write_cache(cache, raw, fingerprint=stamp)
    return raw


# ----------------------------------------------------------------------------- registration
for _name in _CIFAR:
    D.TASKS[_name] = D.TaskSpec(_name, D.TASKS[_name].description, False, _cifar_loader(_name))
for _name, (_cls, _tr, _te, _folder, _desc) in FINE_GRAINED.items():
    D.TASKS[_name] = D.TaskSpec(_name, f"{_desc} (torchvision {_cls}, {_tr}/{_te})", False,
                                _fine_grained_loader(_name))
D.TASKS["imagenet"] = D.TaskSpec("imagenet", "ImageNet validation images (test split only)", False,
                                 _load_imagenet_val)


def train_size(task: str, channels: int = 3, image_size: int = 32) -> int:
    """The training-set size of ``task``: measured when its data loads, else ``TRAIN_SIZES``."""
    from rtstudy.vision.track import task_data

    try:
        return len(task_data(task, channels, image_size).train_y)
    except FileNotFoundError:
        base = task.rpartition(":")[0] if task.rpartition(":")[0] in TRAIN_SIZES else task
        if base not in TRAIN_SIZES:
            raise
        return TRAIN_SIZES[base]
