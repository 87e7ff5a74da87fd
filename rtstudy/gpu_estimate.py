"""GPU-hours of a plan: its training work (``Plan.work``, clean-step examples) times the
FLOPs of one training step of the profile's model, over a GPU's sustained FLOP/s.

The FLOP/s come from a measured bench figure on a GPU when ``reports/gpu/bench.json`` (or
``reports/bench.json``) holds one (its clean img/s and the model it names), otherwise from
a stated assumption: a named GPU sustains ``ASSUMED_UTILISATION`` of its dense bf16 peak.
Evaluation (robust accuracy) and notebooks come on top.
"""

from __future__ import annotations

import functools
import json
import re
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
#: Dense bf16 tensor-core peaks (FLOP/s) from the vendors' data sheets.
GPU_PEAKS = {"NVIDIA A100": 312e12, "NVIDIA H100 SXM": 989e12}
ASSUMED_UTILISATION = 0.3
TRAIN_STEP_FLOPS = 3  # forward + backward = 3 forward passes


@functools.lru_cache(maxsize=32)
def forward_flops(model: str, image_size: int, channels: int = 3, width: float = 1.0,
                  num_classes: int = 10) -> float:
    """FLOPs of one image's forward pass (counted on the meta device: nothing is computed)."""
    from torch.utils.flop_counter import FlopCounterMode

    from rtstudy.vision.models import build_model

    with torch.device("meta"):
        net = build_model(model, num_classes, in_channels=channels, image_size=image_size,
                          width=width).eval()
        x = torch.zeros(1, channels, image_size, image_size)
    with FlopCounterMode(display=False) as counter:
        net(x)
    return float(counter.get_total_flops())


def profile_model(profile) -> tuple[str, int, int, float]:
    """``(model name, image size, channels, width)`` of the profile's networks."""
    from rtstudy.paper_profiles import PretrainedProfile
    from rtstudy.vision.pretrained import model_name

    name = model_name(profile.model) if isinstance(profile, PretrainedProfile) else profile.model
    return name, profile.image_size, profile.channels, profile.width


def measured_gpu(paths: tuple[Path, ...] = (ROOT / "reports" / "gpu" / "bench.json",
                                           ROOT / "reports" / "bench.json")) -> dict | None:
    """A bench measured on a GPU: ``{"device", "img_per_s", "model", "width", "image_size"}``."""
    for path in paths:
        try:
            bench = json.loads(path.read_text())
            device = bench["_machine"]["device"]
            entry = bench["train_img_per_s_clean"]
        except (OSError, ValueError, KeyError, TypeError):
            continue
        m = re.match(r"(\S+) w([\d.]+) at (\d+)px", entry.get("note", ""))
        if device.startswith("CPU") or not m:
            continue
        return {"device": device, "img_per_s": float(entry["value"]), "model": m[1],
                "width": float(m[2]), "image_size": int(m[3]), "channels": 3}
    return None


def gpu_hours(plan, profile) -> list[str]:
    """Lines of the estimate: the measured GPU (if any), then each assumed one."""
    examples = sum(plan.work().values())
    name, size, channels, width = profile_model(profile)
    step = TRAIN_STEP_FLOPS * forward_flops(name, size, channels, width)
    total = examples * step
    lines = [f"GPU estimate: {examples:,.0f} clean-step examples of {name} at {size} px "
             f"({step / 1e9:.2f} GFLOP per example trained), training only"]
    bench = measured_gpu()
    if bench is not None:
        rate = bench["img_per_s"] * TRAIN_STEP_FLOPS * forward_flops(
            bench["model"], bench["image_size"], bench["channels"], bench["width"])
        lines.append(f"  ~{total / rate / 3600:,.1f} GPU-hours on {bench['device']} (measured by the "
                     f"bench: {bench['img_per_s']:,.0f} img/s of {bench['model']} at "
                     f"{bench['image_size']} px = {rate / 1e12:.0f} TFLOP/s sustained)")
    for gpu, peak in GPU_PEAKS.items():
        rate = peak * ASSUMED_UTILISATION
        lines.append(f"  ~{total / rate / 3600:,.1f} GPU-hours on an {gpu} (assumed: "
                     f"{ASSUMED_UTILISATION:.0%} of its {peak / 1e12:.0f} TFLOP/s bf16 peak; "
                     f"not measured)")
    return lines
