"""What the Hugging Face families (SegFormer, Mask2Former) share: never the hub, always local files.

A family is built from a config or, with ``weights=<folder>``, from a local ``from_pretrained`` folder
(``config.json`` + weights, ``local_files_only=True``) or a segunify checkpoint folder. A different class
count keeps everything but the classifier (the family's ``HEAD_PREFIXES``).
"""

from __future__ import annotations

from pathlib import Path

from torch import nn

from segunify.errors import SegunifyError

_DROP_KEYS = ("transformers_version", "_name_or_path", "architectures", "id2label", "label2id", "dtype")


def clean_config(cfg: dict) -> dict:
    """A config dict without bookkeeping keys (class names live in the segunify checkpoint)."""
    out = {k: v for k, v in cfg.items() if k not in _DROP_KEYS}
    if isinstance(out.get("backbone_config"), dict):
        out["backbone_config"] = clean_config(out["backbone_config"])
    return out


def weights_kind(weights: str | Path | None) -> str | None:
    """``"segunify"`` (checkpoint folder), ``"hf"`` (``from_pretrained`` folder) or None (no weights)."""
    if weights is None:
        return None
    path = Path(weights)
    if (path / "meta.json").is_file():
        return "segunify"
    if (path / "config.json").is_file():
        return "hf"
    raise SegunifyError("not a model folder: expected a segunify checkpoint (meta.json) or config.json", path)


def load_partial(model: nn.Module, weights: str | Path, head_prefixes: tuple[str, ...]) -> None:
    """Load a segunify checkpoint's weights into ``model``; only the classifier may differ in shape."""
    from segunify.models.checkpoint import read_safetensors

    state = read_safetensors(Path(weights) / "model.safetensors")
    own = model.state_dict()
    dropped = [k for k, v in state.items() if k in own and own[k].shape != v.shape]
    bad = [k for k in dropped if not k.startswith(head_prefixes)]
    if bad:
        raise SegunifyError(
            f"weights do not fit the model: {bad[0]} has shape {tuple(state[bad[0]].shape)}, "
            f"model expects {tuple(own[bad[0]].shape)}",
            weights,
        )
    missing, unexpected = model.load_state_dict(
        {k: v for k, v in state.items() if k not in dropped}, strict=False
    )
    missing = [k for k in missing if not k.startswith(head_prefixes)]
    if missing or unexpected:
        raise SegunifyError(
            f"weights do not fit the model: missing {missing[:3]}, unexpected {unexpected[:3]}", weights
        )


def config_of_checkpoint(weights: str | Path) -> dict:
    """The transformers config a segunify checkpoint recorded (``model_kwargs.config``), cleaned."""
    from segunify.models.checkpoint import read_meta

    cfg = (read_meta(weights).get("model_kwargs") or {}).get("config")
    if not isinstance(cfg, dict):
        raise SegunifyError("checkpoint does not record a transformers config (model_kwargs.config)", weights)
    return clean_config(cfg)


def from_pretrained_folder(cls, weights: str | Path, num_classes: int, family: str):
    """``cls.from_pretrained`` on a local folder, the classifier resized to ``num_classes``."""
    try:
        return cls.from_pretrained(
            str(weights), num_labels=num_classes, ignore_mismatched_sizes=True, local_files_only=True
        )
    except (OSError, ValueError) as exc:
        raise SegunifyError(f"cannot load {family}: {str(exc).splitlines()[0]}", weights) from None
