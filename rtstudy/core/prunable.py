"""Which weights a ticket prunes: the model's own choice, or every conv/linear but stem and head.

A model (of any track) that defines ``prunable_names()`` says itself (a BERT encoder's
linear layers, say); otherwise every conv and linear weight is prunable except the first
conv (the stem) and the last linear (the classifier).
"""

from __future__ import annotations

import torch
import torch.nn as nn


def prunable_names(model: nn.Module, include_first: bool = False, include_classifier: bool = False) -> list[str]:
    """Names of the prunable weights: the model's own ``prunable_names()`` if it has one, else
    every conv and linear weight in registration order except the first conv (the stem) and
    the last linear (the classifier) unless asked."""
    own = getattr(model, "prunable_names", None)
    if callable(own) and not (include_first or include_classifier):
        return list(own())
    convs, linears = [], []
    order = []
    for mod_name, mod in model.named_modules():
        if isinstance(mod, (nn.Conv1d, nn.Conv2d, nn.Conv3d)):
            convs.append(mod_name)
        elif isinstance(mod, nn.Linear):
            linears.append(mod_name)
        else:
            continue
        order.append(mod_name)
    skip = set()
    if convs and not include_first:
        skip.add(convs[0])
    if linears and not include_classifier:
        skip.add(linears[-1])
    return [f"{n}.weight" if n else "weight" for n in order if n not in skip]


def prunable_weights(model: nn.Module, include_first: bool = False, include_classifier: bool = False) -> dict[str, torch.Tensor]:
    """``{name: weight}`` (detached) for ``prunable_names``."""
    params = dict(model.named_parameters())
    return {k: params[k].detach() for k in prunable_names(model, include_first, include_classifier)}
