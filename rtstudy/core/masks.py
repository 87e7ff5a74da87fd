"""Applying, storing and analysing masks.

A mask is ``dict[str, torch.Tensor]`` of bool tensors keyed by parameter name (e.g.
``"net.layer1.0.conv1.weight"``), each the shape of its parameter; ``True`` = kept.

*Weight entries* are the entries with two or more dimensions (conv and linear weights);
they are what a ticket prunes and what every analytic here measures. A channel ticket
(``rtstudy.core.tickets``, pattern ``"channel"``) also carries 1-D *companion entries*: the
affine ``weight`` and ``bias`` of the batch-norm layer after each pruned conv, ``False``
at the pruned filters, so that a pruned filter's channel is exactly zero after its BN
(otherwise it would carry the constant BN bias into the next conv). ``apply_mask``
treats every entry alike; the analytics skip companion entries.

Applying a mask (``apply_mask``) zeroes the pruned weights now and, given an optimiser,
again after every ``optimizer.step()`` (a step post-hook), so they stay exactly zero
through SGD with momentum and weight decay, Adam, etc. The hook costs one fused
multiply over the masked tensors per step.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

import torch
import torch.nn as nn

from rtstudy.core.checks import check_int, check_type
from rtstudy.core.store import load_tensors, save_tensors

Mask = dict[str, torch.Tensor]
MASK_FORMAT = "rtstudy-mask/1"


# ----------------------------------------------------------------------------- validation
def check_mask(mask: Mapping[str, torch.Tensor], *, name: str = "mask") -> None:
    """Raise ``ValueError`` unless ``mask`` is a non-empty dict of bool tensors."""
    check_type(name, mask, Mapping, "a dict of bool tensors")
    for key, value in mask.items():
        check_type(f"{name} entry {key!r}", value, torch.Tensor, "a bool tensor")
        if value.dtype != torch.bool:
            raise ValueError(f"{name} entry {key!r} has dtype {value.dtype}; masks hold torch.bool")


def check_mask_fits(model: nn.Module, mask: Mapping[str, torch.Tensor], *, name: str = "mask") -> None:
    """Raise ``ValueError`` naming every key the model lacks and every shape mismatch."""
    check_mask(mask, name=name)
    params = dict(model.named_parameters())
    unknown = [k for k in mask if k not in params]
    if unknown:
        near = sorted(k for k in params if k.endswith(".weight"))[:6]
        raise ValueError(
            f"{name} has keys the model does not have: {unknown[:5]}"
            f"{'...' if len(unknown) > 5 else ''}; the model's parameters are e.g. {near}"
        )
    bad = [
        f"{k}: mask {tuple(v.shape)} vs model {tuple(params[k].shape)}"
        for k, v in mask.items()
        if tuple(v.shape) != tuple(params[k].shape)
    ]
    if bad:
        raise ValueError(f"{name} does not fit the model, shape mismatches: {bad[:5]}")


def _check_same_layout(a: Mapping[str, torch.Tensor], b: Mapping[str, torch.Tensor]) -> None:
    check_mask(a, name="first mask")
    check_mask(b, name="second mask")
    if set(a) != set(b):
        only_a = sorted(set(a) - set(b))
        only_b = sorted(set(b) - set(a))
        raise ValueError(
            f"masks have different keys: only in the first {only_a[:5]}, only in the second {only_b[:5]}"
        )
    bad = [f"{k}: {tuple(a[k].shape)} vs {tuple(b[k].shape)}" for k in a if a[k].shape != b[k].shape]
    if bad:
        raise ValueError(f"masks have different shapes: {bad[:5]}")


def weight_entries(mask: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The entries with >= 2 dims (conv/linear weights); all entries if there are none."""
    out = {k: v for k, v in mask.items() if v.dim() >= 2}
    return out if out else dict(mask)


# ----------------------------------------------------------------------------- applying
class MaskHandle:
    """A mask bound to a model: ``apply()`` zeroes, ``attach(opt)`` keeps zero, ``remove()``."""

    def __init__(self, model: nn.Module, mask: Mapping[str, torch.Tensor]):
        params = dict(model.named_parameters())
        self.model = model
        self.mask = {k: v for k, v in mask.items()}
        self.names = [k for k in mask if not bool(mask[k].all())]  # all-kept entries cost nothing
        self.params = [params[k] for k in self.names]
        self._hooks: list = []
        self._layout: list | None = None
        self._float: list[torch.Tensor] = []
        self._refresh()

    def _signature(self) -> list:
        return [(p.device, p.dtype, p.stride()) for p in self.params]

    def _refresh(self) -> None:
        """(Re)build the float 0/1 masks on each parameter's device, dtype and layout."""
        floats = []
        for name, p in zip(self.names, self.params, strict=True):
            f = torch.empty_like(p, requires_grad=False)  # keeps device, dtype and strides
            f.copy_(self.mask[name])
            floats.append(f)
        self._float = floats
        self._layout = self._signature()

    @torch.no_grad()
    def apply(self) -> None:
        """Zero the pruned weights in place (one fused multiply)."""
        if not self.params:
            return
        if self._signature() != self._layout:  # the model moved (device/dtype/memory format)
            self._refresh()
        torch._foreach_mul_(self.params, self._float)

    def attach(self, optimizer: torch.optim.Optimizer) -> MaskHandle:
        """Re-zero the pruned weights after every ``optimizer.step()``."""
        self._hooks.append(optimizer.register_step_post_hook(lambda opt, args, kwargs: self.apply()))
        return self

    def remove(self) -> None:
        """Detach from every optimiser (the weights stay as they are)."""
        for hook in self._hooks:
            hook.remove()
        self._hooks.clear()

    @property
    def attached(self) -> bool:
        return bool(self._hooks)


def check_mask_covers(model: nn.Module, mask: Mapping[str, torch.Tensor], *, name: str = "mask") -> None:
    """Raise ``ValueError`` unless ``mask`` has an entry for every prunable weight of ``model``
    (a mask drawn from another architecture covers only part of it)."""
    from rtstudy.core.prunable import prunable_names

    wanted = prunable_names(model)
    missing = [k for k in wanted if k not in mask]
    if missing:
        raise ValueError(
            f"{name} covers {len(wanted) - len(missing)} of the model's {len(wanted)} prunable "
            f"weights; it lacks {missing[:5]}{'...' if len(missing) > 5 else ''}. Was it drawn "
            f"from another architecture? Pass partial=True to apply a partial mask on purpose."
        )


def apply_mask(
    model: nn.Module, mask: Mapping[str, torch.Tensor], optimizer: torch.optim.Optimizer | None = None,
    *, partial: bool = False,
) -> MaskHandle:
    """Zero the pruned weights of ``model`` now and, with ``optimizer``, after every step.

    Checks every key and shape against the model first, and (unless ``partial=True``) that
    the mask covers every prunable weight (``ValueError`` naming what is wrong). Returns a
    ``MaskHandle``; ``handle.remove()`` stops the re-zeroing, ``handle.attach(opt)`` adds one.
    """
    check_mask_fits(model, mask)
    if not partial:
        check_mask_covers(model, mask)
    handle = MaskHandle(model, mask)
    handle.apply()
    if optimizer is not None:
        handle.attach(optimizer)
    return handle


# ----------------------------------------------------------------------------- storing
class LoadedMask(dict):
    """A mask read from disk: a plain ``dict`` of bool tensors plus ``.meta`` (a dict)."""

    meta: dict


def architecture(model: nn.Module) -> dict:
    """What a saved mask records of the model it was drawn from: its class, its build spec
    (if it has one) and the names and shapes of its prunable weights."""
    from rtstudy.core.prunable import prunable_weights

    return {"class": type(model).__name__, "spec": getattr(model, "spec", None),
            "prunable": {k: list(w.shape) for k, w in prunable_weights(model).items()}}


def save_mask(path: str | Path, mask: Mapping[str, torch.Tensor], meta: dict | None = None, *,
              model: nn.Module | None = None) -> None:
    """Write a mask as safetensors (bool tensors) with ``meta`` as JSON, atomically; with
    ``model`` (the model it was drawn from), its ``architecture`` is recorded too."""
    check_mask(mask)
    meta = dict(meta or {})
    if model is not None:
        check_mask_fits(model, mask)
        meta["architecture"] = architecture(model)
    text = json.dumps(meta, sort_keys=True, default=str)
    save_tensors(path, dict(mask), {"format": MASK_FORMAT, "meta": text})


def load_mask(path: str | Path, model: nn.Module | None = None, *, partial: bool = False) -> LoadedMask:
    """Read a mask written by ``save_mask``; with ``model``, check that it was drawn from
    the same architecture (when recorded), fits it and covers it (unless ``partial``).

    A missing file is ``FileNotFoundError``; a truncated/corrupt file, a non-bool entry
    or a mask that does not fit ``model`` is ``ValueError``.
    """
    tensors = load_tensors(path)
    try:
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as f:
            header = f.metadata() or {}
        meta = json.loads(header.get("meta", "{}"))
    except (json.JSONDecodeError, OSError, RuntimeError) as exc:
        raise ValueError(f"mask file {path} has unreadable metadata ({exc})") from exc
    if not isinstance(meta, dict):
        raise ValueError(f"mask file {path} has metadata {meta!r}; expected a JSON object")
    check_mask(tensors, name=f"mask file {path}")
    if model is not None:
        recorded = meta.get("architecture")
        if recorded is not None and not partial:
            here = architecture(model)
            if recorded.get("prunable") != here["prunable"]:
                raise ValueError(
                    f"mask file {path} was drawn from a {recorded.get('class')} "
                    f"({(recorded.get('spec') or {}).get('name', '?')}, {len(recorded.get('prunable', {}))} "
                    f"prunable weights); the model is a {here['class']} "
                    f"({(here['spec'] or {}).get('name', '?')}, {len(here['prunable'])} prunable weights)"
                )
        check_mask_fits(model, tensors, name=f"mask file {path}")
        if not partial:
            check_mask_covers(model, tensors, name=f"mask file {path}")
    out = LoadedMask(tensors)
    out.meta = meta
    return out


# ----------------------------------------------------------------------------- analytics
def sparsity(mask: Mapping[str, torch.Tensor]) -> float:
    """Fraction of pruned weights over all weight entries (companion BN entries skipped)."""
    check_mask(mask)
    entries = weight_entries(mask)
    total = sum(v.numel() for v in entries.values())
    kept = sum(int(v.sum()) for v in entries.values())
    return (total - kept) / total if total else 0.0


def layer_sparsity(mask: Mapping[str, torch.Tensor]) -> dict[str, float]:
    """Fraction pruned per weight entry."""
    check_mask(mask)
    return {k: 1.0 - float(v.float().mean()) if v.numel() else 0.0 for k, v in weight_entries(mask).items()}


def _iou(a: torch.Tensor, b: torch.Tensor) -> tuple[int, int]:
    return int((a & b).sum()), int((a | b).sum())


def iou(a: Mapping[str, torch.Tensor], b: Mapping[str, torch.Tensor]) -> float:
    """Intersection over union of the KEPT weights of two masks (1 = same, 0 = disjoint)."""
    _check_same_layout(a, b)
    inter = union = 0
    for k in weight_entries(a):
        i, u = _iou(a[k], b[k].to(a[k].device))
        inter, union = inter + i, union + u
    return inter / union if union else 1.0


def layer_iou(a: Mapping[str, torch.Tensor], b: Mapping[str, torch.Tensor]) -> dict[str, float]:
    """IoU of the kept weights per weight entry."""
    _check_same_layout(a, b)
    out = {}
    for k in weight_entries(a):
        i, u = _iou(a[k], b[k].to(a[k].device))
        out[k] = i / u if u else 1.0
    return out


def hamming(a: Mapping[str, torch.Tensor], b: Mapping[str, torch.Tensor], *, normalized: bool = False) -> int | float:
    """How many weights the masks disagree on (``normalized``: as a fraction of all)."""
    _check_same_layout(a, b)
    entries = weight_entries(a)
    diff = sum(int((a[k] != b[k].to(a[k].device)).sum()) for k in entries)
    if not normalized:
        return diff
    total = sum(v.numel() for v in entries.values())
    return diff / total if total else 0.0


def channel_survival(mask: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Per weight entry, the fraction of kept weights in each output filter (shape [O])."""
    check_mask(mask)
    return {k: v.reshape(v.shape[0], -1).float().mean(1) for k, v in weight_entries(mask).items()}


def surviving_channels(mask: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Per weight entry, the indices (LongTensor) of output filters with any kept weight."""
    check_mask(mask)
    return {
        k: torch.nonzero(v.reshape(v.shape[0], -1).any(1)).flatten()
        for k, v in weight_entries(mask).items()
    }


def nm_groups(weight_mask: torch.Tensor, m: int) -> torch.Tensor:
    """The N:M groups of one weight mask: bool ``[O, kh*kw*I/m, m]``.

    Groups run along the input dimension, as ``tickets`` draws them: for a conv
    ``[O, I, kh, kw]`` the m consecutive inputs at each (o, kh, kw); for a linear
    ``[O, I]`` m consecutive inputs. ``.sum(-1)`` is the kept-count heatmap.
    """
    check_int("m", m, 1)
    if weight_mask.dim() < 2:
        raise ValueError(f"nm_groups needs a conv or linear weight mask, got shape {tuple(weight_mask.shape)}")
    inputs = weight_mask.shape[1]
    if inputs % m:
        raise ValueError(f"m={m} does not divide the input dimension {inputs} of shape {tuple(weight_mask.shape)}")
    w = weight_mask if weight_mask.dim() == 2 else weight_mask.movedim(1, -1)  # [O, kh, kw, I]
    return w.reshape(weight_mask.shape[0], -1, m)


def layer_matrix(mask_tensor: torch.Tensor) -> torch.Tensor:
    """A 2-D view for heatmaps: filters x (inputs * kernel); a 1-D entry becomes ``[C, 1]``."""
    if mask_tensor.dim() == 0:
        raise ValueError("layer_matrix needs a tensor with at least one dimension, got a scalar")
    return mask_tensor.reshape(mask_tensor.shape[0], -1)


def complement(mask: Mapping[str, torch.Tensor]) -> Mask:
    """Kept <-> pruned (every entry)."""
    check_mask(mask)
    return {k: ~v for k, v in mask.items()}
