"""SegFormer (B0-B5) and Mask2Former (Swin) through Hugging Face transformers, never from the hub.

Each model is built from a config (the variant's preset updated by ``config={...}``) or, with
``weights=<folder>``, from a local ``from_pretrained`` folder (``config.json`` + weights;
``local_files_only=True``) or a segunify checkpoint folder. A different class count keeps everything but
the classifier. The full config is recorded in ``model.segunify_spec`` so a checkpoint rebuilds the
architecture without the original folder.

Outputs follow the zoo's contract, logits ``[B, C, H, W]`` at input resolution:

* SegFormer: its 1/4-resolution logits, resized (bilinear).
* Mask2Former: the standard semantic combination ``sum_q softmax(class_q)[c] * sigmoid(mask_q)`` (the
  no-object column dropped), computed at mask resolution (1/4) to keep memory bounded, returned as
  ``log`` of those scores so that a softmax over classes gives the scores normalised per pixel. Train it
  with its own loss (Hungarian-matched class + mask + dice terms): ``model(x, labels=labels)`` or
  ``model.compute_loss(x, labels)`` returns it; models with ``has_own_loss = True`` must not be trained
  with cross-entropy on their outputs.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from segunify.errors import SegunifyError
from segunify.models import register_model
from segunify.taxonomy import IGNORE

SEGFORMER_VARIANTS = {
    "b0": {"hidden_sizes": [32, 64, 160, 256], "depths": [2, 2, 2, 2], "decoder_hidden_size": 256},
    "b1": {"hidden_sizes": [64, 128, 320, 512], "depths": [2, 2, 2, 2], "decoder_hidden_size": 256},
    "b2": {"hidden_sizes": [64, 128, 320, 512], "depths": [3, 4, 6, 3], "decoder_hidden_size": 768},
    "b3": {"hidden_sizes": [64, 128, 320, 512], "depths": [3, 4, 18, 3], "decoder_hidden_size": 768},
    "b4": {"hidden_sizes": [64, 128, 320, 512], "depths": [3, 8, 27, 3], "decoder_hidden_size": 768},
    "b5": {"hidden_sizes": [64, 128, 320, 512], "depths": [3, 6, 40, 3], "decoder_hidden_size": 768},
}
SWIN_PRESETS = {
    "swin-t": {"embed_dim": 96, "depths": [2, 2, 6, 2], "num_heads": [3, 6, 12, 24], "window_size": 7},
    "swin-s": {"embed_dim": 96, "depths": [2, 2, 18, 2], "num_heads": [3, 6, 12, 24], "window_size": 7},
    "swin-b": {"embed_dim": 128, "depths": [2, 2, 18, 2], "num_heads": [4, 8, 16, 32], "window_size": 12},
    "swin-l": {"embed_dim": 192, "depths": [2, 2, 18, 2], "num_heads": [6, 12, 24, 48], "window_size": 12},
}
HEAD_PREFIXES = ("hf.decode_head.classifier.", "hf.class_predictor.", "hf.criterion.empty_weight")
MULTIPLE = 32
_DROP_KEYS = ("transformers_version", "_name_or_path", "architectures", "id2label", "label2id", "dtype")


def _clean(cfg: dict) -> dict:
    """A config dict without bookkeeping keys (class names live in the segunify checkpoint)."""
    out = {k: v for k, v in cfg.items() if k not in _DROP_KEYS}
    if isinstance(out.get("backbone_config"), dict):
        out["backbone_config"] = _clean(out["backbone_config"])
    return out


def _weights_kind(weights: str | Path) -> str:
    path = Path(weights)
    if (path / "meta.json").is_file():
        return "segunify"
    if (path / "config.json").is_file():
        return "hf"
    raise SegunifyError("not a model folder: expected a segunify checkpoint (meta.json) or config.json", path)


def _load_partial(model: nn.Module, weights: str | Path) -> None:
    """Load a segunify checkpoint's weights into ``model``; only the classifier may differ in shape."""
    from segunify.models.checkpoint import read_safetensors

    state = read_safetensors(Path(weights) / "model.safetensors")
    own = model.state_dict()
    dropped = [k for k, v in state.items() if k in own and own[k].shape != v.shape]
    bad = [k for k in dropped if not k.startswith(HEAD_PREFIXES)]
    if bad:
        raise SegunifyError(
            f"weights do not fit the model: {bad[0]} has shape {tuple(state[bad[0]].shape)}, "
            f"model expects {tuple(own[bad[0]].shape)}",
            weights,
        )
    missing, unexpected = model.load_state_dict(
        {k: v for k, v in state.items() if k not in dropped}, strict=False
    )
    missing = [k for k in missing if not k.startswith(HEAD_PREFIXES)]
    if missing or unexpected:
        raise SegunifyError(
            f"weights do not fit the model: missing {missing[:3]}, unexpected {unexpected[:3]}", weights
        )


def _config_of_checkpoint(weights: str | Path) -> dict:
    from segunify.models.checkpoint import read_meta

    meta = read_meta(weights)
    cfg = (meta.get("model_kwargs") or {}).get("config")
    if not isinstance(cfg, dict):
        raise SegunifyError("checkpoint does not record a transformers config (model_kwargs.config)", weights)
    return cfg


class SegformerSeg(nn.Module):
    def __init__(self, hf_model):
        super().__init__()
        self.hf = hf_model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.hf(pixel_values=x).logits
        return F.interpolate(logits, size=x.shape[-2:], mode="bilinear", align_corners=False)


def _segformer(variant: str):
    preset = SEGFORMER_VARIANTS[variant]

    def build(
        num_classes: int, weights: str | Path | None = None, config: dict | None = None
    ) -> SegformerSeg:
        from transformers import SegformerConfig, SegformerForSemanticSegmentation

        kind = _weights_kind(weights) if weights is not None else None
        if kind == "hf":
            try:
                hf_model = SegformerForSemanticSegmentation.from_pretrained(
                    str(weights), num_labels=num_classes, ignore_mismatched_sizes=True, local_files_only=True
                )
            except (OSError, ValueError) as exc:
                raise SegunifyError(f"cannot load SegFormer: {str(exc).splitlines()[0]}", weights) from None
            expected = {**preset, **{k: v for k, v in (config or {}).items() if k in preset}}
            for key, value in expected.items():
                have = getattr(hf_model.config, key)
                if (list(have) if isinstance(have, list | tuple) else have) != value:
                    raise SegunifyError(
                        f"folder holds a different SegFormer variant ({key}={have}, segformer-{variant} has "
                        f"{value}; pass config={{...}} for a custom size)",
                        weights,
                    )
        else:
            cfg = {**preset, **_clean(_config_of_checkpoint(weights) if kind else {}), **(config or {})}
            cfg["num_labels"] = num_classes
            cfg.setdefault("semantic_loss_ignore_index", IGNORE)
            hf_model = SegformerForSemanticSegmentation(SegformerConfig(**cfg))
        model = SegformerSeg(hf_model)
        if kind == "segunify":
            _load_partial(model, weights)
        model.segunify_spec = {
            "name": f"segformer-{variant}",
            "num_classes": num_classes,
            "kwargs": {"config": _clean(hf_model.config.to_dict())},
        }
        return model

    build.__doc__ = f"SegFormer-{variant.upper()} (transformers), logits resized from 1/4 resolution"
    return build


for _variant in SEGFORMER_VARIANTS:
    register_model(f"segformer-{_variant}")(_segformer(_variant))


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


class Mask2FormerSeg(nn.Module):
    """``forward(x)`` gives log semantic scores; ``forward(x, labels=...)`` gives the training loss, so
    that the loss goes through ``forward`` (DistributedDataParallel synchronises gradients there)."""

    has_own_loss = True

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


@register_model("mask2former", description="Mask2Former with a Swin backbone (transformers); semantic scores")
def mask2former(
    num_classes: int, weights: str | Path | None = None, backbone: str = "swin-b", config: dict | None = None
) -> Mask2FormerSeg:
    """Mask2Former (the paper's model), Swin backbone preset ``swin-t|s|b|l`` unless ``config`` gives one."""
    from transformers import Mask2FormerConfig, Mask2FormerForUniversalSegmentation, SwinConfig

    if backbone not in SWIN_PRESETS:
        raise SegunifyError(
            f"mask2former: unknown backbone {backbone!r}; available: {', '.join(SWIN_PRESETS)}"
        )
    kind = _weights_kind(weights) if weights is not None else None
    if kind == "hf":
        try:
            hf_model = Mask2FormerForUniversalSegmentation.from_pretrained(
                str(weights), num_labels=num_classes, ignore_mismatched_sizes=True, local_files_only=True
            )
        except (OSError, ValueError) as exc:
            raise SegunifyError(f"cannot load Mask2Former: {str(exc).splitlines()[0]}", weights) from None
    else:
        cfg = _clean(_config_of_checkpoint(weights)) if kind else {}
        cfg.update(config or {})
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
        hf_model = Mask2FormerForUniversalSegmentation(Mask2FormerConfig(backbone_config=backbone_cfg, **cfg))
    model = Mask2FormerSeg(hf_model, num_classes)
    if kind == "segunify":
        _load_partial(model, weights)
    model.segunify_spec = {
        "name": "mask2former",
        "num_classes": num_classes,
        "kwargs": {"config": json.loads(json.dumps(_clean(hf_model.config.to_dict())))},
    }
    return model
