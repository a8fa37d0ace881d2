"""Mask2Former with a Swin backbone through Hugging Face transformers, never from the hub (see ``hf_common``).

Output follows the zoo's contract, logits ``[B, C, H, W]`` at input resolution: the standard semantic
combination ``sum_q softmax(class_q)[c] * sigmoid(mask_q)`` (the no-object column dropped), computed at
mask resolution (1/4) to keep memory bounded, returned as ``log`` of those scores so that a softmax over
classes gives the scores normalised per pixel. Train it with its own loss (Hungarian-matched class +
mask + dice terms): ``model(x, labels=labels)`` or ``model.compute_loss(x, labels)`` returns it
(``has_own_loss = True``: never cross-entropy on its outputs).
"""

from __future__ import annotations

import json
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

SWIN_PRESETS = {
    "swin-t": {"embed_dim": 96, "depths": [2, 2, 6, 2], "num_heads": [3, 6, 12, 24], "window_size": 7},
    "swin-s": {"embed_dim": 96, "depths": [2, 2, 18, 2], "num_heads": [3, 6, 12, 24], "window_size": 7},
    "swin-b": {"embed_dim": 128, "depths": [2, 2, 18, 2], "num_heads": [4, 8, 16, 32], "window_size": 12},
    "swin-l": {"embed_dim": 192, "depths": [2, 2, 18, 2], "num_heads": [6, 12, 24, 48], "window_size": 12},
}
MULTIPLE = 32


def labels_to_masks(labels: torch.Tensor, num_classes: int) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Semantic labels ``[B, H, W]`` -> per image the binary masks ``[N, H, W]`` and class ids ``[N]`` of
    the classes present (ignore pixels belong to no mask), the targets Mask2Former's loss expects."""
    masks, classes = [], []
    for lab in labels:
        present = torch.unique(lab)
        present = present[(present >= 0) & (present < num_classes)]
        masks.append((lab.unsqueeze(0) == present.view(-1, 1, 1)).float())
        classes.append(present.long())
    return masks, classes


class Mask2FormerSeg(SegmentationModel):
    """``forward(x)`` gives log semantic scores; ``forward(x, labels=...)`` gives the training loss, so
    that the loss goes through ``forward`` (DistributedDataParallel synchronises gradients there).

    ``find_unused_parameters``: the Swin backbone's final ``layernorm`` is not used for the
    feature maps Mask2Former reads.
    """

    classifier_keys = ("hf.class_predictor.", "hf.criterion.empty_weight")
    input_mean, input_std = IMAGENET_MEAN, IMAGENET_STD  # the published Swin/Mask2Former weights'
    has_own_loss = True
    find_unused_parameters = True
    onnx_unsupported = (
        "Mask2Former cannot run in ONNX Runtime: its deformable attention exports a GridSample node that "
        "onnxruntime's CPU provider has no kernel for; use the torch backend"
    )

    def __init__(self, hf_model, num_classes: int):
        super().__init__()
        self.hf = hf_model
        self.num_classes = num_classes

    @staticmethod
    def _pad(x: torch.Tensor, value: float = 0.0) -> torch.Tensor:
        h, w = x.shape[-2:]
        ph, pw = (-h) % MULTIPLE, (-w) % MULTIPLE
        return F.pad(x, (0, pw, 0, ph), value=value) if (ph or pw) else x

    def semantic_scores(self, x: torch.Tensor) -> torch.Tensor:
        """``sum_q p(c|q) * sigmoid(mask_q)`` at mask resolution for the padded input."""
        out = self.hf(pixel_values=self._pad(x))
        cls = out.class_queries_logits.float().softmax(-1)[..., :-1]
        return torch.einsum("bqc,bqhw->bchw", cls, out.masks_queries_logits.float().sigmoid())

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        if labels is not None:
            return self.compute_loss(x, labels)
        h, w = x.shape[-2:]
        scores = self.semantic_scores(x)
        hp, wp = h + (-h) % MULTIPLE, w + (-w) % MULTIPLE
        logits = torch.log(scores.clamp_min(1e-6))
        logits = F.interpolate(logits, size=(hp, wp), mode="bilinear", align_corners=False)
        return logits[:, :, :h, :w]

    def compute_loss(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Mask2Former's own training loss (matched class + mask + dice terms, with auxiliary layers) for
        normalised ``images [B, 3, H, W]`` and semantic ``labels [B, H, W]`` (255 = ignore)."""
        labels = self._pad(labels.unsqueeze(1).float(), value=float(IGNORE)).squeeze(1).long()
        masks, classes = labels_to_masks(labels, self.num_classes)
        out = self.hf(pixel_values=self._pad(images), mask_labels=masks, class_labels=classes)
        return out.loss


def _config(backbone: str, checkpoint_cfg: dict, config: dict | None, num_classes: int):
    """A ``Mask2FormerConfig``: the checkpoint's config, updated by ``config``, Swin preset by default."""
    from transformers import Mask2FormerConfig, SwinConfig

    cfg = {**checkpoint_cfg, **(config or {})}
    backbone_cfg = cfg.pop("backbone_config", None)
    if backbone_cfg is None:
        backbone_cfg = {
            **SWIN_PRESETS[backbone],
            "image_size": 384,
            "drop_path_rate": 0.3,
            "out_features": ["stage1", "stage2", "stage3", "stage4"],
        }
    if isinstance(backbone_cfg, dict):
        backbone_cfg = SwinConfig(**{k: v for k, v in backbone_cfg.items() if k != "model_type"})
    cfg["num_labels"] = num_classes
    cfg.setdefault("ignore_value", IGNORE)
    return Mask2FormerConfig(backbone_config=backbone_cfg, **cfg)


@register_model("mask2former", description="Mask2Former with a Swin backbone (transformers); semantic scores")
def mask2former(
    num_classes: int, weights: str | Path | None = None, backbone: str = "swin-b", config: dict | None = None
) -> Mask2FormerSeg:
    """Mask2Former (the paper's model), Swin backbone preset ``swin-t|s|b|l`` unless ``config`` gives one."""
    from transformers import Mask2FormerForUniversalSegmentation

    if backbone not in SWIN_PRESETS:
        raise SegunifyError(
            f"mask2former: unknown backbone {backbone!r}; available: {', '.join(SWIN_PRESETS)}"
        )
    kind, head = weights_kind(weights), "full"
    if kind == "hf":
        hf_model, head = from_pretrained_folder(
            Mask2FormerForUniversalSegmentation, weights, num_classes, "Mask2Former"
        )
    else:
        checkpoint_cfg = config_of_checkpoint(weights) if kind else {}
        hf_model = Mask2FormerForUniversalSegmentation(_config(backbone, checkpoint_cfg, config, num_classes))
    model = Mask2FormerSeg(hf_model, num_classes)
    model.weights_loaded = load_partial(model, weights) if kind == "segunify" else head
    model.segunify_spec = {
        "name": "mask2former",
        "num_classes": num_classes,
        "kwargs": {"config": json.loads(json.dumps(clean_config(hf_model.config.to_dict())))},
    }
    return model
