"""Optimizer param groups from per-module learning-rate scales.

A module that has a float attribute ``lr_scale`` (set in its __init__ or afterwards:
``model.encoder.layers[0].lr_scale = 0.5``) scales the learning rate of every weight inside it,
its submodules' included; scales of nested modules multiply. The same convention as icefall's
``get_parameter_groups_with_lrs``, so models written for it keep their intent here.
"""

from typing import Dict, List

from torch import nn


def lr_scale_of_weights(model: nn.Module) -> Dict[str, float]:
    """{parameter name: product of the lr_scale of every module on its path (1.0 if none)}.

    A weight shared by several modules is listed once, under its first name (as
    ``named_parameters()`` lists it)."""
    scale_of_module = {name: float(m.lr_scale) for name, m in model.named_modules() if hasattr(m, "lr_scale")}
    scales = {}
    for name, _ in model.named_parameters():
        parts = name.split(".")[:-1]  # the modules that hold this weight, outermost first
        prefixes = [""] + [".".join(parts[: i + 1]) for i in range(len(parts))]
        scale = 1.0
        for prefix in prefixes:
            scale *= scale_of_module.get(prefix, 1.0)
        scales[name] = scale
    return scales


def lr_scale_groups(model: nn.Module, lr: float) -> List[dict]:
    """One param group per distinct lr scale, in order of first appearance:
    ``{"params": [...], "lr": lr * scale, "lr_scale": scale}``. EdenScheduler keeps each group's
    lr at the scheduled lr times its lr_scale. Frozen weights (requires_grad False) are left out."""
    scales = lr_scale_of_weights(model)
    groups: Dict[float, dict] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        scale = scales[name]
        if scale not in groups:
            groups[scale] = {"params": [], "lr": lr * scale, "lr_scale": scale}
        groups[scale]["params"].append(p)
    return list(groups.values())
