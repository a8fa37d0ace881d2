"""Confusion-matrix throughput (Mpx/s) of ``segunify.metrics`` beside a bare ``np.bincount`` and
torchmetrics, over the same pixels, printed as one JSON line.

The pixels are Cityscapes-like: 19 classes, 10 % ignore (255), uint8 as the dataset adapters return
them. "bare" is the textbook ``np.bincount(gt * C + pred)`` with no ignore handling and no range check;
"bincount_only" counts a precomputed index array (the floor no method that builds the index can reach).
Best of ``--repeat`` runs each, one thread.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from segunify.metrics import confusion_matrix


def best_mpx(fn, pixels: int, repeat: int) -> float:
    fn()
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return pixels / best / 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=4, help="1024x2048 frames per run")
    parser.add_argument("--classes", type=int, default=19)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(1)
    c = args.classes
    rng = np.random.default_rng(0)
    n = args.images * 1024 * 2048
    gt = rng.integers(0, c, n, dtype=np.uint8)
    gt[rng.random(n) < 0.1] = 255
    pred = rng.integers(0, c, n, dtype=np.uint8)
    idx = gt.astype(np.int64) * c + pred

    ours = confusion_matrix(gt, pred, c)
    valid = gt != 255
    assert (ours == np.bincount(idx[valid], minlength=c * c).reshape(c, c)).all()

    fig = {
        "benchmark": "metrics.confusion_matrix",
        "pixels": n,
        "classes": c,
        "ours_numpy_mpx_s": best_mpx(lambda: confusion_matrix(gt, pred, c), n, args.repeat),
        "bare_bincount_mpx_s": best_mpx(
            lambda: np.bincount(gt.astype(np.int64) * c + pred, minlength=256 * c), n, args.repeat
        ),
        "bincount_only_mpx_s": best_mpx(lambda: np.bincount(idx, minlength=256 * c), n, args.repeat),
    }
    gt_t, pred_t = torch.from_numpy(gt), torch.from_numpy(pred)
    fig["ours_torch_cpu_mpx_s"] = best_mpx(lambda: confusion_matrix(gt_t, pred_t, c), n, args.repeat)
    try:
        from torchmetrics.functional.classification import multiclass_confusion_matrix
    except ImportError:
        fig["torchmetrics_mpx_s"] = None
    else:
        gt_l, pred_l = gt_t.long(), pred_t.long()
        tm = multiclass_confusion_matrix(pred_l, gt_l, c, ignore_index=255, validate_args=False)
        assert (tm.numpy() == ours).all()
        fig["torchmetrics_mpx_s"] = best_mpx(
            lambda: multiclass_confusion_matrix(pred_l, gt_l, c, ignore_index=255, validate_args=False),
            n,
            max(1, args.repeat // 2),
        )
    fig["ratio_vs_bare"] = fig["ours_numpy_mpx_s"] / fig["bare_bincount_mpx_s"]
    fig["ratio_vs_bincount_only"] = fig["ours_numpy_mpx_s"] / fig["bincount_only_mpx_s"]
    if fig["torchmetrics_mpx_s"]:
        fig["ratio_vs_torchmetrics"] = fig["ours_numpy_mpx_s"] / fig["torchmetrics_mpx_s"]
    fig["goal_ratio_vs_bare"] = 0.8
    fig["goal_met"] = fig["ratio_vs_bare"] >= 0.8
    print(json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in fig.items()}))


if __name__ == "__main__":
    main()
