"""What a training step minimises beyond plain cross entropy (``loss`` in the config), off by default.

* ``loss.distill``: KL divergence toward a frozen teacher's softened probabilities on the source parts'
  pixels.

The logged ``loss`` is the sum of every active term. Every term works on whole tensors
(``log_softmax``/``gather``), no per-pixel Python. With every option at its default
:func:`segunify.train.engine.compute_loss` runs unchanged (the fused ``F.cross_entropy``). A model with its
own loss (Mask2Former) returns no per-pixel logits to distill: it takes no ``loss.distill``.

Options that lost on held-out data left the product with the study that measured them
(``reports/forgetting/README.md``): OHEM, class-balanced cross entropy, L2-SP, a lower encoder learning rate,
distillation on pixels other than the source parts' and soft (top-2) pseudo-labels.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from segunify.errors import SegunifyError
from segunify.taxonomy import IGNORE, Taxonomy
from segunify.train.config import DistillConfig, TrainConfig
from segunify.train.engine import compute_loss, normaliser, use_channels_last
from segunify.train.parts import DISTILL_SOURCE


def pixel_losses(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """The cross entropy of each labelled pixel, flat."""
    logp = F.log_softmax(logits.float(), 1)
    valid = labels != IGNORE
    nll = -logp.gather(1, labels.long().masked_fill(~valid, 0).unsqueeze(1)).squeeze(1)
    return nll[valid]


class Distiller:
    """KL(teacher_T || student_T) * T^2 * weight on the source parts' pixels (``DistillConfig``)."""

    def __init__(self, cfg: DistillConfig, teacher: torch.nn.Module, mean, std, device: torch.device):
        self.cfg, self.teacher = cfg, teacher.to(device).eval().requires_grad_(False)
        self.normalise = normaliser(mean, std, device, use_channels_last(self.teacher, device))

    def __call__(self, logits: torch.Tensor, images: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
        """The teacher sees only the crops that hold source pixels (in a compound batch most crops are
        pseudo-labelled: its forward was the largest cost of the term, ``benchmarks/train_options.py``)."""
        mask = codes.to(logits.device) == DISTILL_SOURCE  # the augmentation pads with IGNORE
        crops = mask.flatten(1).any(1)
        if not bool(crops.any()):
            return logits.sum() * 0.0
        t = self.cfg.temperature
        with torch.no_grad():
            target = (self.teacher(self.normalise(images[crops.to(images.device)])).float() / t).softmax(1)
        log_student = F.log_softmax(logits[crops].float() / t, 1)
        kl = (target * (target.clamp_min(1e-12).log() - log_student)).sum(1)
        return self.cfg.weight * t * t * kl[mask[crops]].mean()


class Objective:
    """The loss of one step for the configured options (see the module docstring)."""

    def __init__(self, distiller: Distiller | None = None):
        self.distiller = distiller

    @property
    def pixel_arrays(self) -> tuple[str, ...]:
        """The per-pixel arrays the batches must carry (:meth:`segunify.train.parts.Part.read`)."""
        return ("distill",) if self.distiller else ()

    @property
    def plain(self) -> bool:
        return self.distiller is None

    def __call__(self, model, unwrapped, x: torch.Tensor, batch: dict) -> torch.Tensor:
        labels = batch["label"].to(x.device, non_blocking=True).long()
        if self.plain or getattr(unwrapped, "has_own_loss", False):
            return compute_loss(model, unwrapped, x, labels)
        logits = model(x)
        losses = pixel_losses(logits, labels)
        loss = losses.sum() / max(losses.numel(), 1)
        if self.distiller is not None:
            loss = loss + self.distiller(logits, batch["image"], batch["distill"])
        return loss


def check_loss_options(cfg: TrainConfig, model: torch.nn.Module, config_path: str) -> None:
    """A model with its own loss takes no loss option that needs its logits: one line, before training."""
    if not getattr(model, "has_own_loss", False):
        return
    if cfg.loss.distill is not None:
        raise SegunifyError(
            f"loss.distill: model {cfg.model.name!r} trains with its own loss (no per-pixel logits to distill)",
            config_path,
        )


def build_objective(
    cfg: TrainConfig, model: torch.nn.Module, target: Taxonomy, device: torch.device, config_path: str
) -> Objective:
    """The step's loss for ``cfg.loss``."""
    check_loss_options(cfg, model, config_path)
    distiller = None
    if cfg.loss.distill is not None:
        distiller = _distiller(cfg.loss.distill, target, device, config_path)
    return Objective(distiller)


def _distiller(cfg: DistillConfig, target: Taxonomy, device: torch.device, config_path: str) -> Distiller:
    from segunify.models.checkpoint import load_checkpoint
    from segunify.train.config import resolve_config_path

    path = resolve_config_path(cfg.teacher, config_path, "loss.distill.teacher")
    try:
        teacher, meta = load_checkpoint(path, taxonomy=target)
    except SegunifyError as exc:
        raise SegunifyError(f"loss.distill.teacher: {exc}", config_path) from None
    mean, std = meta.mean, meta.std  # the teacher's own inputs (ImageNet's where meta.json names none)
    return Distiller(cfg, teacher, mean, std, device)
