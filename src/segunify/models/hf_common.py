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
    from segunify.models.checkpoint import WEIGHTS, load_state, read_safetensors

    state = read_safetensors(Path(weights) / WEIGHTS)
    load_state(model, state, weights, head=lambda key: key.startswith(head_prefixes))


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
