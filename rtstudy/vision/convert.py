"""Convert a trusted robustness-library checkpoint to safetensors + a JSON sidecar, once.

    python -m rtstudy.vision.convert FILE --trust [--arch resnet18 --norm l2 --eps 3] [--width 1]

A zoo file (``resnet18_l2_eps3.ckpt``) may be a dill pickle that a weights-only load
refuses; this is the one place that unpickles it, and only with ``--trust``. It writes
``<stem>.safetensors`` (the network's weights under torchvision's names) and
``<stem>.json`` (arch, norm, eps, the sha256 of the original and of the weights, the
normaliser, the epoch) beside FILE, each atomically, the sidecar last. The architecture,
norm and eps default to what the zoo's file name says; the weights must fit that
architecture exactly.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import tempfile
from pathlib import Path

import torch

from rtstudy.core.store import atomic_write_text
from rtstudy.vision import checkpoints as ck
from rtstudy.vision.pretrained import (
    ARCHS,
    IMAGENET_MEAN,
    IMAGENET_STD,
    ZOO_EPS,
    network_from_state,
)

ZOO_NAME = re.compile(r"^(?P<arch>[a-z0-9_]+?)_(?P<norm>l2|linf)_eps(?P<eps>[0-9.]+)$")


def declared_from_name(path: Path) -> dict:
    """``resnet18_linf_eps4.0.ckpt`` -> arch resnet18, norm linf, eps 4/255 (zoo names)."""
    m = ZOO_NAME.match(path.stem)
    if not m:
        return {}
    eps = float(m["eps"].rstrip("."))
    return {"arch": m["arch"], "norm": m["norm"], "eps": eps / 255 if m["norm"] == "linf" else eps}


def convert(path: str | Path, *, trust: bool, arch: str | None = None, norm: str | None = None,
            eps: float | None = None, width: float = 1.0) -> tuple[Path, Path]:
    """Write the conversion of ``path``; its (safetensors, sidecar) paths."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    declared = {**declared_from_name(path), **{k: v for k, v in
                                               (("arch", arch), ("norm", norm), ("eps", eps)) if v is not None}}
    missing = [k for k in ("arch", "norm", "eps") if k not in declared]
    if missing:
        raise ValueError(f"{path.name} is not a zoo file name (<arch>_<l2|linf>_eps<eps>.ckpt); "
                         f"give --{' --'.join(missing)}")
    if declared["arch"] not in ARCHS:
        raise ValueError(f"unknown architecture {declared['arch']!r}; allowed: {', '.join(ARCHS)}")
    if declared["norm"] not in ZOO_EPS:
        raise ValueError(f"unknown norm {declared['norm']!r}; allowed: {', '.join(ZOO_EPS)}")
    if declared["eps"] < 0:
        raise ValueError(f"eps must be >= 0, got {declared['eps']}")
    if not trust:
        raise PermissionError(f"converting {path} unpickles it, which runs whatever code it names; "
                              f"only do so for a file you trust, by adding --trust")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
    except ModuleNotFoundError as exc:
        raise ModuleNotFoundError(f"{path} needs the module {exc.name!r} to unpickle (robustness-"
                                  f"library files need dill: pip install dill)") from None
    except Exception as exc:
        raise ValueError(f"checkpoint {path} is truncated or unreadable ({type(exc).__name__}: "
                         f"{exc})") from None
    state, info = ck.zoo_network_state(ckpt, path)
    mean, std = info.get("mean", IMAGENET_MEAN), info.get("std", IMAGENET_STD)
    model = network_from_state(state, declared["arch"], width, 224, mean, std, where=str(path))
    weights_path, sidecar_path = ck.converted_paths(path)
    _save_safetensors_atomic({k: v.contiguous() for k, v in model.net.state_dict().items()}, weights_path)
    meta = {"format": ck.SIDECAR_FORMAT, "arch": declared["arch"], "width": width,
            "norm": declared["norm"], "eps": declared["eps"], "sha256": ck.sha256_of(path),
            "weights_sha256": ck.sha256_of(weights_path), "original": path.name,
            "mean": [float(m) for m in mean], "std": [float(s) for s in std], "epoch": info.get("epoch")}
    atomic_write_text(sidecar_path, json.dumps(meta, indent=1) + "\n")
    return weights_path, sidecar_path


def _save_safetensors_atomic(tensors: dict, path: Path) -> None:
    from safetensors.torch import save_file

    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        save_file(tensors, tmp)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("file", type=Path)
    ap.add_argument("--trust", action="store_true", help="unpickle FILE (only for a file you trust)")
    ap.add_argument("--arch", default=None, help=f"one of {', '.join(ARCHS)} (default: from the name)")
    ap.add_argument("--norm", default=None, choices=tuple(ZOO_EPS), help="default: from the name")
    ap.add_argument("--eps", type=float, default=None,
                    help="in pixel units (l-inf 4/255 = 0.0157); default: from the name")
    ap.add_argument("--width", type=float, default=1.0, help="width multiplier (1: the zoo's)")
    args = ap.parse_args(argv)
    try:
        weights, sidecar = convert(args.file, trust=args.trust, arch=args.arch, norm=args.norm,
                                   eps=args.eps, width=args.width)
    except (ValueError, OSError, PermissionError, ModuleNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {weights} and {sidecar}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
