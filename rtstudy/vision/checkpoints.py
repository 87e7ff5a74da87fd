"""Reading pretrained weight files safely: torchvision state dicts, robustness-library
checkpoints (the robust ImageNet zoo), and their converted safetensors + JSON sidecar.

Nothing here unpickles anything but tensors: ``torch.load(weights_only=True)`` reads a
file, and one that asks for other globals (a dill pickle of the robustness library can)
is refused with the globals it asked for and the command that converts it once the user
trusts it (``python -m rtstudy.vision.convert FILE --trust``, ``rtstudy.vision.convert``).
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import pickle
import zipfile
from pathlib import Path

import torch

SIDECAR_FORMAT = "rtstudy-pretrained-v1"
ZOO_PREFIXES = ("module.model.", "module.attacker.model.")  # the network, and the attacker's copy
ZOO_NORMALIZER = ("module.normalizer.new_mean", "module.normalizer.new_std")
ZOO_STATE_KEYS = ("model", "state_dict")  # newer files, older files


class UnsafeCheckpoint(ValueError):
    """A file that a weights-only load refuses: it asks to unpickle other globals."""


def sha256_of(path: str | Path) -> str:
    """The file's sha256 (hex), computed once per (path, size, mtime)."""
    st = os.stat(path)
    return _sha256(str(Path(path).resolve()), st.st_size, st.st_mtime_ns)


@functools.lru_cache(maxsize=256)
def _sha256(path: str, size: int, mtime_ns: int) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


def convert_command(path: str | Path) -> str:
    return f"python -m rtstudy.vision.convert {path} --trust"


def read_torch_file(path: str | Path) -> object:
    """``torch.load(path, weights_only=True)`` with errors that say what is wrong."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        asked = _unsafe_globals(path) or _globals_in_message(str(exc))
        if not asked:
            raise ValueError(
                f"checkpoint {path} is not a torch checkpoint a weights-only load can read"
                f"{_detail(str(exc))}: truncated, another format, or a pickle; if it is a pickle "
                f"you trust, convert it once with: {convert_command(path)}") from None
        raise UnsafeCheckpoint(
            f"checkpoint {path} asks to unpickle {', '.join(asked)}, which a weights-only load "
            f"refuses (a robustness-library file pickled with dill does). If you trust this "
            f"file, convert it once to safetensors with: {convert_command(path)}"
        ) from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError) as exc:
        raise ValueError(
            f"checkpoint {path} is truncated or not a torch checkpoint "
            f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})"
        ) from None


def _detail(text: str) -> str:
    """The weights-only unpickler's own reason, when its message gives one."""
    reason = text.split("WeightsUnpickler error:", 1)[1].strip().splitlines()[0] \
        if "WeightsUnpickler error:" in text and text.split("WeightsUnpickler error:", 1)[1].strip() else ""
    return f" ({reason[:200]})" if reason else ""


def _unsafe_globals(path: Path) -> list[str]:
    try:
        return list(torch.serialization.get_unsafe_globals_in_checkpoint(path))
    except Exception:  # a legacy (non-zip) file: the error text is all there is
        return []


def _globals_in_message(text: str) -> list[str]:
    out = []
    for line in text.splitlines():
        marker = "Unsupported global: GLOBAL "
        if marker in line:
            out.append(line.split(marker, 1)[1].split(" ")[0].strip(". "))
    return list(dict.fromkeys(o for o in out if o))


def zoo_network_state(ckpt: object, path: str | Path) -> tuple[dict[str, torch.Tensor], dict]:
    """The network's weights (torchvision key names) and the normaliser of a robustness-
    library checkpoint: ``{"model" | "state_dict": {module.model.* | module.attacker.model.*,
    module.normalizer.new_mean/new_std}, "optimizer", "schedule", "epoch"}``."""
    if not isinstance(ckpt, dict):
        raise ValueError(f"checkpoint {path} holds a {type(ckpt).__name__}, not a robustness-"
                         f"library dict with one of {ZOO_STATE_KEYS}")
    key = next((k for k in ZOO_STATE_KEYS if isinstance(ckpt.get(k), dict)), None)
    if key is None:
        raise ValueError(f"checkpoint {path} has no {' or '.join(map(repr, ZOO_STATE_KEYS))} entry "
                         f"(found {sorted(map(str, ckpt))[:6]}); robustness-library checkpoints do")
    state = ckpt[key]
    for prefix in ZOO_PREFIXES:
        net = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
        if net:
            break
    else:
        raise ValueError(f"checkpoint {path} has no keys starting with {' or '.join(ZOO_PREFIXES)} "
                         f"(found e.g. {sorted(state)[:3]}); robustness-library checkpoints do")
    info: dict = {"epoch": _plain(ckpt.get("epoch"))}
    mean, std = (state.get(k) for k in ZOO_NORMALIZER)
    if mean is not None and std is not None:
        info.update(mean=mean.flatten().tolist(), std=std.flatten().tolist())
    return net, info


def _plain(v):
    return v.item() if isinstance(v, torch.Tensor) and v.numel() == 1 else (
        v if isinstance(v, (int, float, str)) or v is None else str(v))


def plain_state(obj: object, path: str | Path) -> dict[str, torch.Tensor]:
    """A torchvision file: a flat ``{name: tensor}`` state dict."""
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ValueError(f"checkpoint {path} is not a flat state dict of tensors (torchvision's "
                         f"ImageNet weight files are)")
    return obj


# ----------------------------------------------------------------------------- sidecars
def converted_paths(path: str | Path) -> tuple[Path, Path]:
    """Where the conversion of ``path`` lives: ``<stem>.safetensors`` and ``<stem>.json``."""
    path = Path(path)
    return path.with_suffix(".safetensors"), path.with_suffix(".json")


def read_sidecar(path: str | Path) -> dict:
    """A converted file's JSON sidecar, checked for the fields it must have."""
    path = Path(path)
    try:
        meta = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ValueError(f"sidecar {path} cannot be read ({exc})") from None
    need = ("format", "arch", "norm", "eps", "sha256", "weights_sha256")
    missing = [k for k in need if k not in meta]
    if missing or meta.get("format") != SIDECAR_FORMAT:
        raise ValueError(f"sidecar {path} is not an rtstudy conversion (format {SIDECAR_FORMAT!r} "
                         f"with {', '.join(need)}); missing {missing}, format {meta.get('format')!r}")
    return meta


def read_converted(weights: Path, sidecar: Path) -> tuple[dict[str, torch.Tensor], dict]:
    """The converted network weights and their sidecar, after checking the weights' sha256."""
    from safetensors.torch import load_file

    meta = read_sidecar(sidecar)
    if not weights.is_file():
        raise FileNotFoundError(f"{weights} (named by {sidecar}) does not exist; convert again")
    digest = sha256_of(weights)
    if digest != meta["weights_sha256"]:
        raise ValueError(f"{weights} has sha256 {digest[:12]}…, its sidecar {sidecar} says "
                         f"{meta['weights_sha256'][:12]}…: truncated or changed since conversion; "
                         f"convert the original again")
    return load_file(str(weights)), meta
