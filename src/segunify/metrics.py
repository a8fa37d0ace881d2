"""Confusion matrices and the scores derived from them (numpy or torch, any device).

A confusion matrix has rows = ground truth, columns = predictions; ignore (255, or anything outside
``0..K-1`` in the ground truth) is skipped. It is accumulated with one ``bincount``:

* uint8 labels (the normal case inside segunify) take a fast path: the key ``gt << 8 | pred`` is the
  pair itself, so one ``bincount`` into a ``[256, 256]`` table needs no masks and no ``gt * C + pred``
  arithmetic; ignore rows and out-of-range columns are simply sliced off afterwards. Pixels are processed
  in cache-sized chunks, which makes it faster than the textbook ``np.bincount(gt * C + pred)``.
* anything else (int64, uint16, signed labels with -1) takes the general masked path.

CPU tensors are counted through numpy (``torch.bincount`` on CPU is several times slower); CUDA
tensors stay on their device.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from segunify.mapping import is_partition, source_to_extra
from segunify.taxonomy import IGNORE

_CHUNK = 1 << 18  # pixels per bincount: the uint16 keys (512 KiB) stay in L2 cache


def confusion_matrix(gt, pred, num_classes: int, ignore_index: int = IGNORE):
    """``[C, C]`` int64 counts (rows = ground truth). ``gt``/``pred`` are numpy arrays or torch tensors
    of the same shape; pixels whose GT is ignore or outside ``0..C-1`` are skipped, and a prediction
    outside ``0..C-1`` on a valid pixel is an error (it would silently vanish otherwise)."""
    return confusion_matrix_rect(gt, pred, num_classes, num_classes, ignore_index)


def confusion_matrix_rect(gt, pred, num_gt: int, num_pred: int, ignore_index: int = IGNORE):
    """``[num_gt, num_pred]`` counts for GT and predictions in different label spaces (numpy in, numpy
    out; torch in, torch out on the GT's device). A prediction outside ``0..num_pred-1`` on a pixel with
    valid GT raises ``ValueError`` naming the ids."""
    gt = gt if isinstance(gt, torch.Tensor) else np.asarray(gt)
    pred = pred if isinstance(pred, torch.Tensor) else np.asarray(pred)
    if tuple(gt.shape) != tuple(pred.shape):
        raise ValueError(f"shape mismatch: ground truth {tuple(gt.shape)} vs prediction {tuple(pred.shape)}")
    if isinstance(gt, torch.Tensor) or isinstance(pred, torch.Tensor):
        gt_t = gt if isinstance(gt, torch.Tensor) else torch.from_numpy(gt)
        device = gt_t.device
        pred_t = (pred if isinstance(pred, torch.Tensor) else torch.from_numpy(pred)).to(device)
        if device.type == "cpu":
            cm = _confusion_numpy(
                gt_t.detach().numpy(), pred_t.detach().numpy(), num_gt, num_pred, ignore_index
            )
            return torch.from_numpy(cm)
        return _confusion_torch(gt_t.detach(), pred_t.detach(), num_gt, num_pred, ignore_index)
    return _confusion_numpy(gt, pred, num_gt, num_pred, ignore_index)


def _bad_pred(ids, num_pred: int) -> ValueError:
    ids = [int(i) for i in ids]
    shown = ", ".join(map(str, ids[:10])) + (" ..." if len(ids) > 10 else "")
    return ValueError(f"prediction ids {shown} outside 0..{num_pred - 1} on pixels with valid ground truth")


def _from_table(table, num_gt: int, num_pred: int, ignore_index: int):
    """Slice a ``[256, 256]`` pair table to ``[num_gt, num_pred]``, checking the columns cut off."""
    if 0 <= ignore_index < num_gt:
        table[ignore_index] = 0
    extra_cols = table[:num_gt, num_pred:].sum(0) > 0
    if isinstance(table, torch.Tensor):
        if bool(extra_cols.any()):
            raise _bad_pred((torch.nonzero(extra_cols).flatten() + num_pred).tolist(), num_pred)
        return table[:num_gt, :num_pred].clone()
    if extra_cols.any():
        raise _bad_pred(np.flatnonzero(extra_cols) + num_pred, num_pred)
    return table[:num_gt, :num_pred].copy()


def _confusion_numpy(
    gt: np.ndarray, pred: np.ndarray, num_gt: int, num_pred: int, ignore_index: int
) -> np.ndarray:
    gt, pred = gt.reshape(-1), pred.reshape(-1)
    if gt.dtype == np.uint8 and pred.dtype == np.uint8 and num_gt <= 256 and num_pred <= 256:
        table = np.zeros(65536, dtype=np.int64)
        n = gt.size
        pairs = np.empty((min(_CHUNK, n), 2), dtype=np.uint8)
        keys = pairs.view(np.uint16).reshape(-1)  # little endian: key = gt * 256 + pred
        gt_col, pred_col = (1, 0) if np.little_endian else (0, 1)
        for start in range(0, n, _CHUNK):
            m = min(_CHUNK, n - start)
            pairs[:m, gt_col] = gt[start : start + m]
            pairs[:m, pred_col] = pred[start : start + m]
            table += np.bincount(keys[:m], minlength=65536)
        return _from_table(table.reshape(256, 256), num_gt, num_pred, ignore_index)
    if not (np.issubdtype(gt.dtype, np.integer) and np.issubdtype(pred.dtype, np.integer)):
        raise ValueError(f"labels must be integer arrays, got {gt.dtype} and {pred.dtype}")
    valid = (gt >= 0) & (gt < num_gt)
    if 0 <= ignore_index < num_gt:
        valid &= gt != ignore_index
    g = gt[valid].astype(np.int64, copy=False)
    p = pred[valid].astype(np.int64, copy=False)
    if p.size and (p.min() < 0 or p.max() >= num_pred):
        raise _bad_pred(np.unique(p[(p < 0) | (p >= num_pred)]), num_pred)
    return np.bincount(g * num_pred + p, minlength=num_gt * num_pred).reshape(num_gt, num_pred)


def _confusion_torch(gt: torch.Tensor, pred: torch.Tensor, num_gt: int, num_pred: int, ignore_index: int):
    gt, pred = gt.reshape(-1), pred.reshape(-1)
    if gt.dtype == torch.uint8 and pred.dtype == torch.uint8 and num_gt <= 256 and num_pred <= 256:
        keys = (gt.to(torch.int32) << 8) | pred.to(torch.int32)
        table = torch.bincount(keys, minlength=65536).reshape(256, 256)
        return _from_table(table, num_gt, num_pred, ignore_index)
    if gt.is_floating_point() or pred.is_floating_point():
        raise ValueError(f"labels must be integer tensors, got {gt.dtype} and {pred.dtype}")
    gt, pred = gt.long(), pred.long()
    valid = (gt >= 0) & (gt < num_gt)
    if 0 <= ignore_index < num_gt:
        valid &= gt != ignore_index
    g, p = gt[valid], pred[valid]
    bad = (p < 0) | (p >= num_pred)
    if bool(bad.any()):
        raise _bad_pred(torch.unique(p[bad]).tolist(), num_pred)
    return torch.bincount(g * num_pred + p, minlength=num_gt * num_pred).reshape(num_gt, num_pred)


def as_numpy(cm) -> np.ndarray:
    """A confusion matrix (numpy, or torch on any device) as a numpy array."""
    return cm.detach().cpu().numpy() if isinstance(cm, torch.Tensor) else np.asarray(cm)


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
    gt_pixels: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))  # per class
    pred_pixels: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))  # per class


def scores(cm) -> Scores:
    """Per-class IoU and accuracy, mIoU, pixel and mean accuracy of a square confusion matrix."""
    cm = as_numpy(cm).astype(np.float64)
    tp = np.diag(cm)
    gt_sum = cm.sum(axis=1)
    return _scores_from(tp, gt_sum, cm.sum(axis=0), cm.sum())


def _scores_from(tp: np.ndarray, gt_sum: np.ndarray, pred_sum: np.ndarray, total: float) -> Scores:
    union = gt_sum + pred_sum - tp
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = np.where(union > 0, tp / union, np.nan)
        acc = np.where(gt_sum > 0, tp / gt_sum, np.nan)
    present = ~np.isnan(iou)
    return Scores(
        iou=iou,
        acc=acc,
        miou=float(np.mean(iou[present])) if present.any() else float("nan"),
        pixel_acc=float(tp.sum() / total) if total else float("nan"),
        mean_acc=float(np.mean(acc[~np.isnan(acc)])) if (~np.isnan(acc)).any() else float("nan"),
        absent=[int(i) for i in np.flatnonzero(~present)],
        pixels=int(total),
        gt_pixels=gt_sum.astype(np.int64),
        pred_pixels=pred_sum.astype(np.int64),
    )


def predicted_share(cm) -> np.ndarray:
    """Share of evaluated pixels predicted as each class (column sums / total), e.g. how often a
    teacher predicts truck, bus or train on a dataset whose GT has only 'Car'. NaN when empty."""
    cm = as_numpy(cm).astype(np.float64)
    total = cm.sum()
    return cm.sum(axis=0) / total if total else np.full(cm.shape[1], np.nan)


def cross_taxonomy_scores(cm_rect, allowed: np.ndarray) -> dict:
    """Scores of a ``[K, C]`` cross-taxonomy confusion matrix.

    Extra classes whose allowed set is empty (mapped to ``void``) are ignored, like void pixels; they
    are listed in ``void_classes``. Always returned: ``pixel_acc_allowed`` (share of pixels whose
    predicted source class is in the GT class's allowed set), ``acc_allowed`` per extra class (NaN
    without GT pixels), ``pred_share`` per source class and ``pixels``. When the mapping is a partition
    (no source class in two allowed sets) every prediction maps to one extra class, giving a ``[K, K]``
    confusion matrix (``extra_confusion``) and per-extra-class IoU (``scores``); a prediction in no
    allowed set counts as a miss of the GT class and as a false positive of no class.
    """
    cm_rect = as_numpy(cm_rect).astype(np.int64)
    allowed = np.asarray(allowed, dtype=bool)
    k, c = allowed.shape
    if cm_rect.shape != (k, c):
        raise ValueError(f"confusion matrix {cm_rect.shape} does not match mapping {allowed.shape}")
    void = ~allowed.any(axis=1)
    cm_rect = cm_rect * ~void[:, None]
    gt_sum = cm_rect.sum(axis=1)
    total = int(gt_sum.sum())
    correct_per_class = (cm_rect * allowed).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        acc_allowed = np.where(gt_sum > 0, correct_per_class / np.maximum(gt_sum, 1), np.nan)
    out: dict = {
        "pixel_acc_allowed": float(correct_per_class.sum() / total) if total else float("nan"),
        "acc_allowed": acc_allowed,
        "pred_share": predicted_share(cm_rect),
        "pixels": total,
        "void_classes": [int(i) for i in np.flatnonzero(void)],
        "partition": is_partition(allowed),
    }
    if out["partition"]:
        fold = source_to_extra(allowed)
        to_extra = np.where(fold < 0, k, fold)  # k = claimed by no class
        onehot = np.zeros((c, k + 1), dtype=np.int64)
        onehot[np.arange(c), to_extra] = 1
        cm_k = cm_rect @ onehot  # [K, K+1]; the last column = predictions claimed by no extra class
        square = cm_k[:, :k]
        s = _scores_from(
            np.diag(square).astype(np.float64),
            gt_sum.astype(np.float64),
            square.sum(axis=0).astype(np.float64),
            float(total),
        )
        # void classes are ignore, not "absent": report them only in void_classes
        s.absent = [i for i in s.absent if not void[i]]
        out["extra_confusion"] = square
        out["scores"] = s
    return out
