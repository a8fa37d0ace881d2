"""The teacher's acceptance figure: EdgeNets ESPNetv2 s=2.0 (Cityscapes 19) on CamVid val, mapped to CamVid 11.

Images are resized to 1024x512 (W x H), logits resized back to 480x360, argmax over the 19 Cityscapes
classes, then mapped to CamVid through ``mappings/camvid__cityscapes.csv`` (a partition). Prints one
JSON line: miou, pixel_acc, per-class IoU, seconds, images/s.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from segunify.datasets import create_dataset
from segunify.mapping import load_mapping
from segunify.metrics import confusion_matrix, scores
from segunify.models import create_model
from segunify.models.base import IMAGENET_MEAN, IMAGENET_STD
from segunify.models.inference import Predictor
from segunify.paths import data_path, weights_path


def measure(
    s: float = 2.0, size=(512, 1024), split: str = "val", limit: int | None = None, batch: int = 4
) -> dict:
    name = f"espnetv2_s{s:.1f}_cityscapes_1024x512.pth"
    model = create_model("espnetv2", 19, weights=weights_path(name), s=s)
    predictor = Predictor(model, IMAGENET_MEAN, IMAGENET_STD, size=size)
    dataset = create_dataset("camvid", data_path("CamVid"))
    samples = dataset.samples(split)[:limit]
    mapping = load_mapping("camvid__cityscapes")
    lut = mapping.source_to_extra_lut()
    k = mapping.extra.num_classes
    cm = np.zeros((k, k), dtype=np.int64)
    t0 = time.perf_counter()
    for i in range(0, len(samples), batch):
        chunk = samples[i : i + batch]
        pairs = [dataset.sample(smp) for smp in chunk]
        pred = predictor.predict(np.stack([img for img, _ in pairs]))
        cm += confusion_matrix(np.stack([lab for _, lab in pairs]), lut[pred], k)
    seconds = time.perf_counter() - t0
    sc = scores(cm)
    return {
        "benchmark": "teacher_camvid",
        "model": f"espnetv2 s={s}",
        "split": split,
        "images": len(samples),
        "input_hw": list(size),
        "miou": round(100 * sc.miou, 2),
        "pixel_acc": round(100 * sc.pixel_acc, 2),
        "iou": {c: round(100 * float(v), 2) for c, v in zip(mapping.extra.classes, sc.iou, strict=True)},
        "seconds": round(seconds, 2),
        "images_per_s": round(len(samples) / seconds, 3),
        "threads": torch.get_num_threads(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--s", type=float, default=2.0)
    parser.add_argument("--split", default="val")
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(json.dumps(measure(args.s, split=args.split, limit=args.limit)))


if __name__ == "__main__":
    main()
