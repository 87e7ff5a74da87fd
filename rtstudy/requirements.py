"""The files a plan needs before it runs: datasets and pretrained weights, where each is
looked for, and how to get it.

    reqs = plan_requirements(plan)     # every dataset and weights file the plan reads
    print(describe_requirements(reqs))
    check_requirements(reqs)           # one FileNotFoundError listing every missing file

Nothing here downloads or decodes: presence is checked by path (torchvision's layouts,
the tensor cache, an ImageFolder's split folders, a weights file or its conversion).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from rtstudy.vision import data as D
from rtstudy.vision.natural_tasks import FINE_GRAINED

#: task -> files (relative to the data root) whose presence means it can load.
TASK_FILES = {
    "cifar10": ("cifar-10-batches-py/data_batch_1", "cifar-10-batches-py/test_batch",
                "cifar-10-batches-py/batches.meta"),
    "cifar100": ("cifar-100-python/train", "cifar-100-python/test", "cifar-100-python/meta"),
    "svhn": ("train_32x32.mat", "test_32x32.mat"),
    "stl10": ("stl10_binary/train_X.bin", "stl10_binary/test_X.bin"),
    "mnist": ("MNIST/raw/train-images-idx3-ubyte",),
    "kmnist": ("KMNIST/raw/train-images-idx3-ubyte",),
    "flowers102": ("flowers-102/jpg", "flowers-102/imagelabels.mat", "flowers-102/setid.mat"),
    "dtd": ("dtd/dtd/images", "dtd/dtd/labels"),
    "pets": ("oxford-iiit-pet/images", "oxford-iiit-pet/annotations"),
    "food101": ("food-101/images", "food-101/meta"),
    "imagenet": ("imagenet/val",),
}


@dataclass(frozen=True)
class Requirement:
    """One thing a plan reads: what it is, where it was found (``None``: missing), where it
    is looked for, and how to get it."""

    what: str
    found: Path | None
    looked_in: tuple[Path, ...]
    how: str

    @property
    def missing(self) -> bool:
        return self.found is None


def task_requirement(task: str, root: Path | None = None) -> Requirement | None:
    """What loading ``task`` needs (``None``: an offline task bundled with a package)."""
    root = D.data_root(root)
    if task.startswith(D.IMAGEFOLDER_PREFIX):
        folder = Path(task[len(D.IMAGEFOLDER_PREFIX):]).expanduser()
        ok = (folder / "train").is_dir() and any((folder / s).is_dir() for s in ("test", "val"))
        return Requirement(f"dataset {task}", folder if ok else None, (folder,),
                           f"an ImageFolder: {folder}/train/<class>/* and {folder}/test/<class>/* "
                           f"(or val/)")
    base = task.rpartition(":")[0] if task.rpartition(":")[0] in D.TASKS else task
    spec = D.TASKS.get(base)
    if spec is None:
        raise ValueError(f"unknown task {task!r}; available: {', '.join(D.available_tasks())}")
    if spec.offline:
        return None
    files = TASK_FILES.get(base, ())
    cached = sorted((root / ".tensors").glob(f"{base}*.safetensors")) if (root / ".tensors").is_dir() else []
    ok = cached[0] if cached else (root / files[0] if files and all((root / f).exists() for f in files) else None)
    how = (f"python -c \"from rtstudy.vision.data import load_task; load_task('{base}', download=True)\" "
           f"on a machine with a network (it writes under {root}), or copy "
           f"{', '.join(files) or 'its files'} there (RTSTUDY_DATA picks another folder)")
    if base == "imagenet":
        how = ("the ILSVRC2012 validation images from image-net.org, one folder per class (torchvision's "
               f"ImageNet val layout), in {root / 'imagenet' / 'val'}")
    elif base in FINE_GRAINED:
        how += f" ({FINE_GRAINED[base][4]})"
    return Requirement(f"dataset {base}", ok, (root,), how)


def plan_requirements(plan) -> list[Requirement]:
    """Every dataset and pretrained weights file the tasks of ``plan`` read."""
    from rtstudy.vision.pretrained import PretrainedSource

    out: dict[str, Requirement] = {}
    names: dict[str, None] = {}
    sources: set = set()
    for task in plan.tasks.values():
        source = task.source
        for name in (getattr(source, "task", None), getattr(task.desc, "target", None)):
            if isinstance(name, str) and _is_image_task(name):
                names[name] = None
        if isinstance(source, PretrainedSource) and source not in sources:
            sources.add(source)
            loc = source.location()
            out.setdefault(loc.name, Requirement(f"weights {loc.name} ({source.config_label})",
                                                 loc.found, loc.looked_in, loc.how))
    for name in names:
        req = task_requirement(name)  # a shifted task needs its base task's files
        if req is not None:
            out.setdefault(req.what, req)
    return sorted(out.values(), key=lambda r: (not r.what.startswith("dataset"), r.what))


def _is_image_task(name: str) -> bool:
    base = name.rpartition(":")[0] if name.rpartition(":")[0] in D.TASKS else name
    return base in D.TASKS or name.startswith(D.IMAGEFOLDER_PREFIX)


def describe_requirements(reqs: list[Requirement]) -> str:
    """One line per file: found (where) or missing (where it is looked for)."""
    if not reqs:
        return "files: none beyond the packages' own data"
    lines = [f"files: {sum(not r.missing for r in reqs)} of {len(reqs)} found"]
    for r in reqs:
        state = f"found {r.found}" if not r.missing else \
            f"MISSING (looked in {', '.join(map(str, r.looked_in))})"
        lines.append(f"  {r.what}: {state}")
    return "\n".join(lines)


def check_requirements(reqs: list[Requirement]) -> None:
    """Raise one ``FileNotFoundError`` naming every missing file and how to get it."""
    missing = [r for r in reqs if r.missing]
    if missing:
        items = "\n".join(f"  - {r.what}: looked in {', '.join(map(str, r.looked_in))}; to get it: {r.how}"
                          for r in missing)
        raise FileNotFoundError(f"{len(missing)} file(s) this plan needs are missing; nothing was run:\n{items}")
