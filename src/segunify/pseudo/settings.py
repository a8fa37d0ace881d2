"""What a pseudo-label run is given besides the data: its options (typed) and the teacher.

The options that change output bytes form the settings fingerprint (:meth:`PseudoSettings.fingerprint`)
that :mod:`segunify.pseudo.store` records in every output folder; batch size, workers and limit do not.
Neither does ``backend``: onnxruntime's logits stay within 1e-3 of torch's (checked per export) and
their labels agreed on every pixel of the benchmark frames, so a run may be resumed with the other
backend (a pixel whose two best classes tie within 1e-3 may, rarely, differ between the two).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import torch
from pydantic import BaseModel, ConfigDict, model_validator

from segunify.errors import FieldError
from segunify.models.backends import BACKENDS


@dataclass(frozen=True)
class TeacherInfo:
    """What identifies a teacher: its class names (checked against the mapping) and weights hash."""

    classes: tuple[str, ...]
    taxonomy: str | None = None
    path: str = ""
    sha256: str = ""


class PseudoSettings(BaseModel):
    """Run options. ``size``/``flip``/``scales``/``amp`` are applied by the teacher and recorded here."""

    model_config = ConfigDict(extra="forbid")

    priors: bool = True
    fill_void: bool = False
    min_confidence: float | None = None
    min_allowed_mass: float | None = None  # ignore pixels whose allowed set has less teacher probability
    ignore_conflicts: float | None = None  # ignore pixels whose teacher argmax (p >= this) the prior forbids
    save_confidence: bool = False
    size: tuple[int, int] | None = None
    flip: bool = False
    scales: tuple[float, ...] = (1.0,)
    amp: bool = False
    backend: str | None = None  # torch | onnx | None (the device's default); not in the fingerprint
    batch_size: int = 4
    workers: int = 2
    writers: int = 2
    limit: int | None = None

    @model_validator(mode="after")
    def _check(self) -> PseudoSettings:
        # FieldError (not ValueError) passes through pydantic unchanged: the CLI names its flag
        if self.batch_size < 1:
            raise FieldError("batch_size", f"must be >= 1, got {self.batch_size}")
        if self.workers < 0:
            raise FieldError("workers", f"must be >= 0, got {self.workers}")
        if self.writers < 1:
            raise FieldError("writers", f"must be >= 1, got {self.writers}")
        if self.min_confidence is not None and not 0.0 <= self.min_confidence <= 1.0:
            raise FieldError("min_confidence", f"must be in [0, 1], got {self.min_confidence}")
        if self.min_allowed_mass is not None and not 0.0 <= self.min_allowed_mass <= 1.0:
            raise FieldError("min_allowed_mass", f"must be in [0, 1], got {self.min_allowed_mass}")
        if self.ignore_conflicts is not None and not 0.5 <= self.ignore_conflicts <= 1.0:
            raise FieldError("ignore_conflicts", f"must be in [0.5, 1], got {self.ignore_conflicts}")
        if self.backend is not None and self.backend not in BACKENDS:
            raise FieldError("backend", f"must be one of {', '.join(BACKENDS)}, got {self.backend!r}")
        if self.limit is not None and self.limit < 1:
            raise FieldError("limit", f"must be >= 1, got {self.limit}")
        return self

    def without_priors(self) -> PseudoSettings:
        """The same run with plain teacher argmax (the R labels of the ablation)."""
        return self.model_copy(
            update={"priors": False, "fill_void": False, "min_allowed_mass": None, "ignore_conflicts": None}
        )

    def fingerprint(self) -> dict[str, Any]:
        """The options that change output bytes (batch size, workers and limit do not; ``fill_void``
        only acts with priors)."""
        return {
            "priors": self.priors,
            "fill_void": self.fill_void and self.priors,
            "min_confidence": self.min_confidence,
            "size": list(self.size) if self.size else None,
            "flip": self.flip,
            "scales": list(self.scales),
            "amp": self.amp,
            # only when on: folders written before the option existed keep their fingerprint
            **({"min_allowed_mass": self.min_allowed_mass} if self.min_allowed_mass is not None else {}),
            **({"ignore_conflicts": self.ignore_conflicts} if self.ignore_conflicts is not None else {}),
        }


class Teacher(Protocol):
    def probs(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 ``[B, H, W, 3]`` -> softmax probabilities ``[B, C, H, W]`` at the images' resolution."""


def teacher_from_checkpoint(
    checkpoint: str | Path,
    device: str | torch.device,
    settings: PseudoSettings,
    onnx_cache: str | Path | None = None,
) -> tuple[Teacher, TeacherInfo]:
    """The real teacher: a :class:`~segunify.models.inference.Predictor` on a segunify checkpoint,
    run by ``settings.backend`` (ONNX files exported on the first batch into ``onnx_cache``).
    Sets ``settings.size`` to the checkpoint's input size and ``settings.backend`` to the
    device's default backend (:func:`~segunify.models.onnx.resolve_backend`) when not given."""
    from segunify.models.checkpoint import weights_digest
    from segunify.models.inference import Predictor

    opts: dict[str, Any] = {"flip": settings.flip, "scales": settings.scales, "amp": settings.amp}
    if settings.size is not None:
        opts["size"] = settings.size
    predictor = Predictor.from_checkpoint(
        checkpoint, device=device, backend=settings.backend, onnx_cache=onnx_cache, **opts
    )
    settings.backend = predictor.backend
    meta = predictor.meta
    if settings.size is None and predictor.size is not None:
        settings.size = tuple(predictor.size)
    info = TeacherInfo(
        classes=tuple(meta.classes),
        taxonomy=meta.taxonomy,
        path=str(Path(checkpoint).resolve()),
        sha256=weights_digest(checkpoint, meta),
    )
    return predictor, info
