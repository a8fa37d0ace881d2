"""Weight-space interpolation between a checkpoint and its fine-tuned descendant (WiSE-FT, Wortsman et al.,
"Robust fine-tuning of zero-shot models", CVPR 2022): ``w = (1 - alpha) * w_start + alpha * w_end``.

Why: a student fine-tuned from its teacher gains on the extra datasets but forgets part of what the teacher
knew (thin source classes, unseen domains). Moving its weights part of the way back toward the teacher's
keeps most of the gain and recovers much of the loss, at no training cost; ``alpha`` is chosen on held-out
training data (``reports/forgetting/``). It needs no retraining and leaves both inputs untouched.

Both checkpoints must be one model (registry name, kwargs, classes, normalisation). Floating-point tensors
are interpolated (BatchNorm statistics included: with frozen BN they are the start's in both); integer
buffers (BatchNorm's step counter) are the end's.
"""

from __future__ import annotations

from pathlib import Path

import torch

from segunify.errors import SegunifyError
from segunify.models.checkpoint import (
    CheckpointMeta,
    Interpolation,
    InterpolationEnd,
    load_checkpoint,
    save_checkpoint,
)
from segunify.outputs import check_apart

SAME = {"model", "model_kwargs", "num_classes", "classes", "mean", "std"}
# what the mix keeps of END's meta (not its metrics, step or selected metric: they describe END)
KEEP = {"taxonomy", "classes", "mean", "std", "input_size", "train_config", "model", "model_kwargs"}


def check_compatible(start_meta: CheckpointMeta, end_meta: CheckpointMeta, start: Path, end: Path) -> None:
    """One line naming ``end`` and the first field in which the two checkpoints' metas differ."""
    have, there = (m.model_dump(mode="json", include=SAME) for m in (end_meta, start_meta))  # field order
    for field, value in have.items():
        if value != there[field]:
            raise SegunifyError(
                f"cannot interpolate with {start}: {field} differs ({value!r} here, {there[field]!r} there)",
                end,
            )


def interpolate_state(
    start: dict[str, torch.Tensor], end: dict[str, torch.Tensor], alpha: float
) -> dict[str, torch.Tensor]:
    """``(1 - alpha) * start + alpha * end`` for floating-point tensors, ``end`` for the others."""
    if start.keys() != end.keys():
        raise SegunifyError(
            f"cannot interpolate: the state dicts differ in {sorted(start.keys() ^ end.keys())[:3]}"
        )
    return {
        k: torch.lerp(start[k].to(v.dtype), v, alpha) if v.is_floating_point() else v.clone()
        for k, v in end.items()
    }


def interpolate_checkpoints(
    start: str | Path, end: str | Path, alpha: float, out: str | Path, overwrite: bool = False
) -> Path:
    """Write the checkpoint ``(1 - alpha) * start + alpha * end`` to ``out`` (``alpha`` 1 copies ``end``'s
    weights, 0 ``start``'s). Its meta is ``end``'s (taxonomy, normalisation, input size, training config)
    without ``end``'s metrics, plus an ``interpolation`` record naming both inputs by path and sha256."""
    start, end, out = Path(start), Path(end), Path(out)
    if not 0.0 <= alpha <= 1.0:
        raise SegunifyError(f"alpha must be in [0, 1], got {alpha}")
    check_apart([out], [(start, "the START checkpoint"), (end, "the END checkpoint")])
    first, start_meta = load_checkpoint(start)
    model, meta = load_checkpoint(end)
    check_compatible(start_meta, meta, start, end)
    model.load_state_dict(interpolate_state(first.state_dict(), model.state_dict(), alpha), strict=True)
    record = Interpolation(
        alpha=alpha,
        start=InterpolationEnd(path=str(start), weights_sha256=start_meta.weights_sha256),
        end=InterpolationEnd(path=str(end), weights_sha256=meta.weights_sha256),
    )
    new_meta = meta.model_dump(include=KEEP) | {"interpolation": record}
    return save_checkpoint(out, model, new_meta, overwrite=overwrite)


__all__ = ["check_compatible", "interpolate_checkpoints", "interpolate_state"]
