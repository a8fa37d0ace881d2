"""Fine-tuning from a teacher without forgetting it: the optimiser's parameter groups and BatchNorm kept in
eval mode (``model.freeze_bn``)."""

from __future__ import annotations

import torch
from torch import nn


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
