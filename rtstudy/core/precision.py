"""The numeric precision training runs in: bf16 autocast where the processor computes bf16
natively (AMX or AVX512-BF16 on a CPU, tensor cores on a GPU), fp32 elsewhere.

``choose_precision()`` answers once per process: ``$RTSTUDY_PRECISION`` (``fp32``,
``bf16`` or ``auto``) if set, else ``auto``, which asks the hardware. A recipe records the
precision it was trained in, so artifacts of the two never share a key; a recipe that
records none was trained in fp32.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

import torch

from rtstudy.core.checks import check_choice

PRECISIONS = ("fp32", "bf16")
CHOICES = (*PRECISIONS, "auto")
ENV = "RTSTUDY_PRECISION"


@functools.cache
def _cpu_flags() -> frozenset[str]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return frozenset()
    for line in text.splitlines():
        if line.startswith("flags"):
            return frozenset(line.split(":", 1)[1].split())
    return frozenset()


def cpu_model() -> str:
    """The processor's model name (``/proc/cpuinfo``), or ``unknown``."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"


def native_bf16(device: str | torch.device = "cpu") -> bool:
    """Whether ``device`` computes bf16 matrix products natively (not emulated in fp32)."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.get_device_capability(device)[0] >= 8
    if device.type != "cpu":
        return False
    return bool(_cpu_flags() & {"amx_bf16", "avx512_bf16"})


def choose_precision(requested: str | None = None, device: str | torch.device | None = None) -> str:
    """``fp32`` or ``bf16``: ``requested`` if it names one, else ``$RTSTUDY_PRECISION``, and
    ``auto`` (the default) picks bf16 exactly where ``device`` (default: CUDA if present,
    else the CPU) computes it natively."""
    name = "precision" if requested else f"${ENV}"
    requested = requested or os.environ.get(ENV) or "auto"
    check_choice(name, requested, CHOICES)
    if requested != "auto":
        return requested
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    return "bf16" if native_bf16(device) else "fp32"


def autocast(device: torch.device, precision: str):
    """The autocast context of ``precision`` on ``device`` (a no-op for fp32)."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16")
