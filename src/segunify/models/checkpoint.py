"""segunify checkpoints: a folder with ``model.safetensors`` (weights) and ``meta.json`` (everything else).

Never a pickle: loading a checkpoint cannot run code. ``meta.json`` is :class:`CheckpointMeta` written
as JSON (read and written only through that model, and used as that model: :func:`load_meta`; files of
older versions, which lack ``format``, ``created``, ``weights_sha256`` or ``mean``/``std``, still load
with the defaults). Keys the model does not name are kept as they are.

``save_checkpoint`` writes into a temporary sibling folder and swaps it in, so a reader never sees a
half-written checkpoint. It never deletes what segunify did not write: a non-empty folder that is not a
segunify checkpoint is refused, and replacing a checkpoint needs ``overwrite=True``.
"""

from __future__ import annotations

import ctypes
import errno
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import torch
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_serializer,
    model_validator,
)
from torch import nn

from segunify.errors import SegunifyError
from segunify.io import dir_mode, file_mode, sha256_file
from segunify.jsonio import read_json_object, to_jsonable
from segunify.models.base import IMAGENET_MEAN, IMAGENET_STD
from segunify.taxonomy import Taxonomy, load_taxonomy

WEIGHTS = "model.safetensors"
META = "meta.json"
FORMAT = "segunify-checkpoint"
FORMAT_VERSION = 1


class WeightsSource(BaseModel):
    """Where imported weights came from: the file, its hash, what happened to its classifier."""

    model_config = ConfigDict(extra="allow")

    file: str
    sha256: str
    head: Literal["full", "sliced", "encoder-decoder"] = "full"
    pretrained: str | None = None  # entry of the pretrained-weights table, when the file is a known one


class SelectedMetric(BaseModel):
    """The trainer's ``eval.select`` and its value when the checkpoint was written."""

    name: str
    value: float | None


class InterpolationEnd(BaseModel):
    path: str
    weights_sha256: str | None


class Interpolation(BaseModel):
    """A WiSE-FT mix (:mod:`segunify.train.interpolate`): ``(1 - alpha) * start + alpha * end``."""

    alpha: float
    start: InterpolationEnd
    end: InterpolationEnd


# written only by the commands that set them (a trainer's step, an interpolation's inputs)
_ONLY_WHEN_SET = frozenset({"selected_metric", "step", "interpolation"})


class CheckpointMeta(BaseModel):
    """Everything about a checkpoint but its tensors; rebuilds the model with ``create_model``."""

    model_config = ConfigDict(extra="allow", protected_namespaces=())

    format: Literal["segunify-checkpoint"] = FORMAT
    format_version: int = FORMAT_VERSION
    model: str = Field(min_length=1)
    model_kwargs: dict[str, Any] = Field(default_factory=dict)
    num_classes: int = Field(ge=1)
    taxonomy: str | None = None
    classes: list[str]
    mean: tuple[float, float, float] = IMAGENET_MEAN  # what a meta.json written without one meant
    std: tuple[float, float, float] = IMAGENET_STD
    input_size: tuple[int, int] | None = None
    train_config: dict[str, Any] = Field(default_factory=dict)
    metrics: dict[str, Any] = Field(default_factory=dict)
    weights_sha256: str | None = None
    created: str | None = None
    files: list[str] = Field(default_factory=lambda: [META, WEIGHTS])
    source: WeightsSource | None = None
    selected_metric: SelectedMetric | None = None  # a trained checkpoint: what picked best/
    step: int | None = None  # a trained checkpoint: the optimiser steps it had taken
    interpolation: Interpolation | None = None

    @model_serializer(mode="wrap")
    def _omit_unset(self, handler) -> dict[str, Any]:
        return {k: v for k, v in handler(self).items() if v is not None or k not in _ONLY_WHEN_SET}

    @field_validator("format_version")
    @classmethod
    def _known_version(cls, v: int) -> int:
        if v > FORMAT_VERSION:
            raise ValueError(f"format_version {v} is newer than this segunify reads ({FORMAT_VERSION})")
        return v

    @field_validator("std")
    @classmethod
    def _positive_std(cls, v: tuple[float, float, float]) -> tuple[float, float, float]:
        if min(v) <= 0:
            raise ValueError(f"std must be positive, got {list(v)}")
        return v

    @field_validator("input_size")
    @classmethod
    def _positive_size(cls, v: tuple[int, int] | None) -> tuple[int, int] | None:
        if v is not None and min(v) < 1:
            raise ValueError(f"input_size must be positive (H, W), got {list(v)}")
        return v

    @model_validator(mode="after")
    def _classes_match(self) -> CheckpointMeta:
        if self.num_classes != len(self.classes):
            raise ValueError(f"num_classes={self.num_classes} but {len(self.classes)} class names given")
        return self

    def to_dict(self) -> dict:
        """Plain JSON types (lists, not tuples), every extra key included."""
        return self.model_dump(mode="json")


def validate_meta(data: dict, where: str | Path | None = None) -> CheckpointMeta:
    """``data`` as :class:`CheckpointMeta`, or one line naming the first bad field."""
    try:
        return CheckpointMeta.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        field = ".".join(str(p) for p in err["loc"])
        msg = str(err["msg"]).removeprefix("Value error, ")
        raise SegunifyError(f"checkpoint metadata: {field + ': ' if field else ''}{msg}", where) from None


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


def build_meta(model: nn.Module, meta: CheckpointMeta | Mapping[str, Any]) -> CheckpointMeta:
    """Complete ``meta`` from the model (``segunify_spec``: name, kwargs, class count) and the taxonomy
    (a name or a :class:`Taxonomy` gives the class names), then validate it."""
    if isinstance(meta, CheckpointMeta):
        return meta
    data = dict(meta)
    spec = getattr(model, "segunify_spec", None) or {}
    data.setdefault("model", spec.get("name"))
    data.setdefault("model_kwargs", spec.get("kwargs", {}))
    data.setdefault("mean", getattr(model, "input_mean", IMAGENET_MEAN))  # the family's normalisation
    data.setdefault("std", getattr(model, "input_std", IMAGENET_STD))
    if not data["model"]:
        raise SegunifyError(
            "checkpoint meta needs 'model' (the registry name); the model has no segunify_spec"
        )
    tax = data.get("taxonomy")
    if isinstance(tax, Taxonomy):
        data["taxonomy"] = tax.name
        data.setdefault("classes", list(tax.classes))
    elif tax is not None and "classes" not in data:
        data["classes"] = list(load_taxonomy(tax).classes)
    if "classes" not in data:
        raise SegunifyError("checkpoint meta needs 'taxonomy' (name or Taxonomy) or 'classes'")
    data["classes"] = [str(c) for c in data["classes"]]
    data.setdefault("num_classes", spec.get("num_classes", len(data["classes"])))
    data.setdefault("created", datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"))
    data["format"], data["format_version"] = FORMAT, FORMAT_VERSION
    return validate_meta(data)


def is_checkpoint(directory: str | Path) -> bool:
    """True for a folder holding a readable ``meta.json`` and only the files that meta names."""
    directory = Path(directory)
    if directory.is_symlink() or not (directory / META).is_file():
        return False
    try:
        meta = load_meta(directory)
    except SegunifyError:
        return False
    return all(p.name in {META, WEIGHTS, *meta.files} for p in directory.iterdir())


def check_target(directory: str | Path, overwrite: bool) -> bool:
    """May a checkpoint be written at ``directory``? Returns whether something is there to replace.

    Missing or an empty folder: yes. A segunify checkpoint: only with ``overwrite``. Anything else
    (a file, a link, a folder holding other files): never; the error lists what is there.
    """
    directory = Path(directory)
    if not directory.exists() and not directory.is_symlink():
        return False
    if directory.is_symlink() or not directory.is_dir():
        raise SegunifyError("exists and is not a folder; choose another output", directory)
    names = sorted(p.name for p in directory.iterdir())
    if not names:
        return True
    if not is_checkpoint(directory):
        shown = ", ".join(names[:4]) + (f" and {len(names) - 4} more" if len(names) > 4 else "")
        raise SegunifyError(
            f"not empty and not a segunify checkpoint (holds {shown}); nothing was changed", directory
        )
    if not overwrite:
        raise SegunifyError("already holds a segunify checkpoint; replace it with --overwrite", directory)
    return True


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths in one step (Linux ``renameat2(RENAME_EXCHANGE)``); False where unsupported."""
    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    if renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):
        return False
    raise OSError(err, os.strerror(err), str(b))


def _swap_in(tmp: Path, directory: Path, replace: bool) -> None:
    """Put the finished ``tmp`` at ``directory``; an old one is exchanged in one step where possible."""
    if not replace:
        os.rename(tmp, directory)
        return
    if _exchange(tmp, directory):
        shutil.rmtree(tmp)  # tmp now holds the old checkpoint
        return
    old = directory.parent / f".{directory.name}.old-{os.getpid()}"
    os.replace(directory, old)
    os.replace(tmp, directory)
    shutil.rmtree(old, ignore_errors=True)


def save_checkpoint(
    directory: str | Path,
    model: nn.Module,
    meta: CheckpointMeta | Mapping[str, Any],
    overwrite: bool = False,
    extra_files: Mapping[str, Callable[[Path], None]] | None = None,
) -> Path:
    """Write ``model.safetensors`` + ``meta.json`` (+ ``extra_files``: name -> writer of that path, e.g.
    a training state) into a temporary folder and swap it in at ``directory``; returns the folder.

    ``meta`` needs at least ``taxonomy`` (or ``classes``); model name, kwargs and ``num_classes`` come
    from ``model.segunify_spec`` when absent, mean/std default to ImageNet's. See :func:`check_target`
    for what may be replaced.
    """
    from safetensors import SafetensorError
    from safetensors.torch import save_file

    directory = Path(directory)
    meta = build_meta(model, meta).model_copy(update={"files": [META, WEIGHTS, *(extra_files or {})]})
    replace = check_target(directory, overwrite)
    tmp = None
    try:
        directory.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=directory.parent, prefix=f".{directory.name}.", suffix=".tmp"))
        os.chmod(tmp, dir_mode())  # mkdtemp gives 0700; a team's shared folder needs the umask's mode
        save_file(_unique_state(model), str(tmp / WEIGHTS), metadata={"format": FORMAT})
        meta.weights_sha256 = sha256_file(tmp / WEIGHTS)
        text = json.dumps(meta.model_dump(), indent=2, default=to_jsonable) + "\n"
        (tmp / META).write_text(text, encoding="utf-8")
        for name, write in (extra_files or {}).items():
            write(tmp / name)
        for path in tmp.iterdir():  # safetensors writes 0600: the umask decides, as for any file
            os.chmod(path, file_mode())
        _swap_in(tmp, directory, replace)
    except (OSError, SafetensorError) as exc:
        raise SegunifyError(
            f"cannot write checkpoint: {getattr(exc, 'strerror', None) or exc}", directory
        ) from None
    finally:
        if tmp is not None and tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return directory


def load_meta(directory: str | Path) -> CheckpointMeta:
    """The validated metadata of a checkpoint folder."""
    directory = Path(directory)
    if not directory.is_dir():
        raise SegunifyError("checkpoint folder not found", directory)
    path = directory / META
    if not path.is_file():
        raise SegunifyError(f"not a segunify checkpoint: {META} missing", directory)
    return validate_meta(read_json_object(path, "checkpoint metadata"), path)


def weights_digest(directory: str | Path, meta: CheckpointMeta | None = None) -> str:
    """The sha256 that names a checkpoint's weights (teacher fingerprints, ONNX cache keys): the one
    ``meta.json`` records, or the file's own hash for a checkpoint written before meta held it."""
    meta = load_meta(directory) if meta is None else meta
    return meta.weights_sha256 or sha256_file(Path(directory) / WEIGHTS)


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


def load_tensor_pickle(path: str | Path, what: str = "weights") -> Any:
    """``torch.load`` restricted to tensors and plain containers (``weights_only=True``).

    A file holding anything else is refused with the name of the object it wanted to build; torch's
    own advice to retry with ``weights_only=False`` is never shown, since that would run the file's code.
    """
    path = Path(path)
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for truncated/foreign files
        noise = ("weights_only", "weights only", "documentation", "please file")
        lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
        lines = [ln for ln in lines if not any(n in ln.lower() for n in noise)]
        detail = lines[0][:160] if lines else type(exc).__name__
        if "global" in detail.lower():
            raise SegunifyError(f"refused to load {what}: not plain tensors ({detail})", path) from None
        raise SegunifyError(f"cannot read {what} ({detail})", path) from None


def check_taxonomy(meta: CheckpointMeta, taxonomy: str | Taxonomy, where: str | Path) -> None:
    """Raise when the checkpoint's classes differ from the requested taxonomy's."""
    tax = taxonomy if isinstance(taxonomy, Taxonomy) else load_taxonomy(taxonomy)
    have, want = list(meta.classes), list(tax.classes)
    if have == want:
        return
    name = meta.taxonomy or "?"
    if len(have) != len(want):
        detail = f"{len(have)} classes vs {len(want)}"
    else:
        diffs = [f"{i}: {a!r} vs {b!r}" for i, (a, b) in enumerate(zip(have, want, strict=True)) if a != b]
        detail = f"class names differ at {', '.join(diffs[:5])}" + (" ..." if len(diffs) > 5 else "")
    raise SegunifyError(
        f"checkpoint is for taxonomy {name!r} but {tax.name!r} was requested ({detail})", where
    )


def load_state(
    model: nn.Module,
    state: Mapping[str, torch.Tensor],
    where: str | Path,
    what: str = "the model",
    head: Callable[[str], bool] = lambda key: False,
) -> list[str]:
    """The one strict load of every family: ``state`` must fill ``model`` exactly, except keys for
    which ``head(key)`` is True (a classifier for another class count: dropped, left as initialised)
    and tied tensors stored once. Returns the dropped keys; any other mismatch is one line."""
    own = model.state_dict()
    mismatched = [k for k, v in state.items() if k in own and own[k].shape != v.shape]
    bad = [k for k in mismatched if not head(k)]
    if bad:
        k = bad[0]
        raise SegunifyError(
            f"weights do not fit {what}: {k} has shape {tuple(state[k].shape)}, model expects "
            f"{tuple(own[k].shape)} ({len(bad)} mismatched tensors)",
            where,
        )
    missing, unexpected = model.load_state_dict(
        {k: v for k, v in state.items() if k not in mismatched}, strict=False
    )
    missing = [k for k in missing if not head(k) and not _is_tied(model, k, state)]
    if missing or unexpected:
        raise SegunifyError(
            f"weights do not fit {what}: {len(missing)} missing keys (e.g. {missing[:2]}), "
            f"{len(unexpected)} unexpected (e.g. {unexpected[:2]})",
            where,
        )
    return mismatched


def load_checkpoint(
    directory: str | Path, taxonomy: str | Taxonomy | None = None, map_location: str | torch.device = "cpu"
) -> tuple[nn.Module, CheckpointMeta]:
    """Rebuild the model from ``meta.json`` and load its weights (strict); returns ``(model, meta)``
    with the model in eval mode on ``map_location``."""
    from segunify.models import create_model

    directory = Path(directory)
    meta = load_meta(directory)
    if taxonomy is not None:
        check_taxonomy(meta, taxonomy, directory)
    weights = directory / WEIGHTS
    if not weights.is_file():
        raise SegunifyError(f"checkpoint weights missing ({WEIGHTS})", directory)
    if meta.weights_sha256 and sha256_file(weights) != meta.weights_sha256:
        raise SegunifyError(
            "checkpoint weights are corrupt or changed (sha256 differs from meta.json)", weights
        )
    state = read_safetensors(weights)
    model = create_model(meta.model, meta.num_classes, **meta.model_kwargs)
    load_state(model, state, weights, f"model {meta.model!r}")
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
    "CheckpointMeta",
    "Interpolation",
    "SelectedMetric",
    "WeightsSource",
    "build_meta",
    "check_target",
    "check_taxonomy",
    "is_checkpoint",
    "load_checkpoint",
    "load_meta",
    "load_state",
    "load_tensor_pickle",
    "read_safetensors",
    "save_checkpoint",
    "sha256_file",
    "validate_meta",
]
