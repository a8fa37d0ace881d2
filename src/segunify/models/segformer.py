"""SegFormer (B0-B5) through Hugging Face transformers, never from the hub (see ``hf_common``).

Output follows the zoo's contract: its 1/4-resolution logits resized (bilinear) to the input size.
The full config is recorded in ``model.segunify_spec`` so a checkpoint rebuilds the architecture
without the original folder.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F

from segunify.errors import SegunifyError
from segunify.models import register_model
from segunify.models.base import IMAGENET_MEAN, IMAGENET_STD, SegmentationModel
from segunify.models.hf_common import (
    clean_config,
    config_of_checkpoint,
    from_pretrained_folder,
    load_partial,
    weights_kind,
)
from segunify.taxonomy import IGNORE

VARIANTS = {
    "b0": {"hidden_sizes": [32, 64, 160, 256], "depths": [2, 2, 2, 2], "decoder_hidden_size": 256},
    "b1": {"hidden_sizes": [64, 128, 320, 512], "depths": [2, 2, 2, 2], "decoder_hidden_size": 256},
    "b2": {"hidden_sizes": [64, 128, 320, 512], "depths": [3, 4, 6, 3], "decoder_hidden_size": 768},
    "b3": {"hidden_sizes": [64, 128, 320, 512], "depths": [3, 4, 18, 3], "decoder_hidden_size": 768},
    "b4": {"hidden_sizes": [64, 128, 320, 512], "depths": [3, 8, 27, 3], "decoder_hidden_size": 768},
    "b5": {"hidden_sizes": [64, 128, 320, 512], "depths": [3, 6, 40, 3], "decoder_hidden_size": 768},
}


class SegformerSeg(SegmentationModel):
    classifier_keys = ("hf.decode_head.classifier.",)
    input_mean, input_std = IMAGENET_MEAN, IMAGENET_STD  # the published ImageNet/ADE/Cityscapes weights'

    def __init__(self, hf_model):
        super().__init__()
        self.hf = hf_model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.hf(pixel_values=x).logits
        return F.interpolate(logits, size=x.shape[-2:], mode="bilinear", align_corners=False)


def _check_variant(hf_model, preset: dict, config: dict | None, variant: str, weights) -> None:
    """A ``from_pretrained`` folder must hold the variant asked for (or the sizes ``config`` gives)."""
    expected = {**preset, **{k: v for k, v in (config or {}).items() if k in preset}}
    for key, value in expected.items():
        have = getattr(hf_model.config, key)
        if (list(have) if isinstance(have, list | tuple) else have) != value:
            raise SegunifyError(
                f"folder holds a different SegFormer variant ({key}={have}, segformer-{variant} has "
                f"{value}; pass config={{...}} for a custom size)",
                weights,
            )


def _builder(variant: str):
    preset = VARIANTS[variant]

    def build(
        num_classes: int, weights: str | Path | None = None, config: dict | None = None
    ) -> SegformerSeg:
        from transformers import SegformerConfig, SegformerForSemanticSegmentation

        kind, head = weights_kind(weights), "full"
        if kind == "hf":
            hf_model, head = from_pretrained_folder(
                SegformerForSemanticSegmentation, weights, num_classes, "SegFormer"
            )
            _check_variant(hf_model, preset, config, variant, weights)
        else:
            cfg = {**preset, **(config_of_checkpoint(weights) if kind else {}), **(config or {})}
            cfg["num_labels"] = num_classes
            cfg.setdefault("semantic_loss_ignore_index", IGNORE)
            hf_model = SegformerForSemanticSegmentation(SegformerConfig(**cfg))
        model = SegformerSeg(hf_model)
        model.weights_loaded = load_partial(model, weights) if kind == "segunify" else head
        model.segunify_spec = {
            "name": f"segformer-{variant}",
            "num_classes": num_classes,
            "kwargs": {"config": clean_config(hf_model.config.to_dict())},
        }
        return model

    build.__doc__ = f"SegFormer-{variant.upper()} (transformers), logits resized from 1/4 resolution"
    return build


for _variant in VARIANTS:
    register_model(f"segformer-{_variant}")(_builder(_variant))
