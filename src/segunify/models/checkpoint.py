"""segunify checkpoints: a folder with ``model.safetensors`` (weights) and ``meta.json`` (everything else).

Never a pickle: loading a checkpoint cannot run code. ``meta.json`` holds::

    format, format_version      "segunify-checkpoint", 1
    model, model_kwargs         registry name and the options to rebuild it (create_model)
    num_classes                 output channels
    taxonomy, classes           taxonomy name and its class names, in train-id order
    mean, std                   input normalisation (RGB, for pixels scaled to [0, 1])
    input_size                  [H, W] the model was trained at (the default inference size)
    train_config, metrics       free-form dicts from training/evaluation
    weights_sha256              sha256 of model.safetensors, checked on load
    created                     UTC time stamp
    (any other keys are kept, e.g. "source" for imported weights)

``save_checkpoint`` writes into a temporary sibling folder and renames it, so a reader never sees a
half-written checkpoint.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from datetime import UTC, datetime
from pathlib import Path

import torch
from torch import nn

from segunify.errors import SegunifyError
from segunify.jsonio import read_json_object, to_jsonable
from segunify.taxonomy import Taxonomy, load_taxonomy

WEIGHTS = "model.safetensors"
META = "meta.json"
FORMAT = "segunify-checkpoint"
FORMAT_VERSION = 1
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def _unique_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """State dict with tied tensors stored once (safetensors refuses shared storage)."""
    out: dict[str, torch.Tensor] = {}
    seen: dict[tuple, str] = {}
    for k, v in model.state_dict().items():
        key = (v.untyped_storage().data_ptr(), v.storage_offset(), tuple(v.shape), tuple(v.stride()), v.dtype)
        if v.numel() and key in seen:
            continue
        seen[key] = k
        out[k] = v.detach().to("cpu").contiguous()
    return out


def _normalise_meta(model: nn.Module, meta: dict) -> dict:
    meta = dict(meta)
    spec = getattr(model, "segunify_spec", None) or {}
    meta.setdefault("model", spec.get("name"))
    meta.setdefault("model_kwargs", spec.get("kwargs", {}))
    if not meta["model"]:
        raise SegunifyError(
            "checkpoint meta needs 'model' (the registry name); the model has no segunify_spec"
        )
    tax = meta.get("taxonomy")
    if isinstance(tax, Taxonomy):
        meta["taxonomy"] = tax.name
        meta.setdefault("classes", list(tax.classes))
    elif tax is not None and "classes" not in meta:
        meta["classes"] = list(load_taxonomy(tax).classes)
    if "classes" not in meta:
        raise SegunifyError("checkpoint meta needs 'taxonomy' (name or Taxonomy) or 'classes'")
    meta["classes"] = [str(c) for c in meta["classes"]]
    meta.setdefault("num_classes", spec.get("num_classes", len(meta["classes"])))
    if int(meta["num_classes"]) != len(meta["classes"]):
        raise SegunifyError(
            f"checkpoint meta: num_classes={meta['num_classes']} but {len(meta['classes'])} class names given"
        )
    meta.setdefault("taxonomy", None)
    meta["mean"] = [float(v) for v in meta.get("mean", IMAGENET_MEAN)]
    meta["std"] = [float(v) for v in meta.get("std", IMAGENET_STD)]
    size = meta.get("input_size")
    meta["input_size"] = [int(v) for v in size] if size is not None else None
    meta.setdefault("train_config", {})
    meta.setdefault("metrics", {})
    meta["format"], meta["format_version"] = FORMAT, FORMAT_VERSION
    meta.setdefault("created", datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"))
    return meta


def save_checkpoint(directory: str | Path, model: nn.Module, meta: dict) -> Path:
    """Write ``model.safetensors`` + ``meta.json`` into ``directory`` atomically; returns the folder.

    ``meta`` needs at least ``taxonomy`` (or ``classes``); model name, kwargs and ``num_classes`` come
    from ``model.segunify_spec`` when absent, mean/std default to ImageNet's.
    """
    from safetensors.torch import save_file

    directory = Path(directory)
    meta = _normalise_meta(model, meta)
    directory.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=directory.parent, prefix=f".{directory.name}.", suffix=".tmp"))
    try:
        save_file(_unique_state(model), str(tmp / WEIGHTS), metadata={"format": FORMAT})
        meta["weights_sha256"] = sha256_file(tmp / WEIGHTS)
        (tmp / META).write_text(json.dumps(meta, indent=2, default=to_jsonable) + "\n", encoding="utf-8")
        old = None
        if directory.exists():
            old = directory.parent / f".{directory.name}.old-{os.getpid()}"
            os.replace(directory, old)
        os.replace(tmp, directory)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return directory


def read_meta(directory: str | Path) -> dict:
    directory = Path(directory)
    if not directory.is_dir():
        raise SegunifyError("checkpoint folder not found", directory)
    path = directory / META
    if not path.is_file():
        raise SegunifyError(f"not a segunify checkpoint: {META} missing", directory)
    meta = read_json_object(path, "checkpoint metadata")
    missing = [k for k in ("model", "num_classes", "classes") if k not in meta]
    if missing:
        raise SegunifyError(f"checkpoint metadata lacks {missing}", path)
    return meta


def read_safetensors(path: str | Path, device: str | torch.device = "cpu") -> dict[str, torch.Tensor]:
    """All tensors of a safetensors file, or one clear error for a missing/truncated/foreign file."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise SegunifyError("weights file not found", path)
    try:
        return load_file(str(path), device=str(device))
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise SegunifyError(f"corrupt safetensors file ({str(exc).splitlines()[0][:160]})", path) from None


def check_taxonomy(meta: dict, taxonomy: str | Taxonomy, where: str | Path) -> None:
    """Raise when the checkpoint's classes differ from the requested taxonomy's."""
    tax = taxonomy if isinstance(taxonomy, Taxonomy) else load_taxonomy(taxonomy)
    have, want = list(meta["classes"]), list(tax.classes)
    if have == want:
        return
    name = meta.get("taxonomy") or "?"
    if len(have) != len(want):
        detail = f"{len(have)} classes vs {len(want)}"
    else:
        diffs = [f"{i}: {a!r} vs {b!r}" for i, (a, b) in enumerate(zip(have, want, strict=True)) if a != b]
        detail = f"class names differ at {', '.join(diffs[:5])}" + (" ..." if len(diffs) > 5 else "")
    raise SegunifyError(
        f"checkpoint is for taxonomy {name!r} but {tax.name!r} was requested ({detail})", where
    )


def load_checkpoint(
    directory: str | Path, taxonomy: str | Taxonomy | None = None, map_location: str | torch.device = "cpu"
) -> tuple[nn.Module, dict]:
    """Rebuild the model from ``meta.json`` and load its weights (strict); returns ``(model, meta)``
    with the model in eval mode on ``map_location``."""
    from segunify.models import create_model

    directory = Path(directory)
    meta = read_meta(directory)
    if taxonomy is not None:
        check_taxonomy(meta, taxonomy, directory)
    weights = directory / WEIGHTS
    if not weights.is_file():
        raise SegunifyError(f"checkpoint weights missing ({WEIGHTS})", directory)
    expected = meta.get("weights_sha256")
    if expected and sha256_file(weights) != expected:
        raise SegunifyError(
            "checkpoint weights are corrupt or changed (sha256 differs from meta.json)", weights
        )
    state = read_safetensors(weights)
    model = create_model(meta["model"], int(meta["num_classes"]), **(meta.get("model_kwargs") or {}))
    own = model.state_dict()
    bad = [k for k, v in state.items() if k in own and own[k].shape != v.shape]
    missing, unexpected = model.load_state_dict(state, strict=False) if not bad else ([], [])
    if bad:
        raise SegunifyError(
            f"weights do not fit model {meta['model']!r}: {bad[0]} has shape {tuple(state[bad[0]].shape)}, "
            f"model expects {tuple(own[bad[0]].shape)}",
            weights,
        )
    missing = [k for k in missing if not _is_tied(model, k, state)]
    if missing or unexpected:
        raise SegunifyError(
            f"weights do not fit model {meta['model']!r}: missing {missing[:3]}, unexpected {unexpected[:3]}",
            weights,
        )
    model.to(map_location).eval()
    return model, meta


def _is_tied(model: nn.Module, key: str, state: dict) -> bool:
    """A key skipped at save time because it shares storage with a saved one (tied weights)."""
    own = model.state_dict()
    target = own[key]
    return any(
        k in state and v.untyped_storage().data_ptr() == target.untyped_storage().data_ptr() and k != key
        for k, v in own.items()
    )


__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "check_taxonomy",
    "load_checkpoint",
    "read_meta",
    "read_safetensors",
    "save_checkpoint",
    "sha256_file",
]
