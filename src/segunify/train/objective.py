"""What a training step minimises beyond plain cross entropy (``loss`` in the config), all off by default.

* ``loss.name``: ``ce`` (the mean over labelled pixels), ``ohem`` (the mean over the hard pixels only)
  or ``class_balanced`` (a class-weighted mean); see :class:`~segunify.train.config.OhemConfig` and
  :class:`~segunify.train.config.ClassBalancedConfig`.
* soft labels (a part with ``soft: true``): a pixel's loss is ``-(p1 log q(c1) + (1 - p1) log q(c2))``
  over its two stored classes (``pseudo-label --soft``); a hard label is ``p1 = 1``.
* ``loss.l2sp``: ``alpha * ||w - w0||^2`` toward the initial weights (all parameters; the encoder's only
  when the classifier was re-initialised), in one fused ``_foreach`` pass.
* ``loss.distill``: KL divergence toward a frozen teacher's softened probabilities on chosen pixels.

The logged ``loss`` is the sum of every active term.

Every term works on whole tensors (``log_softmax``/``gather``/``bincount``/``topk``), no per-pixel
Python. With every option at its default :func:`segunify.train.engine.compute_loss` runs unchanged (the
fused ``F.cross_entropy``), so existing figures stay bit-identical. A model with its own loss (Mask2Former)
returns no per-pixel logits to weight or distill: only L2-SP is added to its loss.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F

from segunify.errors import SegunifyError
from segunify.taxonomy import IGNORE, Taxonomy
from segunify.train.config import DistillConfig, LossConfig, TrainConfig
from segunify.train.data import (
    DISTILL_ONE_TO_MANY,
    DISTILL_SOURCE,
    DISTILL_UNLABELLED,
    SOFT_EXTRAS,
    Part,
)
from segunify.train.engine import compute_loss, normaliser, use_channels_last


def pixel_losses(
    logits: torch.Tensor,
    labels: torch.Tensor,
    class2: torch.Tensor | None = None,
    p1: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per labelled pixel: the (soft) cross entropy and its class; both flat over the labelled pixels.
    ``class2``/``p1`` (uint8, 255 = none / 255 * p(class1)) give the two-class soft target."""
    logp = F.log_softmax(logits.float(), 1)
    valid = labels != IGNORE
    nll = -logp.gather(1, labels.long().masked_fill(~valid, 0).unsqueeze(1)).squeeze(1)
    if class2 is not None and p1 is not None:
        has2 = class2 != IGNORE
        nll2 = -logp.gather(1, class2.long().masked_fill(~has2, 0).unsqueeze(1)).squeeze(1)
        q = torch.where(has2, p1.float() / 255.0, 1.0)
        nll = q * nll + (1.0 - q) * nll2
    return nll[valid], labels[valid].long()


def ohem_mean(losses: torch.Tensor, threshold: float, keep: float | None, min_kept: int) -> torch.Tensor:
    """Mean over the hard pixels: loss above ``threshold`` (or the top ``keep`` fraction), at least
    ``min_kept`` of them (all when there are fewer)."""
    n = losses.numel()
    if n == 0:
        return losses.sum()
    if keep is None:
        hard = losses > threshold
        if int(hard.sum()) >= min_kept:
            return losses[hard].mean()
        k = min_kept
    else:
        k = max(math.ceil(keep * n), min_kept)
    return losses.topk(min(k, n), sorted=False).values.mean()


def balanced_weights(share: torch.Tensor, power: float, max_weight: float) -> torch.Tensor:
    """``share ** -power`` normalised so that the average pixel (drawn by ``share``) weighs 1, capped
    at ``max_weight``; a class with no share gets ``max_weight``."""
    share = share.double()
    present = share > 0
    w = torch.where(present, share.clamp_min(1e-12).pow(-power), 0.0)
    w = w / (share * w).sum().clamp_min(1e-30)
    return torch.where(present, w.clamp(max=max_weight), max_weight).float()


def summary_shares(parts: Sequence[Part], target: Taxonomy) -> torch.Tensor:
    """Class shares of the pseudo-label parts' summaries, mixed by the parts' sampling weights."""
    from segunify.pseudo import load_summary

    pseudo = [p for p in parts if p.pseudo_dir is not None]
    if not pseudo:
        raise SegunifyError("loss.class_balanced.weights: summaries needs a pseudo-label part")
    total = sum(p.weight for p in pseudo)
    share = torch.zeros(target.num_classes, dtype=torch.float64)
    for p in pseudo:
        shares = load_summary(p.pseudo_dir).class_share  # type: ignore[arg-type]
        share += (p.weight / total) * torch.tensor([shares.get(c, 0.0) for c in target.classes])
    return share


class L2SP:
    """``alpha * sum ||w - w0||^2`` over ``params`` (``w0`` = ``start``, copied once)."""

    def __init__(self, alpha: float, params: list[torch.nn.Parameter], start: list[torch.Tensor]):
        self.alpha, self.params = alpha, params
        self.start = [s.detach().to(p.device, p.dtype).clone() for p, s in zip(params, start, strict=True)]

    def __call__(self) -> torch.Tensor:
        norms = torch._foreach_norm(torch._foreach_sub(self.params, self.start))
        return self.alpha * torch.stack(norms).float().pow(2).sum()


_DISTILL_FLAGS = {
    "one_to_many": DISTILL_ONE_TO_MANY,
    "source": DISTILL_SOURCE,
    "unlabelled": DISTILL_UNLABELLED,
}


# The named pixel choices that are not a single kind: "all" and "not_one_to_many" select by exclusion
_PIXEL_SETS = {"both": ("one_to_many", "source"), "all": (), "not_one_to_many": ()}


def _pixel_flags(pixels: str | list[str]) -> int:
    """The OR of the code bits a ``pixels`` choice names (0 for the choices that select by exclusion)."""
    kinds = pixels if isinstance(pixels, list) else _PIXEL_SETS.get(pixels, (pixels,))
    flags = 0
    for kind in kinds:
        flags |= _DISTILL_FLAGS[kind]
    return flags


class Distiller:
    """KL(teacher_T || student_T) * T^2 * weight on the chosen pixels (``DistillConfig.pixels``)."""

    def __init__(self, cfg: DistillConfig, teacher: torch.nn.Module, mean, std, device: torch.device):
        self.cfg, self.teacher = cfg, teacher.to(device).eval().requires_grad_(False)
        self.normalise = normaliser(mean, std, device, use_channels_last(self.teacher, device))
        self.flags = _pixel_flags(cfg.pixels)

    def select(self, codes: torch.Tensor) -> torch.Tensor:
        inside = codes != IGNORE  # IGNORE marks the augmentation's padding
        if self.cfg.pixels == "all":
            return inside
        if self.cfg.pixels == "not_one_to_many":
            return inside & (codes & DISTILL_ONE_TO_MANY == 0)
        return inside & (codes & self.flags != 0)

    def __call__(self, logits: torch.Tensor, images: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
        mask = self.select(codes.to(logits.device))
        if not bool(mask.any()):
            return logits.sum() * 0.0
        t = self.cfg.temperature
        with torch.no_grad():
            target = (self.teacher(self.normalise(images)).float() / t).softmax(1)
        log_student = F.log_softmax(logits.float() / t, 1)
        kl = (target * (target.clamp_min(1e-12).log() - log_student)).sum(1)
        return self.cfg.weight * t * t * kl[mask].mean()


class Objective:
    """The loss of one step for the configured options (see the module docstring)."""

    def __init__(
        self,
        cfg: LossConfig,
        soft: bool = False,
        class_weights: torch.Tensor | None = None,
        l2sp: L2SP | None = None,
        distiller: Distiller | None = None,
    ):
        self.cfg, self.soft, self.class_weights = cfg, soft, class_weights
        self.l2sp, self.distiller = l2sp, distiller

    @property
    def extras(self) -> tuple[str, ...]:
        """The per-pixel arrays the batches must carry (:data:`segunify.train.data.SOFT_EXTRAS`, ``distill``)."""
        return (SOFT_EXTRAS if self.soft else ()) + (("distill",) if self.distiller else ())

    @property
    def plain(self) -> bool:
        return self.cfg.name == "ce" and not self.soft and self.l2sp is None and self.distiller is None

    def __call__(self, model, unwrapped, x: torch.Tensor, batch: dict) -> torch.Tensor:
        labels = batch["label"].to(x.device, non_blocking=True).long()
        if self.plain or getattr(unwrapped, "has_own_loss", False):
            loss = compute_loss(model, unwrapped, x, labels)
        else:
            logits = model(x)
            soft = [batch[k].to(x.device) for k in SOFT_EXTRAS] if self.soft else [None, None]
            loss = self.reduce(*pixel_losses(logits, labels, *soft))
            if self.distiller is not None:
                loss = loss + self.distiller(logits, batch["image"], batch["distill"])
        if self.l2sp is not None:
            loss = loss + self.l2sp()
        return loss

    def reduce(self, losses: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
        cfg = self.cfg
        if cfg.name == "ohem":
            return ohem_mean(losses, cfg.ohem.threshold, cfg.ohem.keep, cfg.ohem.min_kept)
        if cfg.name == "class_balanced":
            w = self.class_weights
            if w is None:  # per batch: the shares of this batch's labels
                counts = torch.bincount(classes, minlength=int(classes.max()) + 1 if classes.numel() else 1)
                share = counts / counts.sum().clamp_min(1)
                w = balanced_weights(share, cfg.class_balanced.power, cfg.class_balanced.max_weight)
            per_pixel = w.to(losses.device)[classes]
            return (per_pixel * losses).sum() / per_pixel.sum().clamp_min(1e-12)
        return losses.sum() / max(losses.numel(), 1)


def check_loss_options(cfg: TrainConfig, model: torch.nn.Module, config_path: str) -> None:
    """A model with its own loss takes no loss option that needs its logits: one line, before training."""
    if not getattr(model, "has_own_loss", False):
        return
    name = cfg.model.name
    asked = [
        (cfg.loss.name != "ce", f"loss.name: {cfg.loss.name}"),
        (cfg.loss.distill is not None, "loss.distill"),
        (any(p.soft for p in cfg.parts), "parts.*.soft"),
    ]
    for on, what in asked:
        if on:
            raise SegunifyError(
                f"{what}: model {name!r} trains with its own loss (no per-pixel logits to weight, soften or "
                "distill); only loss.name: ce, loss.l2sp and optimizer.encoder_lr_mult apply",
                config_path,
            )


def build_objective(
    cfg: TrainConfig,
    model: torch.nn.Module,
    parts: Sequence[Part],
    target: Taxonomy,
    start: dict[str, torch.Tensor] | None,
    reinit_head: bool,
    device: torch.device,
    config_path: str,
) -> Objective:
    """The step's loss for ``cfg.loss`` and the parts' ``soft``; ``start`` holds the initial weights
    (L2-SP's ``w0``; needed when ``loss.l2sp`` > 0)."""
    from segunify.train.finetune import encoder_names

    check_loss_options(cfg, model, config_path)
    loss = cfg.loss
    weights = None
    if loss.name == "class_balanced" and loss.class_balanced.weights == "summaries":
        try:
            share = summary_shares(parts, target)
        except SegunifyError as exc:
            raise SegunifyError(str(exc), config_path) from None
        weights = balanced_weights(share, loss.class_balanced.power, loss.class_balanced.max_weight)
    l2sp = None
    if loss.l2sp > 0:
        if start is None:
            raise SegunifyError("loss.l2sp: needs model.weights (the weights to stay near)", config_path)
        scope = encoder_names(model) if reinit_head else None  # a new classifier has no w0 to keep
        named = [
            (n, p) for n, p in model.named_parameters() if p.requires_grad and (scope is None or n in scope)
        ]
        l2sp = L2SP(loss.l2sp, [p for _, p in named], [start[n] for n, _ in named])
    distiller = None
    if loss.distill is not None:
        distiller = _distiller(loss.distill, target, device, config_path)
    return Objective(loss, any(p.soft for p in parts), weights, l2sp, distiller)


def _distiller(cfg: DistillConfig, target: Taxonomy, device: torch.device, config_path: str) -> Distiller:
    from segunify.models.checkpoint import load_checkpoint
    from segunify.train.config import resolve_config_path

    path = resolve_config_path(cfg.teacher, config_path, "loss.distill.teacher")
    try:
        teacher, meta = load_checkpoint(path, taxonomy=target)
    except SegunifyError as exc:
        raise SegunifyError(f"loss.distill.teacher: {exc}", config_path) from None
    mean, std = meta.get("mean") or (0.485, 0.456, 0.406), meta.get("std") or (0.229, 0.224, 0.225)
    return Distiller(cfg, teacher, mean, std, device)
