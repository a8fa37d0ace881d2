"""Fine-tuning from a teacher without forgetting it: which parameters are the encoder (for
``optimizer.encoder_lr_mult`` and L2-SP's scope), the optimiser's parameter groups, and BatchNorm kept in
eval mode (``model.freeze_bn``).

**Which parameters are the encoder** is decided here, in one place, in this order:

1. the model's own ``encoder_prefixes`` attribute (a tuple of parameter-name prefixes), when it has one;
2. the prefixes of its family (:data:`FAMILY_ENCODERS`, keyed by the registry name's prefix);
3. a name heuristic: a parameter whose dotted name has a component ``backbone``, ``encoder``,
   ``base_net`` or ``stem`` that comes before any ``decoder``/``decode_head``/``head`` component (so the
   transformer "encoder" inside Mask2Former's pixel *decoder* is not taken for the backbone).
"""

from __future__ import annotations

import torch
from torch import nn

from segunify.errors import SegunifyError

FAMILY_ENCODERS: dict[str, tuple[str, ...]] = {
    "espnetv2": ("base_net.",),
    "segformer": ("hf.segformer.",),
    "mask2former": ("hf.model.pixel_level_module.encoder.",),
}
_ENCODER_WORDS = {"backbone", "encoder", "base_net", "stem"}
_DECODER_WORDS = {"decoder", "decode_head", "head"}


def _heuristic(name: str) -> bool:
    for part in name.split("."):
        if part in _DECODER_WORDS:
            return False
        if part in _ENCODER_WORDS:
            return True
    return False


def encoder_prefixes(model: nn.Module) -> tuple[str, ...] | None:
    """The declared encoder prefixes (the model's attribute, else its family's), ``None`` if neither."""
    own = getattr(model, "encoder_prefixes", None)
    if own:
        return tuple(own)
    family = str((getattr(model, "segunify_spec", None) or {}).get("name", ""))
    return next((v for k, v in FAMILY_ENCODERS.items() if family.startswith(k)), None)


def encoder_names(model: nn.Module) -> set[str]:
    """Names of the trainable encoder parameters (see the module docstring for how they are found)."""
    prefixes = encoder_prefixes(model)
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    if prefixes is not None:
        return {n for n in names if n.startswith(prefixes)}
    return {n for n in names if _heuristic(n)}


def param_groups(
    model: nn.Module, weight_decay: float, lr: float | None = None, encoder_lr_mult: float = 1.0
) -> list[dict]:
    """No weight decay on biases and normalisation parameters (1-D tensors); with ``encoder_lr_mult``
    != 1 the encoder's groups get ``lr * encoder_lr_mult`` (the schedule scales every group alike)."""
    encoder = encoder_names(model) if encoder_lr_mult != 1.0 else set()
    if encoder_lr_mult != 1.0 and not encoder:
        name = (getattr(model, "segunify_spec", None) or {}).get("name", type(model).__name__)
        raise SegunifyError(
            f"optimizer.encoder_lr_mult: model {name!r} declares no encoder parameters (no encoder_prefixes, "
            "no family entry, no backbone/encoder names)"
        )
    groups: dict[tuple[bool, bool], list[torch.Tensor]] = {}
    for n, p in model.named_parameters():
        if p.requires_grad:
            groups.setdefault((n in encoder, p.ndim <= 1), []).append(p)
    out = []
    for (is_encoder, no_decay), params in sorted(groups.items()):
        group: dict = {"params": params, "weight_decay": 0.0 if no_decay else weight_decay}
        if is_encoder:
            if lr is None:
                raise ValueError("encoder_lr_mult needs the base lr")
            group["lr"] = lr * encoder_lr_mult
        out.append(group)
    return out


def set_train_mode(model: nn.Module, freeze_bn: bool) -> nn.Module:
    """``model.train()``; with ``freeze_bn`` every BatchNorm layer back in eval mode: it normalises with
    its running statistics and leaves them unchanged, while its affine weight and bias still train."""
    model.train()
    if freeze_bn:
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.eval()
    return model
