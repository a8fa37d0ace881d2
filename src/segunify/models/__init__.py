"""Model zoo: one registry, one family per module (``espnetv2``, ``segformer``, ``mask2former``).

Every model takes a normalised float tensor ``[B, 3, H, W]`` and returns logits ``[B, C, H, W]`` at
input resolution, and declares what training needs to know as class attributes
(:class:`~segunify.models.base.SegmentationModel`: ``has_own_loss``, ``find_unused_parameters``).
``create_model`` records how the model was built in ``model.segunify_spec``
(``{"name", "num_classes", "kwargs"}``) so that checkpoints can rebuild it without the original
weights file. Published weights are data: ``<family>.pretrained.json`` beside the family, read by
:mod:`segunify.models.pretrained`.

The family modules (torch, transformers) are imported on the first use of the registry, not with this
package: its data modules (pretrained tables, hub ids, backend names) stay light for the command line.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from segunify.errors import SegunifyError

if TYPE_CHECKING:
    from torch import nn


@dataclass(frozen=True)
class ModelEntry:
    name: str
    builder: Callable[..., nn.Module]
    description: str = ""


_REGISTRY: dict[str, ModelEntry] = {}


def register_model(name: str, description: str = ""):
    """Decorator for a builder ``fn(num_classes, weights=None, **kwargs) -> nn.Module``."""

    def deco(fn):
        if name in _REGISTRY:
            raise ValueError(f"model {name!r} registered twice")
        _REGISTRY[name] = ModelEntry(name, fn, description or (fn.__doc__ or "").strip().split("\n")[0])
        return fn

    return deco


def _register_families() -> None:
    """Import the family modules; each registers its models (once: Python imports a module once)."""
    from segunify.models import espnetv2, mask2former, segformer  # noqa: F401


def available_models() -> list[str]:
    _register_families()
    return sorted(_REGISTRY)


def model_entries() -> list[ModelEntry]:
    return [_REGISTRY[n] for n in available_models()]


def create_model(name: str, num_classes: int, weights: str | Path | None = None, **kwargs) -> nn.Module:
    """Build a registered model; ``weights`` is a family-specific file or folder (a segunify checkpoint
    folder works for every family)."""
    if name not in available_models():
        raise SegunifyError(f"unknown model {name!r}; available: {', '.join(available_models())}")
    builder = _REGISTRY[name].builder
    params = inspect.signature(builder).parameters
    if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        unknown = sorted(set(kwargs) - set(params))
        if unknown:
            allowed = [p for p in params if p not in ("num_classes", "weights")]
            raise SegunifyError(f"model {name!r}: unknown option(s) {unknown}; options: {allowed}")
    model = builder(int(num_classes), weights=weights, **kwargs)
    if not hasattr(model, "segunify_spec"):
        model.segunify_spec = {"name": name, "num_classes": int(num_classes), "kwargs": dict(kwargs)}
    return model


def count_parameters(model: nn.Module) -> int:
    """Learnable parameters (BatchNorm running statistics are buffers and do not count)."""
    return sum(p.numel() for p in model.parameters())


__all__ = ["available_models", "count_parameters", "create_model", "model_entries", "register_model"]
