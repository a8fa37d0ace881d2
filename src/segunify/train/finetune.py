"""Fine-tuning from a teacher without forgetting it: the optimiser's parameter groups, BatchNorm kept in
eval mode (``model.freeze_bn``) and early stages kept at their start weights (``model.frozen``)."""

from __future__ import annotations

import torch
from torch import nn

from segunify.errors import SegunifyError


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """No weight decay on biases and normalisation parameters (1-D tensors)."""
    groups: dict[bool, list[torch.Tensor]] = {}
    for p in model.parameters():
        if p.requires_grad:
            groups.setdefault(p.ndim <= 1, []).append(p)
    return [
        {"params": params, "weight_decay": 0.0 if no_decay else weight_decay}
        for no_decay, params in sorted(groups.items())
    ]


def set_train_mode(model: nn.Module, freeze_bn: bool) -> nn.Module:
    """``model.train()``; with ``freeze_bn`` every BatchNorm layer back in eval mode: it normalises with
    its running statistics and leaves them unchanged, while its affine weight and bias still train."""
    model.train()
    if freeze_bn:
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.eval()
    return model


def freeze(model: nn.Module, modules: list[str]) -> int:
    """Keep every parameter of the ``modules`` (dotted paths, e.g. ``base_net.level1``) at its start weights:
    no gradient, so no backward through the stages in front of the first trained one (the costliest part
    of a CPU step). Returns how many weights that froze; a path that names no parameter is an error."""
    named = dict(model.named_parameters())

    def inside(name: str, module: str) -> bool:
        return name == module or name.startswith(module + ".")

    for module in modules:
        if not any(inside(n, module) for n in named):
            tops = sorted({n.split(".")[0] for n in named})
            raise SegunifyError(f"{module!r} names no parameter (the model's modules: {', '.join(tops)})")
    frozen = [p for n, p in named.items() if any(inside(n, m) for m in modules)]
    for p in frozen:
        p.requires_grad_(False)
    return sum(p.numel() for p in frozen)
