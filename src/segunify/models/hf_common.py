"""What the Hugging Face families (SegFormer, Mask2Former) share: never the hub, always local files.

A family is built from a config or, with ``weights=<folder>``, from a local ``from_pretrained`` folder
(``config.json`` + weights, ``local_files_only=True``) or a segunify checkpoint folder. A different class
count keeps everything but the classifier (the family's ``classifier_keys``).
"""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

from segunify.errors import SegunifyError
from segunify.models.base import SegmentationModel

SAFETENSORS = "model.safetensors"
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


def load_partial(model: SegmentationModel, weights: str | Path) -> str:
    """Load a segunify checkpoint's weights into ``model``; only the classifier (the family's
    ``classifier_keys``) may differ in shape. Returns ``"full"``, or ``"encoder-decoder"`` when the
    classifier had another class count and was left as initialised."""
    from segunify.models.checkpoint import WEIGHTS, load_state, read_safetensors

    state = read_safetensors(Path(weights) / WEIGHTS)
    dropped = load_state(model, state, weights, head=model.is_classifier)
    return "encoder-decoder" if dropped else "full"


def config_of_checkpoint(weights: str | Path) -> dict:
    """The transformers config a segunify checkpoint recorded (``model_kwargs.config``), cleaned."""
    from segunify.models.checkpoint import load_meta

    cfg = load_meta(weights).model_kwargs.get("config")
    if not isinstance(cfg, dict):
        raise SegunifyError("checkpoint does not record a transformers config (model_kwargs.config)", weights)
    return clean_config(cfg)


def safetensors_weights(folder: str | Path) -> Path:
    """The ``model.safetensors`` (or its shard index) of a ``from_pretrained`` folder; a folder holding only
    ``pytorch_model.bin`` (a pickle, which can run code when loaded) is refused with what to do instead."""
    folder = Path(folder)
    for name in (SAFETENSORS, f"{SAFETENSORS}.index.json"):
        if (folder / name).is_file():
            return folder / name
    pickled = [n for n in ("pytorch_model.bin", "pytorch_model.bin.index.json") if (folder / n).is_file()]
    if pickled:
        raise SegunifyError(
            f"holds only {pickled[0]} (a pickle, which segunify never loads); download the hub's safetensors "
            "revision ('segunify models weights' lists it: --revision refs/pr/N) or convert the file to "
            f"{SAFETENSORS} where you trust it",
            folder,
        )
    raise SegunifyError(f"no {SAFETENSORS} in this from_pretrained folder", folder)


@contextmanager
def _quiet():
    """No transformers progress bars or load warnings on stderr (a failure is segunify's one line)."""
    from transformers.utils import logging as hf_logging

    bars, level = hf_logging.is_progress_bar_enabled(), hf_logging.get_verbosity()
    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)
        if bars:
            hf_logging.enable_progress_bar()


def from_pretrained_folder(cls, weights: str | Path, num_classes: int, family: str):
    """``cls.from_pretrained`` on a local folder (safetensors only, float32), the classifier resized to
    ``num_classes``; returns ``(model, head)``: ``"full"``, or ``"encoder-decoder"`` when the folder's
    classifier had another class count and was left as initialised. Any other missing weight is refused:
    transformers would initialise it at random with a warning."""
    import torch

    safetensors_weights(weights)
    try:
        with _quiet():
            model, info = cls.from_pretrained(
                str(weights),
                num_labels=num_classes,
                ignore_mismatched_sizes=True,
                local_files_only=True,
                use_safetensors=True,
                dtype=torch.float32,
                output_loading_info=True,
            )
    except (OSError, ValueError) as exc:
        raise SegunifyError(f"cannot load {family}: {str(exc).splitlines()[0]}", weights) from None
    missing = sorted(info.get("missing_keys") or ())
    if missing:
        raise SegunifyError(
            f"{family} weights lack {len(missing)} tensor(s) of the model (e.g. {missing[0]}); they would be "
            "random: is config.json the one these weights were saved with?",
            weights,
        )
    return model.eval(), ("encoder-decoder" if info.get("mismatched_keys") else "full")
