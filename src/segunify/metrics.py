"""Confusion matrices and the scores derived from them (numpy or torch, any device).

The confusion matrix is accumulated with one ``bincount`` over ``gt * C + pred``: rows are ground
truth, columns are predictions, ignore (255, or anything >= C in the ground truth) is skipped.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from segunify.taxonomy import IGNORE


def confusion_matrix(gt, pred, num_classes: int, ignore_index: int = IGNORE):
    """``[C, C]`` int64 counts (rows = ground truth). ``gt``/``pred`` are numpy arrays or torch tensors
    of the same shape; pixels whose GT is ignore or outside ``0..C-1`` are skipped, and a prediction
    outside ``0..C-1`` on a valid pixel is an error (it would silently vanish otherwise)."""
    if isinstance(gt, torch.Tensor):
        gt = gt.reshape(-1).long()
        pred = pred.reshape(-1).long().to(gt.device)
        valid = (gt != ignore_index) & (gt >= 0) & (gt < num_classes)
        p = pred[valid]
        if p.numel() and (int(p.min()) < 0 or int(p.max()) >= num_classes):
            raise ValueError(f"prediction ids outside 0..{num_classes - 1}")
        idx = gt[valid] * num_classes + p
        return torch.bincount(idx, minlength=num_classes * num_classes).reshape(num_classes, num_classes)
    gt = np.asarray(gt).ravel()
    pred = np.asarray(pred).ravel()
    if gt.shape != pred.shape:
        raise ValueError(f"shape mismatch: gt {gt.shape} vs pred {pred.shape}")
    valid = gt < num_classes
    if ignore_index < num_classes:
        valid &= gt != ignore_index
    p = pred[valid].astype(np.int64, copy=False)
    if p.size and (p.min() < 0 or p.max() >= num_classes):
        raise ValueError(f"prediction ids outside 0..{num_classes - 1}")
    idx = gt[valid].astype(np.int64, copy=False) * num_classes + p
    return np.bincount(idx, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


@dataclass
class Scores:
    """Scores of a confusion matrix. ``iou`` is NaN for classes absent from both GT and prediction;
    those classes are excluded from ``miou`` and listed in ``absent``."""

    iou: np.ndarray
    acc: np.ndarray  # per-class recall; NaN where the class has no GT pixel
    miou: float
    pixel_acc: float
    mean_acc: float
    absent: list[int]
    pixels: int

    def as_dict(self, class_names: list[str] | tuple[str, ...] | None = None) -> dict:
        names = list(class_names) if class_names is not None else [str(i) for i in range(len(self.iou))]
        return {
            "miou": self.miou,
            "pixel_acc": self.pixel_acc,
            "mean_acc": self.mean_acc,
            "pixels": self.pixels,
            "absent_classes": [names[i] for i in self.absent],
            "iou": {n: (None if np.isnan(v) else float(v)) for n, v in zip(names, self.iou, strict=True)},
            "acc": {n: (None if np.isnan(v) else float(v)) for n, v in zip(names, self.acc, strict=True)},
        }


def scores(cm) -> Scores:
    cm = cm.detach().cpu().numpy() if isinstance(cm, torch.Tensor) else np.asarray(cm)
    cm = cm.astype(np.float64)
    tp = np.diag(cm)
    gt_sum = cm.sum(axis=1)
    pred_sum = cm.sum(axis=0)
    union = gt_sum + pred_sum - tp
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = np.where(union > 0, tp / union, np.nan)
        acc = np.where(gt_sum > 0, tp / gt_sum, np.nan)
    total = cm.sum()
    present = ~np.isnan(iou)
    return Scores(
        iou=iou,
        acc=acc,
        miou=float(np.nanmean(iou)) if present.any() else float("nan"),
        pixel_acc=float(tp.sum() / total) if total else float("nan"),
        mean_acc=float(np.nanmean(acc)) if (~np.isnan(acc)).any() else float("nan"),
        absent=[int(i) for i in np.flatnonzero(~present)],
        pixels=int(total),
    )


def cross_taxonomy_confusion(gt_extra, pred_source, allowed: np.ndarray, ignore_index: int = IGNORE):
    """Score source-taxonomy predictions against extra-taxonomy GT through a mapping.

    Returns ``[K, C]`` counts of (GT extra class, predicted source class). A pixel is correct when its
    predicted class is in the GT class's allowed set; see :func:`cross_taxonomy_scores`.
    """
    k, c = allowed.shape
    return confusion_matrix_rect(gt_extra, pred_source, k, c, ignore_index)


def confusion_matrix_rect(gt, pred, num_gt: int, num_pred: int, ignore_index: int = IGNORE):
    """``[num_gt, num_pred]`` counts for GT and predictions in different label spaces."""
    if isinstance(gt, torch.Tensor):
        gt = gt.reshape(-1).long()
        pred = pred.reshape(-1).long().to(gt.device)
        valid = (gt != ignore_index) & (gt >= 0) & (gt < num_gt) & (pred >= 0) & (pred < num_pred)
        idx = gt[valid] * num_pred + pred[valid]
        return torch.bincount(idx, minlength=num_gt * num_pred).reshape(num_gt, num_pred)
    gt = np.asarray(gt).ravel().astype(np.int64, copy=False)
    pred = np.asarray(pred).ravel().astype(np.int64, copy=False)
    valid = (gt != ignore_index) & (gt >= 0) & (gt < num_gt) & (pred >= 0) & (pred < num_pred)
    idx = gt[valid] * num_pred + pred[valid]
    return np.bincount(idx, minlength=num_gt * num_pred).reshape(num_gt, num_pred)


def cross_taxonomy_scores(cm_rect, allowed: np.ndarray) -> dict:
    """Scores of a ``[K, C]`` cross-taxonomy confusion matrix.

    Always: ``pixel_acc_allowed``, the share of pixels whose predicted source class is in the GT
    class's allowed set. When the mapping is a partition (no source class in two allowed sets), every
    prediction maps to one extra class, giving a ``[K, K]`` confusion matrix and per-extra-class IoU
    (``scores``); a prediction in no allowed set counts as a miss of the GT class.
    """
    cm_rect = cm_rect.detach().cpu().numpy() if isinstance(cm_rect, torch.Tensor) else np.asarray(cm_rect)
    allowed = np.asarray(allowed, dtype=bool)
    k, c = allowed.shape
    total = int(cm_rect.sum())
    correct = int((cm_rect * allowed).sum())
    out: dict = {"pixel_acc_allowed": correct / total if total else float("nan"), "pixels": total}
    if (allowed.sum(axis=0) <= 1).all():
        to_extra = np.where(allowed.any(axis=0), allowed.argmax(axis=0), k)  # k = claimed by no class
        onehot = np.zeros((c, k + 1), dtype=np.int64)
        onehot[np.arange(c), to_extra] = 1
        cm_k = cm_rect.astype(np.int64) @ onehot  # [K, K+1]
        square = cm_k[:, :k]
        s = scores(square)
        tp = np.diag(square).astype(np.float64)
        union = cm_k.sum(axis=1) + square.sum(axis=0) - tp
        with np.errstate(invalid="ignore", divide="ignore"):
            s.iou = np.where(union > 0, tp / union, np.nan)
            s.acc = np.where(cm_k.sum(axis=1) > 0, tp / cm_k.sum(axis=1), np.nan)
        present = ~np.isnan(s.iou)
        s.miou = float(np.nanmean(s.iou)) if present.any() else float("nan")
        s.mean_acc = float(np.nanmean(s.acc)) if (~np.isnan(s.acc)).any() else float("nan")
        s.absent = [int(i) for i in np.flatnonzero(~present)]
        s.pixel_acc = float(tp.sum() / total) if total else float("nan")
        s.pixels = total
        out["extra_confusion"] = square
        out["scores"] = s
    return out
