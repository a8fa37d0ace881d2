"""WildDash 2 (``wd_public_v2p0``), evaluation only: COCO-panoptic labels.

Layout: ``images/<frame>.jpg``, ``panoptic/<frame>.png`` and ``panoptic.json``. A panoptic PNG stores a
segment id per pixel as ``R + 256 G + 256^2 B``; ``panoptic.json`` gives each annotation's
``segments_info`` (segment id -> ``category_id``). Segment id 0 is unlabeled. The semantic label is the
category id of each pixel's segment, decoded with a per-image lookup table (no pixel loops), exactly what
the official ``pano2sem.py`` (github.com/ozendelait/wilddash_scripts) writes. The public set has no
train/val division; it is one evaluation split, ``val``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from segunify.datasets.base import DatasetAdapter, LabelEncoding, register_dataset
from segunify.errors import SegunifyError


@register_dataset
class WildDash2(DatasetAdapter):
    name = "wilddash2"
    taxonomy_name = "wilddash2"
    splits = ("val",)
    label_encoding = LabelEncoding.PANOPTIC
    description = "WildDash 2 public set (evaluation only; COCO-panoptic PNG + panoptic.json)"
    homepage = "https://wilddash.cc"
    layout = "images/*.jpg with panoptic/<same>.png and panoptic.json"

    def __init__(self, root):
        super().__init__(root)
        self._segments: dict[str, dict[int, int]] | None = None

    @property
    def segments(self) -> dict[str, dict[int, int]]:
        """Panoptic PNG name -> {segment id: category id}, read once from ``panoptic.json``."""
        if self._segments is None:
            path = self.root / "panoptic.json"
            if not path.is_file():
                raise SegunifyError("panoptic.json not found (WildDash 2 needs it to decode labels)", path)
            try:
                data = json.loads(path.read_text(encoding="utf-8"))
                self._segments = {
                    ann["file_name"]: {int(s["id"]): int(s["category_id"]) for s in ann["segments_info"]}
                    for ann in data["annotations"]
                }
            except (
                OSError,
                UnicodeDecodeError,
                json.JSONDecodeError,
                KeyError,
                TypeError,
                ValueError,
            ) as exc:
                raise SegunifyError(
                    f"not a COCO panoptic file (annotations/segments_info): {exc}", path
                ) from None
        return self._segments

    def _list(self, split):
        segments = self.segments
        out = []
        for img in (self.root / "images").glob("*.jpg"):
            label = self.root / "panoptic" / f"{img.stem}.png"
            if label.name in segments or not label.is_file():
                out.append(self._pair(split, img, label, [img.stem]))
            else:  # a PNG that panoptic.json does not describe cannot be decoded: no label
                out.append(self._sample(split, img, None, [img.stem]))
        return out

    def decode_label(self, raw: np.ndarray, path: Path) -> np.ndarray:
        if raw.ndim != 3 or raw.shape[2] != 3:
            raise SegunifyError(f"expected an RGB panoptic PNG, got shape {raw.shape}", path)
        seg = (
            raw[..., 0].astype(np.int64)
            | (raw[..., 1].astype(np.int64) << 8)
            | (raw[..., 2].astype(np.int64) << 16)
        )
        uniq, inverse = np.unique(seg.ravel(), return_inverse=True)
        table = {0: 0, **self.segments.get(Path(path).name, {})}
        unknown = [int(u) for u in uniq if int(u) not in table]
        if unknown:
            raise SegunifyError(f"segment id(s) {unknown[:10]} not in panoptic.json segments_info", path)
        categories = np.array([table[int(u)] for u in uniq], dtype=np.int64)
        known = self.codec.known
        bad = sorted({int(c) for c in categories if c >= known.size or not known[c]})
        if bad:
            raise SegunifyError(
                f"unknown category id(s) {bad[:10]} for taxonomy {self.taxonomy_name!r}", path
            )
        return self.codec.lut[categories][inverse].reshape(seg.shape)
