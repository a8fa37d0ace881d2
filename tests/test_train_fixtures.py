"""Generated inputs for the training tests: a tiny CamVid-layout dataset whose colours predict the
labels (so a small network can learn it in a few steps), pseudo-label folders, and configs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import yaml

from segunify.io import write_index_png, write_png
from segunify.taxonomy import IGNORE, load_taxonomy


def make_camvid(
    root: Path, n_train: int = 8, n_val: int = 2, size: tuple[int, int] = (48, 64), seed: int = 0
) -> Path:
    """CamVid layout (``train/``, ``trainannot/``, ...). Labels are blocks of classes 0..10 plus some
    void (11); each image pixel is its class's palette colour plus noise."""
    rng = np.random.default_rng(seed)
    palette = load_taxonomy("camvid").palette()[:11].astype(np.int16)
    h, w = size
    for split, n in (("train", n_train), ("val", n_val)):
        (root / split).mkdir(parents=True, exist_ok=True)
        (root / f"{split}annot").mkdir(parents=True, exist_ok=True)
        for i in range(n):
            blocks = rng.integers(0, 11, size=(h // 8 + 1, w // 8 + 1))
            label = np.kron(blocks, np.ones((8, 8), dtype=np.int64))[:h, :w].astype(np.uint8)
            image = palette[label] + rng.integers(-12, 13, size=(h, w, 3))
            label[rng.random((h, w)) < 0.03] = 11  # CamVid's void
            name = f"0001TP_{i:06d}.png"
            write_png(root / split / name, np.clip(image, 0, 255).astype(np.uint8))
            write_index_png(root / f"{split}annot" / name, label)
    return root


def make_pseudo(
    root: Path, out: Path, split: str = "train", taxonomy: str = "cityscapes", dataset: str = "camvid"
) -> Path:
    """A pseudo-label folder for the generated CamVid: each GT class -> the first Cityscapes class it allows."""
    from segunify.datasets import create_dataset
    from segunify.mapping import load_mapping

    mapping = load_mapping("camvid__cityscapes")
    lut = np.full(256, IGNORE, dtype=np.uint8)
    for k, cs in enumerate(mapping.allowed_sets):
        if cs:
            lut[k] = cs[0]
    ds = create_dataset("camvid", root)
    for s in ds.samples(split):
        write_index_png(out / s.rel, lut[ds.read_label(s)])
    (out / "summary.json").write_text(
        json.dumps({"dataset": dataset, "split": split, "source_taxonomy": taxonomy}), encoding="utf-8"
    )
    return out


def base_config(root: Path, out: Path, **overrides) -> dict:
    """A tiny, fast config: espnetv2 s=1.0 on 48x64 images, CamVid taxonomy, no augmentation."""
    cfg = {
        "model": {"name": "espnetv2", "kwargs": {"s": 1.0}},
        "taxonomy": "camvid",
        "parts": [{"dataset": "camvid", "root": str(root), "split": "train"}],
        "augmentation": {"scale": [1.0, 1.0], "crop": [48, 64], "hflip": False, "color_jitter": 0.0},
        "optimizer": {"lr": 0.01, "weight_decay": 0.0},
        "steps": 8,
        "batch_size": 2,
        "num_workers": 0,
        "out": str(out),
        "log": {"tensorboard": False, "every": 1, "progress": False},
    }
    for key, value in overrides.items():
        node = cfg
        *parents, last = key.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[last] = value
    return cfg


def write_config(path: Path, cfg: dict) -> Path:
    path.write_text(yaml.safe_dump(cfg, sort_keys=False), encoding="utf-8")
    return path
